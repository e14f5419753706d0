"""Draft sources and the spatial pool.

- `source`: the interface (DraftSource, DraftProposal, DraftContext) and the per-generation DraftState;
- `horizontal`: horizontal heads' drafts; `vertical` + `spec_cache`: vertical heads' drafts, cached until
  decoding reaches their row;
- `pool`: draws every source's candidates per depth, without replacement across sources.

MODES names the decoding modes and the sources each one drafts with (the only place modes are spelled).
"""
from __future__ import annotations

from .horizontal import HorizontalSource
from .pool import Candidates, SpatialPool
from .source import DraftContext, DraftProposal, DraftSource, DraftState, LastTree
from .spec_cache import SpeculationCache
from .vertical import VerticalSource

MODE_SOURCES = {"ar": (), "medusa": ("horizontal",), "vertical": ("vertical",), "hawk": ("horizontal", "vertical")}
MODES = tuple(MODE_SOURCES)
HEAD_SOURCES = ("horizontal", "vertical")  # the kinds of source that draft from DraftHeads

__all__ = ["MODES", "MODE_SOURCES", "Candidates", "DraftContext", "DraftProposal", "DraftSource", "DraftState",
           "HorizontalSource", "LastTree", "SpatialPool", "SpeculationCache", "VerticalSource", "default_depth",
           "needs_heads", "sources_for"]


def _check_mode(mode: str) -> None:
    if mode not in MODE_SOURCES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


def needs_heads(mode: str) -> bool:
    _check_mode(mode)
    return any(kind in HEAD_SOURCES for kind in MODE_SOURCES[mode])


def default_depth(mode: str, heads) -> int:
    """The tree depth when no measured rates set it: horizontal heads alone reach their last distance;
    vertical drafts reach two depths further."""
    _check_mode(mode)
    if "vertical" in MODE_SOURCES[mode]:
        return heads.num_horizontal + 2
    return max(heads.num_horizontal, 1) if heads is not None else 1


def sources_for(mode: str, heads, horizontal_candidates: int = 2, vertical_candidates: int = 1) -> tuple:
    """The draft sources of `mode` (MODES) over `heads` (a DraftHeads, or None where the mode needs none)."""
    _check_mode(mode)
    kinds = MODE_SOURCES[mode]
    if needs_heads(mode) and heads is None:
        raise ValueError(f"heads: mode={mode!r} needs DraftHeads")
    sources = []
    if "horizontal" in kinds and heads.num_horizontal:
        sources.append(HorizontalSource(horizontal_candidates))
    if "vertical" in kinds and heads.vertical_depth:
        sources.append(VerticalSource(heads.vertical_depth, vertical_candidates))
    if kinds and not sources:
        raise ValueError(f"heads: mode={mode!r} has no heads of the kind it needs")
    return tuple(sources)
