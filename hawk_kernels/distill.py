"""Self-distilled training data for draft heads: sequences the frozen model itself samples (the distribution the
heads face while decoding), made by our own decoder in AR mode, written as safetensors shards.

Determinism is what makes resume and multi-process runs exact. Items (prompt p, sample i) are numbered in one
global order and cut into fixed batches of `batch_size`; batch b is decoded with seed `seed + b` and written
as shard b. So a sample depends only on the settings, never on which process made it or when:
  * killed and restarted, a run skips the shards already on disk (written under a temporary name and renamed,
    so a shard is either complete or absent) and produces exactly the samples of an uninterrupted run;
  * under torchrun, rank r of R makes the shards b with b % R == r, and the union is the single-process run.

Layout of --out: manifest.json (settings, model identity, layout, shard count), prompts.txt, and
shard-XXXXXX.safetensors with `sequences` [n, L] int64 (prompts left-padded with pad_id to `body_start`, then
the body and the image end), `prompt_index` [n] and `sample_index` [n].
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .fingerprint import model_fingerprint

FORMAT = "hawk-distill/1"
MANIFEST = "manifest.json"
PROMPTS_FILE = "prompts.txt"


@dataclass(frozen=True)
class DistillSettings:
    num_prompts: int
    prompts_sha256: str
    images_per_prompt: int
    batch_size: int
    seed: int
    cfg_scale: float
    temperature: float
    top_k: int | None

    @property
    def num_items(self) -> int:
        return self.num_prompts * self.images_per_prompt

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.batch_size)

    def shard_items(self, shard: int) -> list[tuple[int, int]]:
        """(prompt index, sample index) of every item of `shard`, in the global order."""
        first, last = shard * self.batch_size, min((shard + 1) * self.batch_size, self.num_items)
        return [divmod(k, self.images_per_prompt) for k in range(first, last)]


def prompts_digest(prompts: list[str]) -> str:
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()


def shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:06d}.safetensors"


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size under torchrun (RANK / WORLD_SIZE), else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def distill_demo(pipe, prompts: list[str], out_dir, images_per_prompt: int = 1, batch_size: int = 16, seed: int = 0,
                 cfg_scale: float = 3.0, temperature: float = 1.0, top_k: int | None = None, overwrite: bool = False,
                 rank: int | None = None, world_size: int | None = None, progress: bool = True,
                 max_shards: int | None = None) -> dict:
    """Sample `images_per_prompt` images per prompt from the bundled model (AR mode) into shards under out_dir.
    Returns the manifest. max_shards stops after that many new shards (tests use it to stop a run midway)."""
    from tqdm.auto import tqdm

    rank, world_size = (rank_and_world() if rank is None else (rank, world_size or 1))
    if overwrite and world_size > 1:
        raise ValueError("overwrite: not under torchrun (ranks would race); clear --out first, or run one process")
    settings = DistillSettings(len(prompts), prompts_digest(prompts), images_per_prompt, batch_size, seed,
                               float(cfg_scale), float(temperature), top_k)
    prompt_ids = [pipe.vocab.encode_prompt(p) for p in prompts]  # unknown words fail before any work
    body_start = max(map(len, prompt_ids))
    manifest = dict(format=FORMAT, settings=asdict(settings), model=demo_identity(pipe), body_start=body_start,
                    sequence_length=body_start + pipe.grid.num_body_tokens + 1, pad_id=pipe.vocab.pad_id,
                    grid=dict(height=pipe.grid.height, width=pipe.grid.width, row_end_token=pipe.grid.row_end_token,
                              image_token_range=list(pipe.grid.image_token_range),
                              image_end_token=pipe.grid.image_end_token),
                    num_shards=settings.num_shards)
    out_dir = prepare_out_dir(Path(out_dir), manifest, prompts, overwrite)
    todo = [b for b in range(settings.num_shards) if b % world_size == rank and not shard_path(out_dir, b).exists()]
    todo = todo[:max_shards] if max_shards is not None else todo
    bar = tqdm(total=sum(len(settings.shard_items(b)) for b in todo), unit="img", desc=f"distill (rank {rank})",
               disable=not progress)
    for shard in todo:
        items = settings.shard_items(shard)
        texts = [prompts[p] for p, _ in items]
        out = pipe.generate(texts, mode="ar", seed=seed + shard, cfg_scale=cfg_scale, temperature=temperature,
                            top_k=top_k)
        generated = out.output.generated.cpu()
        rows = [[pipe.vocab.pad_id] * (body_start - len(prompt_ids[p])) + prompt_ids[p] for p, _ in items]
        sequences = torch.cat([torch.tensor(rows, dtype=torch.int64), generated], dim=1)
        write_shard(out_dir, shard, sequences, items)
        bar.update(len(items))
    bar.close()
    return manifest


def demo_identity(pipe) -> dict:
    return dict(family="demo", fingerprint=model_fingerprint(pipe.model))


def prepare_out_dir(out_dir: Path, manifest: dict, prompts: list[str], overwrite: bool) -> Path:
    """Create out_dir with the manifest, or check that an existing one was made with the same settings (resume)."""
    path = out_dir / MANIFEST
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != manifest and not overwrite:
            changed = sorted(k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k))
            raise ValueError(f"out: {str(out_dir)!r} holds a distillation made with other settings ({', '.join(changed)}); "
                             f"use a new directory, or overwrite=True (--overwrite)")
        if existing == manifest:
            return out_dir
    elif out_dir.exists() and any(not _ours(f.name) for f in out_dir.iterdir()) and not overwrite:
        raise ValueError(f"out: {str(out_dir)!r} exists, is not empty and holds no {MANIFEST}; use a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for old in out_dir.glob("shard-*.safetensors"):
            old.unlink()
    _atomic_write_text(out_dir / PROMPTS_FILE, "\n".join(prompts) + "\n")
    _atomic_write_text(path, json.dumps(manifest, indent=1))
    return out_dir


def _ours(name: str) -> bool:
    """Files a distillation writes (another rank may be writing them right now)."""
    return name in (MANIFEST, PROMPTS_FILE) or name.startswith("shard-") or ".partial-" in name


def write_shard(out_dir: Path, shard: int, sequences: torch.Tensor, items: list[tuple[int, int]]) -> None:
    from safetensors.torch import save_file

    final = shard_path(out_dir, shard)
    partial = final.with_name(final.name + f".partial-{os.getpid()}")
    save_file({"sequences": sequences.contiguous(),
               "prompt_index": torch.tensor([p for p, _ in items], dtype=torch.int64),
               "sample_index": torch.tensor([i for _, i in items], dtype=torch.int64)}, str(partial),
              metadata={"format": FORMAT, "shard": str(shard)})
    os.replace(partial, final)


def _atomic_write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def load_manifest(data_dir) -> dict:
    """The manifest of a distilled data set, checking that every shard is there."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"data: no {MANIFEST} in {str(data_dir)!r} (make one with `hawk distill`)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"data: {str(path)!r} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    missing = [b for b in range(manifest["num_shards"]) if not shard_path(data_dir, b).exists()]
    if missing:
        raise ValueError(f"data: {len(missing)} of {manifest['num_shards']} shards are missing (first: "
                         f"{shard_path(data_dir, missing[0]).name}); run the same `hawk distill` again to finish")
    return manifest


def read_shard(data_dir, shard: int, sequence_length: int) -> dict:
    """One shard's tensors, checked against the manifest's sequence length."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = shard_path(Path(data_dir), shard)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"data: shard {path.name} is unreadable ({exc})") from None
    sequences = tensors.get("sequences")
    if sequences is None or sequences.dim() != 2 or sequences.shape[1] != sequence_length or not len(sequences):
        raise ValueError(f"data: shard {path.name} has no sequences [n, {sequence_length}] (got "
                         f"{None if sequences is None else tuple(sequences.shape)})")
    return tensors
