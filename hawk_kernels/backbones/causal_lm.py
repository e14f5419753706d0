"""The generic adapter: any transformers causal LM whose image codes are ordinary vocabulary ids (Llama,
Chameleon / Lumina-mGPT, Emu3, ...). Implements backbones/protocol.py.

Nothing is pinned on the model (no forks, no attributes): masks, positions and the cache are arguments. The
cache is a static, slot-addressed `SlotKVCache` (kv_cache.py) with device-held positions, so the tree forward
and the commit never sync with the host and a whole step can be captured in a CUDA graph. Rows may be
padded (left-padded prompts, rows that accepted fewer nodes than others); every mask comes from the cache's
per-row bookkeeping. Logits are computed on the local vocabulary only, from the lm_head rows, which also
bypasses wrappers that suppress image tokens in `forward` (Chameleon). Every table (local -> global ids,
lm_head rows) is built once, on the model's device.
"""
from __future__ import annotations

import inspect

import torch

from ..grid import ImageGrid
from .kv_cache import SlotKVCache


class TransformerStack:
    """What every adapter over a transformers decoder stack shares: the cache, the masks, prefill, the tree
    forward and the commit. Subclasses add the image path (embed_image_tokens, image_logits, head_rows,
    token_ids) and hidden_size."""

    positions_from_slots = False  # True: position ids are slot indices, padding included (LlamaGen's input_pos)

    def __init__(self, model, grid: ImageGrid, language_model, text_config, input_embeddings):
        self.model, self.grid = model, grid
        self.language_model = language_model  # the transformers stack under the output head
        self.text_config = text_config  # its shape (layers, KV heads, head size): memory.py sizes the cache from it
        self.input_embeddings = input_embeddings
        self.vocab_size = int(text_config.vocab_size)  # prompt ids lie below it
        self.max_positions = getattr(text_config, "max_position_embeddings", None)
        self.sliding_window = _attention_window(text_config)
        self._cache_keyword = cache_keyword(language_model)

    @property
    def device(self) -> torch.device:
        return self.input_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.input_embeddings.weight.dtype

    @property
    def block_sparse_attention(self) -> bool:
        """Whether the model runs FlexAttention (then masks are block masks bounded to the filled slots; every
        other attention gets a dense mask over all slots). Read at each call: the model's setting is the truth."""
        return getattr(self.language_model.config, "_attn_implementation", None) == "flex_attention"

    # --- the cache -----------------------------------------------------------------------------------
    def new_cache(self, batch_rows: int, capacity: int) -> SlotKVCache:
        if self.sliding_window is not None and self.sliding_window < capacity:
            raise NotImplementedError(f"model: sliding_window={self.sliding_window} is shorter than the "
                                      f"{capacity} cache slots this image needs; windowed masks are not supported")
        return SlotKVCache(batch_rows, capacity, self.device)

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """bool [B', q, k] -> additive float mask [B', 1, q, k] (0 / finfo.min): bool 4-D masks are unsafe."""
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)[:, None]

    @torch.no_grad()
    def prefill(self, cache: SlotKVCache, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor) -> torch.Tensor:
        inputs, prompt_valid = self.prompt_inputs(prompt_ids, prompt_valid)
        cache.begin_prefill(prompt_valid)
        positions = self.prompt_positions(prompt_valid)
        if self.block_sparse_attention:
            mask = cache.prefill_block_mask(prompt_valid)
        else:
            mask = self._additive(cache.prefill_mask(prompt_valid))
        out = self.language_model(**inputs, attention_mask=mask, position_ids=positions, use_cache=True,
                                  **{self._cache_keyword: cache})
        return out.last_hidden_state[:, -1]

    def prompt_inputs(self, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """What the stack reads for the prompt ({"input_ids": ...} here), and which slots are valid. A family whose
        prompt is not token ids of the stack's embedding (LlamaGen's T5 captions) overrides it."""
        return {"input_ids": prompt_ids}, prompt_valid

    def tree_positions(self, cache: SlotKVCache, depth: torch.Tensor) -> torch.Tensor:
        """[B', N] position ids of the tree nodes: the row's next position (its count of valid tokens; the slot
        index where the model numbers slots, `positions_from_slots`) plus the node's depth."""
        return (cache.length if self.positions_from_slots else cache.next_position)[:, None] + depth[None]

    def prompt_positions(self, prompt_valid: torch.Tensor) -> torch.Tensor:
        """[B', L] position ids of a left-padded prompt: counts of valid tokens (padding does not move the
        positions), or the slot index where the model numbers slots."""
        if self.positions_from_slots:
            return torch.arange(prompt_valid.shape[1], device=prompt_valid.device).expand_as(prompt_valid)
        return (prompt_valid.long().cumsum(-1) - 1).clamp(min=0)

    @torch.no_grad()
    def forward_tree(self, cache: SlotKVCache, node_embeds: torch.Tensor, depth: torch.Tensor,
                     ancestor_mask: torch.Tensor) -> torch.Tensor:
        cache.begin_tree()
        positions = self.tree_positions(cache, depth)
        if self.block_sparse_attention:
            mask = cache.tree_block_mask(ancestor_mask)
        else:
            mask = self._additive(cache.tree_mask(ancestor_mask))
        out = self.language_model(inputs_embeds=node_embeds, attention_mask=mask, position_ids=positions,
                                  use_cache=True, **{self._cache_keyword: cache})
        return out.last_hidden_state

    @torch.no_grad()
    def commit(self, cache: SlotKVCache, path: torch.Tensor, keep: torch.Tensor) -> None:
        cache.commit(path, keep)


class CausalLMBackbone(TransformerStack):
    """A causal LM whose image codes are vocabulary ids: logits from the lm_head rows of the local vocabulary,
    embeddings from the input embedding table."""

    def __init__(self, model, grid: ImageGrid):
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        super().__init__(model, grid, model.get_decoder(), config, model.get_input_embeddings())
        grid.check_vocab(self.vocab_size)
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError("model: expected a causal LM with an output embedding (lm_head)")
        self.hidden_size = head.weight.shape[1]
        self.local_to_global = grid.local_vocab_ids().to(head.weight.device)  # [V_local], built once
        self.output_rows = head.weight.detach()[self.local_to_global]  # [V_local, d]
        bias = getattr(head, "bias", None)
        self.output_bias = None if bias is None else bias.detach()[self.local_to_global]

    # --- the image path ------------------------------------------------------------------------------
    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.output_rows.T
        return logits if self.output_bias is None else logits + self.output_bias

    def embed_image_tokens(self, local_ids: torch.Tensor) -> torch.Tensor:
        return self.input_embeddings(self.local_to_global[local_ids])

    def head_rows(self) -> torch.Tensor:
        return self.output_rows[: self.grid.num_image_codes]

    def token_ids(self, local_ids: torch.Tensor) -> torch.Tensor:
        return self.local_to_global[local_ids]


def cache_keyword(language_model) -> str:
    """The name under which this transformers version's forward takes the KV cache: `cache` from 5.2x on, where
    `past_key_values` is deprecated (a FutureWarning on every call), `past_key_values` before (5.17 has no
    `cache`). Read once from the signature, so neither version warns."""
    params = inspect.signature(language_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _attention_window(config) -> int | None:
    """The sliding window (None: full attention). Masks here are full 4-D tensors over every cache slot, so a
    window is only exact when it covers the whole sequence (checked by new_cache); other mixers are refused."""
    layer_types = set(getattr(config, "layer_types", None) or ())
    if layer_types - {"full_attention", "sliding_attention"}:
        raise NotImplementedError(f"model: only attention layers are supported, got layer_types={sorted(layer_types)}")
    window = getattr(config, "sliding_window", None)
    return int(window) if window else None
