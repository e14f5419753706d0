"""Reading token ids from a checkpoint's `config.vocabulary_map` (Emu3, Chameleon): the tokenizer's
name -> id table that transformers stores in the model config."""
from __future__ import annotations


def contiguous_range(ids, name: str) -> tuple[int, int]:
    """Sorted token ids that must form one block [lo, hi) (the grid's image_token_range)."""
    ids = sorted(int(i) for i in ids)
    if not ids or ids[-1] - ids[0] + 1 != len(ids):
        raise ValueError(f"model: the {name} ids are not one contiguous block (got {len(ids)} ids spanning "
                         f"{ids[0] if ids else None}..{ids[-1] if ids else None}); ImageGrid needs [lo, hi)")
    return ids[0], ids[-1] + 1


def vocab_id(vocabulary_map: dict, name: str) -> int:
    if name not in vocabulary_map:
        raise ValueError(f"model: config.vocabulary_map has no {name!r} token")
    return int(vocabulary_map[name])
