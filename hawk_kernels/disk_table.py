"""A JSON object kept in a file that several processes share (torchrun ranks, a resumed run, two CLI calls): the
measured step costs (tree_size.StepCostTable) and the acceptance measured on the user's model
(acceptance.AcceptanceTable) live in such files under one cache directory.

Every change is made under an exclusive lock on <file>.lock, after reading again what other processes wrote, and
saved by an atomic rename: a table is never half-written, and a value one process measured is the one the others
read. A read-only or missing home keeps the table in memory for this process.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable

CACHE_ENV = "HAWK_CACHE_DIR"  # where the tables live (default ~/.cache/hawk_kernels)


def cache_path(name: str) -> Path:
    """<HAWK_CACHE_DIR or ~/.cache/hawk_kernels>/<name>."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "hawk_kernels")
    return Path(root) / name


class DiskTable:
    """{key: value} read from `path` (an unreadable file reads as empty: it is measured again)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries = self._read()

    def change(self, edit: Callable[[dict], None]) -> dict:
        """Run edit(entries) on the entries as on disk now (this process's merged with what others saved since),
        under the lock, and save them. Returns the entries."""
        with self._locked():
            self.entries = {**self.entries, **self._read()}
            edit(self.entries)
            self._save()
        return self.entries

    def merged(self) -> dict:
        """The entries with what other processes saved since this table was read (no lock: a read)."""
        self.entries = {**self.entries, **self._read()}
        return self.entries

    def _read(self) -> dict:
        try:
            value = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive lock on <table>.lock (none where the directory is read-only, fcntl is missing or the file
        system refuses locks, as some network homes do: ENOLCK; the rename still keeps the table whole)."""
        try:
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path.with_name(self.path.name + ".lock"), "a")
        except (ImportError, OSError):
            yield
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:
                yield
                return
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + f".{os.getpid()}.partial")
            partial.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
            os.replace(partial, self.path)  # never a half-written table
        except OSError:
            pass  # a read-only home: the entries stay in memory for this process
