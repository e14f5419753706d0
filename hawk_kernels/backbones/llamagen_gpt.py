"""LlamaGen's image GPT (FoundationVision/LlamaGen, `autoregressive/models/gpt.py`, MIT): a Llama stack over VQ
codes with 2D rotary positions and a class (c2i) or caption (t2i) condition. It is not in transformers, so this module holds the
model itself, with upstream's parameter names (the released `c2i_*.pt` state dicts load into it unchanged), and
the calling convention of a transformers decoder stack (`input_ids` / `inputs_embeds`, an additive 4-D
`attention_mask`, `position_ids`, a `cache` written through `Cache.update`), so the shared adapter
(causal_lm.TransformerStack) drives it like any other family.

Upstream facts kept here (file and line of gpt.py at commit ce98ec4):
  * the condition is `cls_token_num` embeddings (c2i: one row of `cls_embedding.embedding_table`, whose last
    row, index num_classes, is the CFG null class; t2i: 120 T5 caption embeddings through `cls_embedding.cap_proj`,
    an MLP with tanh-GELU, the CFG branch's caption being the learned `cls_embedding.uncond_embedding`) before the
    image codes (`tok_embeddings`);
  * rotary: the condition positions get cos = sin = 0 (`precompute_freqs_cis_2d` pads them with zeros, so their
    queries and keys are zero), image token k gets the 2D angles of grid cell (k // side, k % side): the first
    half of each head's pairs rotates with the row, the second with the column; computed in float32 and cast back
    (`apply_rotary_emb`);
  * RMSNorm in float32 then cast, times the weight; SwiGLU with hidden 2/3 * 4 * dim scaled by
    ffn_dim_multiplier and rounded up to multiple_of; no biases; `output` is the linear head over the codebook.
Only inference is here (no dropout, no loss). The model sizes are upstream's GPT_* constructors.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPast

# upstream GPT_models: name -> (n_layer, n_head, dim)
GPT_SIZES = {"GPT-B": (12, 12, 768), "GPT-L": (24, 16, 1024), "GPT-XL": (36, 20, 1280), "GPT-XXL": (48, 24, 1536),
             "GPT-XXXL": (48, 40, 2560), "GPT-1B": (22, 32, 2048), "GPT-3B": (24, 32, 3200),
             "GPT-7B": (32, 32, 4096)}


@dataclass
class LlamaGenConfig:
    """Upstream's ModelArgs (inference fields; defaults are upstream's), `gpt_type` for its model_type."""

    dim: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    num_classes: int = 1000
    class_dropout_prob: float = 0.1  # > 0: the class table has the CFG null row (index num_classes)
    gpt_type: str = "c2i"  # "c2i": a class label; "t2i": cls_token_num T5 caption embeddings of caption_dim
    caption_dim: int = 2048
    vocab_size: int = 16384  # image codes
    cls_token_num: int = 1  # condition positions (t2i: 120, the caption length upstream's T5 pads to)
    block_size: int = 256  # image tokens: side^2
    model_type: str = "llamagen"  # what load_pipeline dispatches on

    @classmethod
    def from_dict(cls, values: dict) -> "LlamaGenConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config: unknown LlamaGen keys {unknown} (known: {sorted(known)})")
        config = cls(**values)
        config.check()
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        side = round(self.block_size ** 0.5)
        problems = [f"block_size={self.block_size} is not a square" if side * side != self.block_size else None,
                    f"dim={self.dim} is not a multiple of n_head={self.n_head}" if self.dim % self.n_head else None,
                    f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}"
                    if self.n_kv_head and self.n_head % self.n_kv_head else None,
                    f"gpt_type={self.gpt_type!r}: expected 'c2i' (class-conditional) or 't2i' (text)"
                    if self.gpt_type not in ("c2i", "t2i") else None,
                    f"cls_token_num={self.cls_token_num}: a c2i model has one condition token"
                    if self.gpt_type == "c2i" and self.cls_token_num != 1 else None]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError(f"config: {'; '.join(problems)}")

    # transformers-style names read by the shared adapter, tree_size's shape key and the benchmarks
    @property
    def hidden_size(self) -> int:
        return self.dim

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layer

    @property
    def num_attention_heads(self) -> int:
        return self.n_head

    @property
    def num_key_value_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def intermediate_size(self) -> int:
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def grid_side(self) -> int:
        return round(self.block_size ** 0.5)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class FeedForward(nn.Module):
    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        hidden = config.intermediate_size
        self.w1 = nn.Linear(config.dim, hidden, bias=False)
        self.w3 = nn.Linear(config.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rotate(x: torch.Tensor, rotary: torch.Tensor) -> torch.Tensor:
    """x [B, q, heads, head_dim], rotary [B, q, head_dim // 2, 2] (cos, sin) -> x rotated pairwise, in float32
    and cast back (upstream apply_rotary_emb)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = rotary[:, :, None, :, 0], rotary[:, :, None, :, 1]
    out = torch.stack([pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], -1)
    return out.flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, config: LlamaGenConfig, layer_idx: int):
        super().__init__()
        self.layer_idx, self.n_head, self.n_kv_head = layer_idx, config.n_head, config.num_key_value_heads
        self.head_dim = config.dim // config.n_head
        self.wqkv = nn.Linear(config.dim, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x, rotary, mask, cache) -> torch.Tensor:
        rows, length, dim = x.shape
        kv = self.n_kv_head * self.head_dim
        q, k, v = self.wqkv(x).split([dim, kv, kv], dim=-1)
        q = rotate(q.view(rows, length, self.n_head, self.head_dim), rotary).transpose(1, 2)
        k = rotate(k.view(rows, length, self.n_kv_head, self.head_dim), rotary).transpose(1, 2)
        v = v.view(rows, length, self.n_kv_head, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        if self.n_kv_head != self.n_head:
            k, v = (t.repeat_interleave(self.n_head // self.n_kv_head, dim=1) for t in (k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.wo(out.transpose(1, 2).reshape(rows, length, dim))


class TransformerBlock(nn.Module):
    def __init__(self, config: LlamaGenConfig, layer_idx: int):
        super().__init__()
        self.attention, self.feed_forward = Attention(config, layer_idx), FeedForward(config)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)

    def forward(self, x, rotary, mask, cache) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rotary, mask, cache)
        return h + self.feed_forward(self.ffn_norm(h))


class LabelEmbedder(nn.Module):
    """c2i: one row per class (and the CFG null class)."""

    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        self.embedding_table = nn.Embedding(config.num_classes + int(config.class_dropout_prob > 0), config.dim)


class CaptionMLP(nn.Module):
    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.caption_dim, config.dim, bias=False)
        self.fc2 = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CaptionEmbedder(nn.Module):
    """t2i: T5 caption embeddings [.., caption_dim] -> the GPT's width (cap_proj), and the learned null caption
    (uncond_embedding [cls_token_num, caption_dim], the CFG branch's caption)."""

    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        self.cap_proj = CaptionMLP(config)
        self.register_buffer("uncond_embedding", torch.zeros(config.cls_token_num, config.caption_dim))


def rotary_table(config: LlamaGenConfig) -> torch.Tensor:
    """[cls_token_num + side^2, head_dim // 2, 2] (cos, sin) per position, built as upstream
    precompute_freqs_cis_2d builds it (float32, the condition rows zero)."""
    half = config.dim // config.n_head // 2
    freqs = 1.0 / (config.rope_base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    side = config.grid_side
    angles = torch.outer(torch.arange(side), freqs)  # [side, half // 2]
    grid = torch.cat([angles[:, None, :].expand(-1, side, -1), angles[None, :, :].expand(side, -1, -1)], dim=-1)
    table = torch.stack([torch.cos(grid), torch.sin(grid)], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(config.cls_token_num, half, 2), table])


class LlamaGenModel(nn.Module):
    """The GPT. forward(input_ids=class labels [B, 1] (c2i) | inputs_embeds=[B, q, dim], attention_mask
    (additive [B, 1, q, k]; None: causal), position_ids [B, q] (0.. over the condition, then the image tokens),
    cache) -> BaseModelOutputWithPast(last_hidden_state = the final norm's output [B, q, dim])."""

    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        config.check()
        self.config = config
        self.cls_embedding = LabelEmbedder(config) if config.gpt_type == "c2i" else CaptionEmbedder(config)
        self.text_encoder = None  # t2i: the T5 encoder of the captions (upstream keeps it outside the GPT; the loader
        #                           sets it, so it moves with the model and the adapter finds it)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layer))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.register_buffer("rotary", rotary_table(config), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.output

    def _apply(self, fn, recurse=True):
        # the rotary table stays float32 whatever dtype the weights take (upstream rotates in float32): rebuilt on
        # the weights' device, never cast (a bfloat16 round trip would change every angle)
        out = super()._apply(fn, recurse)
        self.rotary = rotary_table(self.config).to(self.tok_embeddings.weight.device)
        return out

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None,
                use_cache: bool = True):
        if inputs_embeds is None and self.config.gpt_type != "c2i":
            raise ValueError("input_ids: a t2i LlamaGen GPT reads caption embeddings (inputs_embeds), not ids")
        h = self.cls_embedding.embedding_table(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = torch.arange(h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
        rotary = self.rotary[position_ids.clamp(0, self.rotary.shape[0] - 1)]  # past the grid: never committed
        if attention_mask is not None and attention_mask.dim() == 2:  # [B, k] 1 = token (head training passes it)
            attention_mask = padding_mask(attention_mask, h)
        for layer in self.layers:
            h = layer(h, rotary, attention_mask, cache if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(h))  # a class torch.compile traces


def state_mismatch(state: dict, config: LlamaGenConfig) -> str | None:
    """How a state dict differs from the GPT `config` describes (names and shapes, from a model built on the meta
    device: nothing is allocated), or None when it matches: what the converter and the loader refuse."""
    with torch.device("meta"):
        expected = LlamaGenModel(config).state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}"
    return None


def padding_mask(valid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """A [B, k] padding mask as transformers takes it (1: a token, 0: left padding), over the whole sequence
    (no cache: q == k) -> the additive causal [B, 1, k, k] mask the attention takes (0 / finfo.min)."""
    if valid.shape != h.shape[:2]:
        raise ValueError(f"attention_mask: a 2-D mask covers the whole sequence without a cache, [B, q] = "
                         f"{list(h.shape[:2])}; got {list(valid.shape)} (with a cache, give the additive 4-D mask)")
    causal = torch.ones(valid.shape[1], valid.shape[1], dtype=torch.bool, device=h.device).tril()
    allowed = causal[None] & valid.to(device=h.device, dtype=torch.bool)[:, None, :]
    allowed |= torch.eye(valid.shape[1], dtype=torch.bool, device=h.device)  # padding sees itself, as in prefill
    zero = torch.zeros((), dtype=h.dtype, device=h.device)
    return torch.where(allowed, zero, torch.finfo(h.dtype).min)[:, None]  # in h's dtype (float64 included)
