"""Teacher-forcing sequences for head training: real MNIST digits -> VQ codes -> prompt + image body."""
from __future__ import annotations

import numpy as np
import torch

from .data import load_split


def demo_sequences(vq, vocab, split: str = "train", seed: int = 0, phrasings: int = 2):
    """-> (sequences [N, L] int64, body_start): every image with `phrasings` random prompt phrasings,
    prompts left-padded to one length so the image body starts at the same index."""
    images, labels = load_split(split)
    codes = vq.encode(images)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(phrasings):
        for code, label in zip(codes, labels):
            texts = vocab.all_prompt_texts(int(label))
            prompt = vocab.encode_prompt(texts[rng.integers(len(texts))])
            rows.append((prompt, vocab.codes_to_body(code)))
    width = max(len(p) for p, _ in rows)
    seqs = [[vocab.pad_id] * (width - len(p)) + p + body for p, body in rows]
    return torch.tensor(seqs, dtype=torch.int64), width
