"""Draft-head training at Lumina-mGPT-7B scale: what `hawk train-heads` costs per image on this device.

Measures, on a 7B-shaped Llama (hidden 4096, 32 layers, 65,536 vocabulary, random bf16 weights) with the 768 px
layout (48 rows of 48 codes + row end, a 64-token prompt: 2,417 tokens per sequence):
  * hidden-state throughput of the frozen backbone (`training.backbone_hidden`, one micro-batch), as sequences
    per second and as a fraction of the matmul FLOP/s MEASURED in the run (timing.matmul_flops: a large bf16
    GEMM on a GPU, fp32 on a CPU), counting 2 x (parameters the layers multiply by: not the embedding, not the
    output head, which backbone_hidden does not run) x tokens FLOPs, attention's score products left out; on an
    H100 / H200 also the fraction of their datasheet dense bf16 peak, labelled as such;
  * one optimiser step of the streaming trainer (`trainer`): hidden states, 4 horizontal + 2 vertical heads
    forward and backward over the shared lm_head rows (bf16 autocast), AdamW; and peak device memory;
  * the projected hours for --images images x --epochs epochs on one GPU (and on --gpus GPUs under torchrun).
Times are medians of CUDA-event timings after warm-up (time.perf_counter on a CPU). --tiny runs a small shape on
the CPU (the smoke test CI runs). Results: --out/heads_training_<device>.json.

    python benchmarks/heads_training.py --out DIR [--layers 32] [--micro-batch 2] [--images 6000] [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from timing import matmul_flops, median_seconds, report_header
from e2e import big_model

import hawk_kernels as hk
from hawk_kernels.training import head_trainer as trainer
from hawk_kernels.backbones import backbone_for
from hawk_kernels.training.batch_losses import backbone_hidden

BF16_PEAK_FLOPS = 989e12  # dense bf16 peak of an H100 / H200 SXM (datasheet; the same for both): not measured
DATASHEET_GPUS = ("H100", "H200")  # the GPUs BF16_PEAK_FLOPS is the datasheet figure of
PROMPT_TOKENS = 64


def tiny_model(device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device).eval()
    return model, sum(p.numel() * p.element_size() for p in model.parameters())


def synthetic_data(grid, count: int, text_vocab: int, seed: int = 0) -> trainer.TensorSequences:
    """Random prompts and image bodies in `grid`'s layout (timing needs shapes, not realism)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = grid.image_token_range
    codes = torch.randint(lo, hi, (count, grid.height, grid.width), generator=gen)
    prompts = torch.randint(hi + 1, text_vocab, (count, PROMPT_TOKENS), generator=gen)
    return trainer.TensorSequences(torch.cat([prompts, grid.generated_tokens(codes)], dim=1), PROMPT_TOKENS)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--micro-batch", type=int, default=2, help="sequences per forward (one rank)")
    ap.add_argument("--images", type=int, default=6000, help="training images of the projection")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the projection")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs of the multi-GPU projection")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tiny", action="store_true", help="a small shape on the CPU (smoke test)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        model, weight_bytes = tiny_model(device)
        grid = hk.ImageGrid(height=6, width=6, row_end_token=300, image_token_range=(4, 260), image_end_token=301)
    else:
        model, weight_bytes = big_model(device, args.layers)
        grid = hk.ImageGrid.lumina_mgpt(768)
    config = model.config
    data = synthetic_data(grid, 4 * args.micro_batch, config.vocab_size)
    heads = hk.DraftHeads(config.hidden_size, config.vocab_size, num_horizontal=4, vertical_depth=2,
                          image_token_range=grid.image_token_range)
    ctx = trainer._context(model, heads, grid, rank=0, world=1)  # the trainer's own step, without its loop
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-4)
    batch = torch.arange(args.micro_batch)
    sequences, lengths = (t.to(device) for t in data.rows(batch))
    on_cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else torch.autocast("cpu", enabled=False)

    backbone = backbone_for(model, grid)  # training reads the model through its adapter

    def hidden():
        with autocast:
            backbone_hidden(backbone, sequences, data.body_start, lengths)

    def step():
        trainer._optimiser_step(ctx, data, batch.view(1, -1), opt)

    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    hidden_s = median_seconds(hidden, on_cuda, warmup=2, repeats=args.repeats)
    step_s = median_seconds(step, on_cuda, warmup=2, repeats=args.repeats)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None  # before the matmul measurement
    tokens = args.micro_batch * sequences.shape[1]
    skipped = {id(w): w for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)}
    params = sum(p.numel() for p in model.parameters()) - sum(w.numel() for w in skipped.values())
    hidden_flops = 2 * params * tokens / hidden_s
    matmul = matmul_flops(device)
    datasheet = on_cuda and any(name in torch.cuda.get_device_name(device) for name in DATASHEET_GPUS)
    steps_total = args.images * args.epochs / args.micro_batch
    report = report_header(device)
    report.update(
        shape=dict(hidden=config.hidden_size, layers=config.num_hidden_layers, vocab=config.vocab_size,
                   sequence_tokens=int(sequences.shape[1]), layout=[grid.height, grid.width],
                   heads="4 horizontal + 2 vertical, 1 ResBlock each, shared lm_head rows"),
        micro_batch=args.micro_batch, weight_bytes=weight_bytes,
        warmup=2, repeats=args.repeats, statistic="median after warm-up",
        hidden_ms=1e3 * hidden_s, hidden_sequences_per_s=args.micro_batch / hidden_s,
        hidden_flops_per_s=hidden_flops, hidden_matmul_params=params, matmul=matmul,
        hidden_fraction_of_measured_matmul=hidden_flops / matmul["flops_per_s"],
        hidden_fraction_of_datasheet_bf16_peak=hidden_flops / BF16_PEAK_FLOPS if datasheet else None,
        datasheet_bf16_peak_flops=BF16_PEAK_FLOPS if datasheet else None,
        step_ms=1e3 * step_s, step_sequences_per_s=args.micro_batch / step_s,
        heads_share_of_step=1 - hidden_s / step_s,
        peak_device_gib=peak_gib,
        projection=dict(images=args.images, epochs=args.epochs, hours_one_gpu=steps_total * step_s / 3600,
                        gpus=args.gpus, hours_multi_gpu=steps_total * step_s / 3600 / args.gpus,
                        note="linear in GPUs: DDP all-reduces only the heads' ~0.1B parameters per step"))
    print(json.dumps(report, indent=1))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"heads_training_{'tiny_' if args.tiny else ''}{device.type}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
