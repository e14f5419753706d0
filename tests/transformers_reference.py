"""transformers' own generation, as the tests and benchmarks call it to compare with ours.

`janus_image_generate`: `JanusForConditionalGeneration.generate(generation_mode="image")`. Before transformers 5.25
(5.17 is the GPU machine's), Janus's image generate calls `GenerationMixin._prepare_static_cache` without the
`prefill_chunk_size` that method requires, and raises TypeError before its first token; 5.25 passes
`generation_config.prefill_chunk_size`. Here that same value is supplied when the call leaves it out, on the model
instance and for the one call only: the generation itself is transformers' own code, unchanged.
"""
from __future__ import annotations


def janus_image_generate(model, input_ids, **kwargs):
    """model.generate(input_ids, generation_mode="image", **kwargs), on every transformers 5.x the project supports."""
    original = model._prepare_static_cache  # bound method of GenerationMixin

    def prepare_static_cache(*args, **kw):
        if len(args) < 4 and "prefill_chunk_size" not in kw:  # transformers < 5.25 leaves it out
            kw["prefill_chunk_size"] = getattr(model.generation_config, "prefill_chunk_size", None)
        return original(*args, **kw)

    model._prepare_static_cache = prepare_static_cache
    try:
        return model.generate(input_ids, generation_mode="image", **kwargs)
    finally:
        del model._prepare_static_cache
