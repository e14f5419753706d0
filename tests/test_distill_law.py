"""Distillation through the fastest lossless mode (issue 21): `hawk distill --mode jacobi` shards follow the same
law as `--mode ar` shards. A two-sample chi-square test per image position (several positions across the image,
Bonferroni-corrected) accepts jacobi vs ar, and rejects the negative control: AR at temperature 1.15."""
import math
import os
import time

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.training import ShardSequences, distill

POSITIONS = (65, 80, 97, 109, 114, 126, 143)  # body offsets inside the 14 x 14 digit (row stride 15), where
#                                                 strokes vary; row ends are excluded below


def _samples(pipe, out_dir, mode, images, temperature=1.0):
    start = time.perf_counter()
    manifest = distill(pipe, ["a handwritten digit three"], out_dir, images_per_prompt=images, batch_size=images,
                       seed=0 if mode == "ar" else 10**6, cfg_scale=1.0, temperature=temperature, mode=mode,
                       progress=False)
    seconds = time.perf_counter() - start
    data = ShardSequences(out_dir)
    sequences, _ = data.rows(torch.arange(len(data)))
    return sequences[:, data.body_start:], seconds, manifest


def _two_sample_pvalue(a: torch.Tensor, b: torch.Tensor) -> float:
    """Chi-square two-sample test of two equal-size samples of tokens (bins with < 10 draws in all pooled)."""
    tokens = torch.cat([a, b]).unique()
    ca = torch.stack([(a == t).sum() for t in tokens]).double()
    cb = torch.stack([(b == t).sum() for t in tokens]).double()
    order = torch.argsort(ca + cb)
    ca, cb = ca[order], cb[order]
    small = (ca + cb).cumsum(0) < 10  # the rarest tokens, pooled into one bin
    ca = torch.cat([ca[small].sum(0, keepdim=True), ca[~small]])
    cb = torch.cat([cb[small].sum(0, keepdim=True), cb[~small]])
    keep = (ca + cb) > 0
    ca, cb = ca[keep], cb[keep]
    dof = len(ca) - 1
    if dof < 1:
        return 1.0
    stat = float(((ca - cb) ** 2 / (ca + cb)).sum())
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))  # Wilson-Hilferty
    return 0.5 * math.erfc(z / math.sqrt(2))


def _min_pvalue(first, second, grid) -> float:
    positions = [p for p in POSITIONS if not bool(grid.is_forced(torch.tensor(p)))]
    assert len(positions) >= 5
    pvalues = [_two_sample_pvalue(first[:, p], second[:, p]) for p in positions]
    print("positions", positions, "p-values", [f"{v:.3g}" for v in pvalues])
    return min(pvalues) * len(positions)  # Bonferroni


@pytest.mark.slow
def test_jacobi_shards_follow_the_ar_law(tmp_path):
    pipe = hk.load_demo_pipeline(device="cpu")
    torch.set_num_threads(1)
    images = int(os.environ.get("HAWK_LAW_IMAGES", "1024"))
    ar, ar_s, _ = _samples(pipe, tmp_path / "ar", "ar", images)
    jacobi, jacobi_s, manifest = _samples(pipe, tmp_path / "jacobi", "jacobi", images)
    hot, _, _ = _samples(pipe, tmp_path / "hot", "ar", images, temperature=1.15)
    assert manifest["settings"]["mode"] == "jacobi"
    same, control = _min_pvalue(jacobi, ar, pipe.grid), _min_pvalue(jacobi, hot, pipe.grid)
    print(f"jacobi vs ar: min p x positions {same:.3g} ({jacobi_s:.1f} s vs {ar_s:.1f} s); "
          f"vs ar at T=1.15: {control:.3g}")
    assert same > 1e-3 and control < 1e-3
