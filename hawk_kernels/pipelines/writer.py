"""Finished images' files: `save_image` (never half-written, with the image's settings as PNG text) and
BackgroundWriter, which writes them on a thread of their own while decoding goes on.

Encoding a PNG is CPU work (about 0.1-0.2 s for a 768 px image: zlib), done while the GPU would otherwise wait:
at batch 16 on a GPU a 768 px image may take well under a second of decoding, so writing its PNG in line would
cost a large share of the throughput. Pillow's encoder releases the GIL, so the writes overlap the decode loop
(whose thread mostly waits on the device). One job in flight at a time (the images that finished together): a
job's writes must finish before the next job's start, so the manifest lines keep the order the images finished
in, at most two jobs' images are held, and an error (a full disk) surfaces at the latest one job later, naming
what it named before.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

# a manifest line's fields that vary between runs of the same image (timings, the step's engine, the acceptance an
# "auto" size was weighed with): left out of the PNG's text, so the same image is the same file, byte for byte,
# whatever machine made it
RUN_FIELDS = ("seconds", "compile_seconds", "steps", "tree_rates")  # tree_rates: only with "auto"; its counts grow


def png_text(line: dict) -> dict:
    """The PNG text chunks of an image whose manifest line is `line`: "hawk_kernels" (the line as JSON, less
    RUN_FIELDS: prompt, seed, mode, tree size, CFG, sampling, model and heads fingerprints) and "parameters" (the
    same in the one-line form image browsers read: the prompt, then "Negative prompt: ...", then "Key: value, ...")."""
    from .. import __version__

    kept = {key: value for key, value in line.items() if key not in RUN_FIELDS}
    named = {"Seed": "seed", "Mode": "mode", "Nodes": "num_nodes", "Size": "size", "CFG scale": "cfg",
             "Model hash": "model", "Temperature": "temperature", "Top-k": "top_k"}  # parameters' name: the line's
    details = ", ".join(f"{name}: {kept[key]}" for name, key in named.items() if kept.get(key) is not None)
    negative = "" if kept.get("negative_prompt") is None else f"\nNegative prompt: {kept['negative_prompt']}"
    return {"hawk_kernels": json.dumps(kept, ensure_ascii=False),
            "parameters": f"{kept.get('prompt', '')}{negative}\n{details}",
            "Software": f"hawk_kernels {__version__}"}


def save_image(image, path: Path, format: str = "PNG", flag: str = "--out", then: str = "",
               text: dict | None = None) -> None:
    """image -> path, written as path.partial then renamed (never a half-written image under its name); if the
    write fails (a full disk) the partial file is removed and the OSError names `flag` and the file (+ `then`).
    text: PNG text chunks ({key: str}; non-Latin-1 text goes in iTXt chunks)."""
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    options = {}
    if text:
        options["pnginfo"] = PngInfo()
        for key, value in text.items():
            options["pnginfo"].add_text(key, value)
    try:
        image.save(partial, format=format, **options)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OSError(f"{flag}: could not write {str(path)!r} ({exc.strerror or exc}){then}") from exc


class BackgroundWriter:
    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hawk-writer")
        self._pending: Future | None = None
        self.results: list = []  # each finished job's return value, in submission order

    def submit(self, job: Callable[[], object]) -> None:
        """Run `job` on the writer thread once the previous one is done (its error, if any, is raised here)."""
        self.wait()
        self._pending = self._pool.submit(job)

    def wait(self) -> None:
        """Block until the job in flight is done; its exception is raised here, once."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.results.append(pending.result())

    def close(self, raise_errors: bool = True) -> None:
        """Finish the job in flight and stop the thread. raise_errors=False while another exception is already on
        its way (Ctrl-C): the writes still finish, so every image decoded so far is on disk with its line."""
        try:
            self.wait()
        except Exception:
            if raise_errors:
                raise
        finally:
            self._pool.shutdown(wait=True)
