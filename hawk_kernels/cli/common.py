"""What every `hawk` command shares: the one error type and prefix, the parser and help formatter (each default
shown once), number and size arguments, output-path checks, devices."""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

import torch

from ..checks import as_device

ERROR_PREFIX = "hawk: error: "  # every command-line error is one line on stderr starting with this


class UsageError(ValueError):
    """A bad command-line input: printed as one line after ERROR_PREFIX, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we print one line
        raise UsageError(message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already says its default or there is none to
    say (None, a flag's False): a None default that means something is written into the help itself."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if nothing or "(default:" in help_text or "%(default)" in help_text:
            return help_text
        return help_text + " (default: %(default)s)"


def add_command(subparsers, name: str, run, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose parsed args call `run(args)`."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
    parser.set_defaults(run=run)
    return parser


def number(kind, low=None, high=None, low_open: bool = False, name: str = "value"):
    """An argparse type: `kind` (int/float) within bounds, with a message naming the bounds."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected {bound}" + (f" and <= {high}" if high is not None else "")
                                             + f", got {text}")
        return value
    parse.__name__ = name
    return parse


SEED = number(int, 0, 2**64 - 1, name="seed")


def cfg_scale(text: str) -> float:
    """--cfg: a finite number in [0, target.MAX_CFG_SCALE] (what SamplingConfig takes)."""
    from ..target import MAX_CFG_SCALE

    return number(float, 0.0, MAX_CFG_SCALE, name="cfg")(text)


def temperature(text: str) -> float:
    """--temperature: 0 (greedy) or a finite number >= target.MIN_TEMPERATURE (what SamplingConfig takes)."""
    from ..target import MIN_TEMPERATURE

    value = number(float, 0.0, name="temperature")(text)
    if 0 < value < MIN_TEMPERATURE:
        raise argparse.ArgumentTypeError(f"expected 0 (greedy) or a number >= {MIN_TEMPERATURE}, got {text}")
    return value


cfg_scale.__name__, temperature.__name__ = "cfg", "temperature"


def tree_nodes(text: str):
    """--nodes: 'auto' (the size that maximises images per second for the batch) or an int >= 1 (1: AR steps)."""
    if text.strip().lower() == "auto":
        return "auto"
    return number(int, 1, name="nodes")(text)


tree_nodes.__name__ = "nodes"
COMPILE_WORDS = {"auto": "auto", "on": True, "off": False, "regional": "regional"}


def compile_word(text: str):
    """--compile: auto (on CUDA), on, off or regional (compiled, the layers as one region) -> HawkDecoder's word."""
    if text.strip().lower() not in COMPILE_WORDS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(COMPILE_WORDS)}, got {text!r}")
    return COMPILE_WORDS[text.strip().lower()]


compile_word.__name__ = "compile"


def pixel_size(text: str):
    """'768' -> 768; '512x768' -> (512, 768) as (height, width)."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected N or HxW in pixels, got {text!r}")
    height = int(match.group(1))
    return height if match.group(2) is None else (height, int(match.group(2)))


def check_parent(flag: str, path) -> Path:
    """The directory `path` would be written into must exist: UsageError naming the file that stands where a
    directory should, or the missing directory."""
    parent = Path(path).parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"{flag}: {str(existing)!r} is a file, not a directory")
    if not parent.is_dir():
        raise UsageError(f"{flag}: directory {str(parent)!r} does not exist")
    return Path(path)


def check_out_dir(flag: str, path) -> Path:
    """An output directory: absent (made later, with any missing parents, as `mkdir -p` would) or a directory; files
    can be created in it (or, absent, in its nearest existing ancestor) now, so an output that cannot be written
    fails before the model loads."""
    out = Path(path)
    existing = next((p for p in (out, *out.parents) if p.exists()), Path.cwd())
    if existing == out and not out.is_dir():
        raise UsageError(f"{flag}: {str(path)!r} exists and is not a directory")
    if not existing.is_dir():
        raise UsageError(f"{flag}: {str(existing)!r} is a file, not a directory")
    check_writable(flag, existing)
    return out


def check_writable(flag: str, directory) -> None:
    """A file can be created in `directory` now: tried with a nameless temporary file (permissions, a read-only
    file system, /proc), not judged from the mode bits."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create files in {str(directory)!r} ({exc.strerror or exc})") from None


def check_heads_dir(flag: str, path) -> None:
    """A draft-heads directory (`hawk train-heads --out DIR`): it exists and holds the heads' two files, judged
    before the model loads (their contents are checked when they load)."""
    from ..heads import CONFIG_NAME, WEIGHTS_NAME
    from ..hub import is_repo_id

    if path is None:
        return
    if not os.path.isdir(path):
        if is_repo_id(str(path)):
            return  # a Hub repository id: fetched and checked when the model loads (hub.py)
        raise UsageError(f"{flag}: no such directory {str(path)!r}")
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise UsageError(f"{flag}: {str(path)!r} holds no draft heads (no {' or '.join(missing)}; `hawk train-heads "
                         f"--out DIR` writes them)")


def as_flag_error(exc: Exception, flags: dict, where: str = ""):
    """A library error whose message starts with an argument name in `flags` ("size: ...") -> UsageError naming
    the flag instead ("--size: ..."; `where`, e.g. the file, after it); None when the message names no such
    argument (the caller re-raises the original). The library's message is kept, only its first word mapped."""
    name, sep, rest = str(exc).partition(": ")
    if not sep or name not in flags:
        return None
    return UsageError(f"{flags[name]}: {where}{rest}")


def check_mode_heads(mode: str | None, has_heads: bool, why: str) -> None:
    """--mode: a mode that drafts with heads needs some (`has_heads`; `why` says why there are none)."""
    from ..drafts import MODES, needs_heads

    if mode is not None and needs_heads(mode) and not has_heads:
        raise UsageError(f"--mode: {mode} needs draft heads and {why}: give --heads DIR, or a mode without heads "
                         f"({', '.join(m for m in MODES if not needs_heads(m))})")


def process_group(device: torch.device):
    """Start torchrun's process group (NCCL on GPUs, gloo on CPUs); returns the barrier."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.barrier


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def rank_device(device: str | None) -> torch.device:
    """--device, or CUDA when available; under torchrun each rank takes the GPU LOCAL_RANK."""
    device = as_device("--device", device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)  # the rank's current device: NCCL, streams and graphs default to it
    return device
