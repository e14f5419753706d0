"""Many images from one prompt list (`hawk generate --prompts FILE`): parsing the prompts file, batching,
the per-image manifest, resume and the split over torchrun ranks.

Image i (its line in the file, counting prompts only) is sampled with seed `seed + i` unless its JSONL line gives
one, so an image never depends on its batch or process. Rank r of R makes the images i with i % R == r; images of
different size or cfg go to different batches. Each image is written as `<index>_<slug>.png` (a .partial file
renamed), then one JSON line is appended to this rank's `manifest.part-<r>.jsonl` (one os.write of the whole line
on an O_APPEND file, fsynced). An image counts as written when its PNG and its line both exist; a re-run skips
those and redoes the rest (a torn last line is dropped); an image written with other settings than its job (prompt,
seed, size, cfg, mode, model, dtype, verify, temperature, top-k, heads, an asked tree size) is refused
(`check_resume`), never counted as done. When every rank is done, rank 0 merges the parts and any earlier
`manifest.jsonl` into one `manifest.jsonl` (each index once, in index order) and removes the parts.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.compiled import compiles
from ..progress import progress_bar
from ..target import MAX_CFG_SCALE
from .continuous import stream_images
from .writer import BackgroundWriter, png_text, save_image

MANIFEST = "manifest.jsonl"
PART = "manifest.part-{}.jsonl"


@dataclass(frozen=True)
class ImageJob:
    index: int
    prompt: str
    seed: int
    size: object = None  # None (the model's), N or (H, W) pixels
    cfg: float | None = None  # None: the model's
    negative_prompt: str | None = None  # the CFG branch's text (Emu3); None: the model's own branch
    line: int | None = field(default=None, compare=False)  # its line in the prompts file (None: a --prompt)

    @property
    def png_name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.prompt.lower()).strip("-")[:40] or "image"
        return f"{self.index:03d}_{slug}.png"


def read_prompt_file(path, seed: int = 0) -> list[ImageJob]:
    """A text file (one prompt a line; blank lines and '#' lines skipped) or JSONL (a .jsonl file, or one whose
    first prompt line starts with '{': {"prompt": ..., "seed", "size", "cfg", "negative_prompt": optional})."""
    path = Path(path)
    lines = prompt_lines(path)
    as_json = path.suffix == ".jsonl" or lines[0][1].startswith("{")
    jobs = [_json_job(path, n, line, i, seed) if as_json else ImageJob(i, line, (seed + i) % 2**64, line=n)
            for i, (n, line) in enumerate(lines)]
    return jobs


def prompt_lines(path, flag: str = "--prompts") -> list[tuple[int, str]]:
    """(line number, text) of every prompt line of a prompts file: UTF-8 (a leading BOM dropped), stripped;
    blank lines and '#' lines skipped. Errors name `flag` and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: no such file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{flag}: {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"{flag}: cannot read {str(path)!r} ({exc.strerror or exc})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{flag}: {str(path)!r} holds no prompt (one per line)")
    return lines


def prompt_jobs(prompts: list[str], seed: int = 0, size=None, cfg=None, negative_prompt=None) -> list[ImageJob]:
    """Command-line prompts -> jobs (image i: seed + i)."""
    return [ImageJob(i, p, (seed + i) % 2**64, size, cfg, negative_prompt) for i, p in enumerate(prompts)]


def _json_job(path, n: int, line: str, index: int, seed: int) -> ImageJob:
    where = f"--prompts: {str(path)!r} line {n}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON ({exc})") from None
    prompt = row.get("prompt") if isinstance(row, dict) else None
    if isinstance(prompt, int) and not isinstance(prompt, bool):  # a class label (LlamaGen c2i), as a line "207"
        prompt = str(prompt)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f'{where}: expected {{"prompt": "text", ...}} (a class label: "207" or 207)')
    unknown = set(row) - {"prompt", "seed", "size", "cfg", "negative_prompt"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} (prompt, seed, size, cfg, negative_prompt)")
    negative = row.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise ValueError(f"{where}: negative_prompt must be a string, got {negative!r}")
    own_seed = row.get("seed")
    if own_seed is not None and (not isinstance(own_seed, int) or isinstance(own_seed, bool)
                                 or not 0 <= own_seed < 2**64):
        raise ValueError(f"{where}: seed must be an integer in [0, 2**64), got {own_seed!r}")
    size = row.get("size")
    if isinstance(size, str):
        match = re.fullmatch(r"(\d+)(?:x(\d+))?", size.strip().lower())
        if not match:
            raise ValueError(f"{where}: size must be N, [H, W] or 'HxW', got {size!r}")
        size = int(match.group(1)) if match.group(2) is None else (int(match.group(1)), int(match.group(2)))
    elif isinstance(size, list):
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"{where}: size must be N, [H, W] or 'HxW', got {size!r}")
        size = tuple(size)
    elif size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ValueError(f"{where}: size must be N, [H, W] or 'HxW', got {size!r}")
    cfg = row.get("cfg")
    if cfg is not None and (not isinstance(cfg, (int, float)) or isinstance(cfg, bool) or not math.isfinite(cfg)
                            or not 0 <= cfg <= MAX_CFG_SCALE):  # JSON's NaN / Infinity / 1e400 are floats too
        raise ValueError(f"{where}: cfg must be a finite number >= 0 and <= {MAX_CFG_SCALE:g}, got {cfg!r}")
    return ImageJob(index, " ".join(prompt.split()), (seed + index) % 2**64 if own_seed is None else own_seed,
                    size, None if cfg is None else float(cfg), negative, line=n)


def job_where(job: ImageJob, source=None) -> str:
    """Where a job comes from, for its errors: its line of the prompts file `source`, or its --prompt."""
    if source is not None and job.line is not None:
        return f"--prompts: {str(source)!r} line {job.line} (image {job.index})"
    return f"--prompt: prompt {job.index + 1} ({job.prompt!r})"


def _too_long(cond: int, uncond: int, grid, limit: int) -> str:
    negative = f" (its unconditional CFG prompt {uncond})" if uncond > cond else ""
    return (f"its {cond} prompt tokens{negative} and the {grid.num_body_tokens}-token {grid.height}x{grid.width} "
            f"image exceed the model's max_position_embeddings={limit}")


def check_positions(pipe, rows, grid) -> None:
    """Every prompt row of `rows` (a PromptRows) with the image inside the model's positions: ValueError naming
    size when not even the shortest prompt fits the layout, else naming the argument and the prompt's index."""
    room, limit = pipe.prompt_room(grid)
    if room is None:
        return
    lengths = [max(len(c), len(u)) for c, u in zip(rows.conditional, rows.unconditional)]
    if lengths and min(lengths) > room:
        raise ValueError(f"size: the {grid.height}x{grid.width}-code layout ({grid.num_body_tokens} image tokens) and "
                         f"the shortest prompt ({min(lengths)} tokens) exceed the model's max_position_embeddings="
                         f"{limit}: choose a smaller size")
    for i, (cond, uncond) in enumerate(zip(rows.conditional, rows.unconditional)):
        if max(len(cond), len(uncond)) > room:
            raise ValueError(f"{rows.argument}: prompt {i}: {_too_long(len(cond), len(uncond), grid, limit)}")


def check_jobs(pipe, jobs: list[ImageJob], temperature=None, top_k=None, source=None) -> None:
    """Every job against the loaded model before the first image is written, so a bad line never stops a run
    part-way: its sampling (SamplingConfig: cfg, temperature, top_k), its size's layout, its prompt through the
    model's processor, and prompt + image inside the model's positions. ValueError naming the job
    (`job_where`: its line of the prompts file `source`, or its --prompt); temperature / top_k errors name
    those arguments."""
    from ..target import SamplingConfig

    default = pipe.defaults.get
    temperature = default("temperature") if temperature is None else temperature
    top_k = default("top_k") if top_k is None else top_k
    SamplingConfig(1.0, temperature, top_k, default("top_p"))  # the arguments every job shares
    groups: dict = {}
    for job in jobs:
        groups.setdefault((job.size, job.cfg), []).append(job)
    for (size, cfg), group in groups.items():
        try:
            grid, sampling = pipe._prepare("ar", size, cfg, temperature, top_k, None)  # the family's own rules too
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{job_where(group[0], source)}: {exc}") from None
        try:
            rows = pipe.with_negatives(pipe.prompt_rows([job.prompt for job in group], None, grid),
                                       _negatives(group), grid, sampling)
        except (ValueError, TypeError) as exc:  # find the prompt: one at a time
            for job in group:
                try:
                    pipe.with_negatives(pipe.prompt_rows([job.prompt], None, grid), _negatives([job]), grid,
                                        sampling)
                except (ValueError, TypeError) as own:
                    raise type(own)(f"{job_where(job, source)}: {own}") from None
            raise exc
        room, limit = pipe.prompt_room(grid)
        for job, cond, uncond in zip(group, rows.conditional, rows.unconditional):
            if room is not None and max(len(cond), len(uncond)) > room:
                raise ValueError(f"{job_where(job, source)}: {_too_long(len(cond), len(uncond), grid, limit)}: a "
                                 f"shorter prompt or a smaller size")


def _negatives(jobs: list[ImageJob]) -> list[str | None] | None:
    """The jobs' negative prompts for the pipelines (None: every job takes its model's own CFG branch)."""
    negatives = [job.negative_prompt for job in jobs]
    return negatives if any(text is not None for text in negatives) else None


def job_groups(jobs: list[ImageJob]) -> list[list[ImageJob]]:
    """Jobs grouped by (size, cfg) in first-seen order: the images one decoder session can hold."""
    groups: dict = {}
    for job in jobs:
        groups.setdefault((job.size, job.cfg), []).append(job)
    return list(groups.values())


def read_manifest_lines(path: Path) -> list[dict]:
    """Every whole JSON line of a manifest file (a torn last line is ignored)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n"):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict) and isinstance(row.get("index"), int):
            rows.append(row)
    return rows


def written(out_dir: Path) -> dict[int, dict]:
    """index -> manifest line of every image whose PNG and manifest line both exist."""
    rows = read_manifest_lines(out_dir / MANIFEST)
    for part in sorted(out_dir.glob(PART.format("*"))):
        rows += read_manifest_lines(part)
    return {row["index"]: row for row in rows if (out_dir / str(row.get("png", ""))).is_file()}


def check_resume(out_dir: Path, jobs: list[ImageJob], mode: str | None = None,
                 default_cfg: float | None = None, settings: dict | None = None, tree_size=None) -> dict[int, dict]:
    """`written(out_dir)`, refusing an image whose manifest line was made with other settings than its job: a re-run
    resumes the same job, it never counts another image as this one. Compared: prompt, seed, size, cfg, mode, the
    `settings` given (temperature, top_k, heads: what the law or the draws of an image depend on) and, where
    `tree_size` (job -> the tree size a fresh run would use, None for "auto") is given, the tree size. mode /
    default_cfg (the cfg of jobs without their own) None, or a setting left out: not known yet (before the model
    loads), not compared. A line written before a setting was recorded (an older manifest) is not compared on it."""
    done = written(Path(out_dir))
    known = {} if mode is None else dict(mode=mode)
    known.update(settings or {})
    for job in (job for job in jobs if job.index in done):
        row, cfg = done[job.index], default_cfg if job.cfg is None else job.cfg
        want = dict(prompt=job.prompt, seed=job.seed, size=_size_field(job.size), negative_prompt=job.negative_prompt)
        want.update({} if cfg is None else dict(cfg=cfg))
        want.update({key: value for key, value in known.items() if key in row})
        nodes = None if tree_size is None else tree_size(job)
        want.update({} if nodes is None else dict(num_nodes=nodes))
        for key, value in want.items():
            if row.get(key) != value:
                raise ValueError(f"--out: {str(out_dir)!r} already holds image {job.index} ({row.get('png')}) made "
                                 f"with {key} {row.get(key)!r}, not {value!r}: a re-run resumes only the same images; "
                                 f"use a new directory (or the settings that made it)")
    return done


def _size_field(size):
    """A job's size as its manifest line records it (JSON: a list, not a tuple)."""
    return list(size) if isinstance(size, tuple) else size


def append_line(path: Path, row: dict) -> None:
    """One manifest line, appended with one write (O_APPEND) and fsynced (a failure, a full disk: an OSError naming
    --out; a torn line is dropped by the next run)."""
    data = (json.dumps(row) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(f"--out: could not append to {str(path)!r} ({exc.strerror or exc}); the same command "
                      f"resumes") from exc


def drop_torn_tail(path: Path) -> None:
    """Cut a part file back to its last whole line (a process killed mid-write)."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)


def merge_manifest(out_dir: Path) -> int:
    """Parts + the old manifest -> manifest.jsonl (each written index once, in order); parts removed."""
    rows = written(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # a finished run: its manifest, even of no image
    partial = out_dir / (MANIFEST + ".partial")
    partial.write_text("".join(json.dumps(rows[i]) + "\n" for i in sorted(rows)))
    os.replace(partial, out_dir / MANIFEST)
    for part in out_dir.glob(PART.format("*")):
        part.unlink()
    return len(rows)


def run_jobs(pipe, jobs: list[ImageJob], out_dir, mode: str, batch_size: int = 1, num_nodes: int | str = "auto",
             temperature=None, top_k=None, rank: int = 0, world_size: int = 1, max_images: int | None = None,
             progress: bool = True, barrier=None, fill_batches: bool | None = None) -> list[Path]:
    """Generate this rank's unwritten images of `jobs` into out_dir; returns the PNGs written by this call.
    Each (size, cfg) group decodes in one session of batch_size rows whose finished rows take the next images at
    once (continuous batching: pipelines/continuous.py); images are written in the order they finish.
    barrier: called once every rank is done (torchrun), before rank 0 merges the manifest. fill_batches (None:
    when the pipeline compiles its step): a group of fewer than batch_size images still runs batch_size rows
    (repeats of its last image, whose results are dropped). A compiled step compiles once per batch size, and
    num_nodes="auto" times each tree size once per batch size: at the 7B shape on a GPU, minutes for one short
    group, against a few steps' worth of extra rows."""
    out_dir = Path(out_dir)  # created with its first image (_finished): a run that fails before leaves none
    part = out_dir / PART.format(rank)
    drop_torn_tail(part)
    settings = image_settings(pipe, mode, temperature, top_k)
    done = check_resume(out_dir, jobs, mode, pipe.defaults.get("cfg_scale"), settings,
                        None if num_nodes == "auto" else lambda job: pipe.tree_size(mode, job.size, num_nodes))
    todo = [job for job in jobs if job.index % world_size == rank and job.index not in done]
    todo = todo[:max_images] if max_images is not None else todo
    bar = progress_bar(len(todo), "generate" + (f" (rank {rank})" if world_size > 1 else ""), not progress,
                       unit="img")
    bar.totals = dict(tokens=0, passes=0)  # this run's images: the postfix's tokens per pass, as the manifest's
    if fill_batches is None:
        fill_batches = compiles(pipe.compile, pipe.device)
    for job in todo:  # a PNG a killed run was writing (its .partial file): made again below
        (out_dir / (job.png_name + ".partial")).unlink(missing_ok=True)
    writer = BackgroundWriter()  # finished images' PNGs are written while decoding goes on
    try:
        for group in job_groups(todo):
            images = stream_images(pipe, [job.prompt for job in group], batch_size, mode=mode, size=group[0].size,
                                   cfg_scale=group[0].cfg, temperature=settings["temperature"],
                                   top_k=settings["top_k"], seed=[job.seed for job in group], num_nodes=num_nodes,
                                   fill=fill_batches, negative_prompt=_negatives(group))
            for members, res in images:
                writer.submit(_finished(pipe, [group[i] for i in members], res, out_dir, part, mode, settings, bar))
    except BaseException:
        writer.close(raise_errors=False)  # what was decoded is still written (Ctrl-C: then merged)
        raise
    finally:
        bar.close()  # an error then starts on a line of its own
    writer.close()
    paths = [path for written_paths in writer.results for path in written_paths]
    if barrier is not None:
        barrier()
    if rank == 0:
        merge_manifest(out_dir)
    return paths


def image_settings(pipe, mode: str, temperature, top_k) -> dict:
    """What an image depends on beyond its job and mode, as its manifest line records it: the model (weights'
    fingerprint; dtype: a re-run on another checkpoint never counts its images as its own), the sampling (None: the
    family's default, resolved) and the heads' weights (a fingerprint; None when the mode drafts without heads)."""
    from ..fingerprint import exact_digest
    from ..drafts import needs_heads

    return dict(model=exact_digest(pipe.model), dtype=str(pipe.dtype).removeprefix("torch."), verify=pipe.verify,
                temperature=pipe._default(temperature, "temperature"), top_k=pipe._default(top_k, "top_k"),
                heads=exact_digest(pipe.heads) if needs_heads(mode) and pipe.heads is not None else None)


def _finished(pipe, batch: list[ImageJob], res, out_dir: Path, part: Path, mode, settings: dict, bar):
    """Images just finished (`res`: their PipelineOutput, in the order of `batch`) -> the job that writes their PNGs
    and manifest lines (_write_batch), for the BackgroundWriter."""
    seconds = res.seconds / len(batch)  # the decode time since the previous images finished (an "auto" tree size
    #                                     is chosen before the clock), shared by the images finished now
    compile_seconds = res.compile_seconds / len(batch)  # of which compiling the step (its first use of a shape)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [dict(index=job.index, prompt=job.prompt, seed=job.seed, mode=mode, num_nodes=res.num_nodes[k],
                  size=_size_field(job.size), cfg=pipe.defaults.get("cfg_scale") if job.cfg is None else job.cfg,
                  **({} if job.negative_prompt is None else dict(negative_prompt=job.negative_prompt)), **settings,
                  passes=res.num_forward_passes[k],
                  tokens_per_pass=round(res.committed[k] / max(1, res.num_forward_passes[k]), 4),
                  seconds=round(seconds, 4), compile_seconds=round(compile_seconds, 4), steps=res.step_engine,
                  **({} if res.tree_rates is None else dict(tree_rates=res.tree_rates)),  # "auto": its acceptance
                  png=job.png_name) for k, job in enumerate(batch)]
    bar.totals["tokens"] += sum(res.committed)
    bar.totals["passes"] += sum(res.num_forward_passes)
    bar.set_postfix(tokens_per_pass=f"{bar.totals['tokens'] / max(1, bar.totals['passes']):.2f}", refresh=False)
    bar.update(len(batch))
    return lambda: _write_batch(res.images, lines, out_dir, part)


def _write_batch(images: list, lines: list[dict], out_dir: Path, part: Path) -> list[Path]:
    """Each image's PNG, then its manifest line (written once both exist); on the BackgroundWriter's thread."""
    paths = []
    for image, line in zip(images, lines):
        path = out_dir / line["png"]
        save_image(image, path, then="; the images written before stay valid: the same command resumes",
                   text=png_text(line))
        append_line(part, line)
        paths.append(path)
    return paths
