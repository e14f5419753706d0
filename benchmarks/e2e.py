"""End-to-end decode benchmarks in ONE run (issue 5): JSON + PNG under --out (default benchmarks/results/).

1. bundled demo model: AR, Medusa, vertical-only and Hawk, eager and CUDA-graph-captured: target passes,
   committed tokens per pass, ms per image (batch 1, CFG 3, temperature 1), speedup over eager AR;
2. a Lumina-mGPT-7B-shaped Llama (hidden 4096, 32 layers, 65536 vocabulary, random bf16 weights) at the
   768px layout (48x48 + row-end = 2352 body tokens) with CFG (2 rows): ms per plain step and per Hawk
   step for trees of 16..128 nodes, eager and graphed, against the HBM floor (weight bytes / 3.0 TB/s), and
   the projected seconds per image at the bundled model's measured tokens per pass;
3. the transformers `generate` loop on the same 7B backbone (2 rows, sampling): ms per token, the baseline a
   user has today.

    python benchmarks/e2e.py                      # everything (needs a GPU for 2 and 3)
    python benchmarks/e2e.py --skip-7b --images 2 # CPU smoke run of part 1
Timing: CUDA events, warm-up first, medians; wall clock (perf_counter) around whole images.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import hawk_kernels as hk

HBM_BYTES_PER_S = 3.0e12  # H100 copy bandwidth (docs/method.md §3: 14.0 GB of weights -> 4.7 ms floor)
MODES = hk.MODES
LUMINA_IMAGE_START = 8197  # Lumina-mGPT prompts end with the image-start token


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundled(device, images: int, nodes: int, graphs: list[bool]) -> list[dict]:
    pipe = hk.load_demo_pipeline(device=device)
    prompts = [f"a handwritten digit {w}" for w in ("zero one two three four five six seven eight nine".split())]
    rows = []
    for graphed in graphs:
        for mode in MODES:
            pipe.decoder(mode, num_nodes=nodes).cuda_graphs = graphed
            pipe.generate(prompts[:1], mode=mode, seed=999, num_nodes=nodes)  # warm-up: Triton/cuBLAS init
            seconds, passes, tokens, used_graph = [], [], [], False
            for i in range(images):
                sync(device)
                start = time.perf_counter()
                out = pipe.generate([prompts[i % len(prompts)]], mode=mode, seed=i, num_nodes=nodes)
                sync(device)
                seconds.append(time.perf_counter() - start)
                passes.append(out.num_forward_passes[0])
                tokens.append(sum(step[0] for step in out.output.accepted_lengths))  # committed by passes
                used_graph = used_graph or out.output.cuda_graph
            rows.append(dict(mode=mode, cuda_graphs_requested=graphed, cuda_graph_used=used_graph, images=images,
                             num_nodes=nodes, passes_per_image=statistics.mean(passes),
                             tokens_per_pass=sum(tokens) / sum(passes), ms_per_image=1e3 * statistics.median(seconds)))
            print(json.dumps(rows[-1]), flush=True)
    base = {r["cuda_graphs_requested"]: r for r in rows if r["mode"] == "ar"}
    eager_ar = base.get(False) or rows[0]
    for r in rows:
        r["speedup_vs_eager_ar"] = eager_ar["ms_per_image"] / r["ms_per_image"]
        same = base.get(r["cuda_graphs_requested"])
        if same:
            r["speedup_vs_ar_same_engine"] = same["ms_per_image"] / r["ms_per_image"]
    return rows


def big_model(device, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=65536, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return model, weight_bytes


def time_steps(session, device, steps: int) -> float:
    """Median ms per step over `steps` single steps (each timed with CUDA events)."""
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        session.run(1)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def seven_b(device, node_counts, layers: int, steps: int, graphs: list[bool]) -> dict:
    model, weight_bytes = big_model(device, layers)
    grid = hk.ImageGrid.lumina_mgpt(768)
    heads = hk.DraftHeads(4096, 65536, num_horizontal=4, vertical_depth=2, image_token_range=grid.image_token_range,
                          dtype=torch.bfloat16).to(device)
    prompt = torch.randint(10, 8000, (1, 32), device=device)
    prompt[:, -1] = LUMINA_IMAGE_START
    floor_ms = 1e3 * weight_bytes / HBM_BYTES_PER_S
    result = dict(layers=layers, weight_bytes=weight_bytes, floor_ms=floor_ms, steps=[])
    for graphed in graphs:
        for nodes in [1] + list(node_counts):
            mode = "ar" if nodes == 1 else "hawk"
            dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=max(nodes, 2), cuda_graphs=graphed)
            session = dec.start(prompt, cfg_scale=3.0, seed=0)
            session.run(3)  # eager warm-up, capture, first replay
            sync(device)
            ms = time_steps(session, device, steps)
            row = dict(mode=mode, num_nodes=dec.tree.num_nodes, cuda_graph=session.graphed, ms_per_step=ms,
                       ratio_to_floor=ms / floor_ms)
            result["steps"].append(row)
            print(json.dumps(row), flush=True)
            del session, dec
            torch.cuda.empty_cache()
    # transformers generate: 2 rows (cond + uncond, as CFG needs), sampling, DynamicCache, eager
    new_tokens = 64
    ids = prompt.repeat(2, 1)
    model.generate(ids, max_new_tokens=8, do_sample=True, top_k=0, pad_token_id=0)  # warm-up
    sync(device)
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_k=0,
                   pad_token_id=0)
    sync(device)
    per_token = 1e3 * (time.perf_counter() - start) / new_tokens
    result["transformers_generate_ms_per_token"] = per_token
    result["transformers_generate_ratio_to_floor"] = per_token / floor_ms
    print("transformers generate ms/token", per_token, flush=True)
    del model
    torch.cuda.empty_cache()
    return result


def project(result: dict, tokens_per_pass: float, num_body: int) -> dict:
    """Seconds per 768px image from measured step times and the bundled model's tokens per pass."""
    out = {}
    steps = result["steps"]
    for graphed in (False, True):
        ar = [r for r in steps if r["mode"] == "ar" and r["cuda_graph"] == graphed]
        if not ar:
            continue
        ar_s = num_body * ar[0]["ms_per_step"] / 1e3
        out[f"{'graphed' if graphed else 'eager'}_ar_s"] = ar_s
        for r in steps:
            if r["mode"] == "hawk" and r["cuda_graph"] == graphed:
                hawk_s = num_body / tokens_per_pass * r["ms_per_step"] / 1e3
                out[f"{'graphed' if graphed else 'eager'}_hawk_{r['num_nodes']}_s"] = hawk_s
    if "transformers_generate_ms_per_token" in result:
        out["transformers_generate_s"] = num_body * result["transformers_generate_ms_per_token"] / 1e3
    return out


def plot(report: dict, path: str) -> None:
    import matplotlib

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
        for graphed, color in ((False, "C0"), (True, "C1")):
            pts = [(r["num_nodes"], r["ms_per_step"]) for r in big["steps"] if r["cuda_graph"] == graphed]
            if pts:
                axes[1].plot(*zip(*pts), "o-", color=color, label="graphed" if graphed else "eager")
        axes[1].axhline(big["floor_ms"], color="k", ls="--", label="HBM floor")
        if "transformers_generate_ms_per_token" in big:
            axes[1].axhline(big["transformers_generate_ms_per_token"], color="C3", ls=":", label="transformers generate")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("tree nodes (1 = plain AR step)")
        axes[1].set_ylabel("ms per step (CFG, 2 rows)")
        axes[1].set_title("Lumina-mGPT-7B shape, 768px")
        axes[1].legend()
    else:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "7B-shape step timings: GPU only", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report_header(device) -> dict:
    """What every result JSON starts with: device, driver, versions, date, command, commit."""
    report = dict(device=torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
                  torch=torch.__version__, torch_cuda=torch.version.cuda, python=platform.python_version(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  command="python " + " ".join(sys.argv),
                  git_commit=subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
    if device.type == "cuda":
        report["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                          capture_output=True, text=True).stdout.strip()
    try:
        import transformers
        import triton

        report["transformers"], report["triton"] = transformers.__version__, triton.__version__
    except ImportError:
        pass
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--skip-7b", action="store_true")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--trees", type=int, nargs="*", default=[16, 32, 64, 128])
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    graphs = [False, True] if device.type == "cuda" else [False]
    if device.type == "cpu":
        torch.set_num_threads(1)
    report = report_header(device)
    report["bundled"] = bundled(device, args.images, args.nodes, graphs)
    if device.type == "cuda" and not args.skip_7b:
        big = seven_b(device, args.trees, args.layers, args.steps, graphs)
        hawk_rows = [r for r in report["bundled"] if r["mode"] == "hawk"]
        tokens_per_pass = hawk_rows[-1]["tokens_per_pass"] if hawk_rows else 1.0
        big["projection"] = project(big, tokens_per_pass, hk.ImageGrid.lumina_mgpt(768).num_body_tokens)
        big["projection_tokens_per_pass"] = tokens_per_pass
        report["seven_b"] = big
    os.makedirs(args.out, exist_ok=True)
    name = f"e2e_{device.type}"
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(args.out, name + ".png"))
    print("wrote", os.path.join(args.out, name + ".json"))


if __name__ == "__main__":
    main()
