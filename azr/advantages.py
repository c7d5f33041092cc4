"""Advantages: Task-Relative REINFORCE++ (SPEC §1 step 6) and a global-baseline variant.

TRR++ normalises rewards separately in each of the G = 6 (task type × role) groups:

    A_i = (r_i − μ_g) / (σ_g + ε),   g = group of response i

with μ_g the group's mean reward and σ_g its **population** standard deviation
(σ² = (1/n_g) Σ (r − μ_g)², i.e. ``unbiased=False``; a group of one then has σ = 0 rather
than an undefined sample std). A group whose rewards are all equal (which includes a group
of one) carries no learning signal and gets A = 0 exactly: this is tested by equality of
the extremes, not by σ ≈ 0, so floating-point dust in μ cannot blow up into ±1 advantages,
and ε = 0 cannot produce NaN.

**Token weighting** (``weights``, the reference implementation's choice): REINFORCE++ in veRL,
which the reference code builds on, whitens the advantage over the batch's response *tokens*. The
reward is broadcast over a response's tokens, so that equals group statistics in which response i
counts w_i = its token count:

    μ_g = Σ w_i r_i / Σ w_i,   σ_g² = Σ w_i (r_i − μ_g)² / Σ w_i

A long response then pulls the baseline towards its own reward. With w = 1 (``weights=None``) these
are the per-sequence statistics above, SPEC §1's equation.

Both estimators share one signature, so the ablation swaps a function and nothing else.
Statistics are computed in float64 and returned in the rewards' dtype.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from azr.records import GROUPS, StepBatch

EPS = 1e-6

AdvantageFn = Callable[[Tensor, Tensor, int, float, "Tensor | None"], Tensor]
"""(rewards (B,), group_ids (B,) int64, num_groups G, eps, weights (B,) or None) -> advantages (B,)."""


class GroupMoments(NamedTuple):
    count: Tensor  # (G,) float64: members, or their total weight
    mean: Tensor  # (G,) float64
    std: Tensor  # (G,) float64, population
    constant: Tensor  # (G,) bool: every reward of the group is equal (true for a group of one)


def group_moments(rewards: Tensor, group_ids: Tensor, num_groups: int, weights: Tensor | None = None) -> GroupMoments:
    """Per group g: n_g = Σ w, μ_g = (1/n_g) Σ w r, σ_g = sqrt((1/n_g) Σ w (r − μ_g)²), and whether all
    its rewards are equal; w = 1 when `weights` is None. Empty groups have n = 0, μ = σ = 0."""
    if rewards.shape != group_ids.shape or rewards.dim() != 1:
        raise ValueError(f"rewards and group_ids must both be (B,), got {tuple(rewards.shape)} and "
                         f"{tuple(group_ids.shape)}")
    if group_ids.numel() and (int(group_ids.min()) < 0 or int(group_ids.max()) >= num_groups):
        raise ValueError(f"group ids must lie in [0, {num_groups})")
    if weights is not None and (weights.shape != rewards.shape or bool((weights <= 0).any())):
        raise ValueError(f"weights must be (B,) and > 0, got shape {tuple(weights.shape)}")
    r = rewards.detach().to(torch.float64)  # (B,)
    gid = group_ids.to(torch.int64)  # (B,)
    w = torch.ones_like(r) if weights is None else weights.detach().to(torch.float64)  # (B,)
    count = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, gid, w)  # (G,)
    n = torch.where(count > 0, count, torch.ones_like(count))  # (G,) no 0/0 in empty groups
    mean = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, gid, w * r) / n  # (G,)
    dev = r - mean[gid]  # (B,)
    var = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, gid, w * dev * dev) / n  # (G,)
    hi = torch.full((num_groups,), -torch.inf, dtype=torch.float64).scatter_reduce(0, gid, r, "amax")  # (G,)
    lo = torch.full((num_groups,), torch.inf, dtype=torch.float64).scatter_reduce(0, gid, r, "amin")  # (G,)
    return GroupMoments(count, mean, var.sqrt(), hi == lo)  # (G,) each


def trr_advantages(rewards: Tensor, group_ids: Tensor, num_groups: int = len(GROUPS), eps: float = EPS,
                   weights: Tensor | None = None) -> Tensor:
    """TRR++: A_i = (r_i − μ_g) / (σ_g + ε) within each group g; A = 0 in a constant group.
    μ_g and σ_g are weighted by `weights` (token counts) when given."""
    m = group_moments(rewards, group_ids, num_groups, weights)  # (G,) each
    gid = group_ids.to(torch.int64)  # (B,)
    r = rewards.detach().to(torch.float64)  # (B,)
    adv = (r - m.mean[gid]) / (m.std[gid] + eps)  # (B,)
    adv = torch.where(m.constant[gid], torch.zeros_like(adv), adv)  # (B,)
    return adv.to(rewards.dtype)  # (B,)


def global_advantages(rewards: Tensor, group_ids: Tensor, num_groups: int = len(GROUPS), eps: float = EPS,
                      weights: Tensor | None = None) -> Tensor:
    """One global baseline (REINFORCE++-style, for the ablation): A_i = (r_i − μ) / (σ + ε)
    over the whole batch; `group_ids` and `num_groups` are ignored."""
    return trr_advantages(rewards, torch.zeros_like(group_ids, dtype=torch.int64), 1, eps, weights)  # (B,)


def assign_advantages(batch: StepBatch, estimator: AdvantageFn = trr_advantages, eps: float = EPS,
                      token_counts: Sequence[int] | None = None) -> StepBatch:
    """The batch with every rollout's advantage set by `estimator` over its (type, role) group;
    with `token_counts` (one per rollout), each rollout weighs its response's token count (at least 1)
    in the group statistics."""
    rewards = torch.tensor(batch.rewards, dtype=torch.float64)  # (B,)
    group_ids = torch.tensor(batch.group_ids, dtype=torch.int64)  # (B,)
    weights = None
    if token_counts is not None:
        if len(token_counts) != len(batch.rollouts):
            raise ValueError(f"{len(token_counts)} token counts for {len(batch.rollouts)} rollouts")
        weights = torch.tensor([max(1, int(c)) for c in token_counts], dtype=torch.float64)  # (B,)
    adv = estimator(rewards, group_ids, len(GROUPS), eps, weights)  # (B,)
    return batch.with_advantages(adv.tolist())
