"""CPU smoke benchmark of the Janus, Emu3 and Lumina-mGPT pipelines on tiny random checkpoints (tests/tiny_families),
against transformers' own generation loop on the same model, in one run -> JSON.

Per family and batch size (1 and 4, sampling with the family's defaults):
  * pipeline AR (`pipe.generate_tokens(mode="ar")`, what `hawk generate --mode ar` runs): ms per image;
  * transformers' loop on the same weights: Janus `generate(generation_mode="image")` (CFG rows batched);
    Emu3 `generate` with the prefix constraint and the negative prompt (UnbatchedClassifierFreeGuidance: a
    second forward per token); Lumina-mGPT the same `generate` recipe on a Chameleon whose forward keeps
    image-token logits (as Lumina-mGPT's own class does; transformers' forward suppresses them);
  * Hawk with random-init heads (`make_heads()`): target passes and tokens per pass. A smoke number, not a claim:
    untrained heads on random weights say nothing about trained acceptance.
Token generation only (no pixel decoding) on both sides; medians of --repeats runs after one warm-up.

    python python/bench_families.py                      # -> benchmarks/results/families_cpu.json
    python python/bench_families.py --repeats 1 --batches 1 --out /tmp/f.json   # the smoke run CI does
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import median_seconds, report_header  # noqa: E402
from hawk_kernels.pipelines import load_pipeline  # noqa: E402
from tests.tiny_families import build_chameleon, build_emu3, build_janus  # noqa: E402
from tests.transformers_reference import janus_image_generate  # noqa: E402

PROMPT = "a red fox in the snow"
FAMILIES = {  # family -> (builder, builder kwargs, pipeline size): 8 x 8 codes each
    "janus": (build_janus, dict(side=8), None),
    "emu3": (build_emu3, {}, 64),
    "chameleon": (build_chameleon, {}, 128),
}


def timed(run, repeats: int) -> float:
    """Median wall seconds of run() over `repeats` calls, after one warm-up call (the benchmarks' CPU clock)."""
    return median_seconds(run, on_cuda=False, warmup=1, repeats=repeats)


def transformers_loop(pipe, rows, grid, batch: int):
    """A callable running the family's transformers generation on `batch` copies of the prompt."""
    model, defaults = pipe.model, pipe.defaults
    prompt = torch.tensor(rows.conditional[:1] * batch)
    mask = torch.ones_like(prompt)
    if pipe.family == "janus":
        return lambda: janus_image_generate(model, prompt, attention_mask=mask, do_sample=True,
                                            guidance_scale=defaults["cfg_scale"])
    generator = model if pipe.family == "emu3" else _unsuppressed_chameleon(model)
    negative = torch.tensor(rows.unconditional[:1] * batch)
    allowed = _layout_constraint(grid, prompt.shape[1])
    return lambda: generator.generate(prompt, attention_mask=mask, do_sample=True, top_k=defaults["top_k"],
                                      guidance_scale=defaults["cfg_scale"], negative_prompt_ids=negative,
                                      negative_prompt_attention_mask=torch.ones_like(negative),
                                      prefix_allowed_tokens_fn=allowed, max_new_tokens=grid.num_body_tokens + 1)


def _layout_constraint(grid, prompt_length: int):
    """prefix_allowed_tokens_fn: image codes, the row-end token at the end of every row, then the image end."""
    codes = list(range(*grid.image_token_range))

    def allowed(batch_id, input_ids):
        offset = input_ids.shape[0] - prompt_length
        if offset >= grid.num_body_tokens:
            return [grid.image_end_token]
        return [grid.row_end_token] if grid.is_forced(torch.tensor(offset)) else codes

    return allowed


def _unsuppressed_chameleon(model):
    """The same weights behind a forward that keeps image-token logits (Lumina-mGPT's generation needs them)."""
    from transformers import ChameleonForConditionalGeneration
    from transformers.modeling_outputs import CausalLMOutputWithPast

    class LuminaChameleon(ChameleonForConditionalGeneration):
        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    inputs_embeds=None, use_cache=None, logits_to_keep=0, **kwargs):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache)
            hidden = out.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else out.last_hidden_state
            return CausalLMOutputWithPast(logits=self.lm_head(hidden), past_key_values=out.past_key_values)

    wrapped = LuminaChameleon(model.config)
    wrapped.load_state_dict(model.state_dict())
    wrapped.generation_config = model.generation_config
    return wrapped.to(model.dtype).eval()


def bench_family(name: str, directory: Path, repeats: int, nodes: int, batches=(1, 4)) -> dict:
    build, kwargs, size = FAMILIES[name]
    build(directory, dtype=torch.float32, **kwargs)
    pipe = load_pipeline(directory, device="cpu")
    pipe.set_heads(pipe.make_heads())
    grid = pipe.layout(size)
    rows = pipe.prompt_rows([PROMPT], None, grid)
    result = dict(grid=[grid.height, grid.width], body_tokens=grid.num_body_tokens,
                  parameters=sum(p.numel() for p in pipe.model.parameters()), defaults=pipe.defaults, batches={})
    for batch in batches:
        prompts = [PROMPT] * batch
        ar = timed(lambda: pipe.generate_tokens(prompts, mode="ar", size=size, seed=0), repeats)
        reference = timed(transformers_loop(pipe, rows, grid, batch), repeats)
        hawk_out = pipe.generate_tokens(prompts, mode="hawk", size=size, seed=0, num_nodes=nodes)
        hawk = timed(lambda: pipe.generate_tokens(prompts, mode="hawk", size=size, seed=0, num_nodes=nodes), repeats)
        result["batches"][str(batch)] = dict(
            ar_ms_per_image=1e3 * ar / batch, transformers_ms_per_image=1e3 * reference / batch,
            transformers_over_ar=reference / ar, hawk_random_heads_ms_per_image=1e3 * hawk / batch,
            hawk_random_heads_passes=hawk_out.total_forward_passes, ar_passes=grid.num_body_tokens - 1,
            hawk_random_heads_tokens_per_pass=hawk_out.tokens_per_pass)
        print(name, batch, json.dumps(result["batches"][str(batch)]), flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "families_cpu.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=16, help="tree nodes for the Hawk smoke run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes (the smoke run: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    report = dict(**report_header("cpu", argv, "python/bench_families.py"), threads=args.threads, families={})
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families:
            report["families"][name] = bench_family(name, Path(tmp) / name, args.repeats, args.nodes, args.batches)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
