"""Draft sources and the spatial pool.

- `source`: the interface (DraftSource: new_state / propose / record; DraftProposal, DraftContext, StepRecord);
- `horizontal`: horizontal heads' drafts; `vertical` + `spec_cache`: vertical heads' drafts, cached until
  decoding reaches their row;
- `jacobi`: the target's own predictions from the previous tree forward (no heads); `coupling`: draft noise
  keyed by absolute position, so a Jacobi draft stays put while its law changes little;
- `pool`: draws every source's candidates per depth, without replacement across sources.

MODES names the decoding modes and the sources each one drafts with, in the pool's order (the only place modes
are spelled).
"""
from __future__ import annotations

from .coupling import CoupledNoise
from .horizontal import HorizontalSource
from .jacobi import InitialLawSource, JacobiMemory, JacobiSource, JacobiState
from .pool import Candidates, SpatialPool
from .source import DraftContext, DraftProposal, DraftSource, SourceSetup, StepRecord, TreeRecord
from .spec_cache import SpeculationCache
from .vertical import VerticalSource

MODE_SOURCES = {"ar": (), "medusa": ("horizontal",), "vertical": ("vertical",), "hawk": ("horizontal", "vertical"),
                "jacobi": ("jacobi",), "hawk+jacobi": ("jacobi", "horizontal", "vertical", "jacobi_init")}
MODES = tuple(MODE_SOURCES)
HEAD_SOURCES = ("horizontal", "vertical")  # the kinds of source that draft from DraftHeads
# The Jacobi sources of each Jacobi mode, chosen by measurement (benchmarks/NOTES.md, Jacobi drafts). Alone: the
# prediction, else the law one row above, coupled, one candidate per depth (a chain). Beside heads: predictions
# first (their chain is the tree's rank-0 path), the heads next, the row-above law last. Who owns depth 1 depends
# on whether the heads were measured: with calibrated rates the heads (bundled model and rates: 6.96 vs 6.80 tokens
# per pass), without (heads of unknown quality, e.g. untrained) the Jacobi predictions (untrained heads: 6.54 vs
# 5.32). Calibration measures the heads' layout and keeps its rates only where they win (tree_calibration.py).
_PREDICTIONS_AFTER_HEADS = JacobiSource(init=None, first_depth=2)
_PREDICTIONS_FROM_DEPTH_1 = JacobiSource(init=None, first_depth=1)
JACOBI_SOURCES = {"jacobi": {"jacobi": JacobiSource()},
                  "hawk+jacobi": {"jacobi": _PREDICTIONS_AFTER_HEADS,
                                  "jacobi_init": InitialLawSource(_PREDICTIONS_AFTER_HEADS, first_depth=2)}}
JACOBI_SOURCES_UNMEASURED_HEADS = {"hawk+jacobi": {"jacobi": _PREDICTIONS_FROM_DEPTH_1,
                                                   "jacobi_init": InitialLawSource(_PREDICTIONS_FROM_DEPTH_1,
                                                                                   first_depth=2)}}
JACOBI_DEPTH = 64  # tree depth of Jacobi modes without measured rates: a long chain feeds the next step
JACOBI_CHAIN_SHARE = 0.75  # of a Jacobi mode's node budget, reserved for its rank-0 chain (measured)

__all__ = ["MODES", "MODE_SOURCES", "Candidates", "CoupledNoise", "DraftContext", "DraftProposal", "DraftSource",
           "HorizontalSource", "InitialLawSource", "JacobiMemory", "JacobiSource", "JacobiState", "SourceSetup",
           "SpatialPool", "SpeculationCache", "StepRecord", "TreeRecord", "VerticalSource", "chain_depth", "check_mode",
           "default_depth", "needs_heads", "sources_for"]


def check_mode(mode) -> None:
    """Raise ValueError naming `mode` unless it is one of MODES (the one check of a mode name)."""
    if not isinstance(mode, str) or mode not in MODE_SOURCES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


def needs_heads(mode: str) -> bool:
    check_mode(mode)
    return any(kind in HEAD_SOURCES for kind in MODE_SOURCES[mode])


def default_mode(has_heads: bool) -> str:
    """The mode of a call that names none (the pipelines, `hawk generate`): the exact mode with the most tokens per
    pass, hawk+jacobi with heads and jacobi without (bundled model, 16 nodes, batch 1: 6.14 and 5.66 against hawk's
    4.19; benchmarks/SJD.md); num_nodes="auto" still takes plain AR steps where no tree pays for its step."""
    return "hawk+jacobi" if has_heads else "jacobi"


def default_depth(mode: str, heads) -> int:
    """The tree depth when no measured rates set it: horizontal heads alone reach their last distance;
    vertical drafts reach two depths further; Jacobi drafts JACOBI_DEPTH."""
    check_mode(mode)
    if "jacobi" in MODE_SOURCES[mode]:
        return JACOBI_DEPTH
    if "vertical" in MODE_SOURCES[mode]:
        return heads.num_horizontal + 2
    return max(heads.num_horizontal, 1) if heads is not None else 1


def chain_depth(mode: str, num_nodes: int) -> int:
    """The rank-0 chain a tree of `mode` reserves: JACOBI_CHAIN_SHARE of the budget in Jacobi modes (a deep chain
    feeds the next step's predictions, a value per-step acceptance rates do not see), else none."""
    check_mode(mode)
    return int(round(JACOBI_CHAIN_SHARE * num_nodes)) if "jacobi" in MODE_SOURCES[mode] else 0


def sources_for(mode: str, heads, horizontal_candidates: int = 2, vertical_candidates: int = 1,
                jacobi: dict | None = None, measured: bool = True) -> tuple:
    """The draft sources of `mode` (MODES) over `heads` (a DraftHeads, or None where the mode needs none), in
    the pool's order. jacobi: {kind: source} for the Jacobi kinds (default JACOBI_SOURCES[mode], or with
    measured=False, i.e. no calibrated rates for these heads, JACOBI_SOURCES_UNMEASURED_HEADS where it has one)."""
    check_mode(mode)
    kinds = MODE_SOURCES[mode]
    if needs_heads(mode) and heads is None:
        raise ValueError(f"heads: mode={mode!r} needs DraftHeads")
    defaults = JACOBI_SOURCES if measured else {**JACOBI_SOURCES, **JACOBI_SOURCES_UNMEASURED_HEADS}
    available = dict(jacobi or defaults.get(mode, {}))
    if "horizontal" in kinds and heads.num_horizontal:
        available["horizontal"] = HorizontalSource(heads.num_horizontal, horizontal_candidates)
    if "vertical" in kinds and heads.vertical_depth:
        available["vertical"] = VerticalSource(heads.vertical_depth, heads.num_horizontal, vertical_candidates)
    if needs_heads(mode) and not set(available) & set(HEAD_SOURCES):
        raise ValueError(f"heads: mode={mode!r} has no heads of the kind it needs")
    if "jacobi_init" in available and available["jacobi_init"].memory_of is not available.get("jacobi"):
        raise ValueError("jacobi: an InitialLawSource reads the memory of the JacobiSource it names; give that "
                         "JacobiSource as 'jacobi'")
    return tuple(available[kind] for kind in kinds if kind in available)
