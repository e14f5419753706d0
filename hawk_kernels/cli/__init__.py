"""Command line `hawk`, one module per command: `demo` (also `python -m hawk_kernels`), `generate`, `distill`,
`train_heads`, `convert` (`convert-llamagen`: LlamaGen's released files -> a model directory), `cache` (what
num_nodes="auto" keeps on this machine, and --clear), `info` (versions, devices and the kernel each op runs);
`common` holds what they share (the error type and prefix, the help formatter, argument types, output checks) and
`models` the choice between --demo and --model DIR.

Every input the command line alone can judge is checked before any model loads; an error is one line on
stderr starting with "hawk: error: " and exit code 2. Nothing is written into the installed package, and an
existing output is replaced only with --overwrite.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from . import cache, convert, demo, distill, generate, info, train_heads
from .common import ERROR_PREFIX, HelpFormatter, Parser, UsageError

# each adds its subparser, whose args call its run(args)
COMMANDS = (demo, generate, distill, train_heads, convert, cache, info)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hawk", description="Hawk: exact speculative decoding for autoregressive image models",
                    formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"hawk_kernels {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Run `hawk` with `argv` (default: sys.argv[1:]); returns the exit code (2: a bad input, one line on stderr;
    HAWK_TRACEBACK=1 raises instead of printing a line for errors from inside the library; OSError included:
    a full disk or an unreadable file while the command runs is one line too; 130: interrupted with Ctrl-C, one
    line saying what was kept and how to resume)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UsageError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line saying what was kept, not a traceback
        if args is None or os.environ.get("HAWK_TRACEBACK"):
            raise
        hint = getattr(args, "on_interrupt", None)
        print(f"hawk: interrupted{f'; {hint(args)}' if hint else ''}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError) as exc:
        if args is None or os.environ.get("HAWK_TRACEBACK"):
            raise
        print(f"{ERROR_PREFIX}{exc} (HAWK_TRACEBACK=1 shows where)", file=sys.stderr)
        return 2


__all__ = ["ERROR_PREFIX", "UsageError", "build_parser", "main"]
