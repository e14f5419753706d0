"""BackgroundWriter: finished images' files written on a thread of their own while decoding goes on.

Encoding a PNG is CPU work (about 0.1-0.2 s for a 768 px image: zlib), done while the GPU would otherwise wait:
at batch 16 on a GPU a 768 px image may take well under a second of decoding, so writing its PNG in line would
cost a large share of the throughput. Pillow's encoder releases the GIL, so the writes overlap the decode loop
(whose thread mostly waits on the device). One job in flight at a time (the images that finished together): a
job's writes must finish before the next job's start, so the manifest lines keep the order the images finished
in, at most two jobs' images are held, and an error (a full disk) surfaces at the latest one job later, naming
what it named before.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


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
