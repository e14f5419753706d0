"""DigitJudge: an independent, already-trained MNIST classifier used to score the demo model's samples.

It wraps the CNN shipped in the PyPI package `digit-recognizer-py` (weights
`digit_recognizer/models/handwriting_model.pth`, trained by its author on MNIST; not by this project).
Install it WITHOUT dependencies (its metadata pulls torchvision, which would replace our torch):

    pip install --no-deps digit-recognizer-py

The package's `__init__` imports torchvision, so we never import it: we locate the package directory with
importlib (no execution), rebuild its (tiny, documented) CNN architecture here and load the state dict with
`torch.load(weights_only=True)`. Preprocessing matches the package: x / 255, normalize (0.1307, 0.3081),
white digit on black background (MNIST convention, as our images are).

    judge = DigitJudge()
    judge.predict(images_uint8_N_28_28)   -> int64 labels [N]
    judge.features(images)                -> float32 [N, 256] (penultimate layer, for a Frechet distance)
    frechet_distance(f1, f2)              -> float
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from hawk_kernels.pipelines.demo.vq import as_uint8_images

INSTALL_HINT = "pip install --no-deps digit-recognizer-py"


class _JudgeCNN(nn.Module):
    """Same module layout as digit_recognizer.model.CNN (so its state dict loads unchanged)."""

    def __init__(self):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        )
        self.fc_layers = nn.Sequential(nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, 10))

    def features(self, x):
        x = self.conv_layers(x).flatten(1)
        return self.fc_layers[1](self.fc_layers[0](x))

    def forward(self, x):
        return self.fc_layers[2](self.features(x))


def judge_weights_path() -> Path:
    spec = importlib.util.find_spec("digit_recognizer")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"DigitJudge needs the package digit-recognizer-py: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "handwriting_model.pth"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: reinstall with {INSTALL_HINT}")
    return path


class DigitJudge:
    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None):
        self.device = torch.device(device)
        self.weights = Path(weights) if weights is not None else judge_weights_path()
        self.model = _JudgeCNN()
        self.model.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
        self.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _prep(self, images) -> torch.Tensor:
        images = as_uint8_images(images)
        if images.shape[1:] != (28, 28):
            raise ValueError(f"images: expected [N, 28, 28], got {images.shape}")
        x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
        return ((x - 0.1307) / 0.3081).to(self.device)

    @torch.no_grad()
    def logits(self, images, batch_size: int = 500) -> torch.Tensor:
        x = self._prep(images)
        return torch.cat([self.model(x[s:s + batch_size]).float().cpu() for s in range(0, len(x), batch_size)])

    def predict(self, images) -> np.ndarray:
        """uint8 [N, 28, 28] -> int64 labels [N]."""
        return self.logits(images).argmax(1).numpy().astype(np.int64)

    def predict_proba(self, images) -> np.ndarray:
        return torch.softmax(self.logits(images), 1).numpy()

    @torch.no_grad()
    def features(self, images, batch_size: int = 500) -> np.ndarray:
        """uint8 [N, 28, 28] -> float32 [N, 256] penultimate-layer activations (after ReLU)."""
        x = self._prep(images)
        return torch.cat([self.model.features(x[s:s + batch_size]).cpu()
                          for s in range(0, len(x), batch_size)]).numpy()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, F] (FID formula)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ca = ca + eps * np.eye(len(ca))
    cb = cb + eps * np.eye(len(cb))
    # trace sqrt(ca cb) via eigenvalues of sqrt(ca) cb sqrt(ca) (symmetric PSD)
    w, v = np.linalg.eigh(ca)
    sa = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = sa @ cb @ sa
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from hawk_kernels.pipelines.demo.data import load_split

    judge = DigitJudge()
    tx, ty = load_split("train")
    hx, hy = load_split("heldout")
    print(f"judge accuracy: train split {(judge.predict(tx) == ty).mean():.4f}, "
          f"held-out {(judge.predict(hx) == hy).mean():.4f}")
    print(f"Frechet(train features, held-out features) = {frechet_distance(judge.features(tx), judge.features(hx)):.3f}")
