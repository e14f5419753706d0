"""Every committed result says where it came from: each JSON under benchmarks/results/ (recursively) records the
device, the date, the command that made it and the torch version, so a number the docs quote from it can be traced
to a machine, a day and a run.

The files spell these differently, and the test accepts the spellings in use:
- at the top level (`device`, `date` or pytest-benchmark's `datetime`, `command` / `commands` /
  `command_template`, `torch`);
- inside a metadata block (`versions`, `build`, `meta`, `env`, `environment`, `machine_info`);
- in EVERY run of a file that is a collection of runs (`runs`, `by_nodes`: one dict per run, each with its own
  device, date, command and torch).
A field recorded nowhere fails unless ALLOWED_MISSING names the file and the field, with the reason; an allowlist
entry whose field is in fact present fails too, so the list stays short and true.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FILES = sorted(RESULTS.rglob("*.json"))

# field -> the keys that hold it, and what its value must look like
SPELLINGS = {
    "device": ("device", "device_type"),
    "date": ("date", "datetime"),
    "command": ("command", "commands", "command_template"),
    "torch": ("torch", "torch_version"),
}
VALID = {
    "device": lambda v: isinstance(v, str) and v.strip() != "",
    "date": lambda v: isinstance(v, str) and re.match(r"\d{4}-\d{2}-\d{2}", v) is not None,
    "command": lambda v: (isinstance(v, str) and v.strip() != "")
    or (isinstance(v, list) and v != [] and all(isinstance(c, str) and c.strip() for c in v)),
    "torch": lambda v: isinstance(v, str) and re.match(r"\d+\.\d+", v) is not None,
}
META_BLOCKS = ("versions", "build", "meta", "env", "environment", "machine_info")
RUN_COLLECTIONS = ("runs", "by_nodes")

# path relative to benchmarks/results -> {field: why it is missing and where the information is instead}
ALLOWED_MISSING = {
    "h200-2026-12-04/kernels_bench.json": {
        "device": "raw pytest-benchmark output kept as produced (PROVENANCE.md); the GPU is in PROVENANCE.md/env.txt",
        "command": "raw pytest-benchmark output kept as produced; its command is in PROVENANCE.md's table",
        "torch": "raw pytest-benchmark output kept as produced; torch 2.11.0+cu130 is in env.txt and PROVENANCE.md",
    },
}


def _records(obj: dict, field: str) -> bool:
    """Whether `obj` records `field` with a valid value, at its top level, in a metadata block, or in every run."""
    for key in SPELLINGS[field]:
        if key in obj:
            return VALID[field](obj[key])
    for block in META_BLOCKS:
        if isinstance(obj.get(block), dict) and _records(obj[block], field):
            return True
    for name in RUN_COLLECTIONS:
        runs = obj.get(name)
        if isinstance(runs, dict) and runs and all(isinstance(r, dict) for r in runs.values()):
            if all(_records(r, field) for r in runs.values()):
                return True
    return False


def _rel(path: Path) -> str:
    return path.relative_to(RESULTS).as_posix()


def test_there_are_results():
    assert len(FILES) >= 10, FILES


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_each_result_records_device_date_command_and_torch(path: Path):
    data = json.loads(path.read_text())
    assert isinstance(data, dict), f"{_rel(path)}: a result file is one JSON object"
    allowed = ALLOWED_MISSING.get(_rel(path), {})
    missing = [f for f in SPELLINGS if not _records(data, f)]
    unexplained = [f for f in missing if f not in allowed]
    assert not unexplained, (f"{_rel(path)} does not record {unexplained} (accepted keys: "
                             f"{ {f: SPELLINGS[f] for f in unexplained} })")
    stale = [f for f in allowed if f not in missing]
    assert not stale, f"{_rel(path)} records {stale} now: remove them from ALLOWED_MISSING"
    if "added_later" in data:  # fields added after the run, from the text that established them
        assert isinstance(data["added_later"], str) and data["added_later"].strip(), _rel(path)


def test_the_allowlist_names_existing_files_with_reasons():
    for rel, fields in ALLOWED_MISSING.items():
        assert (RESULTS / rel).is_file(), rel
        for field, reason in fields.items():
            assert field in SPELLINGS and len(reason) > 20, (rel, field)
