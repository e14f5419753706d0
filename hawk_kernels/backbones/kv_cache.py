"""Static, slot-addressed KV cache: fixed shapes and device-held positions, so a decode step never syncs with
the host and can be captured in a CUDA graph.

Layout (one buffer per layer, [B', heads, capacity, head_dim], allocated at the first write):
  * slots [0, L) hold the left-padded prompt; row b's valid slots are [start[b], length[b]);
  * a tree forward writes its N nodes at the shared slots [P, P + N) with P = max(length) (a device scalar);
    rows shorter than P just mask the gap;
  * `commit` copies each row's kept path nodes from [P, P + N) to [length[b], length[b] + keep[b]) with a
    fixed-width gather/scatter, and moves length[b]. Nothing depends on a host value, so capacity is sized
    once: prompt + body + nodes + path width.

The cache plugs into any transformers language model as its cache argument (`cache`, or `past_key_values` before
transformers 5.2x; it is a `transformers.Cache`); the model writes through `update`, which puts the new keys at
the current write slot. Masks come from the row bookkeeping, in one of two forms:
  * `tree_mask`: a dense bool [B', N, capacity] (made additive by the backbone) for eager/sdpa attention, which
    reads every slot;
  * `tree_block_mask`: a FlexAttention BlockMask for models run with attn_implementation="flex_attention". Its
    KV block count is the filled length, ceil((P + N) / block), a device tensor, so the attention kernel never
    reads the empty tail of the cache; inside the listed blocks the same predicate as `tree_mask` is evaluated
    on the fly (mask_mod), no [N, capacity] mask is materialised. Graph-safe: no host value enters.
"""
from __future__ import annotations

import torch
from torch.nn.attention.flex_attention import BlockMask
from transformers.cache_utils import Cache, CacheLayerMixin


CAPACITY_MULTIPLE = 128  # = the FlexAttention KV block; also keeps sdpa's additive mask rows 16-aligned


def cache_capacity(needed: int, sliding_window: int | None = None) -> int:
    """Slots for a generation that needs `needed`, rounded up to a multiple of CAPACITY_MULTIPLE: the cache's shape
    is the compiled step's shape, so prompts whose lengths round alike reuse one compiled step (an exact capacity
    made every new prompt length recompile, ~15 s for the tiny test model), and the FlexAttention blocks and the
    memory-efficient kernel's mask rows come whole (no per-layer padding copy). Never past a sliding window that
    the exact size fits in."""
    rounded = -(-needed // CAPACITY_MULTIPLE) * CAPACITY_MULTIPLE
    if sliding_window is not None and needed <= sliding_window < rounded:
        return sliding_window
    return rounded


class SlotLayer(CacheLayerMixin):
    """One layer's buffers; writes go to [write_slot, write_slot + q) (write_slot shared by all layers)."""

    is_compileable = True
    is_sliding = False

    def __init__(self, capacity: int, write_slot: torch.Tensor):
        super().__init__()
        self.capacity, self.write_slot = capacity, write_slot

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        rows, heads = key_states.shape[:2]
        self.keys = key_states.new_zeros(rows, heads, self.capacity, key_states.shape[-1])
        self.values = value_states.new_zeros(rows, heads, self.capacity, value_states.shape[-1])
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        slots = self.write_slot + torch.arange(key_states.shape[-2], device=key_states.device)
        self.keys.index_copy_(2, slots, key_states.to(self.keys.dtype))
        self.values.index_copy_(2, slots, value_states.to(self.values.dtype))
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int, *args) -> tuple[int, int]:
        return self.capacity, 0

    def get_seq_length(self, *args) -> int:
        return self.capacity  # masks are always 4-D and given; nothing should infer lengths from the cache

    def get_max_length(self) -> int:
        return self.capacity


class SlotKVCache(Cache):
    def __init__(self, rows: int, capacity: int, device: torch.device):
        self.write_slot = torch.zeros((), dtype=torch.int64, device=device)
        super().__init__(layer_class_to_replicate=lambda: SlotLayer(capacity, self.write_slot))
        self.capacity, self.device = capacity, device
        self.start = torch.zeros(rows, dtype=torch.int64, device=device)  # first valid slot per row
        self.length = torch.zeros(rows, dtype=torch.int64, device=device)  # one past the last valid slot
        self._slot_ids = torch.arange(capacity, device=device)

    @property
    def next_position(self) -> torch.Tensor:
        """[B'] position id of the next token of each row (its number of valid tokens)."""
        return self.length - self.start

    def valid(self) -> torch.Tensor:
        """[B', capacity] bool: the slots each row really holds."""
        slot = self._slot_ids[None]
        return (slot >= self.start[:, None]) & (slot < self.length[:, None])

    def prefill_mask(self, prompt_valid: torch.Tensor) -> torch.Tensor:
        """[B', L] left-padding mask -> bool [B', L, capacity]: causal over valid prompt slots; pad rows see
        themselves only (so no softmax row is empty)."""
        length = prompt_valid.shape[1]
        slot = self._slot_ids
        causal = slot[None, :] <= torch.arange(length, device=self.device)[:, None]  # [L, capacity]
        in_prompt = torch.zeros(prompt_valid.shape[0], self.capacity, dtype=torch.bool, device=self.device)
        in_prompt[:, :length] = prompt_valid
        allowed = causal[None] & in_prompt[:, None, :]
        allowed[:, :, :length] |= torch.eye(length, dtype=torch.bool, device=self.device)[None]
        return allowed

    def begin_prefill(self, prompt_valid: torch.Tensor) -> None:
        length = prompt_valid.shape[1]
        if length > self.capacity:
            raise ValueError(f"prompt: {length} tokens exceed the cache capacity {self.capacity}")
        self.write_slot.zero_()
        self.start.copy_(length - prompt_valid.long().sum(-1))
        self.length.fill_(length)

    def tree_mask(self, ancestor_mask: torch.Tensor) -> torch.Tensor:
        """ancestor_mask [N, N] -> bool [B', N, capacity]: the row's valid slots, plus its ancestors among the
        tree slots [P, P + N) where P = write_slot (set by begin_tree)."""
        nodes = ancestor_mask.shape[0]
        rel = self._slot_ids - self.write_slot  # [capacity] slot index inside the tree block
        in_tree = (rel >= 0) & (rel < nodes)
        tree_part = ancestor_mask[:, rel.clamp(0, nodes - 1)] & in_tree[None]  # [N, capacity]
        return self.valid()[:, None, :] | tree_part[None]

    def prefill_block_mask(self, prompt_valid: torch.Tensor, block_size: int = 128) -> BlockMask:
        """`prefill_mask` as a FlexAttention BlockMask over the prompt's blocks only."""
        length = prompt_valid.shape[1]
        start = self.start

        def mask_mod(b, h, q_idx, kv_idx):
            return (kv_idx == q_idx) | ((kv_idx <= q_idx) & (kv_idx >= start[b]))

        return self._block_mask(mask_mod, length, torch.full((), length, device=self.device), block_size)

    def tree_block_mask(self, ancestor_mask: torch.Tensor, block_size: int = 128) -> BlockMask:
        """`tree_mask` as a FlexAttention BlockMask bounded to the filled slots [0, P + N). Call after
        begin_tree (P = write_slot)."""
        nodes = ancestor_mask.shape[0]
        start, length, write_slot = self.start, self.length, self.write_slot

        def mask_mod(b, h, q_idx, kv_idx):
            rel = kv_idx - write_slot
            in_tree = (rel >= 0) & (rel < nodes)
            valid = (kv_idx >= start[b]) & (kv_idx < length[b])
            return valid | (in_tree & ancestor_mask[q_idx, rel.clamp(0, nodes - 1)])

        return self._block_mask(mask_mod, nodes, write_slot + nodes, block_size)

    def _block_mask(self, mask_mod, queries: int, filled: torch.Tensor, block_size: int) -> BlockMask:
        """Every KV block below `filled` (a device scalar) listed as partial (mask_mod decides inside it), the
        rest not listed, so a block-sparse kernel skips them."""
        rows = self.start.shape[0]
        total_blocks, q_blocks = -(-self.capacity // block_size), -(-queries // block_size)
        filled_blocks = torch.div(filled + block_size - 1, block_size, rounding_mode="floor").clamp(max=total_blocks)
        kv_num_blocks = filled_blocks.to(torch.int32).expand(rows, 1, q_blocks).contiguous()
        kv_indices = torch.arange(total_blocks, dtype=torch.int32, device=self.device)
        kv_indices = kv_indices.expand(rows, 1, q_blocks, total_blocks).contiguous()
        return BlockMask.from_kv_blocks(kv_num_blocks, kv_indices, BLOCK_SIZE=block_size, mask_mod=mask_mod,
                                        seq_lengths=(queries, self.capacity), compute_q_blocks=False)

    def replace_rows(self, rows: torch.Tensor, fresh: "SlotKVCache") -> None:
        """Cache rows `rows` [k] become the k rows of `fresh` (as many layers, at most as many slots: new images
        just prefilled, in a cache of their prompts' size): fresh's slots and bookkeeping are copied in place (a
        captured step keeps reading these buffers); the slots past them are not valid in those rows."""
        if fresh.capacity > self.capacity or len(fresh.layers) != len(self.layers):
            raise ValueError(f"fresh: a cache of {fresh.capacity} slots and {len(fresh.layers)} layers cannot replace "
                             f"rows of one with {self.capacity} slots and {len(self.layers)} layers")
        slots = fresh.capacity
        for mine, theirs in zip(self.layers, fresh.layers):
            if theirs.is_initialized:
                mine.keys[:, :, :slots].index_copy_(0, rows, theirs.keys)
                mine.values[:, :, :slots].index_copy_(0, rows, theirs.values)
        self.start.index_copy_(0, rows, fresh.start)
        self.length.index_copy_(0, rows, fresh.length)

    def begin_tree(self) -> None:
        """Tree nodes go to the slots right after the longest row."""
        self.write_slot.copy_(self.length.max())

    def commit(self, path: torch.Tensor, keep: torch.Tensor) -> None:
        """path [B', W] node indices (ascending, -1 padded), keep [B']: row b keeps path[b, :keep[b]] of the
        last tree forward, in order, right after its valid slots. Fixed width W, no host sync."""
        width = path.shape[1]
        src = self.write_slot + path.clamp(min=0)  # [B', W]
        dst = (self.length[:, None] + torch.arange(width, device=self.device)[None]).clamp(max=self.capacity - 1)
        rows = torch.arange(src.shape[0], device=self.device)[:, None, None]
        head_index = {}  # KV head count -> its index, made once (layers normally share one count)
        for layer in self.layers:
            if not layer.is_initialized:
                continue
            count = layer.keys.shape[1]
            if count not in head_index:
                head_index[count] = torch.arange(count, device=self.device)[None, :, None]
            heads = head_index[count]
            for buf in (layer.keys, layer.values):
                # Advanced indexing, not gather/scatter_: inductor writes an index_put_ into the buffer in place,
                # while a scatter_ on it compiled to a copy of the whole buffer and a copy back (4x the cache's
                # bytes per step). `moved` is a copy: every kept node is read before any slot is overwritten.
                moved = buf[rows, heads, src[:, None, :]]  # [B', heads, W, head_dim]
                buf.index_put_((rows, heads, dst[:, None, :]), moved)
        self.length.add_(keep)
