"""Kernels (GPU) or operator calls (CPU) per decode step, eager vs compiled (HawkDecoder(compile=...)).

Counted with torch.profiler over one step taken after two warm-up steps: on CUDA, every CUDA kernel launched;
on the CPU, the step's top-level operator calls in eager mode, and inside the compiled region the calls of the
compiled graph (each an inductor-generated fused kernel or an extern op such as aten::mm or hawk::*). Launch and
dispatch overheads scale with these counts, which is what compiling is meant to cut (issue 20: 553 kernels per
AR step at the 7B shape on an H200, eager).

    python benchmarks/step_ops.py --out DIR [--modes ar hawk hawk+jacobi] [--device cuda]   # the bundled model
    python benchmarks/step_ops.py --smoke --out DIR                                          # ar, CPU, quick
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import hawk_kernels as hk  # noqa: E402
from timing import report_header  # noqa: E402


def ops_per_step(session) -> int:
    """Kernels (CUDA) or operator calls (CPU) of one step of a started DecodeSession (warmed up by the caller)."""
    on_cuda = session.state.body.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        session.run(1)
        if on_cuda:
            torch.cuda.synchronize()
    events = prof.events()
    if on_cuda:
        return sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    compiled_calls = [e for e in events if e.name.startswith("## Call CompiledFxGraph")]
    if compiled_calls:  # the compiled graph's own calls: fused kernels and extern ops
        ids = {e.id for e in compiled_calls}
        return sum(1 for e in events if e.cpu_parent is not None and e.cpu_parent.id in ids)
    return sum(1 for e in events if e.cpu_parent is None)


def count(decoder, prompts, **sampling) -> int:
    session = decoder.start(prompts, **sampling)
    session.run(2)  # the first step compiles (and, on CUDA, the second captures a graph)
    return ops_per_step(session)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for step_ops.json")
    p.add_argument("--modes", nargs="+", default=["ar", "hawk", "hawk+jacobi"], choices=hk.MODES)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--smoke", action="store_true", help="ar only, batch 1, on the CPU: a quick run")
    args = p.parse_args(argv)
    if args.smoke:
        args.modes, args.device, args.batch = ["ar"], "cpu", 1
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    pipe = hk.load_demo_pipeline(device=args.device)
    prompts = torch.tensor([pipe.vocab.encode_prompt("a handwritten digit seven")] * args.batch, device=args.device)
    negative = torch.tensor([pipe.vocab.unconditional_prompt()], device=args.device)
    rows = []
    for mode in args.modes:
        heads = pipe.heads if hk.drafts.needs_heads(mode) else None
        row = dict(mode=mode)
        for compiled in (False, True):
            # no CUDA graphs: the same kernels, launched one by one, so the profiler lists them (it may not trace
            # a graph's replay, and a profile taken before a capture can stop kernel events in some versions)
            dec = hk.HawkDecoder(pipe.model, heads, pipe.grid, mode=mode, num_nodes=args.nodes, compile=compiled,
                                 cuda_graphs=False)
            row["compiled" if compiled else "eager"] = count(dec, prompts, negative_input_ids=negative,
                                                             cfg_scale=3.0, seed=0)
        row["ratio"] = row["compiled"] / row["eager"] if row["eager"] else None  # None: the profiler listed nothing
        ratio = "no kernels listed" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        print(f"{mode:<12} eager {row['eager']:>5}  compiled {row['compiled']:>5}  ({ratio})", flush=True)
        rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    what = "CUDA kernels per step" if args.device == "cuda" else "CPU operator calls per step"
    info = dict(report_header(torch.device(args.device), argv, "benchmarks/step_ops.py"), what=what,
                model="bundled demo model", batch=args.batch, cfg=3.0, num_nodes=args.nodes,
                counted="one step, after 2 warm-up steps (a count, not a timing: no repeats)", rows=rows)
    (out / "step_ops.json").write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
