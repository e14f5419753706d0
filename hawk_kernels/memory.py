"""Whether a session's KV cache fits the device, asked before it is allocated.

A session's static cache holds every row's whole image from the start (engine/state.py): rows x capacity x (per
layer: keys and values of the KV heads). At a real shape it dominates: a 7B Chameleon / Lumina-mGPT row at 768 px
holds 2,432 slots of 512 KiB (32 layers x 2 x 32 heads x 128 x bf16), 1.3 GB, so 64 images with CFG need 163 GB.
Without this check such a call died in the prefill with the allocator's out-of-memory error (or, on the CPU, the
kernel's OOM killer); with it the caller is told, by argument, how many images fit and how to decode in pieces.
"""
from __future__ import annotations

import torch

GB = 1e9


class CacheDoesNotFit(ValueError):
    """check_cache_fits' refusal: a ValueError (bad input: too many images at once) that a benchmark measuring
    memory can tell from other errors."""


def cache_bytes_per_slot(backbone) -> int | None:
    """Bytes one cache slot of one row holds, summed over the layers (keys and values), from the backbone's
    transformers-style text config; None where the config does not say (then nothing is checked)."""
    config = getattr(backbone, "text_config", None)
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None)
    if head_dim is None and heads and getattr(config, "hidden_size", None):
        head_dim = config.hidden_size // heads
    if not (isinstance(layers, int) and isinstance(kv_heads, int) and isinstance(head_dim, int)):
        return None
    return layers * 2 * kv_heads * head_dim * torch.empty((), dtype=backbone.dtype).element_size()


def free_bytes(device: torch.device) -> int | None:
    """Bytes a new allocation can take now: on CUDA the device's free memory plus what torch's allocator holds
    unused; on the CPU the kernel's MemAvailable; None where unknown (then nothing is checked)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


def check_cache_fits(backbone, images: int, branches: int, capacity: int) -> None:
    """ValueError (naming input_ids, with the number of images that fit) when `images` images of `branches` rows
    each (2 with CFG) need a cache of `capacity` slots per row larger than the device's free memory."""
    per_slot = cache_bytes_per_slot(backbone)
    free = None if per_slot is None else free_bytes(backbone.device)
    if free is None:
        return
    per_image = per_slot * capacity * branches
    if images * per_image <= free:
        return
    rows = f" ({images * branches} rows with CFG)" if branches > 1 else ""
    raise CacheDoesNotFit(
        f"input_ids: {images} images{rows} need a KV cache of {images * per_image / GB:.1f} GB ({capacity} slots per "
        f"row, {per_slot / 2**10:.0f} KiB per slot), and {backbone.device} has {free / GB:.1f} GB free: at most "
        f"{free // per_image} images fit the cache alone (the step needs some memory besides). Decode fewer at a "
        f"time: pipe.generate(..., batch_size=k), `hawk generate --batch-size k`, or HawkDecoder sessions of fewer "
        f"rows (refill() gives a finished row the next prompt)")
