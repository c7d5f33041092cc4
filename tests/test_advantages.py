"""TRR++ and the global baseline against hand-computed values, including degenerate groups."""

from __future__ import annotations

import math
import random

import pytest
import torch

from azr.advantages import assign_advantages, global_advantages, group_moments, trr_advantages
from azr.records import GROUPS, Role, Rollout, StepBatch, TaskType

# Six groups of unequal size, interleaved in the batch:
#   g0: [1, -1, 0.5, -0.5]  μ = 0,   σ² = (1 + 1 + .25 + .25)/4 = 0.625
#   g1: [1, 0]              μ = .5,  σ = .5
#   g2: [0.7]               a group of one -> 0
#   g3: [-0.5, -0.5, -0.5]  zero variance  -> 0
#   g4: [0.1, 0.1, 0.1]     zero variance with float dust in μ -> exactly 0
#   g5: [-1, 0.5, 0.5]      μ = 0,   σ² = (1 + .25 + .25)/3 = 0.5
REWARDS = [1.0, 1.0, 0.7, -0.5, 0.1, -1.0, -1.0, 0.0, -0.5, 0.1, 0.5, 0.5, -0.5, 0.1, 0.5, -0.5]
GIDS = [0, 1, 2, 3, 4, 5, 0, 1, 3, 4, 5, 0, 3, 4, 5, 0]
s0, s5 = math.sqrt(0.625), math.sqrt(0.5)
EXPECTED = {  # by position, eps = 0
    0: 1 / s0, 6: -1 / s0, 11: 0.5 / s0, 15: -0.5 / s0,
    1: 1.0, 7: -1.0,
    2: 0.0, 3: 0.0, 8: 0.0, 12: 0.0, 4: 0.0, 9: 0.0, 13: 0.0,
    5: -1 / s5, 10: 0.5 / s5, 14: 0.5 / s5,
}


def _tensors(dtype=torch.float64):
    return torch.tensor(REWARDS, dtype=dtype), torch.tensor(GIDS)


def test_trr_hand_computed_eps0():
    r, g = _tensors()
    adv = trr_advantages(r, g, 6, eps=0.0)
    assert not torch.isnan(adv).any()
    for i, a in EXPECTED.items():
        assert adv[i].item() == pytest.approx(a, abs=1e-12), i


def test_trr_with_eps_and_degenerate_groups_exactly_zero():
    r, g = _tensors(torch.float32)
    adv = trr_advantages(r, g, 6, eps=1e-6)
    assert adv.dtype == torch.float32
    assert adv[1].item() == pytest.approx(0.5 / (0.5 + 1e-6), rel=1e-6)
    for i in (2, 3, 8, 12, 4, 9, 13):
        assert adv[i].item() == 0.0  # exact, not approximately


def test_population_std():
    r, g = _tensors()
    m = group_moments(r, g, 6)
    assert m.count.tolist() == [4, 2, 1, 3, 3, 3]
    assert m.std[0].item() == pytest.approx(s0) and m.std[1].item() == pytest.approx(0.5)
    assert m.constant.tolist() == [False, False, True, True, True, False]


def test_each_nonconstant_group_is_standardised():
    r, g = _tensors()
    adv = trr_advantages(r, g, 6, eps=0.0)
    for k in (0, 1, 5):
        a = adv[g == k]
        assert a.mean().item() == pytest.approx(0.0, abs=1e-12)
        assert a.std(unbiased=False).item() == pytest.approx(1.0)


def test_global_baseline_hand_computed():
    r = torch.tensor([1.0, 0.0, -1.0, 0.0])  # μ = 0, σ² = 0.5
    g = torch.tensor([0, 1, 2, 3])  # groups ignored
    adv = global_advantages(r, g, 6, 0.0)
    assert adv.tolist() == pytest.approx([1 / s5, 0.0, -1 / s5, 0.0])
    assert global_advantages(torch.tensor([0.3, 0.3]), torch.tensor([0, 5]), 6, 0.0).tolist() == [0.0, 0.0]


def test_same_signature_swaps():
    r, g = _tensors()
    for fn in (trr_advantages, global_advantages):
        assert fn(r, g, 6, 1e-6).shape == r.shape


def test_empty_and_bad_input():
    empty = trr_advantages(torch.tensor([]), torch.tensor([], dtype=torch.long))
    assert empty.shape == (0,)
    with pytest.raises(ValueError):
        trr_advantages(torch.tensor([1.0]), torch.tensor([6]))
    with pytest.raises(ValueError):
        trr_advantages(torch.tensor([1.0, 2.0]), torch.tensor([0]))


def test_assign_advantages_on_a_step_batch():
    rollouts = [Rollout("p", "r", *GROUPS[gid], reward, True) for reward, gid in zip(REWARDS, GIDS)]
    batch = assign_advantages(StepBatch(0, rollouts), eps=0.0)
    for i, a in EXPECTED.items():
        assert batch.rollouts[i].advantage == pytest.approx(a, abs=1e-12)
    glob = assign_advantages(StepBatch(0, rollouts), global_advantages)
    assert glob.advantages != batch.advantages
    assert GROUPS[GIDS[5]] == (TaskType.INDUCTION, Role.SOLVE)


def test_token_weighted_moments_by_hand():
    # g0: r = [1, -1], w = [3, 1]:    μ = (3 - 1)/4 = 0.5, σ² = (3·0.25 + 1·2.25)/4 = 0.75
    # g1: r = [1, 0, 0], w = [2, 1, 1]: μ = 2/4 = 0.5,   σ² = (2·0.25 + 0.25 + 0.25)/4 = 0.25
    #     (per sequence: μ = 1/3, σ² = 2/9, A = [√2, -1/√2, -1/√2])
    r = torch.tensor([1.0, 1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    g = torch.tensor([0, 1, 0, 1, 1])
    w = torch.tensor([3.0, 2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    m = group_moments(r, g, 2, w)
    assert m.count.tolist() == [4.0, 4.0]
    assert m.mean.tolist() == pytest.approx([0.5, 0.5])
    assert m.std.tolist() == pytest.approx([math.sqrt(0.75), 0.5])
    s = math.sqrt(0.75)
    assert trr_advantages(r, g, 2, 0.0, w).tolist() == pytest.approx([0.5 / s, 1.0, -1.5 / s, -1.0, -1.0])
    assert trr_advantages(r, g, 2, 0.0).tolist() == pytest.approx(
        [1.0, math.sqrt(2), -1.0, -1 / math.sqrt(2), -1 / math.sqrt(2)])
    # equal weights, whatever their size, are the per-sequence statistics
    assert trr_advantages(r, g, 2, 0.0, torch.full((5,), 7.0)).tolist() == pytest.approx(
        trr_advantages(r, g, 2, 0.0).tolist())
    # one global baseline, weighted: μ = (3 + 2 - 1)/8 = 0.5
    assert float(global_advantages(r, g, 2, 0.0, w)[0]) > 0 > float(global_advantages(r, g, 2, 0.0, w)[3])
    with pytest.raises(ValueError, match="weights"):
        trr_advantages(r, g, 2, 0.0, torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0]))


def test_assign_advantages_weighs_token_counts():
    rollouts = [Rollout("p", "r", *GROUPS[0], reward, True) for reward in (1.0, -1.0)]
    s = math.sqrt(0.75)
    weighted = assign_advantages(StepBatch(0, rollouts), eps=0.0, token_counts=[3, 1])
    assert weighted.advantages == pytest.approx([0.5 / s, -1.5 / s])
    # an empty response still counts once
    assert assign_advantages(StepBatch(0, rollouts), eps=0.0, token_counts=[0, 0]).advantages == pytest.approx(
        [1.0, -1.0])
    with pytest.raises(ValueError, match="token counts"):
        assign_advantages(StepBatch(0, rollouts), token_counts=[3])


def test_advantage_stage_follows_selfplay_token_weighted():
    """`selfplay.token_weighted` makes the step's advantage stage weigh each response by its token count."""
    import dataclasses

    from azr.config import tiny_test
    from azr.policy.base import Generation
    from azr.selfplay import Engines, Sample, SelfPlayState, advantage_stage

    samples = [Sample(Rollout("p", "r", *GROUPS[0], reward, True), Generation("p", [1], [5] * n, "r", True))
               for reward, n in ((1.0, 3), (-1.0, 1))]
    s = math.sqrt(0.75)
    for weighted, expected in ((False, [1.0, -1.0]), (True, [0.5 / s, -1.5 / s])):
        cfg = tiny_test()
        cfg = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, token_weighted=weighted))
        eng = Engines(policy=None, pool=None, optimizer=None, cfg=cfg)  # type: ignore[arg-type]
        batch, gens = advantage_stage(eng, SelfPlayState(0, {}, random.Random(0)), samples, [], [])  # type: ignore[arg-type]
        assert batch.advantages == pytest.approx(expected, abs=1e-5)
        assert [g.response_ids for g in gens] == [[5] * 3, [5]]
