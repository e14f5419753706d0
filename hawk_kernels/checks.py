"""Argument checks at the public boundary. Every message names the argument, what was expected and what was
given, and every check runs before any model work (so a careless call fails at once, not after a prefill)."""
from __future__ import annotations

import math
import numbers
import operator

import torch


def _given(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 60 else type(value).__name__


def as_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """value as an int in [low, high] (bounds inclusive, None = open); bools, floats and strings refused."""
    if isinstance(value, (bool, float)) or isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
        raise TypeError(f"{name}: expected an int{_range(low, high)}, got {_given(value)}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int{_range(low, high)}, got {_given(value)}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}: expected an int{_range(low, high)}, got {value}")
    return value


def as_bool(name: str, value) -> bool:
    """value, which must be True or False (1, "yes" and the like are refused: they are typos more often than not)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {_given(value)}")
    return value


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # what a model may be loaded in


def as_dtype(name: str, value) -> torch.dtype | None:
    """None, or a dtype of FLOAT_DTYPES given as a torch.dtype or its name ("bfloat16"); integer, bool, complex and
    float8 dtypes are refused (ValueError naming `name`)."""
    dtype = value if value is None or isinstance(value, torch.dtype) else getattr(torch, str(value), None)
    if value is not None and dtype not in FLOAT_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in FLOAT_DTYPES)
        raise ValueError(f"{name}: expected None or one of {names} (a torch.dtype or its name), got {value!r}")
    return dtype


def as_float(name: str, value, low: float | None = None, high: float | None = None, *,
             low_open: bool = False) -> float:
    """value as a finite float in [low, high] ((low, high] with low_open); bools, strings, NaN, inf refused."""
    what = f"a finite number{_range(low, high, low_open)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) and not _is_scalar_tensor(value):
        raise TypeError(f"{name}: expected {what}, got {_given(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected {what}, got {number}")
    if (low is not None and (number <= low if low_open else number < low)) or (high is not None and number > high):
        raise ValueError(f"{name}: expected {what}, got {number}")
    return number


def _is_scalar_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1


def _range(low, high, low_open: bool = False) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" > {low}" if low_open else f" >= {low}"
    if low is None:
        return f" <= {high}"
    return f" in {'(' if low_open else '['}{low}, {high}]"


def token_tensor(name: str, value, vocab_size: int) -> torch.Tensor:
    """An integer tensor of token ids [B, L] or [L] with every id in [0, vocab_size) -> [B, L] int64."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected an integer torch.Tensor of token ids [B, L], got {_given(value)}")
    if value.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name}: expected integer token ids, got dtype {str(value.dtype).replace('torch.', '')}")
    ids = value[None] if value.dim() == 1 else value
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name}: expected shape [B, L] (or [L]) with B, L >= 1, got {tuple(value.shape)}")
    ids = ids.long()
    if bool((ids < 0).any()) or bool((ids >= vocab_size).any()):
        bad = ids[(ids < 0) | (ids >= vocab_size)][0]
        raise ValueError(f"{name}: token ids must lie in [0, {vocab_size}), got {int(bad)}")
    return ids


def mask_tensor(name: str, value, shape) -> torch.Tensor:
    """A 0/1 (or bool) mask of `shape` -> bool; fractional values such as 0.5 are refused."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of 0/1 (or bool) of shape {tuple(shape)}, got {_given(value)}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(value.shape)}")
    if value.dtype != torch.bool and not bool(((value == 0) | (value == 1)).all()):
        raise ValueError(f"{name}: expected only 0 and 1 (or bools), got values such as "
                         f"{float(value[(value != 0) & (value != 1)][0])}")
    return value.bool()


def as_device(name: str, value) -> torch.device:
    """A device string / torch.device this torch can use; CUDA without a CUDA build or GPU is refused here,
    before anything loads."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name}: expected a device such as 'cpu' or 'cuda', got {value!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"{name}: {value!r} requested, but {why} (torch {torch.__version__}); use 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: expected 'cpu' or 'cuda', got {value!r}")
    return device


def text_prompts(name: str, value) -> list[str]:
    """A prompt string or a non-empty sequence of non-empty strings -> list of str."""
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise TypeError(f"{name}: expected a prompt string or a non-empty list of strings, got {_given(value)}")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"{name}: expected strings, got {_given(prompt)} at position {index}")
        if not prompt.strip():
            raise ValueError(f"{name}: prompt {index} is empty (it would give an unconditional image)")
    return list(prompts)


def image_seeds(name: str, seed, batch: int) -> list[int]:
    """Per-image seeds: an int gives image i the seed (seed + i) mod 2**64; a sequence gives one per image."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != batch:
            raise ValueError(f"{name}: expected one seed per image ({batch}), got {len(seed)}")
        return [as_int(f"{name}[{i}]", s, 0, 2**64 - 1) for i, s in enumerate(seed)]
    seed = as_int(name, seed, 0, 2**64 - 1)
    return [(seed + i) % 2**64 for i in range(batch)]


ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")


def check_attn_implementation(attn_implementation, device: torch.device) -> None:
    """None (the checkpoint's / transformers' default) or one of ATTENTION_IMPLEMENTATIONS. flex_attention (the
    backbones then pass block masks bounded to the filled cache slots) is refused on the CPU: torch's CPU
    FlexAttention kernel fails to compile these masks (torch 2.13: a C++ compile error), use sdpa there."""
    if attn_implementation is None:
        return
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation: expected None or one of {ATTENTION_IMPLEMENTATIONS}, "
                         f"got {attn_implementation!r}")
    if attn_implementation == "flex_attention" and device.type == "cpu":
        raise ValueError("attn_implementation: 'flex_attention' runs on CUDA only here (torch's CPU FlexAttention "
                         "kernel fails to compile the tree masks); use 'sdpa' on the CPU")


def check_auto_flag(name: str, value, words: tuple[str, ...] = ()):
    """HawkDecoder's words `compile` and `cuda_graphs`: "auto", True or False (1 and 0 accepted, returned as the
    bools: the engine tests them by identity), or one of the extra `words`. Returns the word."""
    if isinstance(value, str) and value in words:
        return value
    if value not in ("auto", True, False) or isinstance(value, int) and value not in (0, 1):
        allowed = ", ".join(["'auto'", "True", "False", *map(repr, words)])
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
    return value if isinstance(value, str) else bool(value)


def check_compile(compile):
    """HawkDecoder's `compile`: "auto", True, False, or "regional" (compiled, the decoder layers as one region).
    Returns it (1 and 0 as the bools)."""
    return check_auto_flag("compile", compile, words=("regional",))


# --- the pipelines' arguments -------------------------------------------------------------------------------
def id_rows(input_ids, vocab_size: int) -> list[list[int]]:
    """input_ids: an int tensor [L] or [B, L] (every position real), or a list of id lists (any lengths)."""
    if isinstance(input_ids, torch.Tensor):
        return token_tensor("input_ids", input_ids, vocab_size).tolist()
    if not isinstance(input_ids, (list, tuple)) or not input_ids:
        raise TypeError(f"input_ids: expected a tensor or a non-empty list of id lists, got {type(input_ids).__name__}")
    rows = []
    for i, row in enumerate(input_ids):
        if isinstance(row, torch.Tensor) and row.ndim == 1:
            row = token_tensor(f"input_ids[{i}]", row, vocab_size)[0].tolist()
        if not isinstance(row, (list, tuple)) or not row:
            raise TypeError(f"input_ids: row {i}: expected a non-empty list of token ids (input_ids is a list of "
                            f"rows), got {type(row).__name__} {row!r:.40}")
        rows.append([as_int(f"input_ids: row {i}: token", token, 0, vocab_size - 1) for token in row])
    return rows

def size_pair(size, multiple: int, expected: str) -> tuple[int, int]:
    """`size` (an int for a square, or (height, width)) -> (height, width): ints >= 1 (numpy and 0-d tensor ints
    accepted, as everywhere: checks.as_int; floats, bools and strings refused), multiples of `multiple`.
    ValueError naming `size` with `expected` (the family's words) otherwise."""
    pair = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    try:
        sides = tuple(as_int("size", side, 1) for side in pair)
    except (TypeError, ValueError):
        sides = ()
    if len(sides) != 2 or any(side % multiple for side in sides):
        raise ValueError(f"size: expected {expected}, got {size!r}")
    return sides

def check_ids_in(name: str, ids, low: int, high: int, what: str) -> torch.Tensor:
    """An integer tensor whose every id lies in [low, high) (`what` they are), on the CPU; ValueError naming
    `name` otherwise (an id outside would index a table from its end, or past it)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name}: expected an integer torch.Tensor of {what}, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer torch.Tensor of {what}, got dtype {ids.dtype}")
    ids = ids.cpu()
    outside = (ids < low) | (ids >= high)
    if bool(outside.any()):
        raise ValueError(f"{name}: expected {what}, ids in [{low}, {high}), got {int(ids[outside][0])}")
    return ids

def exactly_one(prompts, input_ids) -> None:
    if (prompts is None) == (input_ids is None):
        raise ValueError("prompts, input_ids: expected exactly one of them (text prompts, or token ids)")
