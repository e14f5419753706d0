"""An independent reference for LlamaGen's c2i GPT and its generation loop: a compact transcription of upstream
FoundationVision/LlamaGen at commit ce98ec4 (MIT licence), `autoregressive/models/gpt.py` (Transformer, inference
path, with its own KV cache and causal mask), `autoregressive/models/generate.py` (generate, prefill,
decode_one_token, sample, top_k_top_p_filtering), and for t2i `language/t5.py` (T5Embedder.get_text_embeddings,
without its caption cleaning: use_text_preprocessing=False lowercases and strips) and
`autoregressive/sample/sample_t2i.py` (its left-padding of the captions). Dropout, drop-path and training are
left out. It does not import hawk_kernels: tests compare the package against it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000
    norm_eps: float = 1e-5
    num_classes: int = 1000
    class_dropout_prob: float = 0.1
    vocab_size: int = 16384
    cls_token_num: int = 1
    block_size: int = 256
    caption_dim: int = 2048
    model_type: str = "c2i"


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels):
        return self.embedding_table(labels).unsqueeze(1)


class MLP(nn.Module):
    def __init__(self, in_features, hidden_features, out_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features, bias=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    def __init__(self, in_channels, hidden_size, uncond_prob, token_num=120):
        super().__init__()
        self.cap_proj = MLP(in_features=in_channels, hidden_features=hidden_size, out_features=hidden_size)
        self.register_buffer("uncond_embedding", nn.Parameter(torch.randn(token_num, in_channels) / in_channels ** 0.5))

    def forward(self, caption):
        return self.cap_proj(caption)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(torch.mean(x32 * x32, dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class FeedForward(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden_dim = int(2 * (4 * config.dim) / 3)
        if config.ffn_dim_multiplier is not None:
            hidden_dim = int(config.ffn_dim_multiplier * hidden_dim)
        hidden_dim = find_multiple(hidden_dim, config.multiple_of)
        self.w1 = nn.Linear(config.dim, hidden_dim, bias=False)
        self.w3 = nn.Linear(config.dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, config.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class KVCache(nn.Module):
    def __init__(self, max_batch_size, max_seq_length, n_head, head_dim, dtype):
        super().__init__()
        shape = (max_batch_size, n_head, max_seq_length, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype))

    def update(self, input_pos, k_val, v_val):
        self.k_cache[:, :, input_pos] = k_val
        self.v_cache[:, :, input_pos] = v_val
        return self.k_cache, self.v_cache


def apply_rotary_emb(x, freqs_cis):
    xshaped = x.float().reshape(*x.shape[:-1], -1, 2)
    freqs_cis = freqs_cis.view(1, xshaped.size(1), 1, xshaped.size(3), 2)
    x_out2 = torch.stack([xshaped[..., 0] * freqs_cis[..., 0] - xshaped[..., 1] * freqs_cis[..., 1],
                          xshaped[..., 1] * freqs_cis[..., 0] + xshaped[..., 0] * freqs_cis[..., 1]], dim=-1)
    return x_out2.flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dim, self.head_dim, self.n_head = config.dim, config.dim // config.n_head, config.n_head
        self.n_kv_head = config.n_kv_head if config.n_kv_head is not None else config.n_head
        self.wqkv = nn.Linear(config.dim, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)
        self.kv_cache = None

    def forward(self, x, freqs_cis, input_pos, mask):
        bsz, seqlen, _ = x.shape
        kv_size = self.n_kv_head * self.head_dim
        xq, xk, xv = self.wqkv(x).split([self.dim, kv_size, kv_size], dim=-1)
        xq = apply_rotary_emb(xq.view(bsz, seqlen, self.n_head, self.head_dim), freqs_cis)
        xk = apply_rotary_emb(xk.view(bsz, seqlen, self.n_kv_head, self.head_dim), freqs_cis)
        xv = xv.view(bsz, seqlen, self.n_kv_head, self.head_dim)
        xq, xk, xv = (t.transpose(1, 2) for t in (xq, xk, xv))
        keys, values = self.kv_cache.update(input_pos, xk, xv) if self.kv_cache is not None else (xk, xv)
        keys = keys.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        values = values.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        out = F.scaled_dot_product_attention(xq, keys, values, attn_mask=mask, is_causal=mask is None)
        return self.wo(out.transpose(1, 2).contiguous().view(bsz, seqlen, self.dim))


class TransformerBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention, self.feed_forward = Attention(config), FeedForward(config)
        self.attention_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, eps=config.norm_eps)

    def forward(self, x, freqs_cis, start_pos, mask=None):
        h = x + self.attention(self.attention_norm(x), freqs_cis, start_pos, mask)
        return h + self.feed_forward(self.ffn_norm(h))


def precompute_freqs_cis_2d(grid_size, n_elem, base=10000, cls_token_num=120):
    half_dim = n_elem // 2
    freqs = 1.0 / (base ** (torch.arange(0, half_dim, 2)[: (half_dim // 2)].float() / half_dim))
    t = torch.arange(grid_size, device=freqs.device)
    freqs = torch.outer(t, freqs)
    freqs_grid = torch.concat([freqs[:, None, :].expand(-1, grid_size, -1),
                               freqs[None, :, :].expand(grid_size, -1, -1)], dim=-1)
    cache_grid = torch.stack([torch.cos(freqs_grid), torch.sin(freqs_grid)], dim=-1)
    cache = cache_grid.flatten(0, 1)
    return torch.cat([torch.zeros(cls_token_num, n_elem // 2, 2), cache])


class Transformer(nn.Module):
    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config, self.num_classes, self.cls_token_num = config, config.num_classes, config.cls_token_num
        self.model_type = config.model_type
        if config.model_type == "c2i":
            self.cls_embedding = LabelEmbedder(config.num_classes, config.dim, config.class_dropout_prob)
        else:
            self.cls_embedding = CaptionEmbedder(config.caption_dim, config.dim, config.class_dropout_prob,
                                                 config.cls_token_num)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        grid_size = int(config.block_size ** 0.5)
        self.freqs_cis = precompute_freqs_cis_2d(grid_size, config.dim // config.n_head, config.rope_base,
                                                 config.cls_token_num)

    def setup_caches(self, max_batch_size, max_seq_length, dtype):
        head_dim = self.config.dim // self.config.n_head
        max_seq_length = find_multiple(max_seq_length, 8)
        for b in self.layers:
            b.attention.kv_cache = KVCache(max_batch_size, max_seq_length, self.config.n_head, head_dim, dtype)
        causal = torch.tril(torch.ones(max_seq_length, max_seq_length, dtype=torch.bool))
        self.causal_mask = causal.unsqueeze(0).repeat(max_batch_size, 1, 1)

    def forward(self, idx, cond_idx, input_pos):
        if cond_idx is not None:  # prefill
            token_embeddings = self.cls_embedding(cond_idx)[:, : self.cls_token_num]
        else:
            token_embeddings = self.tok_embeddings(idx)
        mask = self.causal_mask[: token_embeddings.shape[0], None, input_pos]
        h = token_embeddings
        freqs_cis = self.freqs_cis[input_pos]
        for layer in self.layers:
            h = layer(h, freqs_cis, input_pos, mask)
        return self.output(self.norm(h)).float()


def sample(logits, temperature=1.0, top_k=0, sample_logits=True, generator=None):
    logits = logits[:, -1, :] / max(temperature, 1e-5)
    if top_k > 0:
        top_k = min(top_k, logits.size(-1))
        logits[logits < torch.topk(logits, top_k)[0][..., -1, None]] = -float("Inf")
    probs = F.softmax(logits, dim=-1)
    if sample_logits:
        return torch.multinomial(probs, num_samples=1, generator=generator)
    return torch.topk(probs, k=1, dim=-1)[1]


def cfg_logits(logits, cfg_scale):
    if cfg_scale > 1.0:
        cond, uncond = torch.split(logits, len(logits) // 2, dim=0)
        return uncond + (cond - uncond) * cfg_scale
    return logits


@torch.no_grad()
def generate(model, cond, max_new_tokens, emb_masks=None, cfg_scale=1.0, **sampling):
    """upstream generate: class labels [B] (c2i) or left-padded caption embeddings [B, T, caption_dim] with their
    masks [B, T] (t2i) -> codes [B, max_new_tokens]."""
    if model.model_type == "c2i":
        cond_combined = torch.cat([cond, torch.ones_like(cond) * model.num_classes]) if cfg_scale > 1.0 else cond
        T = 1
    else:
        cond_null = torch.zeros_like(cond) + model.cls_embedding.uncond_embedding
        cond_combined = torch.cat([cond, cond_null]) if cfg_scale > 1.0 else cond
        T = cond.shape[1]
    model.setup_caches(len(cond_combined), T + max_new_tokens, model.tok_embeddings.weight.dtype)
    if emb_masks is not None:
        masks = torch.cat([emb_masks, emb_masks]) if cfg_scale > 1.0 else emb_masks
        model.causal_mask[:, :, :T] = model.causal_mask[:, :, :T] * masks.unsqueeze(1)
        eye = torch.eye(model.causal_mask.size(1), model.causal_mask.size(2))
        model.causal_mask[:] = model.causal_mask * (1 - eye) + eye
    input_pos = torch.arange(0, T)
    token = sample(cfg_logits(model(None, cond_combined, input_pos), cfg_scale), **sampling)
    tokens = [token]
    input_pos = torch.tensor([T], dtype=torch.int)
    for _ in range(max_new_tokens - 1):
        x = torch.cat([token, token]) if cfg_scale > 1.0 else token
        token = sample(cfg_logits(model(x, None, input_pos), cfg_scale), **sampling)
        input_pos += 1
        tokens.append(token)
    return torch.cat(tokens, dim=1)


@torch.no_grad()
def caption_embeddings(tokenizer, t5, prompts, max_length=120):
    """T5Embedder.get_text_embeddings (use_text_preprocessing=False: lower().strip()), then sample_t2i.py's
    left-padding: (c_indices [B, T, d] with the padding zeroed, emb_masks [B, T])."""
    texts = [text.lower().strip() for text in prompts]
    tokens = tokenizer(texts, max_length=max_length, padding="max_length", truncation=True,
                       return_attention_mask=True, add_special_tokens=True, return_tensors="pt")
    caption_embs = t5(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])["last_hidden_state"]
    emb_masks = tokens["attention_mask"]
    new_emb_masks = torch.flip(emb_masks, dims=[-1])
    new_caption_embs = []
    for caption_emb, emb_mask in zip(caption_embs, emb_masks):
        valid_num = int(emb_mask.sum().item())
        new_caption_embs.append(torch.cat([caption_emb[valid_num:], caption_emb[:valid_num]]))
    new_caption_embs = torch.stack(new_caption_embs)
    return new_caption_embs * new_emb_masks[:, :, None], new_emb_masks
