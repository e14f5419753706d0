"""End-to-end decode benchmarks in ONE run (issue 5): JSON + PNG under --out (default benchmarks/results/).

0. the device's copy bandwidth, measured first (timing.copy_bandwidth: a device-to-device copy, median of
   several; bytes read + written): every floor below divides by it;
1. bundled demo model: every mode (AR, Medusa, vertical-only, Hawk, Jacobi, Hawk+Jacobi), eager and
   CUDA-graph-captured: target passes, committed tokens per pass, ms per image (batch 1, CFG 3, temperature 1),
   speedup over eager AR;
2. a Lumina-mGPT-7B-shaped Llama (hidden 4096, 32 layers, 65536 vocabulary, random bf16 weights) at the
   768px layout (48x48 + row-end = 2352 body tokens) with CFG (2 rows): ms per plain step and per Hawk
   step for trees of 16..128 nodes, eager and graphed, against the weight-streaming floor (weight bytes /
   measured copy bandwidth; beside it the stricter floor of the bytes a step reads: streamed_bytes), and the
   projected seconds per image at the bundled model's tokens per pass at the same tree size (measured in the run);
3. the transformers `generate` loop on the same backbone (2 rows, sampling): ms per token, the baseline a
   user has today.

    python benchmarks/e2e.py                           # everything (sections 2 and 3 at the 7B shape need a GPU)
    python benchmarks/e2e.py --smoke --out DIR         # every section at a tiny shape: < 2 min on one CPU thread
    python benchmarks/e2e.py --skip-7b --images 2      # section 1 only

--smoke runs sections 1-3 on whatever device there is, at CPU-sized shapes: one image per mode of the bundled
model, sections 2 and 3 on a tiny Llama (hidden 64, 2 layers, 512 vocabulary, 6x6 layout) with trees of 4
and 8 nodes. It writes the same JSON layout and PNG (e2e_smoke_<device>.*), so CI catches a script that
would crash on the GPU (tests/test_benchmarks_smoke.py). Without --smoke, a CPU run skips sections 2-3.
Timing: CUDA events on a GPU, time.perf_counter on a CPU; warm-up first, medians; wall clock around images.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback

import torch

import hawk_kernels as hk
from hawk_kernels.cli.common import COMPILE_WORDS
from hawk_kernels.engine import step as step_module
from hawk_kernels.engine.compiled import INDUCTOR_OPTIONS
from cuda_codegen import inductor_option
from timing import copy_bandwidth, failure, median_seconds, report_header

MODES = hk.MODES
LUMINA_IMAGE_START = 8197  # Lumina-mGPT prompts end with the image-start token
# The backbones of sections 2 and 3: the Lumina-mGPT-7B shape, and the tiny one of --smoke.
SHAPES = {
    "7b": dict(label="Lumina-mGPT-7B shape, 768px", vocab=65536, hidden=4096, intermediate=11008, layers=32,
               attention_heads=32, positions=4096, prompt_tokens=(10, 8000), image_start=LUMINA_IMAGE_START,
               horizontal=4, vertical=2),
    "tiny": dict(label="tiny Llama (smoke), 6x6 layout", vocab=512, hidden=64, intermediate=128, layers=2,
                 attention_heads=4, positions=512, prompt_tokens=(303, 512), image_start=302, horizontal=2,
                 vertical=1),
}


def shape_grid(name: str) -> hk.ImageGrid:
    if name == "7b":
        return hk.ImageGrid.lumina_mgpt(768)
    return hk.ImageGrid(height=6, width=6, row_end_token=300, image_token_range=(4, 260), image_end_token=301)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundled(device, images: int, nodes: int, graphs: list[bool], modes=MODES) -> list[dict]:
    pipe = hk.load_demo_pipeline(device=device)
    prompts = [f"a handwritten digit {w}" for w in ("zero one two three four five six seven eight nine".split())]
    rows = []
    for graphed in graphs:
        for mode in modes:
            # the decoder generate() runs for (mode, nodes): "ar" runs the 1-node AR decoder whatever num_nodes is
            decoder = pipe.decoder(mode, num_nodes=1 if mode == "ar" else nodes)
            decoder.cuda_graphs = graphed
            pipe.generate(prompts[:1], mode=mode, seed=999, decoder=decoder)  # warm-up: Triton/cuBLAS init
            seconds, passes, tokens, used_graph, fallbacks = [], [], [], False, {}
            for i in range(images):
                sync(device)
                start = time.perf_counter()
                out = pipe.generate([prompts[i % len(prompts)]], mode=mode, seed=i, decoder=decoder)
                sync(device)
                seconds.append(time.perf_counter() - start)
                passes.append(out.num_forward_passes[0])
                tokens.append(sum(step[0] for step in out.outputs[0].accepted_lengths))  # committed by passes
                used_graph = used_graph or out.outputs[0].cuda_graph
                fallbacks.update(out.outputs[0].fallbacks)  # e.g. why a capture fell back to eager
            rows.append(dict(mode=mode, cuda_graphs_requested=graphed, cuda_graph_used=used_graph, images=images,
                             warmup_images=1, num_nodes=decoder.tree.num_nodes, passes_per_image=statistics.mean(passes),
                             tokens_per_pass=sum(tokens) / sum(passes), ms_per_image=1e3 * statistics.median(seconds),
                             fallbacks=fallbacks))
            print(json.dumps(rows[-1]), flush=True)
    base = {r["cuda_graphs_requested"]: r for r in rows if r["mode"] == "ar"}
    eager_ar = base.get(False) or rows[0]
    for r in rows:
        r["speedup_vs_eager_ar"] = eager_ar["ms_per_image"] / r["ms_per_image"]
        same = base.get(r["cuda_graphs_requested"])
        if same:
            r["speedup_vs_ar_same_engine"] = same["ms_per_image"] / r["ms_per_image"]
    return rows


def llama(device, shape: dict, layers: int, dtype: torch.dtype):
    """A randomly initialised LlamaForCausalLM of `shape` on `device`, and its weight bytes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"],
                         intermediate_size=shape["intermediate"], num_hidden_layers=layers,
                         num_attention_heads=shape["attention_heads"], num_key_value_heads=shape["attention_heads"],
                         max_position_embeddings=shape["positions"], attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return model, weight_bytes


def big_model(device, layers: int):
    """The Lumina-mGPT-7B-shaped Llama (bf16), as benchmarks/heads_training.py uses it too."""
    return llama(device, SHAPES["7b"], layers, torch.bfloat16)


def time_steps(session, device, steps: int) -> float:
    """Median ms per step over `steps` single steps (CUDA events on a GPU, perf_counter on a CPU)."""
    return 1e3 * median_seconds(lambda: session.run(1), device.type == "cuda", warmup=0, repeats=steps)


KERNEL_KINDS = (  # kernel name fragments -> what a step's device time went to (kernel_breakdown)
    ("gemm", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "aten::mm", "aten::addmm", "aten::bmm", "matmul")),
    ("attention", ("flash", "fmha", "attention", "flex", "sdpa")),
    ("hawk ops", ("hawk", "accept_reject", "draft_heads", "philox", "tree_mask")),
    ("copy", ("memcpy", "memset", "copy")),
    ("fused (triton / inductor)", ("triton_", "cpp_fused", "compiledfxgraph")),
)


def kernel_breakdown(session, device, steps: int = 3, top: int = 12, unrolled: bool = False) -> dict:
    """Where the steps' time goes: per step, the `top` CUDA kernels (CPU: operators, self time) by total time,
    and the time per kind (KERNEL_KINDS). Profiled over `steps` steps after the timed ones (torch.profiler).
    Kernels replayed from a CUDA graph are listed only where CUPTI traces graph nodes; where it does not (fewer
    than 3 kernels listed), or with unrolled=True, the steps are profiled again as direct calls of the session's
    step (the compiled one if compiled, outside the graph: the same kernels, launched one by one), and `source`
    says which was profiled."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"

    def profiled(run) -> list[dict]:
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            run()
            sync(device)
        rows = []
        for avg in prof.key_averages():
            on_device = getattr(avg, "device_type", None) == torch.autograd.DeviceType.CUDA
            if cuda and not on_device:
                continue
            us = (getattr(avg, "self_device_time_total", 0) or getattr(avg, "self_cuda_time_total", 0)) if cuda \
                else avg.self_cpu_time_total
            if us > 0:
                rows.append(dict(name=avg.key[:120], calls_per_step=avg.count / steps, us_per_step=us / steps))
        return sorted(rows, key=lambda r: -r["us_per_step"])

    @torch.no_grad()  # as session.run: under grad mode a compiled step would compile again (a minute at 7B)
    def direct():
        step = session.compiled if session.compiled is not None else step_module.step
        for _ in range(steps):
            step(session.plan, session.state)

    source = "graph replays" if session.graphed else "steps"
    rows = [] if unrolled else profiled(lambda: session.run(steps))
    if unrolled or len(rows) < 3:
        source = "direct calls of the step" + (" (graph replays were not traced)" if not unrolled else "")
        rows = profiled(direct)
    kinds: dict[str, float] = {}
    for r in rows:
        name = r["name"].lower()
        kind = next((k for k, parts in KERNEL_KINDS if any(p in name for p in parts)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + r["us_per_step"]
    return dict(unit="CUDA kernels" if cuda else "CPU operators (self time)", steps=steps, source=source,
                us_per_step=sum(r["us_per_step"] for r in rows), by_kind=kinds, top=rows[:top])


def seven_b(device, node_counts, layers: int, steps: int, graphs: list[bool], bandwidth: dict,
            shape_name: str = "7b", new_tokens: int = 64, attentions: tuple[str, ...] = ("sdpa",),
            compile="auto", tree_modes: tuple[str, ...] = ("hawk",), profile_steps: int = 0) -> dict:
    """Sections 2 and 3 on the backbone `shape_name` (SHAPES): step times per tree size, eager and graphed, per
    attention implementation (flex_attention: block masks bounded to the filled slots; graphed only), against
    the weight-streaming floor at the measured copy bandwidth; then transformers `generate`."""
    shape = SHAPES[shape_name]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, weight_bytes = llama(device, shape, layers, dtype)
    grid = shape_grid(shape_name)
    heads = hk.DraftHeads(shape["hidden"], shape["vocab"], num_horizontal=shape["horizontal"],
                          vertical_depth=shape["vertical"], image_token_range=grid.image_token_range,
                          dtype=dtype).to(device)
    prompt = torch.randint(*shape["prompt_tokens"], (1, 32), device=device)
    prompt[:, -1] = shape["image_start"]
    floor_ms = 1e3 * weight_bytes / bandwidth["copy_bytes_per_s"]
    streamed = streamed_bytes(model, grid)
    result = dict(shape=shape_name, label=shape["label"], dtype=str(dtype).replace("torch.", ""), layers=layers,
                  hidden=shape["hidden"], vocab=shape["vocab"], layout=[grid.height, grid.width],
                  body_tokens=grid.num_body_tokens, weight_bytes=weight_bytes,
                  copy_bytes_per_s=bandwidth["copy_bytes_per_s"], floor_ms=floor_ms, streamed_bytes=streamed,
                  streamed_floor_ms=1e3 * streamed / bandwidth["copy_bytes_per_s"], warmup_steps=WARMUP_STEPS,
                  timed_steps=steps, statistic="median ms per step over timed_steps single steps, after warmup_steps",
                  steps=[])
    runs = [(a, g) for a in attentions for g in graphs if a == "sdpa" or g or len(graphs) == 1]
    for attention, graphed in runs:
        model.set_attn_implementation(attention)
        # by tree size first: under a deadline the smaller trees of every mode come back first
        for mode, nodes in [("ar", 1)] + [(m, n) for n in node_counts for m in tree_modes]:
            try:
                row = _seven_b_row(model, heads, grid, prompt, mode, nodes, attention, graphed, compile, device,
                                   steps, floor_ms, result["streamed_floor_ms"], profile_steps)
            except Exception as error:  # noqa: BLE001 - recorded (and the exit status says so); the next row runs
                traceback.print_exc()
                row = dict(mode=mode, num_nodes=nodes, attention=attention, cuda_graphs_requested=graphed,
                           **failure(error))
            result["steps"].append(row)
            print(json.dumps(row), flush=True)
            gc.collect()  # out here: inside the except block its traceback still held the row's session
            if device.type == "cuda":
                torch.cuda.empty_cache()
    model.set_attn_implementation("sdpa")
    try:
        per_token = _transformers_ms_per_token(model, prompt, new_tokens, device)
    except Exception as error:  # noqa: BLE001 - recorded beside the step rows
        traceback.print_exc()
        result["transformers_generate_failed"] = f"{type(error).__name__}: {error}"
    else:
        result["transformers_generate_new_tokens"] = new_tokens
        result["transformers_generate_repeats"] = GENERATE_REPEATS
        result["transformers_generate_ms_per_token"] = per_token
        result["transformers_generate_ratio_to_floor"] = per_token / floor_ms
        print("transformers generate ms/token", per_token, flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def streamed_bytes(model, grid: hk.ImageGrid) -> int:
    """The weight bytes a decode step must read: every parameter but the input embedding (a step gathers a few of
    its rows) and the output head, of which only the image rows are read (the backbone adapter's copy,
    grid.local_vocab_size rows). floor_ms counts every parameter, as issue 20 defines the floor; this is the
    stricter one (about 7% less at the 7B shape), reported beside it."""
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    skipped = {id(embed): embed, id(head): head}.values()  # tied weights: counted once
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total - sum(w.numel() * w.element_size() for w in skipped) + \
        grid.local_vocab_size * head.shape[1] * head.element_size()


GENERATE_REPEATS = 3  # timed calls of transformers generate (the median is reported)
WARMUP_STEPS = 3  # untimed steps of each 7B-shape row: the first compiles, the second captures, the third replays


def _seven_b_row(model, heads, grid, prompt, mode, nodes, attention, graphed, compile, device, steps, floor_ms,
                 streamed_floor_ms, profile_steps) -> dict:
    """One 7B-shape step row: a decoder of `mode` and `nodes`, three steps (compiling, capturing), then timed."""
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=max(nodes, 2), cuda_graphs=graphed,
                         compile=compile)
    session = dec.start(prompt, cfg_scale=3.0, seed=0)
    began = time.perf_counter()
    session.run(WARMUP_STEPS)  # eager warm-up (compiling), capture, first replay
    sync(device)
    first_steps_s = time.perf_counter() - began
    ms = time_steps(session, device, steps)
    row = dict(mode=mode, num_nodes=dec.tree.num_nodes, attention=attention, cuda_graphs_requested=graphed,
               cuda_graph=session.graphed, fallback_reason=session.runner.fallback_reason,
               compiled=session.compiled is not None and session.compiled.active,
               compile_failure=session.compiled.fallback_reason if session.compiled is not None else None,
               compiled_layers_as_one_region=session.compiled is not None and session.compiled.regional,
               regional_compile_failure=session.compiled and session.compiled.regional_failure,
               first_three_steps_s=first_steps_s,
               compile_s=session.compiled.compile_seconds if session.compiled is not None else 0.0,
               kernel_backends=dec.plan.kernels.backends(),
               ms_per_step=ms, ratio_to_floor=ms / floor_ms, ratio_to_streamed_floor=ms / streamed_floor_ms)
    if profile_steps:
        row["kernels"] = kernel_breakdown(session, device, profile_steps)
    return row


def _transformers_ms_per_token(model, prompt, new_tokens: int, device, repeats: int = GENERATE_REPEATS) -> float:
    """transformers generate: 2 rows (cond + uncond, as CFG needs), sampling, DynamicCache, eager; the median of
    `repeats` timed calls of `new_tokens` tokens each (prefill included), after one short warm-up call."""
    ids = prompt.repeat(2, 1)
    model.generate(ids, max_new_tokens=min(8, new_tokens), do_sample=True, top_k=0, pad_token_id=0)  # warm-up

    def call():
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_k=0,
                       pad_token_id=0)
        sync(device)

    sync(device)  # wall clock (the generate loop syncs on the host every token): perf_counter on either device
    return 1e3 * median_seconds(call, False, warmup=0, repeats=repeats) / new_tokens


def tree_key(mode: str, nodes: int) -> str:
    return f"{mode}@{nodes}"


def bundled_tokens_per_pass(device, bundled_rows: list[dict], trees: set, images: int) -> dict:
    """{tree_key(mode, nodes): the bundled model's committed tokens per pass} for every (mode, nodes) of `trees`:
    from the bundled section's rows where it ran that tree, else measured here (`images` images each, eager: the
    rate does not depend on the engine). What a 7B step's projection multiplies by."""
    out = {tree_key(r["mode"], r["num_nodes"]): r["tokens_per_pass"] for r in bundled_rows}
    missing = sorted((m, n) for m, n in trees if tree_key(m, n) not in out)
    for nodes in sorted({n for _, n in missing}):
        for r in bundled(device, images, nodes, [False], [m for m, n in missing if n == nodes]):
            out[tree_key(r["mode"], nodes)] = r["tokens_per_pass"]
    return {key: out[key] for key in sorted(tree_key(m, n) for m, n in trees)}


def project(result: dict, tokens_per_pass: dict, num_body: int) -> dict:
    """Seconds per image of the section-2 layout (num_body tokens) from its measured step times and the bundled
    model's tokens per pass of each tree ({tree_key(mode, nodes): tokens per pass}); a tree step without one is
    not projected (1 token per pass would make every tree read slower than AR)."""
    out = {}
    for r in (r for r in result["steps"] if "ms_per_step" in r):  # not the rows that failed
        engine = ("graphed" if r["cuda_graph"] else "eager") + ("" if r["attention"] == "sdpa" else "_flex")
        if r["mode"] == "ar":
            out[f"{engine}_ar_s"] = num_body * r["ms_per_step"] / 1e3
        elif tree_key(r["mode"], r["num_nodes"]) in tokens_per_pass:
            rate = tokens_per_pass[tree_key(r["mode"], r["num_nodes"])]
            out[f"{engine}_{r['mode']}_{r['num_nodes']}_s"] = num_body / rate * r["ms_per_step"] / 1e3
    if "transformers_generate_ms_per_token" in result:
        out["transformers_generate_s"] = num_body * result["transformers_generate_ms_per_token"] / 1e3
    return out


def plot(report: dict, path: str) -> None:
    try:  # an optional extra (the test extra brings it, through mlxtend); the JSON is the result
        import matplotlib
    except ImportError:
        print(f"no plot ({path}): matplotlib is not installed (pip install matplotlib)", flush=True)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = report["bundled"]
    labels = [f"{r['mode']}\n{'graph' if r['cuda_graph_used'] else 'eager'}" for r in rows]
    axes[0].bar(range(len(rows)), [r["ms_per_image"] for r in rows], color=["C0" if not r["cuda_graph_used"] else "C1" for r in rows])
    axes[0].set_xticks(range(len(rows)), labels, fontsize=7)
    axes[0].set_ylabel("ms per image")
    axes[0].set_title(f"bundled model ({report['device']})")
    if report.get("seven_b"):
        big = report["seven_b"]
        timed = [r for r in big["steps"] if "ms_per_step" in r]  # not the rows that failed
        engines = dict.fromkeys((r["cuda_graph"], r["attention"]) for r in timed)
        tree_modes = dict.fromkeys(r["mode"] for r in timed if r["mode"] != "ar")
        for k, ((graphed, attention), mode) in enumerate((e, m) for e in engines for m in tree_modes):
            same = [r for r in timed if (r["cuda_graph"], r["attention"]) == (graphed, attention)]
            pts = [(r["num_nodes"], r["ms_per_step"]) for r in same if r["mode"] in ("ar", mode)]
            label = f"{'graphed' if graphed else 'eager'}, {attention}, {mode}"
            axes[1].plot(*zip(*pts), "o-", color=f"C{k % 10}", label=label)
        axes[1].axhline(big["floor_ms"], color="k", ls="--",
                        label=f"floor: weights / copy {big['copy_bytes_per_s'] / 1e9:.0f} GB/s")
        if "transformers_generate_ms_per_token" in big:
            axes[1].axhline(big["transformers_generate_ms_per_token"], color="C3", ls=":", label="transformers generate")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("tree nodes (1 = plain AR step)")
        axes[1].set_ylabel("ms per step (CFG, 2 rows)")
        axes[1].set_title(big["label"])
        axes[1].legend()
    else:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "7B-shape step timings: GPU only (--smoke: tiny shape)", ha="center",
                     va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--smoke", action="store_true", help="every section at a tiny shape (CPU smoke run, CI)")
    ap.add_argument("--images", type=int, default=None, help="images per mode (default 10; --smoke: 1)")
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--skip-7b", action="store_true")
    ap.add_argument("--skip-bundled", action="store_true")
    ap.add_argument("--bundled-modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--tree-modes", nargs="+", default=["hawk"], choices=[m for m in MODES if m != "ar"],
                    help="drafting modes of the 7B section's tree steps")
    ap.add_argument("--name", default=None, help="suffix of the result files (several runs into one --out)")
    ap.add_argument("--layers", type=int, default=None, help="backbone layers (default 32; --smoke: 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per tree (default 20; --smoke: 3)")
    ap.add_argument("--trees", type=int, nargs="*", default=None, help="tree sizes (default 16 32 64 128; "
                                                                          "--smoke: 4 8)")
    ap.add_argument("--graphs", choices=("both", "on"), default="both",
                    help="CUDA: time eager and graphed steps (both) or graphed only (on)")
    ap.add_argument("--compile", choices=tuple(COMPILE_WORDS), default="auto",
                    help="compile the decode step (auto: on CUDA); each tree size compiles once, about a minute "
                         "at the 7B shape")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="7B section: profile this many steps per row after timing them (kernels by time, per kind)")
    ap.add_argument("--inductor-option", action="append", default=[], metavar="NAME=VALUE",
                    help="an inductor config value for the compiled steps, on top of the decoder's "
                         "(engine/compiled.INDUCTOR_OPTIONS; VALUE as JSON), e.g. combo_kernels=true: an A/B of a "
                         "fusion choice benchmarks/cuda_codegen.py predicts (recorded as inductor_options)")
    ap.add_argument("--attention", nargs="+", default=None, choices=("sdpa", "flex_attention"),
                    help="attention implementations of the 7B section (default sdpa, and flex_attention on CUDA)")
    args = ap.parse_args()
    began = time.perf_counter()
    smoke = args.smoke
    images = args.images or (1 if smoke else 10)
    layers = args.layers or (SHAPES["tiny"]["layers"] if smoke else SHAPES["7b"]["layers"])
    steps = args.steps or (3 if smoke else 20)
    trees = args.trees if args.trees is not None else ([4, 8] if smoke else [16, 32, 64, 128])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    graphs = ([False, True] if args.graphs == "both" else [True]) if device.type == "cuda" else [False]
    if device.type == "cpu":
        torch.set_num_threads(1)
    report = report_header(device)
    report["smoke"] = smoke
    INDUCTOR_OPTIONS.update(inductor_option(text) for text in args.inductor_option)
    report["inductor_options"] = dict(INDUCTOR_OPTIONS)
    report["bandwidth"] = copy_bandwidth(device)
    print("copy bandwidth", json.dumps(report["bandwidth"]), flush=True)
    report["bundled"] = [] if args.skip_bundled else bundled(device, images, args.nodes, graphs, args.bundled_modes)
    if args.skip_7b:
        report["seven_b"] = None
    elif device.type == "cuda" or smoke:
        shape = "tiny" if smoke else "7b"
        attentions = args.attention or (("sdpa", "flex_attention") if device.type == "cuda" else ("sdpa",))
        big = seven_b(device, trees, layers, steps, graphs, report["bandwidth"], shape,
                      new_tokens=8 if smoke else 64, attentions=tuple(attentions),
                      compile=COMPILE_WORDS[args.compile],
                      tree_modes=tuple(args.tree_modes), profile_steps=args.profile_steps)
        trees = {(r["mode"], r["num_nodes"]) for r in big["steps"] if r["mode"] != "ar" and "ms_per_step" in r}
        tokens_per_pass = bundled_tokens_per_pass(device, report["bundled"], trees, images=1 if smoke else 3)
        big["projection"] = project(big, tokens_per_pass, shape_grid(shape).num_body_tokens)
        big["projection_tokens_per_pass"] = tokens_per_pass
        report["seven_b"] = big
    else:
        print("sections 2-3 (7B shape) SKIPPED: they need a GPU; --smoke runs them at a tiny shape", flush=True)
        report["seven_b"] = None
    report["seconds"] = time.perf_counter() - began
    os.makedirs(args.out, exist_ok=True)
    name = f"e2e_{'smoke_' if smoke else ''}{device.type}" + (f"_{args.name}" if args.name else "")
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(args.out, name + ".png"))
    print("wrote", os.path.join(args.out, name + ".json"), f"({report['seconds']:.1f} s)")
    big = report["seven_b"] or {}
    failed = [f"{r['mode']}-{r['num_nodes']} {r['attention']}" for r in big.get("steps", []) if "failed" in r]
    if "transformers_generate_failed" in big:
        failed.append("transformers generate")
    if failed:
        print(f"FAILED: {', '.join(failed)} (see 'failed' and 'traceback' in the JSON)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
