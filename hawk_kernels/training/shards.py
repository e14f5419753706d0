"""The on-disk format of a distilled data set (`hawk distill`): manifest.json (settings, model identity, layout,
shard count), prompts.txt (one prompt or caption per line, or one line of token ids per prompt), images.txt
(image sources only) and shard-XXXXXX.safetensors holding `sequences` [n, L] int64 (each prompt left-padded
with PAD_ID to `body_start`, then the generated body with its layout tokens and the image end, as the decoder
writes it), `prompt_length` [n] (real prompt tokens before body_start: the padding is masked in training),
`prompt_index` [n] and `sample_index` [n]. Every file is written under a temporary name and renamed, so a shard
is either complete or absent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

FORMAT = "hawk-distill/2"
MANIFEST = "manifest.json"
PROMPTS_FILE = "prompts.txt"
IMAGES_FILE = "images.txt"
SHARD_KEYS = ("sequences", "prompt_length", "prompt_index", "sample_index")
PAD_ID = 0  # filler before short prompts; masked by prompt_length, so any id works
MANIFEST_KEYS = frozenset({"settings", "model", "body_start", "sequence_length", "grid", "num_shards"})


def shard_path(out_dir: Path, shard: int) -> Path:
    return Path(out_dir) / f"shard-{shard:06d}.safetensors"


def prepare_out_dir(out_dir: Path, manifest: dict, prompts: list[str], overwrite: bool,
                    image_names: list[str] | None = None) -> Path:
    """Create out_dir with the manifest, or check that an existing one was made with the same settings (resume)."""
    path = out_dir / MANIFEST
    if path.exists():
        try:
            existing = read_manifest(path, "out")
        except ValueError:
            if not overwrite:
                raise
            existing = None  # unreadable: replaced with overwrite
        if existing != manifest and not overwrite:
            raise ValueError(f"out: {str(out_dir)!r} holds a distillation made with other settings "
                             f"({_differences(existing, manifest)}); use a new directory, or overwrite=True "
                             f"(--overwrite)")
        if existing == manifest:
            return out_dir
    elif out_dir.exists() and any(not _ours(f.name) for f in out_dir.iterdir()) and not overwrite:
        raise ValueError(f"out: {str(out_dir)!r} exists, is not empty and holds no {MANIFEST}; use a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for old in out_dir.glob("shard-*.safetensors"):
            old.unlink()
    _atomic_write_text(out_dir / PROMPTS_FILE, "\n".join(prompts) + "\n")
    if image_names is not None:
        _atomic_write_text(out_dir / IMAGES_FILE, "\n".join(image_names) + "\n")
    _atomic_write_text(path, json.dumps(manifest, indent=1))
    return out_dir


def _differences(existing: dict, manifest: dict) -> str:
    """What differs between two manifests, the settings by name with both values: "mode 'jacobi', not 'ar'"."""
    old, new = existing.get("settings"), manifest.get("settings")
    if isinstance(old, dict) and isinstance(new, dict) and old != new:
        keys = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
        return "; ".join("other prompts" if k == "prompts_sha256" else f"{k} {old.get(k)!r}, not {new.get(k)!r}"
                         for k in keys)
    return ", ".join(sorted(k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k)))


def _ours(name: str) -> bool:
    """Files a distillation writes (another rank may be writing them right now)."""
    return name in (MANIFEST, PROMPTS_FILE, IMAGES_FILE) or name.startswith("shard-") or ".partial-" in name


def write_shard(out_dir: Path, shard: int, sequences: torch.Tensor, prompt_lengths: list[int],
                items: list[tuple[int, int]]) -> None:
    from safetensors.torch import save_file

    final = shard_path(out_dir, shard)
    partial = final.with_name(final.name + f".partial-{os.getpid()}")
    save_file({"sequences": sequences.contiguous(),
               "prompt_length": torch.tensor(prompt_lengths, dtype=torch.int64),
               "prompt_index": torch.tensor([p for p, _ in items], dtype=torch.int64),
               "sample_index": torch.tensor([i for _, i in items], dtype=torch.int64)}, str(partial),
              metadata={"format": FORMAT, "shard": str(shard)})
    os.replace(partial, final)


def _atomic_write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def read_manifest(path: Path, flag: str = "data") -> dict:
    """A manifest.json file as a dict: ValueError naming `flag` and the file when it is not a JSON object."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{flag}: {str(path)!r} is not JSON ({exc}); make it again with `hawk distill`") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{flag}: {str(path)!r} holds a JSON {type(manifest).__name__}, not the object of a "
                         f"`hawk distill` manifest")
    return manifest


def load_manifest(data_dir) -> dict:
    """The manifest of a distilled data set, checking that every shard is there."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"data: no {MANIFEST} in {str(data_dir)!r} (make one with `hawk distill`)")
    manifest = read_manifest(path)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"data: {str(path)!r} is not a {FORMAT} manifest (format {manifest.get('format')!r}); "
                         f"make it again with this version's `hawk distill`")
    missing = sorted(MANIFEST_KEYS - set(manifest))
    if missing:
        raise ValueError(f"data: {str(path)!r} lacks {', '.join(missing)}; make it again with `hawk distill`")
    missing = [b for b in range(manifest["num_shards"]) if not shard_path(data_dir, b).exists()]
    if missing:
        raise ValueError(f"data: {len(missing)} of {manifest['num_shards']} shards are missing (first: "
                         f"{shard_path(data_dir, missing[0]).name}); run the same `hawk distill` again to finish")
    return manifest


def read_prompts(data_dir) -> list:
    """The prompts (or captions) a data set was made from: text, or token-id lists (a line of integers)."""
    lines = (Path(data_dir) / PROMPTS_FILE).read_text().splitlines()
    if load_manifest(data_dir)["settings"]["prompt_kind"] == "ids":
        return [[int(t) for t in line.split()] for line in lines]
    return lines


def read_shard(data_dir, shard: int, sequence_length: int) -> dict:
    """One shard's tensors, checked against the manifest's sequence length."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = shard_path(Path(data_dir), shard)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"data: shard {path.name} is unreadable ({exc})") from None
    sequences, lengths = tensors.get("sequences"), tensors.get("prompt_length")
    if sequences is None or sequences.dim() != 2 or sequences.shape[1] != sequence_length or not len(sequences) \
            or lengths is None or lengths.shape != sequences.shape[:1]:
        raise ValueError(f"data: shard {path.name} has no sequences [n, {sequence_length}] with prompt_length [n] "
                         f"(got {None if sequences is None else tuple(sequences.shape)})")
    return tensors
