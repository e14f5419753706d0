"""The families at their released configurations (tests/real_shapes.py; issue 22): per family, prompt -> PNG
in ar / hawk / hawk+jacobi with seconds per image and PEAK MEMORY per image (measured: torch.cuda's peak
allocation on a GPU, the process's peak RSS on a CPU), beside the family's own generation of the same weights
(transformers' generate; LlamaGen: upstream's generate loop).

    python benchmarks/real_shapes.py --full --out DIR --budget-s 540     # GPU: the 7B shapes, bf16, CUDA graphs
    python benchmarks/real_shapes.py --out DIR                           # CPU: reduced models at the real grids
    python benchmarks/real_shapes.py --smoke --out DIR                   # CI: the same code path, tiny images, < 30 s

Scales. --full: Janus-Pro-7B, Lumina-mGPT-7B-768, Emu3-Gen at their released shapes with random bf16 weights, built
on the GPU and kept in memory (the directory gets every file but the weights: config, generation config,
processor, Lumina-mGPT's chameleon/tokenizer/vqgan.ckpt; --save writes and reloads the weights through
load_pipeline instead). Default: the reduced models (2 layers, hidden 64; released vocabularies, ids, processors,
VQ configurations) at the released grids, written and loaded through `load_pipeline` as a user does. --smoke:
the reduced models with small VQ decoders (vq="reduced") and small images of the same layouts (SMOKE_SIZES),
so CI runs the whole code path.

Per family and mode: one image (batch 1, the family's default CFG / top-k, temperature 1, seed 0), wall seconds
(prefill + steps + pixel decoding; CUDA graphs captured in the first run, as a user's first image), target
passes, tokens per pass, peak memory during the image and above the loaded model, the PNG. The heads are
untrained and the weights random: tokens per pass (and so the speed of hawk modes) say nothing about trained
heads on the released weights; per-pass cost and memory do.

LlamaGen (after the 7B families, so the budget cuts it first): LlamaGen-XL and LlamaGen-3B 384 px (c2i_XL_384.pt,
c2i_3B_384.pt; tests/real_shapes_llamagen.py: --full builds GPT-XL / GPT-3B on the device, the directory gets
config.json and vq_model.safetensors; reduced: 2 layers of 2 released-size heads, through upstream-format files
and convert_llamagen), prompt = a class label (207, upstream sample_c2i.py's first), CFG 4 and top-k 2000 (its
defaults); beside our modes, upstream's own `generate` (tests/llamagen_reference.py: its
loop with its static KV cache, eager, as sample_c2i.py runs it without --compile) on the same tensors (the
pipeline's state dict, assigned), timed the same way (tokens, then our VQ decoder on its codes). Then LlamaGen-XL
text-to-image, stage 2, 512 px (t2i_XL_stage2_512.pt with google/flan-t5-xl's encoder; --full: GPT-XL and the
24-layer T5 encoder on the device; reduced: 2 GPT layers and a 1-layer T5 encoder of the released width and
vocabulary, through upstream-format files + a flan-t5-xl directory and convert_llamagen's t5=), prompt = the text
PROMPT, CFG 7.5 and top-k 1000 (sample_t2i.py's defaults), beside upstream's generate fed by upstream's caption
path (language/t5.py's embeddings + sample_t2i.py's left-padding, on the pipeline's tokenizer and T5 encoder),
its T5 encoding inside the timed block as ours is.

Beside them, transformers' generation on the same model: Janus `generate(generation_mode="image")` for a whole
image; Emu3 `generate` with Emu3's prefix constraint and CFG from the negative prompt, over --hf-tokens tokens
(64), reported as ms per token and projected to the whole image (a 720 px image takes longer than a call may
run); Lumina-mGPT: none (transformers' Chameleon has no image generation: its forward masks image-token logits).

Memory batches (--memory-batch B [B ...]): per mode, a batch of B images (CFG: 2B rows) started and run for
--memory-steps steps, peak memory: for the "batch of 16 with CFG under 80 GB" check and to show what grows per
image. Every per-generation buffer (KV cache, draft memories) is allocated when a generation starts; the steps
add their working set. On the CPU, whole images measured well above a few steps (Janus hawk: 111 MB above the
model for a whole image against 39 MB after 3 steps; the allocator's growth over thousands of steps), so compare
memory batches with memory batches.

--budget-s: wall seconds for the whole run; a run that would not fit (estimated from the runs before it) is
skipped and recorded as skipped. Order: Janus, Lumina-mGPT, Emu3 (transformers' 64 tokens first), LlamaGen-XL,
LlamaGen-3B, LlamaGen-XL t2i.
"""
from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hawk_kernels.cli.common import COMPILE_WORDS  # noqa: E402
from hawk_kernels.memory import CacheDoesNotFit  # noqa: E402
from tests.real_shapes import FAMILIES, NAMES, build  # noqa: E402
from tests.real_shapes_llamagen import CLASS_LABELS, FAMILIES as LLAMAGEN  # noqa: E402
from benchmarks.timing import failure, report_header  # noqa: E402
from tests.transformers_reference import janus_image_generate  # noqa: E402

MODES = ("ar", "hawk", "hawk+jacobi")
TIMING = ("seconds_per_image: ONE image per family and mode, wall clock (time.perf_counter, synchronised), a user's "
          "first image: no warm-up (CUDA-graph capture and first-call costs included) and no repeats; for per-pass "
          "cost and memory at the released shapes, not a steady-state speed (benchmarks/e2e.py times those)")
# the 7B families first (Emu3's 720 px image is their longest), then LlamaGen: the budget cuts the last first
ORDER = ("janus", "chameleon", "emu3", *LLAMAGEN)
FULL_SIZES = {"janus": None, "emu3": 720, "chameleon": 768, **{f: None for f in LLAMAGEN}}
SMOKE_SIZES = {"janus": None, "emu3": (8, 64), "chameleon": (32, 64), **{f: None for f in LLAMAGEN}}
SMOKE_SIDES = {"janus": 4, **{f: 4 for f in LLAMAGEN}}  # 4 x 4 codes: models built at that grid
PROMPT = "a red fox in the snow, highly detailed"
CLASS_LABEL = CLASS_LABELS[0]  # LlamaGen's prompt: a class label (upstream sample_c2i.py's first, 207)


def prompt_of(pipe):
    """The benchmark's prompt in the family's kind: text, or a class label for LlamaGen c2i."""
    return CLASS_LABEL if pipe.family == "llamagen" and not pipe.captions else PROMPT


# --- memory ----------------------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory while the block runs: torch.cuda.max_memory_allocated on CUDA (after a reset), beside it the
    allocator's peak reservation (max_memory_reserved: what the process held, cached blocks and CUDA-graph pools
    included) and the device's used bytes at the end (mem_get_info: the CUDA context too); on the CPU the
    process's peak RSS (VmHWM, reset through /proc/self/clear_refs so each block gets its own peak)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)"

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return _proc_status("VmRSS")

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _malloc_trim()  # hand freed heap pages back, so an earlier run's garbage is not counted as "before"
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS to the current RSS
        self.before = self.current()
        return self

    def __exit__(self, *exc):
        self.peak_reserved = self.device_used = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.peak_reserved = torch.cuda.max_memory_reserved(self.device)
            free, total = torch.cuda.mem_get_info(self.device)
            self.device_used = total - free
        else:
            self.peak = _proc_status("VmHWM")
        self.above = self.peak - self.before
        return False

    def fields(self) -> dict:
        """The peaks as result fields (None where the device has no such figure)."""
        return dict(peak_memory_bytes=self.peak, peak_reserved_bytes=self.peak_reserved,
                    device_used_bytes=self.device_used, memory_kind=self.kind)


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks are then upper bounds of the run's own memory
        pass


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- models -------------------------------------------------------------------------------------------------------
def make_pipeline(family: str, directory: Path, scale: str, vq: str, device: torch.device, dtype, save: bool,
                  janus_side: int | None = None):  # janus_side: codes per side of a Janus or LlamaGen model
    """Build `family` and return (pipeline, build seconds). Reduced / --save: written and loaded through
    load_pipeline. --full: built on the device and wrapped in the family's pipeline with the processor saved in
    `directory` (what load_pipeline does after reading the weights)."""
    from hawk_kernels.pipelines import load_pipeline

    start = time.perf_counter()
    if save:
        built = build(family, directory, scale=scale, vq=vq, janus_side=janus_side)
        del built
        gc.collect()
        pipe = load_pipeline(directory, device=device, dtype=dtype)
    else:
        built = build(family, directory, scale=scale, vq=vq, save_weights=False, device=device, dtype=dtype,
                      janus_side=janus_side)
        pipe = _wrap(family, built.model, directory)
    sync(device)
    return pipe, time.perf_counter() - start


def _wrap(family: str, model, directory: Path):
    from transformers import AutoProcessor, AutoTokenizer

    from hawk_kernels.pipelines.emu3 import Emu3Pipeline
    from hawk_kernels.pipelines.janus import JanusPipeline
    from hawk_kernels.pipelines.llamagen import LlamaGenPipeline
    from hawk_kernels.pipelines.lumina import LuminaPipeline

    if family in LLAMAGEN:  # the VQ tokenizer (and t2i's T5 tokenizer, text_encoder/) are read from `directory`
        return LlamaGenPipeline(model.eval(), None, model_dir=directory)
    loader = AutoTokenizer if family == "chameleon" else AutoProcessor  # Lumina-mGPT ships a tokenizer only
    processor = loader.from_pretrained(str(directory), local_files_only=True)
    cls = {"janus": JanusPipeline, "emu3": Emu3Pipeline, "chameleon": LuminaPipeline}[family]
    return cls(model.eval(), processor, model_dir=directory)


def grid_summary(pipe, size) -> dict:
    grid = pipe.layout(size)
    return dict(height=grid.height, width=grid.width, row_stride=grid.row_stride, body_tokens=grid.num_body_tokens,
                image_codes=grid.num_image_codes, local_vocab=grid.local_vocab_size,
                row_end_token=grid.row_end_token, image_end_token=grid.image_end_token)


# --- runs ----------------------------------------------------------------------------------------------------------
def run_mode(pipe, family: str, mode: str, size, out_dir: Path, device, num_nodes) -> dict:
    """One image: tokens, then pixels, each phase with its own peak (a peak reset inside a measured block would
    hide the block's earlier peak); the image's peak is the larger."""
    with PeakMemory(device) as token_memory:
        tokens = pipe.generate_tokens([prompt_of(pipe)], mode=mode, size=size, seed=0, num_nodes=num_nodes)
        # the generation's own clock: an "auto" tree size is chosen (its steps timed, once per shape) before it
        token_seconds = tokens.seconds
    with PeakMemory(device) as decode_memory:
        start = time.perf_counter()
        pixels = pipe.decode_pixels(tokens.codes)
        sync(device)
        decode_seconds = time.perf_counter() - start
    png = f"{family}_{mode.replace('+', '_')}.png"
    if pixels is not None:
        pipe.to_images(pixels)[0].save(out_dir / png)
    image_memory = max(token_memory, decode_memory, key=lambda m: m.peak)  # the phase of the image's peak
    return dict(mode=mode, num_nodes=tokens.num_nodes[0], seconds_per_image=token_seconds + decode_seconds,
                token_seconds=token_seconds,
                decode_seconds=decode_seconds, passes=tokens.num_forward_passes,
                tokens_per_pass=tokens.tokens_per_pass, step_engine=tokens.step_engine,
                **image_memory.fields(), peak_above_model_bytes=image_memory.peak - token_memory.before,
                tokens_peak_above_bytes=token_memory.above, decode_peak_above_bytes=decode_memory.above,
                png=png if pixels is not None else None)


def run_memory_batch(pipe, mode: str, size, batch: int, steps: int, device, num_nodes) -> dict:
    """A batch of `batch` images (CFG doubles the rows): start + `steps` steps, peak memory."""
    grid = pipe.layout(size)
    rows = pipe.prompt_rows([prompt_of(pipe)] * batch, None, grid)
    decoder = pipe.decoder(mode, grid, 32 if num_nodes in (None, "auto") else num_nodes)
    sampling = {k: pipe.defaults.get(k) for k in ("cfg_scale", "temperature", "top_k")}
    ids = torch.tensor(rows.conditional, device=device)
    negative = torch.tensor(rows.unconditional, device=device)
    with PeakMemory(device) as memory:
        session = decoder.start(ids, negative, sampling["cfg_scale"], sampling["temperature"], sampling["top_k"],
                                seed=0, attention_mask=torch.ones_like(ids))
        session.run(steps)
        sync(device)
        del session
    return dict(mode=mode, batch=batch, rows=2 * batch, steps=steps, **memory.fields(),
                peak_above_model_bytes=memory.above)


def memory_batch_row(pipe, mode: str, size, batch: int, steps: int, device, num_nodes) -> dict:
    """run_memory_batch's row, or where the batch does not fit the device a row that says so (a measured miss of
    the memory target, judged by scripts/targets.py) with the device's size; the family's other rows still run."""
    try:
        return run_memory_batch(pipe, mode, size, batch, steps, device, num_nodes)
    except (torch.OutOfMemoryError, CacheDoesNotFit) as error:  # the allocator's error, or ours before it
        message = str(error).splitlines()[0]
    gc.collect()  # out here: the error's traceback no longer holds the session's cache
    if device.type == "cuda":
        torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    return dict(mode=mode, batch=batch, rows=2 * batch, steps=steps, failed=f"out of memory: {message}",
                device_total_bytes=total)


def run_decode_memory(pipe, size, batch: int, device) -> dict:
    """The VQ decoder alone on `batch` random images of the layout, in ONE call (decode_batch raised to it)."""
    grid = pipe.layout(size)
    codes = torch.randint(0, grid.num_image_codes, (batch, grid.height, grid.width),
                          generator=torch.Generator().manual_seed(0))
    saved = pipe.decode_batch
    pipe.decode_batch = batch
    try:
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            pixels = pipe.decode_pixels(codes)
            sync(device)
            seconds = time.perf_counter() - start
    finally:
        pipe.decode_batch = saved
    return dict(batch=batch, pixels=None if pixels is None else list(pixels.shape[-2:]), seconds=seconds,
                **memory.fields(), peak_above_model_bytes=memory.above)


def transformers_janus(pipe, device) -> dict:
    rows = pipe.prompt_rows([PROMPT], None, pipe.layout(None))
    ids = torch.tensor(rows.conditional, device=device)
    with PeakMemory(device) as memory:
        sync(device)
        start = time.perf_counter()
        codes = janus_image_generate(pipe.model, ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                     guidance_scale=pipe.defaults["cfg_scale"])
        sync(device)
        seconds = time.perf_counter() - start
    return dict(what="JanusForConditionalGeneration.generate(generation_mode='image'), sampling, CFG 5",
                tokens=int(codes.shape[1]), seconds_per_image=seconds,
                ms_per_token=1e3 * seconds / codes.shape[1], **memory.fields(), peak_above_model_bytes=memory.above)


def transformers_emu3(pipe, size, new_tokens: int, device) -> dict:
    """Emu3's own generation (its docs' prefix constraint, CFG from the negative prompt) over `new_tokens`
    tokens, projected to the whole image."""
    grid = pipe.layout(size)
    rows = pipe.prompt_rows([PROMPT], None, grid)
    tokenizer = pipe.processor.tokenizer
    visual = pipe.model.model.vocabulary_mapping.image_tokens
    eol = [grid.row_end_token]

    def allowed(batch_id, input_ids):
        offset = input_ids.shape[0] - len(rows.conditional[0])
        return eol if offset % grid.row_stride == grid.width else visual

    ids = torch.tensor(rows.conditional, device=device)
    neg = torch.tensor(rows.unconditional, device=device)
    kwargs = dict(attention_mask=torch.ones_like(ids), prefix_allowed_tokens_fn=allowed, do_sample=True,
                  top_k=pipe.defaults["top_k"], guidance_scale=pipe.defaults["cfg_scale"], negative_prompt_ids=neg,
                  negative_prompt_attention_mask=torch.ones_like(neg), pad_token_id=tokenizer.pad_token_id)
    with PeakMemory(device) as memory:
        sync(device)
        start = time.perf_counter()
        out = pipe.model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
        sync(device)
        seconds = time.perf_counter() - start
    made = int(out.shape[1] - ids.shape[1])
    image_tokens = grid.num_body_tokens + 3  # the body, end-of-frame, end-of-image, EOS
    return dict(what="Emu3ForConditionalGeneration.generate: prefix constraint, CFG 3 from the negative prompt "
                     "(UnbatchedClassifierFreeGuidance), top-k 2048, sampling",
                tokens=made, ms_per_token=1e3 * seconds / made, image_tokens=image_tokens,
                projected_seconds_per_image=seconds / made * image_tokens, **memory.fields(),
                peak_above_model_bytes=memory.above,
                note=f"measured over {made} tokens (prefill included), projected linearly to {image_tokens}; "
                     "attention grows with the sequence, so the projection is a lower bound")


LLAMAGEN_ARGS = ("dim", "n_layer", "n_head", "n_kv_head", "multiple_of", "ffn_dim_multiplier", "rope_base", "norm_eps",
                 "num_classes", "class_dropout_prob", "vocab_size", "cls_token_num", "block_size",
                 "caption_dim")  # upstream's ModelArgs; model_type is our gpt_type


def upstream_llamagen(pipe, device) -> dict:
    """LlamaGen's own generation: upstream's `generate` (tests/llamagen_reference.py, its loop and static KV cache)
    on the pipeline's tensors (assigned into upstream's Transformer: no copy), sampling with the pipeline's defaults
    (c2i: CFG 4, top-k 2000; t2i: CFG 7.5, top-k 1000; temperature 1), one image; t2i: its captions from upstream's
    caption path (`caption_embeddings`) on the pipeline's tokenizer and T5 encoder, inside the timed block (our
    rows encode the caption in their prefill); then our VQ decoder on its codes, so seconds_per_image counts what
    our rows count."""
    from tests import llamagen_reference as upstream

    config = pipe.model.config
    args = upstream.ModelArgs(**{name: getattr(config, name) for name in LLAMAGEN_ARGS}, model_type=config.gpt_type)
    with torch.device("meta"):
        reference = upstream.Transformer(args)
    state = {k: v for k, v in pipe.model.state_dict().items() if not k.startswith("text_encoder.")}  # t2i's T5
    reference.load_state_dict(state, strict=True, assign=True)
    reference.eval()
    with torch.device(device):  # what upstream's __init__ computes (a meta tensor here)
        reference.freqs_cis = upstream.precompute_freqs_cis_2d(config.grid_side, config.dim // config.n_head,
                                                               config.rope_base, config.cls_token_num)
    sampling = {k: pipe.defaults[k] for k in ("cfg_scale", "temperature", "top_k")}
    torch.manual_seed(0)
    with PeakMemory(device) as memory:
        sync(device)
        start = time.perf_counter()
        with torch.device(device):  # as upstream's generate runs setup_caches (and sample_c2i.py makes its labels)
            if pipe.captions:  # T5Embedder.get_text_embeddings + sample_t2i.py's left-padding
                tokenizer = pipe.processor
                tokens = lambda texts, **kw: {k: v.to(device) for k, v in tokenizer(texts, **kw).items()}  # noqa: E731
                cond, masks = upstream.caption_embeddings(tokens, pipe.model.text_encoder, [PROMPT],
                                                          max_length=config.cls_token_num)
            else:
                cond, masks = torch.tensor([CLASS_LABEL]), None
            codes = upstream.generate(reference, cond, config.block_size, masks, sample_logits=True, **sampling)
        sync(device)
        token_seconds = time.perf_counter() - start
        pixels = pipe.decode_pixels(codes.view(1, config.grid_side, config.grid_side).cpu())
        sync(device)
        seconds = time.perf_counter() - start
    captions = "language/t5.py's caption embeddings (T5 encoder) and sample_t2i.py's left-padding, then " \
        if pipe.captions else ""
    return dict(what=f"{captions}upstream generate (autoregressive/models/generate.py at ce98ec4, transcribed in "
                     f"tests/llamagen_reference.py): static KV cache, eager, CFG {sampling['cfg_scale']:g}, top-k "
                     f"{sampling['top_k']}, sampling; then our VQ decoder",
                tokens=int(codes.shape[1]), seconds_per_image=seconds, token_seconds=token_seconds,
                decode_seconds=seconds - token_seconds, ms_per_token=1e3 * token_seconds / codes.shape[1],
                pixels=None if pixels is None else list(pixels.shape[-2:]), **memory.fields(),
                peak_above_model_bytes=memory.above)


# --- driver --------------------------------------------------------------------------------------------------------
class Budget:
    def __init__(self, seconds: float | None):
        self.start, self.seconds = time.perf_counter(), seconds
        self.per_token_byte: float | None = None  # seconds per body token per model byte, of the last image run

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.perf_counter() - self.start)

    def fits(self, estimate: float) -> bool:
        return estimate < self.left()


def bench_family(family: str, args, device, dtype, out_dir: Path, work_dir: Path, budget: Budget,
                 result: dict) -> dict:
    """Fills `result` as it goes (so a family that raises half way keeps the rows it finished) and returns it."""
    scale = "full" if args.full else "reduced"
    vq = "reduced" if args.smoke else args.vq
    size = SMOKE_SIZES[family] if args.smoke else FULL_SIZES[family]
    result.update(released=NAMES[family], scale=scale, vq=vq, dtype=str(dtype).replace("torch.", ""),
                  weights="random (seeded); heads untrained: tokens per pass is not that of trained heads on the "
                          "released weights", runs=[], memory_batches=[])
    # --full and --smoke keep the model they built (--smoke runs --full's code path); otherwise write + load
    pipe, build_seconds = make_pipeline(family, work_dir / family, scale, vq, device, dtype,
                                        save=args.save or not (args.full or args.smoke),
                                        janus_side=SMOKE_SIDES.get(family) if args.smoke else None)
    result.update(build_seconds=build_seconds, grid=grid_summary(pipe, size), size=size, prompt=prompt_of(pipe),
                  parameters=sum(p.numel() for p in pipe.model.parameters()),
                  model_bytes=sum(p.numel() * p.element_size() for p in pipe.model.parameters()))
    print(f"[{family}] built in {build_seconds:.1f}s: {result['grid']}", flush=True)
    pipe.compile = COMPILE_WORDS[args.compile]
    pipe.set_heads(pipe.make_heads())
    # a first estimate from the last family's seconds per body token, scaled by the weights each step streams (an
    # image's time is mostly its passes; Emu3's 8B, with its 184k-id head, against Lumina-mGPT's 7B)
    estimate = None if budget.per_token_byte is None else (budget.per_token_byte * result["grid"]["body_tokens"]
                                                           * result["model_bytes"])
    hf_first = family == "emu3"
    if hf_first:
        result["transformers"] = _guarded(lambda: transformers_emu3(pipe, size, args.hf_tokens, device), budget, 60)
    for mode in [] if args.skip_images else args.modes:
        if estimate is not None and not budget.fits(estimate):
            result["runs"].append(dict(mode=mode, skipped=f"budget: {budget.left():.0f}s left, ~{estimate:.0f}s "
                                                          "needed"))
            continue
        row = run_mode(pipe, family, mode, size, out_dir, device, args.nodes)
        estimate = row["seconds_per_image"]
        budget.per_token_byte = row["seconds_per_image"] / result["grid"]["body_tokens"] / result["model_bytes"]
        result["runs"].append(row)
        print(f"[{family}] {json.dumps(row)}", flush=True)
    if family == "janus":
        result["transformers"] = _guarded(lambda: transformers_janus(pipe, device), budget, estimate or 60)
    elif family == "chameleon":
        result["transformers"] = dict(what="none: transformers' Chameleon has no image generation (its forward "
                                           "masks image-token logits)")
    elif family in LLAMAGEN:  # not in transformers: upstream's own loop
        result["upstream"] = _guarded(lambda: upstream_llamagen(pipe, device), budget, estimate or 60)
    result["decode_memory"] = []
    for batch in args.decode_memory:
        row = run_decode_memory(pipe, size, batch, device)
        result["decode_memory"].append(row)
        print(f"[{family}] decode {json.dumps(row)}", flush=True)
    for batch in args.memory_batch:
        for mode in args.modes:
            if not budget.fits(30):
                result["memory_batches"].append(dict(mode=mode, batch=batch, skipped="budget"))
                continue
            row = memory_batch_row(pipe, mode, size, batch, args.memory_steps, device, args.nodes)
            result["memory_batches"].append(row)
            print(f"[{family}] memory {json.dumps(row)}", flush=True)
    pipe = None  # free the model before the next family's
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _guarded(fn, budget: Budget, estimate: float) -> dict:
    """transformers' own generation: within the budget, and a failure there (its code, its memory) is recorded
    beside our rows instead of ending the run."""
    if not budget.fits(estimate):
        return dict(skipped=f"budget: {budget.left():.0f}s left")
    try:
        row = fn()
    except Exception as error:  # noqa: BLE001 - recorded, and the run goes on
        traceback.print_exc()
        row = dict(failed=f"{type(error).__name__}: {error}")
    print(json.dumps(row), flush=True)
    return row


def _family_failed(family: str, error: Exception, result: dict) -> dict:
    """A family whose run raised: the rows it finished, the error and the last frames; the other families still
    run and the run exits non-zero."""
    traceback.print_exc()
    result.setdefault("released", NAMES[family])
    result.update(failure(error))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the released 7B shapes (GPU)")
    parser.add_argument("--smoke", action="store_true", help="CI: reduced models, small images (< 30 s on a CPU)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="JSON and PNGs")
    parser.add_argument("--work", default=None, help="where the model directories go (default: a temporary "
                                                     "directory, removed at the end)")
    parser.add_argument("--families", default=",".join(ORDER))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--vq", choices=("full", "reduced"), default="full", help="VQ decoders (default: released)")
    parser.add_argument("--nodes", default="32", help="tree nodes per step: an int, or 'auto' (the pipelines' "
                                                      "timed choice; it may pick 1, i.e. AR steps) (default: 32)")
    parser.add_argument("--compile", choices=tuple(COMPILE_WORDS), default="off",
                        help="torch.compile the step (the pipelines' default 'auto' compiles on CUDA; off here: a "
                             "7B compile per family and mode would not fit a 10-minute call)")
    parser.add_argument("--hf-tokens", type=int, default=64, help="tokens of Emu3's transformers generate")
    parser.add_argument("--memory-batch", type=int, nargs="*", default=[], help="batch sizes of memory runs")
    parser.add_argument("--memory-steps", type=int, default=4)
    parser.add_argument("--skip-images", action="store_true", help="memory batches (and transformers) only")
    parser.add_argument("--decode-memory", type=int, nargs="*", default=[],
                        help="batch sizes of a VQ-decoder-only run each (one decoder call, random codes)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget of the whole run")
    parser.add_argument("--save", action="store_true", help="--full: write the weights and load them back")
    parser.add_argument("--device", default=None)
    parser.add_argument("--name", default=None, help="JSON file name (default real_shapes_<scale>_<device>.json)")
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        parser.error(f"--families: expected some of {FAMILIES}, got {args.families!r}")
    if args.full and args.smoke:
        parser.error("--full and --smoke exclude each other")
    args.nodes = args.nodes if args.nodes == "auto" else int(args.nodes)
    if args.smoke:  # small trees and a short transformers run: the code path, not the numbers
        args.nodes = 8 if args.nodes == 32 else args.nodes
        args.hf_tokens = min(args.hf_tokens, 8)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.full and device.type != "cuda":
        print("warning: --full on a CPU builds 7B models (tens of GB of RAM, hours per image)", flush=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    tag = "smoke" if args.smoke else ("full" if args.full else "reduced")
    report = dict(report_header(device, argv, "benchmarks/real_shapes.py"), smoke=args.smoke, scale=tag,
                  threads=torch.get_num_threads(), prompt=PROMPT, timing=TIMING, families={})
    start = time.perf_counter()
    path = out_dir / (args.name or f"real_shapes_{tag}_{device.type}.json")
    signal.signal(signal.SIGTERM, _stopped)  # a timeout's SIGTERM ends the run through `finally`: the JSON is written
    try:
        with tempfile.TemporaryDirectory(prefix="real_shapes_") as tmp:
            work_dir = Path(args.work or tmp)
            for family in [f for f in ORDER if f in families]:
                result = report["families"][family] = {}
                if budget.left() < FAMILY_FLOOR_S:
                    result.update(released=NAMES[family], skipped=f"budget: {budget.left():.0f}s left, a family "
                                                                  f"needs ~{FAMILY_FLOOR_S}s (a build and one image)")
                    continue
                try:
                    bench_family(family, args, device, dtype, out_dir, work_dir, budget, result)
                except Exception as error:  # noqa: BLE001 - recorded; the next family still runs
                    _family_failed(family, error, result)
                gc.collect()  # out here: inside the except block its traceback still held the failed family's model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                report["seconds"] = time.perf_counter() - start
                path.write_text(json.dumps(report, indent=1))  # after each family
    except SystemExit as stop:  # SIGTERM: the rows finished so far (the family under way's included) are kept
        report["stopped"] = str(stop)
        raise
    finally:
        report["seconds"] = time.perf_counter() - start
        path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path} ({report['seconds']:.0f}s)", flush=True)
    failed = [f for f, r in report["families"].items() if "failed" in r]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see 'failed' and 'traceback' in {path})", flush=True)
    return 1 if failed else 0


FAMILY_FLOOR_S = 60  # budget seconds below which a family is not started: a 7B build and one image need more


def _stopped(signum, frame):
    raise SystemExit(f"stopped by signal {signum} (a timeout) after {time.perf_counter() - _STARTED:.0f}s: the "
                     "JSON holds the rows finished before it")


_STARTED = time.perf_counter()


if __name__ == "__main__":
    sys.exit(main())
