"""Training data for draft heads, written as resumable shards (shards.py): self-distilled sequences the frozen
model itself samples (`distill`: the distribution the heads face while decoding, made by our own decoder with
the family's default sampling and CFG, in any decoding mode: all are exact, and jacobi, the default, takes the
fewest passes without heads), or a user's own images through the family's VQ encoder
(`distill_images`). `pipe` is any ImagePipeline: the bundled demo (`load_demo_pipeline`) or a family pipeline
(`load_pipeline`).

Determinism is what makes resume and multi-process runs exact. Items (prompt p, sample i) - or (image p, 0) -
are numbered in one global order k = p * images_per_prompt + i and cut into shards of `batch_size` items; a
process decodes its shards' items in one continuous-batching stream of `batch_size` rows (a finished row takes the
next item: pipelines/continuous.py) and writes a shard once its items are done; item k is sampled with the image
seed `seed + k` (per-image seeds: an image depends neither on its batch nor on its row's other images), by a tree
of `num_nodes` nodes fixed for the whole run ("auto" is chosen once from timed
steps, then recorded in the manifest: a resumed run and every torchrun rank read it there). So a sample depends
only on the settings, never on which process made it or when:
  * killed and restarted, a run skips the shards already on disk (written under a temporary name and renamed,
    so a shard is either complete or absent) and produces exactly the samples of an uninterrupted run;
  * under torchrun, rank r of R makes the shards b with b % R == r, and the union is the single-process run.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..drafts import MODES, check_mode, needs_heads
from ..fingerprint import model_fingerprint, same_model
from .shards import FORMAT, MANIFEST, PAD_ID, prepare_out_dir, shard_path, write_shard

RANK0_WAIT_S = float(os.environ.get("HAWK_DISTILL_WAIT_S", 3600))  # how long ranks > 0 wait for rank 0's manifest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what distill_images reads


@dataclass(frozen=True)
class DistillSettings:
    source: str  # "model" (self-distilled) or "images" (encoded images)
    prompt_kind: str  # "text" or "ids" (token-id lists: prompts.txt holds one line of ids per prompt)
    num_prompts: int  # prompts, or images
    prompts_sha256: str  # of the prompts (and, for images, of the image bytes)
    images_per_prompt: int
    batch_size: int
    seed: int
    cfg_scale: float | None  # sampling: None for images
    temperature: float | None
    top_k: int | None
    size: list | None  # the layout asked for (None: the family default)
    mode: str | None = None  # the decoding mode that sampled (drafts.MODES, all exact); None for images
    num_nodes: int | None = None  # the tree size every shard was decoded with (1: AR steps); None for images

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


def distill(pipe, prompts: list, out_dir, images_per_prompt: int = 1, batch_size: int = 16, seed: int = 0,
            cfg_scale: float | None = None, temperature: float | None = None, top_k: int | None = None, size=None,
            overwrite: bool = False, rank: int | None = None, world_size: int | None = None, progress: bool = True,
            max_shards: int | None = None, mode: str = "jacobi", num_nodes: int | str = "auto") -> dict:
    """Sample `images_per_prompt` images per prompt from the model into shards under out_dir, decoded in `mode`
    (every mode samples the model's own law; the default jacobi takes the fewest passes and needs no heads); None
    sampling arguments take the family's defaults. prompts: text, or token-id lists as the pipeline's
    `input_ids` takes them (a model saved without its tokenizer). num_nodes: the tree size of every shard, or
    "auto" (chosen once for `batch_size`, recorded in the manifest; see the module docstring). Returns the
    manifest. max_shards stops after that many new shards (tests use it to stop a run midway)."""
    check_mode(mode)
    if needs_heads(mode) and pipe.heads is None:
        raise ValueError(f"mode: {mode!r} needs draft heads and this model has none (give heads, or a mode without "
                         f"heads: {', '.join(m for m in MODES if not needs_heads(m))})")
    by_ids = bool(prompts) and all(isinstance(p, (list, tuple)) for p in prompts)
    texts = [" ".join(map(str, p)) for p in prompts] if by_ids else prompts  # what prompts.txt and the digest hold
    sampling = _sampling(pipe, cfg_scale, temperature, top_k)
    settings = DistillSettings("model", "ids" if by_ids else "text", len(prompts), _digest(texts), images_per_prompt,
                               batch_size, seed, sampling["cfg_scale"], sampling["temperature"], sampling["top_k"],
                               _size(size), mode)
    grid = pipe.layout(size)
    prompt_ids = _prompt_ids(pipe, [list(p) for p in prompts] if by_ids else prompts, grid)  # fail before any work
    rank, world_size = (rank_and_world() if rank is None else (rank, world_size or 1))
    first = prompts[:2]  # what "auto" probes acceptance with where the mode has no calibrated rates (acceptance.py)
    probe_prompts = dict(input_ids=[list(p) for p in first]) if by_ids else dict(prompts=first)
    settings = replace(settings, num_nodes=_tree_size(pipe, grid, settings, num_nodes, Path(out_dir), rank,
                                                      max(map(len, prompt_ids), default=1), probe_prompts))

    def make(shards):
        """Every item of `shards` through one continuous-batching stream of batch_size rows (a finished row takes
        the next item: pipelines/continuous.py) -> (shard, position, body) as items finish."""
        from ..pipelines.continuous import stream_images

        flat = [(shard, position, item) for shard, items in shards for position, item in enumerate(items)]
        chosen = [prompts[p] for _, _, (p, _) in flat]
        given = dict(input_ids=[list(p) for p in chosen]) if by_ids else dict(prompts=chosen)
        seeds = [(seed + p * images_per_prompt + i) % 2**64 for _, _, (p, i) in flat]  # item k: seed + k
        for members, out in stream_images(pipe, **given, batch_size=batch_size, mode=mode, size=size, seed=seeds,
                                          num_nodes=settings.num_nodes, pixels=False, **sampling):
            for k, member in enumerate(members):
                shard, position, (p, _) = flat[member]
                yield shard, position, out.sequences[k][len(prompt_ids[p]):]

    return _write(pipe, grid, settings, texts, prompt_ids, make, out_dir, overwrite, rank, world_size, progress,
                  max_shards)


def distill_images(pipe, image_dir, out_dir, batch_size: int = 16, size=None, overwrite: bool = False,
                   rank: int | None = None, world_size: int | None = None, progress: bool = True,
                   max_shards: int | None = None) -> dict:
    """Encode every image under image_dir (IMAGE_SUFFIXES, sorted by name) with the family's VQ encoder
    (`pipe.encode_images`) into shards; each image's caption is the text file beside it with the same stem
    (`cat.png` + `cat.txt`), and is the prompt of its sequence. Returns the manifest."""
    images, captions = image_files(image_dir)
    contents = captions + [hashlib.sha256(path.read_bytes()).hexdigest() for path in images]
    settings = DistillSettings("images", "text", len(images), _digest(contents), 1, batch_size, 0, None, None, None,
                               _size(size))
    grid = pipe.layout(size)
    prompt_ids = _prompt_ids(pipe, captions, grid)

    def make(shards):
        from PIL import Image

        for shard, items in shards:  # one VQ encoder batch per shard
            pictures = []
            for p, _ in items:
                with Image.open(images[p]) as picture:
                    pictures.append(picture.copy())
            for position, body in enumerate(grid.generated_tokens(pipe.encode_images(pictures, size=size))):
                yield shard, position, body

    return _write(pipe, grid, settings, captions, prompt_ids, make, out_dir, overwrite, rank, world_size, progress,
                  max_shards, image_names=[path.name for path in images])


def image_files(image_dir) -> tuple[list[Path], list[str]]:
    """(image paths sorted by name, their captions): every image needs a same-stem .txt caption."""
    directory = Path(image_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"images: no such directory {str(image_dir)!r}")
    images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise ValueError(f"images: {str(directory)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    missing = [p.name for p in images if not p.with_suffix(".txt").is_file()]
    if missing:
        raise ValueError(f"images: {len(missing)} image(s) have no caption file beside them (first: {missing[0]} "
                         f"needs {Path(missing[0]).stem}.txt, one line of text)")
    captions = [" ".join(_caption(p.with_suffix(".txt")).split()) for p in images]
    empty = [p.name for p, c in zip(images, captions) if not c]
    if empty:
        raise ValueError(f"images: the caption of {empty[0]} is empty (an empty caption would be unconditional)")
    return images, captions


def _caption(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"images: the caption {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                         f"{exc.reason})") from None


def model_identity(pipe) -> dict:
    """What a data set and heads are bound to: the family and the weights' fingerprint."""
    return dict(family=pipe.family, fingerprint=model_fingerprint(pipe.model))


def same_identity(recorded, pipe) -> bool:
    """Whether a data set's recorded model identity is `pipe`'s model, in whatever dtype it is loaded now (the
    fingerprints are compared with fingerprint.same_model's tolerance)."""
    return (isinstance(recorded, dict) and recorded.get("family") == pipe.family
            and isinstance(recorded.get("fingerprint"), str) and same_model(recorded["fingerprint"], pipe.model))


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size under torchrun (RANK / WORLD_SIZE), else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _write(pipe, grid, settings: DistillSettings, prompts: list[str], prompt_ids: list[list[int]], make, out_dir,
           overwrite: bool, rank, world_size, progress: bool, max_shards, image_names=None) -> dict:
    """The shared driver: manifest, this rank's missing shards, and `make([(shard, items), ...])` yielding
    (shard, position, body) in any order; a shard is written once all its bodies are in."""
    from ..progress import progress_bar

    rank, world_size = (rank_and_world() if rank is None else (rank, world_size or 1))
    if overwrite and world_size > 1:
        raise ValueError("overwrite: not under torchrun (ranks would race); clear --out first, or run one process")
    manifest = _manifest(pipe, grid, settings, max(map(len, prompt_ids)))
    body_start = manifest["body_start"]
    out_dir = prepare_out_dir(Path(out_dir), manifest, prompts, overwrite, image_names)
    todo = [b for b in range(settings.num_shards) if b % world_size == rank and not shard_path(out_dir, b).exists()]
    todo = todo[:max_shards] if max_shards is not None else todo
    shard_items = {shard: settings.shard_items(shard) for shard in todo}
    bar = progress_bar(sum(map(len, shard_items.values())),
                       "distill" + (f" (rank {rank})" if world_size > 1 else ""), not progress, unit="img")
    pending = {shard: [None] * len(items) for shard, items in shard_items.items()}
    for shard, position, body in make(list(shard_items.items())) if todo else ():
        pending[shard][position] = body
        bar.update(1)
        if any(b is None for b in pending[shard]):
            continue
        items = shard_items[shard]
        rows = [[PAD_ID] * (body_start - len(prompt_ids[p])) + prompt_ids[p] for p, _ in items]
        bodies = torch.stack(pending.pop(shard)).long().cpu()
        write_shard(out_dir, shard, torch.cat([torch.tensor(rows, dtype=torch.int64), bodies], dim=1),
                    [len(prompt_ids[p]) for p, _ in items], items)
    bar.close()
    return manifest


def _tree_size(pipe, grid, settings: DistillSettings, num_nodes, out_dir: Path, rank: int,
               prompt_length: int, probe_prompts: dict | None = None) -> int:
    """The tree size of every shard. An int is taken as given. "auto": the size recorded in out_dir's manifest
    when it was made with these settings (a resumed run), else chosen for `batch_size` (tree_size.py) by rank 0,
    its steps timed after a prompt of `prompt_length` (the longest prompt row: a LlamaGen t2i GPT takes exactly
    its caption positions, no other length); ranks > 0 wait for rank 0's manifest and take its size, so every rank
    samples with the same tree."""
    from ..checks import as_int
    from ..pipelines.rows import DEFAULT_NUM_NODES, probe_batch
    from ..target import SamplingConfig
    from ..tree_size import pipeline_num_nodes

    if settings.mode == "ar":
        return 1
    if num_nodes != "auto":
        return as_int("num_nodes", num_nodes, 1)
    recorded = _recorded_tree_size(out_dir, settings)
    deadline = time.monotonic() + RANK0_WAIT_S
    while recorded is None and rank > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"num_nodes: rank {rank} waited {RANK0_WAIT_S:.0f} s for rank 0 to choose the tree "
                               f"size and write {out_dir / MANIFEST} (HAWK_DISTILL_WAIT_S)")
        time.sleep(1.0)
        recorded = _recorded_tree_size(out_dir, settings)
    if recorded is not None:
        return recorded
    sampling = SamplingConfig(settings.cfg_scale, settings.temperature, settings.top_k)  # what the shards sample

    def probe():  # the first prompts' first images (seeds as the shards give them), built if a probe runs
        rows = pipe.call_rows(probe_prompts.get("prompts"), probe_prompts.get("input_ids"), grid, sampling)
        seeds = [(settings.seed + p * settings.images_per_prompt) % 2**64 for p in range(len(rows.conditional))]
        return probe_batch(rows, range(len(seeds)), seeds, sampling.uses_cfg, pipe.device)

    return pipeline_num_nodes(pipe, settings.mode, grid, "auto", settings.batch_size, sampling, DEFAULT_NUM_NODES,
                              prompt_length=prompt_length, continuous=True,
                              probe=probe if probe_prompts else None).num_nodes


def _recorded_tree_size(out_dir: Path, settings: DistillSettings) -> int | None:
    """num_nodes of the manifest in out_dir when every other setting equals ours (else None)."""
    try:
        recorded = json.loads((out_dir / MANIFEST).read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(recorded, dict) or {**recorded, "num_nodes": None} != asdict(replace(settings, num_nodes=None)):
        return None
    return recorded.get("num_nodes") if isinstance(recorded.get("num_nodes"), int) else None


def _manifest(pipe, grid, settings: DistillSettings, body_start: int) -> dict:
    generated = grid.num_body_tokens + (grid.image_end_token is not None)
    return dict(format=FORMAT, settings=asdict(settings), model=model_identity(pipe), body_start=body_start,
                sequence_length=body_start + generated, pad_id=PAD_ID,
                grid=dict(height=grid.height, width=grid.width, row_end_token=grid.row_end_token,
                          image_token_range=list(grid.image_token_range), image_end_token=grid.image_end_token),
                num_shards=settings.num_shards)


def _prompt_ids(pipe, prompts: list, grid) -> list[list[int]]:
    """Text prompts or token-id lists -> the conditional prompt row of each (what the decoder is given), each
    checked to fit the model's positions with the image (what generate_tokens would refuse after the manifest
    is written)."""
    from ..pipelines.batch_job import check_positions

    if prompts and isinstance(prompts[0], list):
        rows = pipe.prompt_rows(None, prompts, grid)
    else:
        rows = pipe.prompt_rows(list(prompts), None, grid)
    check_positions(pipe, rows, grid)
    return rows.conditional


def _sampling(pipe, cfg_scale, temperature, top_k) -> dict:
    """The sampling every shard uses (None: the family default), checked as generate checks it before anything is
    written: SamplingConfig's bounds and the family's own rules (pipe._prepare; LlamaGen: cfg_scale >= 1)."""
    _, checked = pipe._prepare("ar", None, cfg_scale, temperature, top_k, None)
    return dict(cfg_scale=checked.cfg_scale, temperature=checked.temperature, top_k=checked.top_k)


def _size(size):
    return None if size is None else ([size, size] if isinstance(size, int) else list(size))


def _digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()
