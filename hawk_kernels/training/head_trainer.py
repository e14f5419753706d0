"""The head trainer loop, the one trainer: the frozen backbone computes hidden states batch by batch on the device
(never for the whole data set), so host and device memory do not grow with the data set; data in memory
(`TensorSequences`) or a `hawk distill` directory read shard by shard (`ShardSequences`, both in sequences.py);
DistributedDataParallel under torchrun (NCCL on GPUs, gloo on CPUs); checkpoints that resume exactly. What one
batch computes (hidden states, targets, losses) is batch_losses.py.

Determinism: the held-out split is a fixed permutation of the sequence indices (SPLIT_SEED); epoch e visits
the training indices in the permutation of (seed, e). Optimiser step k takes global batch k of that order, cut
into `accumulation` micro-batches, each split evenly across the ranks. Each head's loss is its summed token
loss over the micro-batch divided by the micro-batch's token count summed over ranks (one all_reduce), so
R processes with the same global batch compute the same gradients as one process, up to float summation order.
A checkpoint holds heads, optimiser, scheduler, step and RNG; the data position is the step itself.
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..backbones import backbone_for
from ..checks import as_float, as_int
from ..fingerprint import model_fingerprint
from ..grid import ImageGrid
from ..heads import TREE_RATES_FILE, DraftHeads
from .batch_losses import backbone_hidden, check_token_ids, head_losses, head_targets, shared_rows
from .sequences import ShardSequences, TensorSequences, split_indices

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    lr: float = 3e-3
    batch_size: int = 32  # global: sequences per optimiser step, over all ranks and micro-batches
    accumulation: int = 1  # micro-batches per optimiser step
    warmup: float = 0.05  # fraction of the steps with a linear warm-up, then cosine to zero
    eval_fraction: float = 0.1
    checkpoint_every: int = 0  # optimiser steps between checkpoints (0: none)
    seed: int = 0

    def __post_init__(self):
        for name, low in (("epochs", 1), ("batch_size", 1), ("accumulation", 1), ("checkpoint_every", 0)):
            object.__setattr__(self, name, as_int(name, getattr(self, name), low))
        object.__setattr__(self, "seed", as_int("seed", self.seed, 0, 2**63 - 1))
        object.__setattr__(self, "lr", as_float("lr", self.lr, 0.0, low_open=True))
        object.__setattr__(self, "warmup", as_float("warmup", self.warmup, 0.0, 1.0))
        object.__setattr__(self, "eval_fraction", as_float("eval_fraction", self.eval_fraction, 0.0, 0.5))


@dataclass
class HeadMetrics:
    """Per-head loss and top-1 accuracy on the evaluation sequences; `table` prints them by distance."""

    offsets: list[int]
    loss: list[float] = field(default_factory=list)
    top1: list[float] = field(default_factory=list)

    def table(self, num_horizontal: int) -> str:
        lines = ["head        distance  loss    top-1"]
        for k, (off, loss, acc) in enumerate(zip(self.offsets, self.loss, self.top1)):
            kind = f"horizontal{k + 1}" if k < num_horizontal else f"vertical{k - num_horizontal + 1}"
            lines.append(f"{kind:<12}{off:>8}  {loss:6.3f}  {acc:6.3f}")
        return "\n".join(lines)


def check_heads_fit(num_horizontal: int, vertical_depth: int, height: int, width: int) -> None:
    """Every head of a set must have targets in an image of `height` rows of `width` codes: a vertical head d
    predicts the code d rows below, so vertical_depth <= height - 1; horizontal heads draft along a row, at most
    one per code of it (num_horizontal <= width). ValueError naming num_horizontal / vertical_depth (a head
    without targets would train on nothing and report loss 0)."""
    if vertical_depth > height - 1:
        rows = f"{height - 1} row{'' if height == 2 else 's'}"
        raise ValueError(f"vertical_depth: expected <= {height - 1} (a vertical head d predicts the code d rows "
                         f"below; this {height}x{width} layout has {rows} below its first), got {vertical_depth}")
    if num_horizontal > width:
        raise ValueError(f"num_horizontal: expected <= {width} (horizontal heads draft along a row of this "
                         f"{height}x{width} layout, at most one per code), got {num_horizontal}")


# --- training ------------------------------------------------------------------------------------------
@dataclass
class _Context:
    backbone: object  # the model's backbone adapter (backbones.backbone_for)
    heads: DraftHeads
    trained: torch.nn.Module  # heads, or their DDP wrapper
    head_rows: torch.Tensor | None
    offsets: list
    grid: ImageGrid
    device: torch.device
    rank: int
    world: int


def train_heads(model, heads: DraftHeads, data: TensorSequences | ShardSequences, grid: ImageGrid,
                config: TrainConfig = TrainConfig(), *, held_out=None, checkpoint_dir=None, resume: bool = False,
                progress: bool = True, stop_after: int | None = None) -> HeadMetrics:
    """Train `heads` in place on `data` (TensorSequences or ShardSequences) on the model's device; under
    torchrun the process group is set up here (the model must already sit on this rank's device).
    model: a backbone adapter (`pipe.backbone(grid)`), or a transformers causal LM, which gets its adapter
    (`backbones.backbone_for(model, grid)`: Janus, Emu3 and Chameleon checkpoints their family's). held_out:
    evaluation data (default: config.eval_fraction of `data`, held out).
    Returns per-head loss and top-1 on the held-out sequences. stop_after: return after that many optimiser
    steps (tests: a "kill")."""
    from ..progress import progress_bar

    try:
        check_heads_fit(heads.num_horizontal, heads.vertical_depth, grid.height, grid.width)
    except ValueError as exc:
        raise ValueError(f"heads: {exc}") from None
    backbone = backbone_for(model, grid)
    heads.check_for(backbone, grid, trained_for=False)  # training gives them this model's fingerprint
    rank, world = _init_distributed(backbone.device)
    train_idx, held_idx = split_indices(len(data), 0.0 if held_out is not None else config.eval_fraction)
    micro = config.batch_size // config.accumulation
    if config.batch_size % config.accumulation or micro % world:
        raise ValueError(f"batch_size: {config.batch_size} must split into accumulation={config.accumulation} "
                         f"micro-batches divisible by the {world} processes")
    steps_per_epoch = len(train_idx) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size: {config.batch_size} exceeds the {len(train_idx)} training sequences")
    total = config.epochs * steps_per_epoch
    ctx = _context(backbone, heads, grid, rank, world)
    opt = torch.optim.AdamW(heads.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(total, config.warmup))
    identity = run_identity(config, heads.num_horizontal, heads.vertical_depth, heads.config.num_layers, data)
    step = _resume(checkpoint_dir, heads, opt, sched, identity) if resume else 0
    bar = progress_bar(total, "train heads", not progress or rank != 0, initial=step, unit="step")
    while step < total and (stop_after is None or step < stop_after):
        epoch, index = divmod(step, steps_per_epoch)
        order = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(config.seed + epoch))]
        batch = order[index * config.batch_size: (index + 1) * config.batch_size]
        loss = _optimiser_step(ctx, data, batch.view(config.accumulation, world, -1)[:, rank], opt)
        sched.step()
        step += 1
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update()
        if config.checkpoint_every and step % config.checkpoint_every == 0 and rank == 0 and checkpoint_dir:
            _save_checkpoint(checkpoint_dir, step, heads, opt, sched, config, identity)
    bar.close()
    heads.eval()
    heads.config = replace(heads.config, model_fingerprint=model_fingerprint(backbone))  # what they were trained for
    # evaluation in micro-batches of the training's size: the same memory bound as a training step
    if held_out is not None:
        return _evaluate(ctx, held_out, torch.arange(len(held_out)), micro)
    return _evaluate(ctx, data, held_idx if len(held_idx) else train_idx[:micro], micro)


@torch.no_grad()
def evaluate_heads(model, heads: DraftHeads, data: TensorSequences | ShardSequences, grid: ImageGrid,
                   batch_size: int = 32) -> HeadMetrics:
    """Per-head loss and top-1 of `heads` over all of `data` (TensorSequences or ShardSequences); the heads are
    left in the mode and dtype they came in (the losses are computed in float32, as in training)."""
    was_training, dtype = heads.training, next(heads.parameters()).dtype
    metrics = _evaluate(_context(model, heads, grid, 0, 1), data, torch.arange(len(data)), batch_size)
    heads.to(dtype).train(was_training)
    return metrics


def _context(model, heads, grid, rank, world) -> _Context:
    """model: a backbone adapter or a causal LM (backbone_for); its weights are frozen here."""
    backbone = backbone_for(model, grid)
    backbone.model.requires_grad_(False)
    device = backbone.device
    heads.to(device).float().train()
    trained = heads
    if world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(heads, device_ids=[device.index] if device.type == "cuda" else None)
    return _Context(backbone, heads, trained, shared_rows(backbone, heads), heads.offsets(grid.row_stride), grid,
                    device, rank, world)


def _optimiser_step(ctx: _Context, data, micro_batches: torch.Tensor, opt) -> float:
    """micro_batches [accumulation, local]: this rank's sequence indices."""
    opt.zero_grad()
    total = 0.0
    for m, indices in enumerate(micro_batches):
        last = m == len(micro_batches) - 1
        sync = nullcontext() if last or ctx.world == 1 else ctx.trained.no_sync()
        with sync:
            loss_sum, _, count = _micro_losses(ctx, data, indices, ctx.trained)
            count = _all_reduce(count.float(), ctx.world)
            loss = (loss_sum / count.clamp(min=1)).sum() * ctx.world / len(micro_batches)
            loss.backward()
        total += float(_all_reduce(loss.detach().clone(), ctx.world)) / ctx.world  # all ranks' loss, for display
    opt.step()
    return total / ctx.heads.config.num_heads


def _micro_losses(ctx: _Context, data, indices: torch.Tensor, heads_module):
    """-> per head: summed token loss, correct top-1 count, token count over the sequences `indices` of `data`.
    Hidden states stay on the device (bf16 autocast on CUDA). Ids the embedding would clamp are refused."""
    sequences, prompt_lengths = data.rows(indices)
    check_token_ids(sequences, data.body_start, ctx.grid, ctx.backbone.vocab_size, index=indices)
    sequences, prompt_lengths = sequences.to(ctx.device), prompt_lengths.to(ctx.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if ctx.device.type == "cuda" else nullcontext()
    with autocast:
        hidden = backbone_hidden(ctx.backbone, sequences, data.body_start, prompt_lengths)
        targets, valid = head_targets(sequences, data.body_start, ctx.grid, ctx.offsets)
        return head_losses(heads_module, hidden, ctx.head_rows, targets, valid)


@torch.no_grad()
def _evaluate(ctx: _Context, data, indices: torch.Tensor, batch_size: int) -> HeadMetrics:
    heads = ctx.heads.config.num_heads
    loss_sum, correct, count = (torch.zeros(heads, device=ctx.device) for _ in range(3))
    for chunk in indices.split(max(1, batch_size)):
        l, c, n = _micro_losses(ctx, data, chunk, ctx.heads)
        loss_sum, correct, count = loss_sum + l, correct + c, count + n
    count = count.clamp(min=1)
    return HeadMetrics(ctx.offsets, (loss_sum / count).tolist(), (correct / count).tolist())


def _warmup_cosine(total: int, warmup: float):
    warm = max(1, int(warmup * total)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world) under torchrun, with the process group started: NCCL for a model on a GPU, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":  # NCCL's communicators live on the current device: this rank's GPU
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _all_reduce(tensor: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


# --- saving and checkpoints ------------------------------------------------------------------------------
def save_heads(heads: DraftHeads, directory) -> Path | None:
    """Save trained heads into `directory` (DraftHeads.save_pretrained, from the CPU). Tree rates already there
    were measured with the heads being replaced and would mis-shape every tree: they are removed, and their
    path returned (None when there were none)."""
    directory = Path(directory)
    stale = directory / TREE_RATES_FILE
    removed = stale if stale.exists() else None
    if removed is not None:
        stale.unlink()
    heads.cpu().save_pretrained(str(directory))
    return removed



def _save_checkpoint(directory, step: int, heads, opt, sched, config: TrainConfig, identity: dict | None = None) -> None:
    directory = Path(directory) / CHECKPOINTS
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}.pt"
    partial = final.with_name(final.name + ".partial")
    torch.save(dict(step=step, heads=heads.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    rng=torch.get_rng_state(), config=asdict(config), identity=identity), partial)
    os.replace(partial, final)


def latest_checkpoint(directory) -> Path | None:
    """The newest checkpoint under directory/checkpoints (None: none there)."""
    found = sorted((Path(directory) / CHECKPOINTS).glob("step-*.pt")) if directory else []
    return found[-1] if found else None


def remove_checkpoints(directory) -> int:
    """Delete the checkpoints under directory/checkpoints (a fresh run replacing another's: a later resume must not
    continue the old run); returns how many were removed."""
    found = sorted((Path(directory) / CHECKPOINTS).glob("step-*.pt*")) if directory else []
    for path in found:
        path.unlink()
    return len(found)


RESUMED_SETTINGS = ("epochs", "lr", "batch_size", "accumulation", "warmup", "eval_fraction", "seed")  # what a step's
# batch and learning rate depend on (checkpoint_every may change on resume)


def run_identity(config: TrainConfig, num_horizontal: int, vertical_depth: int, num_layers: int, data) -> dict:
    """What a checkpoint must share with the run that resumes it: the training settings that fix each step's batch
    and learning rate, the heads' shape and the data (a `hawk distill` manifest's digest, or the sequences')."""
    import hashlib
    import json

    if isinstance(data, ShardSequences):
        digest = hashlib.sha256(json.dumps(data.manifest, sort_keys=True).encode()).hexdigest()[:16]
    else:
        digest = hashlib.sha256(data.sequences.contiguous().numpy().tobytes()).hexdigest()[:16]
    return dict(config={key: getattr(config, key) for key in RESUMED_SETTINGS},
                heads=dict(num_horizontal=num_horizontal, vertical_depth=vertical_depth, num_layers=num_layers),
                data=dict(sequences=len(data), digest=digest))


def check_checkpoint(directory, identity: dict) -> Path | None:
    """The latest checkpoint under directory/checkpoints (None: none), refused with a ValueError naming the first
    setting it was made with that differs from `identity` (`run_identity`): resuming it would silently train
    another run (its optimiser state and learning-rate schedule override the new settings, its step indexes
    another batch order). A checkpoint written before identities were recorded is compared on its config."""
    return _checked_checkpoint(directory, identity)[0]


def _checked_checkpoint(directory, identity: dict) -> tuple[Path | None, dict | None]:
    """check_checkpoint's (path, loaded state): read once, for the check and for the resume."""
    latest = latest_checkpoint(directory)
    if latest is None:
        return None, None
    try:
        state = torch.load(latest, weights_only=False, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(f"resume: checkpoint {str(latest)!r} is unreadable ({type(exc).__name__}); delete it to "
                         f"resume from the one before") from None
    recorded = state.get("identity") or dict(config=state.get("config") or {})
    for section in ("config", "heads", "data"):
        for key, value in (identity.get(section) or {}).items():
            old = (recorded.get(section) or {}).get(key, value)
            if old != value:
                name = "data" if section == "data" else key
                raise ValueError(f"{name}: checkpoint {latest.name} was made with {key} {old!r}, not {value!r}; "
                                 f"resume with the settings that made it, or start afresh (without resume)")
    return latest, state


def _resume(directory, heads, opt, sched, identity: dict | None = None) -> int:
    """Load the latest checkpoint under directory/checkpoints (checked against `identity`); returns its step
    (0 when there is none)."""
    latest, state = _checked_checkpoint(directory, identity or {})
    if latest is None:
        return 0
    try:
        heads.load_state_dict(state["heads"])
    except RuntimeError:
        raise ValueError(f"heads: checkpoint {latest.name} holds heads of another shape than these "
                         f"({heads.num_horizontal} horizontal, {heads.vertical_depth} vertical, "
                         f"{heads.config.num_layers} layer(s)); resume with the heads that made it") from None
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return int(state["step"])
