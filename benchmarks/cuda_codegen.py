"""Kernels the compiled decode step launches on a GPU, predicted on a CPU box from inductor's own CUDA code.

The step (engine/step.py, the backbone forward included) is traced by dynamo on the CPU as HawkDecoder(compile=True)
traces it, on benchmarks/e2e.py's 7B-shaped Llama (bf16, CFG: 2 rows, prompt 32 tokens) with 2 and then 3 layers.
Each graph is moved to a fake sm_90 device (benchmarks/fake_cuda.py: no driver, no GPU) and inductor writes the
code it would run there, with the decoder's own options (engine/compiled.inductor_options: the fusion cap, and the
one-GEMM-per-projection-group pass, the weights grouped first as a compiling decoder groups them). The launches of that
code's `call()` are counted by kind: the Triton kernels inductor generated, GEMMs (cuBLAS, `extern_kernels`),
attention, the hawk:: ops and other ATen fallbacks. Three layers minus two is a layer's launches (with one layer the
first and last layers' fusions are one layer's, so two is the smallest model with a layer between them); the rest is the
step's own; projected to --layers (32, the 7B model). Also reported: the largest buffers the code allocates (a
temporary the size of a KV cache layer would be a whole-cache copy per step).

What it cannot say: kernel times. A launch inside a CUDA graph still costs its ramp and tail (microseconds), so the
count is what fusion can cut; the bytes are the floor's. How the fake device differs from a real compile:
fake_cuda.py.

    /work/venv_gpu312/bin/python benchmarks/cuda_codegen.py --out DIR   # a CUDA build of torch, no GPU needed
                                                                        # (scripts/gpu_stack_on_cpu.sh's venv)
    python benchmarks/cuda_codegen.py --smoke --out DIR    # the same counts of CPU code (C++ kernels), tiny shape
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.multiprocessing.reductions import StorageWeakRef

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import hawk_kernels as hk  # noqa: E402
from hawk_kernels.drafts.horizontal import HorizontalState  # noqa: E402
from hawk_kernels.engine.compiled import INDUCTOR_OPTIONS, inductor_options  # noqa: E402
from timing import report_header  # noqa: E402

STEP_OPS_BATCH = 2  # benchmarks/step_ops.py's default batch
MEASURED_LAYERS = (2, 3)  # the models compiled: their difference is one layer between two others
_KERNEL = re.compile(r"^\s+((?:triton|cpp)_\w+)(?:\.run)?\(", re.M)
_EXTERN = re.compile(r"^\s+(?:\w+ = )?extern_kernels\.(\w+)\(", re.M)
_OP = re.compile(r"^\s+(?:\w+ = )?torch\.ops\.(\w+)\.(\w+)\.\w+\(", re.M)
_ALLOC = re.compile(r"empty_strided_\w+\(\(([\d, ]*)\), \([\d, ]*\), torch\.(\w+)\)")


def launches(wrapper: str) -> dict:
    """The launches of a generated wrapper's call(): {"kernels": n, "gemm": n, "attention": n, "hawk": n, "other": n}
    and `by_name` (every extern and fallback op, with its count)."""
    body = wrapper[wrapper.index("def call("):]
    kernels = _KERNEL.findall(body)
    externs = _EXTERN.findall(body)
    ops = [f"{space}.{name}" for space, name in _OP.findall(body)]
    flex = [k for k in kernels if "flex_attention" in k]  # FlexAttention's Triton template, split-KV reductions
    kinds = Counter(kernels=len(kernels) - len(flex), gemm=len(externs), attention=len(flex))
    for op in ops:
        kinds["attention" if "attention" in op else "hawk" if op.startswith("hawk.") else "other"] += 1
    return dict(**{k: kinds[k] for k in ("kernels", "gemm", "attention", "hawk", "other")}, total=sum(kinds.values()),
                by_name=dict(Counter([f"extern_kernels.{e}" for e in externs] + ops)))


def allocations(code: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every buffer generated code allocates: (its shape as written, the shape, the dtype's name)."""
    return [(text, tuple(int(d) for d in text.split(",") if d.strip()), dtype) for text, dtype in _ALLOC.findall(code)]


def largest_allocations(wrapper: str, top: int = 3) -> list[dict]:
    sizes = [dict(shape=text, dtype=dtype, bytes=math.prod(shape) * getattr(torch, dtype, torch.float32).itemsize)
             for text, shape, dtype in allocations(wrapper)]
    return sorted(sizes, key=lambda a: -a["bytes"])[:top]


def state_buffers(session) -> list[torch.Tensor]:
    """The tensors a session's step updates in part: the KV cache layers, body, history, the Jacobi memory, the
    speculation cache. (The horizontal drafts' logq is replaced whole every step: writing it is its copy, and a
    temporary of its shape, e.g. the padded proposal, is no sign of one.)"""
    found, seen, todo = [], set(), [session.state]
    while todo:
        obj = todo.pop()
        if isinstance(obj, HorizontalState):
            continue
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif id(obj) not in seen and (hasattr(obj, "__dict__") or isinstance(obj, (list, tuple, dict))):
            seen.add(id(obj))
            items = (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple))
                     else vars(obj).values())
            todo.extend(items)
    return found


def whole_buffer_copies(code: str, buffers) -> list[tuple]:
    """Temporaries the generated code allocates with the shape and dtype of one of `buffers`: how inductor
    compiles a scatter_ into a graph input (copy the whole buffer out, scatter, copy it back: 4x the buffer's
    bytes per step, 10 GB per step for a 7B model's KV cache) instead of an in-place index_put_. (A temporary of
    another dtype, e.g. a bool mask over a buffer, is no copy of it.) Buffers under 1024 elements here are small
    at every shape (the speculation cache's keys, 25 KB at batch 16: evict then insert round-trips them through
    a temporary) and are not checked; the KV cache, the Jacobi memory and the drafts' log-probs are."""
    kinds = {(tuple(b.shape), str(b.dtype).removeprefix("torch.")) for b in buffers if b.numel() >= 1024}
    temps = {(shape, dtype) for _, shape, dtype in allocations(code)}
    return sorted(temps & kinds)


def build_session(shape_name: str, layers: int, mode: str, nodes: int, dtype: torch.dtype, attention: str = "sdpa"):
    """A started DecodeSession of e2e.py's Llama of `shape_name` with `layers` layers, on the CPU, of a compiling
    decoder: it lays the weights out as for a compile, and its compiled step (never run here) names the layout the
    code is made for; the session's plan and state are what the step is traced with. attention="flex_attention" is
    set after the prefill: HawkDecoder refuses FlexAttention trees on the CPU, whose flex kernel fails to compile
    their masks; here the step is only traced on the CPU (eagerly) and compiled for the fake GPU. shape_name
    "bundled": the bundled model (float32, its own layers) as benchmarks/step_ops.py runs it, whose GPU run measures
    the count."""
    if shape_name == "bundled":
        return _bundled_session(mode, nodes)
    import e2e

    shape = e2e.SHAPES[shape_name]
    model, _ = e2e.llama(torch.device("cpu"), shape, layers, dtype)
    grid = e2e.shape_grid(shape_name)
    heads = hk.DraftHeads(shape["hidden"], shape["vocab"], num_horizontal=shape["horizontal"],
                          vertical_depth=shape["vertical"], image_token_range=grid.image_token_range, dtype=dtype)
    torch.manual_seed(0)
    prompt = torch.randint(*shape["prompt_tokens"], (1, 32))
    prompt[:, -1] = shape["image_start"]
    decoder = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=max(nodes, 2), cuda_graphs=False, compile=True)
    session = decoder.start(prompt, cfg_scale=3.0, seed=0)
    model.set_attn_implementation(attention)
    return session


def _bundled_session(mode: str, nodes: int):
    """step_ops.py's session: the bundled model, 2 images, CFG 3, `nodes` nodes, seed 0."""
    pipe = hk.load_demo_pipeline(device="cpu")
    prompts = torch.tensor([pipe.vocab.encode_prompt("a handwritten digit seven")] * STEP_OPS_BATCH)
    negative = torch.tensor([pipe.vocab.unconditional_prompt()])
    heads = pipe.heads if hk.drafts.needs_heads(mode) else None
    decoder = hk.HawkDecoder(pipe.model, heads, pipe.grid, mode=mode, num_nodes=nodes, compile=True,
                             cuda_graphs=False)
    return decoder.start(prompts, negative_input_ids=negative, cfg_scale=3.0, seed=0)


def traced_step(session):
    """dynamo's graph of one step (fullgraph, static shapes, as CompiledStep compiles it) and its example inputs."""
    from hawk_kernels.engine import step as step_module

    captured = {}

    def capture(gm, example_inputs):
        captured.update(gm=gm, inputs=example_inputs)
        return gm.forward

    with torch.no_grad():
        torch.compile(step_module.step, backend=capture, fullgraph=True, dynamic=False)(session.plan, session.state)
    return captured["gm"], captured["inputs"]


def on_fake_cuda(gm: torch.fx.GraphModule, inputs):
    """The graph and inputs moved to fake_cuda's device: every `device=cpu` in the graph becomes cuda:0, sdpa calls
    become the kernel sm_90 runs, and the inputs are fake CUDA tensors of the same sizes, strides and dtypes."""
    import fake_cuda
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake_cuda.install()
    cuda = torch.device("cuda", 0)

    def moved(arg):
        if isinstance(arg, torch.device) and arg.type == "cpu" or arg == "cpu":
            return cuda if isinstance(arg, torch.device) else "cuda"
        if isinstance(arg, (list, tuple)):
            return type(arg)(moved(a) for a in arg)
        if isinstance(arg, dict):
            return {k: moved(v) for k, v in arg.items()}
        return arg

    for node in gm.graph.nodes:
        node.args, node.kwargs = moved(node.args), moved(node.kwargs)
    fake_cuda.sdpa_as_on_sm90(gm)
    with FakeTensorMode():
        return gm, _on_device(inputs, cuda)


def _on_device(inputs, device):
    """Fake tensors on `device` with the inputs' sizes, strides and dtypes, and their aliasing: inputs that share a
    storage (the grouped projections' weights) share one there too, at the same offsets."""
    bases = {}
    moved = []
    for x in inputs:
        if not isinstance(x, torch.Tensor):
            moved.append(x)
            continue
        key = StorageWeakRef(x.untyped_storage())
        if key not in bases:
            bases[key] = torch.empty(x.untyped_storage().nbytes() // x.element_size(), dtype=x.dtype, device=device)
        base = bases[key]
        moved.append(base.as_strided(x.shape, x.stride(), x.storage_offset()) if base.dtype == x.dtype
                     else torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=device))
    return moved


def generated_wrapper(gm: torch.fx.GraphModule, inputs, extra_options: dict | None = None,
                      layout: tuple[bool, ...] = ()) -> str:
    """The Python wrapper inductor generates for the graph (its call() launches the step's kernels), compiled with
    the decoder's options for the weights' `layout` (grouped_gemms.layout_of) and `extra_options` (inductor
    config names)."""
    from torch._inductor.codecache import PyCodeCache
    from torch._inductor.compile_fx import compile_fx
    written = []
    write = PyCodeCache.write.__func__

    def keep(cls, source_code, extra=""):
        written.append(source_code)
        return write(cls, source_code, extra)

    PyCodeCache.write = classmethod(keep)
    try:
        options = {**inductor_options(layout), **(extra_options or {})}
        with torch.no_grad():
            compile_fx(gm, inputs, config_patches=options)
    finally:
        PyCodeCache.write = classmethod(write)
    return [code for code in written if "def call(" in code][-1]


def one(shape: str, layers: int, mode: str, nodes: int, device: str, keep_code: Path | None = None,
        extra_options: dict | None = None, attention: str = "sdpa") -> dict:
    """The launches of one (mode, layers) step on `device` ("cuda": fake sm_90; "cpu": the CPU's own code)."""
    dtype = torch.bfloat16 if device == "cuda" and shape != "bundled" else torch.float32
    session = build_session(shape, layers, mode, nodes, dtype, attention)
    gm, inputs = traced_step(session)
    if device == "cuda":
        gm, inputs = on_fake_cuda(gm, inputs)
    wrapper = generated_wrapper(gm, inputs, extra_options, session.compiled.layout)
    if keep_code is not None:
        keep_code.mkdir(parents=True, exist_ok=True)
        (keep_code / f"{mode}_{layers}_layers_{device}.py").write_text(wrapper)
    return dict(mode=mode, layers=layers, num_nodes=session.plan.tree.template.num_nodes, launches=launches(wrapper),
                largest_allocations=largest_allocations(wrapper),
                state_buffer_copies=whole_buffer_copies(wrapper, state_buffers(session)))


def per_layer(fewer: dict, more: dict, layers: int) -> dict:
    """A layer's launches (`more` layers minus `fewer`, one apart), the step's own (the rest), and the step at
    `layers` layers."""
    kinds = ("kernels", "gemm", "attention", "hawk", "other", "total")
    layer = {k: more["launches"][k] - fewer["launches"][k] for k in kinds}
    own = {k: fewer["launches"][k] - fewer["layers"] * layer[k] for k in kinds}
    return dict(mode=fewer["mode"], num_nodes=fewer["num_nodes"], per_layer=layer, per_step_outside_layers=own,
                state_buffer_copies=sorted({(tuple(shape), dtype) for row in (fewer, more)
                                            for shape, dtype in row["state_buffer_copies"]}),
                projected_layers=layers, projected={k: own[k] + layers * layer[k] for k in kinds},
                counted=[fewer, more])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for cuda_codegen.json")
    p.add_argument("--modes", nargs="+", default=["ar", "hawk", "hawk+jacobi"], choices=hk.MODES)
    p.add_argument("--nodes", type=int, default=32, help="tree size of the drafting modes")
    p.add_argument("--layers", type=int, default=32, help="layers the counts are projected to")
    p.add_argument("--shape", choices=("7b", "tiny", "bundled"), default="7b",
                   help="e2e.py's backbone shape (default 7b), or the bundled model as benchmarks/step_ops.py runs "
                        "it (--nodes 16 there: the whole step is counted, its layers as they are)")
    p.add_argument("--attention", choices=("sdpa", "flex_attention"), default="sdpa",
                   help="the backbone's attention (flex_attention: block masks bounded to the filled slots)")
    p.add_argument("--smoke", action="store_true", help="CPU code at e2e.py's tiny shape, ar only")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="an inductor config value on top of the decoder's (VALUE as JSON), e.g. combo_kernels=true")
    p.add_argument("--keep-code", action="store_true", help="write each generated wrapper under DIR/code/")
    p.add_argument("--one", nargs=4, metavar=("SHAPE", "LAYERS", "MODE", "DEVICE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(inductor_option(text) for text in args.option)
    if args.one:  # a child process: fake_cuda patches its whole process, so each graph gets one
        shape, layers, mode, device = args.one
        row = one(shape, int(layers), mode, args.nodes, device, out / "code" if args.keep_code else None, options,
                  args.attention)
        (out / "row.json").write_text(json.dumps(row))
        return 0
    device, shape = ("cpu", "tiny") if args.smoke else ("cuda", args.shape)
    report = report_header("cpu", argv, "benchmarks/cuda_codegen.py")
    report.update(predicted_for="fake sm_90 (benchmarks/fake_cuda.py)" if device == "cuda" else "cpu", shape=shape,
                  attention=args.attention, inductor_options={**INDUCTOR_OPTIONS, **options})
    if device == "cuda":
        import fake_cuda

        if (why := fake_cuda.supported()) is not None:
            print(f"cuda_codegen: cannot predict CUDA kernels here: {why}", file=sys.stderr)
            return 2
    settings = ["--nodes", str(args.nodes), "--attention", args.attention, *(f"--option={o}" for o in args.option),
                *(["--keep-code"] if args.keep_code else [])]
    modes = ["ar"] if args.smoke else args.modes
    if shape == "bundled":
        report["modes"] = [_child(out, settings, shape, 0, mode, device) for mode in modes]
    else:
        report["modes"] = [per_layer(*(_child(out, settings, shape, n, mode, device) for n in MEASURED_LAYERS),
                                     args.layers) for mode in modes]
    for row in report["modes"]:
        print(json.dumps({k: row[k] for k in ("mode", "num_nodes", "launches", "per_layer", "projected",
                                              "state_buffer_copies") if k in row}), flush=True)
    (out / "cuda_codegen.json").write_text(json.dumps(report, indent=1))
    return 0


def inductor_option(text: str) -> tuple[str, object]:
    """NAME=VALUE (VALUE as JSON) -> (NAME, value), NAME an inductor config value of this torch."""
    name, sep, value = text.partition("=")
    if not sep or not hasattr(torch._inductor.config, name):
        raise SystemExit(f"--option: expected NAME=VALUE with NAME an inductor config value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--option {name}: VALUE must be JSON (true, 8, \"x\"), got {value!r}") from error


def _child(out: Path, settings: list[str], shape: str, layers: int, mode: str, device: str) -> dict:
    """one() in a process of its own (the code it keeps goes to out/code), with the parent's settings."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, __file__, "--out", tmp, *settings, "--one", shape, str(layers), mode, device],
                       check=True)
        if (Path(tmp) / "code").is_dir():
            shutil.copytree(Path(tmp) / "code", out / "code", dirs_exist_ok=True)
        return json.loads((Path(tmp) / "row.json").read_text())


if __name__ == "__main__":
    sys.exit(main())
