"""Two-sample tests of token laws, for the distillation law tests (test_distill_law.py).

Per image position, a two-sample chi-square statistic of the tokens there; the positions are pooled into one
test with the sum of their standardized statistics, (X_p - dof_p) / sqrt(2 dof_p). The positions of one image
are dependent, so that sum is not referred to a chi-square law as if they were independent: its null
distribution comes from permuting the image labels between the two samples (images are independent, and
exchangeable when both samples follow one law), with a seeded generator. The same permutations give each
position's own p-value. Bins are fixed from the pooled sample (which a permutation does not change): at each
position the tokens drawn fewer than `min_count` times in all share one bin; positions with one bin are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LawTest:
    pvalue: float  # the pooled test's permutation p-value, (1 + #{null >= observed}) / (1 + permutations)
    z: float  # the observed pooled statistic in standard deviations of its permutation null
    positions: list[int]  # the positions pooled (those with >= 2 bins)
    position_pvalues: dict[int, float]  # per-position permutation p-values at the positions asked to report
    permutations: int


def _bins(pooled: torch.Tensor, positions, min_count: int):
    """pooled [N, L] tokens -> (bin of each row at each kept position [N, P], the kept position of each bin,
    degrees of freedom per kept position, kept positions); bins are numbered across positions."""
    columns, owner, dofs, kept = [], [], [], []
    for position in positions:
        _, inverse, counts = pooled[:, position].unique(return_inverse=True, return_counts=True)
        common = counts >= min_count
        bin_of_token = torch.where(common, common.cumsum(0), 0)  # 0: the pooled rare tokens
        used, bin_of_token = bin_of_token.unique(return_inverse=True)
        if len(used) < 2:
            continue
        columns.append(bin_of_token[inverse] + len(owner))
        owner += [len(kept)] * len(used)
        dofs.append(len(used) - 1)
        kept.append(int(position))
    if not kept:
        raise ValueError("law test: no position has two or more bins")
    return torch.stack(columns, 1), torch.tensor(owner), torch.tensor(dofs, dtype=torch.float64), kept


def _chi_squares(first_bins: torch.Tensor, total: torch.Tensor, owner: torch.Tensor, positions: int):
    """Per-position two-sample chi-square of equal-size samples: sum over bins of (a - b)^2 / (a + b)."""
    a = torch.bincount(first_bins.flatten(), minlength=len(total)).double()
    terms = (2 * a - total) ** 2 / total
    return torch.zeros(positions, dtype=torch.float64).index_add_(0, owner, terms)


def permutation_law_test(first: torch.Tensor, second: torch.Tensor, positions, report=(), permutations: int = 1999,
                         seed: int = 0, min_count: int = 10) -> LawTest:
    """Do two equal-size samples of token rows [N, L] follow one law at `positions`? One pooled permutation
    test; `report`: positions whose own p-values to return (those among the kept positions)."""
    if first.shape != second.shape:
        raise ValueError(f"law test: samples of equal shape expected, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    bins, owner, dofs, kept = _bins(torch.cat([first, second]), positions, min_count)
    total = torch.bincount(bins.flatten(), minlength=len(owner)).double()
    n = len(first)

    def statistics(order):
        chi = _chi_squares(bins[order[:n]], total, owner, len(kept))
        return chi, ((chi - dofs) / (2 * dofs).sqrt()).sum()

    observed, pooled = statistics(torch.arange(2 * n))
    generator = torch.Generator().manual_seed(seed)
    null = [statistics(torch.randperm(2 * n, generator=generator)) for _ in range(permutations)]
    null_chi = torch.stack([chi for chi, _ in null])
    null_pooled = torch.stack([s for _, s in null])
    pvalue = (int((null_pooled >= pooled).sum()) + 1) / (permutations + 1)
    per_position = ((null_chi >= observed).sum(0) + 1).double() / (permutations + 1)
    z = float((pooled - null_pooled.mean()) / null_pooled.std())
    return LawTest(pvalue, z, kept, {p: float(per_position[kept.index(p)]) for p in report if p in kept},
                   permutations)
