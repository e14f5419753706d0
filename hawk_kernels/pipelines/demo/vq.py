"""PatchVQ: a k-means codebook over non-overlapping p x p image patches (the demo's image tokenizer).

A 28x28 uint8 digit is cut into 2x2 patches (a 14x14 grid); each patch (4 pixel values) is replaced by the id
of its nearest codebook vector (squared L2 distance, ties -> lowest id). `decode` pastes the codebook vectors
back and rounds to uint8. Fitting is weighted Lloyd k-means over the *distinct* patches (weighted by their
counts) with weighted k-means++ seeding from `seed`; it is deterministic, and so is `encode` (float64 math).
Codes are sorted by patch brightness, so code 0 is the blank (all-zero) background patch.
"""
from __future__ import annotations

import os

import numpy as np
import torch


def as_uint8_images(images) -> np.ndarray:
    """uint8 images [N, H, W] (or one [H, W]) from an array or tensor; clear errors otherwise."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images: expected uint8, got {images.dtype}")
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"images: expected [N, H, W], got shape {images.shape}")
    return images


class PatchVQ:
    def __init__(self, codebook: np.ndarray | None = None, patch: int = 2, image_size: int = 28):
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.patch = int(patch)
        self.image_size = int(image_size)
        self.codebook = None if codebook is None else np.asarray(codebook, dtype=np.float32)
        if self.codebook is not None and self.codebook.shape[1] != self.patch * self.patch:
            raise ValueError(f"codebook: expected [K, {self.patch * self.patch}], got {self.codebook.shape}")

    # --- geometry ---------------------------------------------------------------------------------------
    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    @property
    def num_codes(self) -> int:
        self._check_fitted()
        return int(self.codebook.shape[0])

    def _check_fitted(self):
        if self.codebook is None:
            raise RuntimeError("PatchVQ has no codebook: call fit() or PatchVQ.load()")

    def to_patches(self, images) -> np.ndarray:
        """uint8 [N, 28, 28] -> uint8 [N, 14, 14, 4] (row-major inside each patch)."""
        images = as_uint8_images(images)
        n, h, w = images.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"images: expected {self.image_size}x{self.image_size}, got {h}x{w}")
        p, g = self.patch, self.grid
        return images.reshape(n, g, p, g, p).transpose(0, 1, 3, 2, 4).reshape(n, g, g, p * p)

    def from_patches(self, patches: np.ndarray) -> np.ndarray:
        n = patches.shape[0]
        p, g = self.patch, self.grid
        return patches.reshape(n, g, g, p, p).transpose(0, 1, 3, 2, 4).reshape(n, g * p, g * p)

    # --- k-means -----------------------------------------------------------------------------------------
    @staticmethod
    def _nearest(x: np.ndarray, codebook: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """Nearest code (ties -> lowest id) and squared distance, float64. x [M, D], codebook [K, D]."""
        c = torch.from_numpy(np.asarray(codebook, dtype=np.float64))
        c2 = (c * c).sum(1)
        ids, dists = [], []
        for s in range(0, len(x), chunk):
            xs = torch.from_numpy(np.asarray(x[s:s + chunk], dtype=np.float64))
            d = (xs * xs).sum(1, keepdim=True) - 2.0 * xs @ c.T + c2[None]
            m, i = d.min(1)
            ids.append(i.numpy())
            dists.append(np.maximum(m.numpy(), 0.0))
        return np.concatenate(ids), np.concatenate(dists)

    def fit(self, images, num_codes: int = 256, seed: int = 0, iters: int = 100, verbose: bool = False):
        """Weighted k-means over the distinct patches of `images` (uint8 [N, 28, 28]). Returns self."""
        patches = self.to_patches(images).reshape(-1, self.patch * self.patch)
        uniq, counts = np.unique(patches, axis=0, return_counts=True)  # sorted: deterministic order
        x = uniq.astype(np.float64)
        w = counts.astype(np.float64)
        if len(x) < num_codes:
            raise ValueError(f"only {len(x)} distinct patches for {num_codes} codes")
        rng = np.random.default_rng(seed)
        # weighted k-means++ seeding
        centers = [x[rng.choice(len(x), p=w / w.sum())]]
        d2 = ((x - centers[0]) ** 2).sum(1)
        for _ in range(1, num_codes):
            prob = w * d2
            prob = prob / prob.sum()
            centers.append(x[rng.choice(len(x), p=prob)])
            d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
        c = np.stack(centers)
        prev = np.inf
        for it in range(iters):
            ids, dist = self._nearest(x, c)
            err = float((w * dist).sum() / w.sum())
            sums = np.zeros_like(c)
            np.add.at(sums, ids, x * w[:, None])
            mass = np.bincount(ids, weights=w, minlength=num_codes)
            empty = np.flatnonzero(mass == 0)
            c = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-12)[:, None], c)
            if len(empty):  # re-seed empty clusters at the worst-served patches
                worst = np.argsort(-(w * dist), kind="stable")[: len(empty)]
                c[empty] = x[worst]
            if verbose:
                print(f"kmeans iter {it}: mse/patch-pixel {err / x.shape[1]:.3f}")
            if len(empty) == 0 and prev - err <= 1e-7 * max(prev, 1.0):
                break
            prev = err
        order = np.lexsort((np.arange(num_codes), c.sum(1)))  # darkest first: code 0 = blank patch
        self.codebook = c[order].astype(np.float32)
        return self

    # --- encode / decode ---------------------------------------------------------------------------------
    def encode(self, images) -> torch.Tensor:
        """uint8 [N, 28, 28] (numpy or torch) -> LongTensor [N, 14, 14] code ids in [0, num_codes)."""
        self._check_fitted()
        patches = self.to_patches(images)
        n, g = patches.shape[0], self.grid
        ids, _ = self._nearest(patches.reshape(-1, self.patch * self.patch), self.codebook)
        return torch.from_numpy(ids.astype(np.int64)).reshape(n, g, g)

    def decode(self, codes) -> np.ndarray:
        """code ids [N, 14, 14] (or [N, 196], or [14, 14]) -> uint8 images [N, 28, 28]."""
        self._check_fitted()
        codes = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        codes = codes.astype(np.int64)
        g = self.grid
        if codes.ndim == 2 and codes.shape == (g, g):
            codes = codes[None]
        codes = codes.reshape(-1, g, g)
        if codes.size and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(f"codes must lie in [0, {self.num_codes}), got [{codes.min()}, {codes.max()}]")
        vecs = self.codebook[codes]  # [N, g, g, p*p]
        img = self.from_patches(vecs)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def reconstruction_error(self, images) -> dict:
        images = as_uint8_images(images)
        rec = self.decode(self.encode(images)).astype(np.float64)
        diff = rec - images.astype(np.float64)
        mse = float((diff ** 2).mean())
        return {"mse": mse, "rmse": mse ** 0.5, "mae": float(np.abs(diff).mean()),
                "psnr_db": float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))}

    # --- io ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike):
        self._check_fitted()
        np.savez(path, codebook=self.codebook, patch=np.int64(self.patch), image_size=np.int64(self.image_size))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatchVQ":
        with np.load(path) as f:
            return cls(codebook=f["codebook"], patch=int(f["patch"]), image_size=int(f["image_size"]))
