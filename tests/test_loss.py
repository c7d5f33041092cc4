"""The PPO-clip loss against hand-computed values; token-mean aggregation; micro-batching."""

from __future__ import annotations

import math

import pytest
import torch

from azr.loss import clipped_surrogate, k3, ppo_clip_loss, token_entropy, token_logprobs

EPS = 0.2


@pytest.mark.parametrize("ratio,adv,loss,clipped,grad", [
    # grad = d loss / d log π = −ρ·A where the unclipped term is active, 0 where clipped.
    (1.5, +1.0, -1.2, True, 0.0),    # above the range, A > 0: clipped at 1 + ε
    (0.5, +1.0, -0.5, False, -0.5),  # below the range, A > 0: pessimistic unclipped term
    (1.1, +1.0, -1.1, False, -1.1),  # inside
    (1.5, -1.0, +1.5, False, +1.5),  # above the range, A < 0: unclipped
    (0.5, -1.0, +0.8, True, 0.0),    # below the range, A < 0: clipped at 1 − ε
    (0.9, -1.0, +0.9, False, +0.9),  # inside
    (1.0, +2.0, -2.0, False, -2.0),  # on-policy, first epoch
])
def test_single_token_clip_cases(ratio, adv, loss, clipped, grad):
    lp = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)  # (1, 1)
    old = torch.zeros(1, 1, dtype=torch.float64)  # (1, 1)
    out, stats = ppo_clip_loss(lp, old, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1), clip_eps=EPS)
    out.backward()
    assert out.item() == pytest.approx(loss)
    assert stats.clip_fraction == float(clipped)
    assert lp.grad.item() == pytest.approx(grad)
    assert stats.approx_kl == pytest.approx((ratio - 1) - math.log(ratio))


def test_clipped_surrogate_directly():
    ratio = torch.tensor([[1.5, 0.5]])  # (1, 2)
    loss, clipped = clipped_surrogate(ratio, torch.tensor([[1.0, -1.0]]), EPS)
    assert loss[0].tolist() == pytest.approx([-1.2, 0.8]) and clipped.tolist() == [[True, True]]


def _two_sequences():
    # seq 0: ratios [1.5, 0.5, 1.1], A = +1 -> per-token losses [-1.2, -0.5, -1.1]
    # seq 1: ratios [1.5, 0.5, pad], A = -1 -> per-token losses [ 1.5,  0.8,  (masked)]
    ratios = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.0]], dtype=torch.float64)
    lp = ratios.log().clone().requires_grad_(True)  # (B, T)
    old = torch.zeros(2, 3, dtype=torch.float64)  # (B, T)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # (B, T)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)  # (B,)
    return lp, old, adv, mask


def test_token_mean_over_the_whole_batch():
    lp, old, adv, mask = _two_sequences()
    loss, stats = ppo_clip_loss(lp, old, adv, mask, clip_eps=EPS)
    # Σ over the 5 response tokens / 5. (A per-sequence mean would give (−2.8/3 + 2.3/2)/2 = 0.1083.)
    assert loss.item() == pytest.approx((-1.2 - 0.5 - 1.1 + 1.5 + 0.8) / 5)
    assert stats.num_tokens == 5 and stats.clip_fraction == pytest.approx(2 / 5)
    assert stats.pg_loss == pytest.approx(loss.item())
    loss.backward()
    assert lp.grad.flatten().tolist() == pytest.approx([0.0, -0.5 / 5, -1.1 / 5, 1.5 / 5, 0.0, 0.0])


def test_per_token_advantages_equal_broadcast():
    lp, old, adv, mask = _two_sequences()
    a, _ = ppo_clip_loss(lp, old, adv, mask)
    b, _ = ppo_clip_loss(lp, old, adv[:, None].expand(2, 3), mask)
    assert a.item() == b.item()


def test_padding_with_minus_inf_logprobs_does_not_produce_nan():
    lp = torch.tensor([[0.0, float("-inf")]], requires_grad=True)
    loss, _ = ppo_clip_loss(lp, torch.zeros(1, 2), torch.tensor([1.0]), torch.tensor([[1, 0]]))
    loss.backward()
    assert loss.item() == -1.0 and not torch.isnan(lp.grad).any()


def test_micro_batch_sum_equals_full_batch_loss_and_grad():
    g = torch.Generator().manual_seed(0)
    B, T = 7, 9
    logits_lp = (torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3 - 1.0)  # (B, T)
    old = logits_lp + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3  # (B, T)
    ref = logits_lp + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.1  # (B, T)
    ent = torch.rand(B, T, generator=g, dtype=torch.float64)  # (B, T)
    adv = torch.randn(B, generator=g, dtype=torch.float64)  # (B,)
    lengths = torch.tensor([9, 1, 4, 7, 2, 9, 5])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
    kw = dict(clip_eps=EPS, ref_logprobs=ref, kl_coef=0.05, entropy=ent, entropy_coef=0.01)

    lp_full = logits_lp.clone().requires_grad_(True)
    full, _ = ppo_clip_loss(lp_full, old, adv, mask, **kw)
    full.backward()

    lp_micro = logits_lp.clone().requires_grad_(True)
    total = int(mask.sum())
    parts = []
    for s in (slice(0, 2), slice(2, 5), slice(5, 7)):
        kws = {**kw, "ref_logprobs": ref[s], "entropy": ent[s]}
        part, _ = ppo_clip_loss(lp_micro[s], old[s], adv[s], mask[s], num_tokens_total=total, **kws)
        part.backward()
        parts.append(part.item())
    assert sum(parts) == pytest.approx(full.item(), abs=1e-12)
    assert torch.allclose(lp_micro.grad, lp_full.grad, atol=1e-12)


def test_kl_penalty_k3_and_entropy_bonus():
    lp = torch.zeros(1, 2, dtype=torch.float64)  # (1, 2), ratio 1
    ref = torch.full((1, 2), math.log(2.0), dtype=torch.float64)  # (1, 2)
    ent = torch.full((1, 2), math.log(4.0), dtype=torch.float64)  # (1, 2)
    adv, mask = torch.tensor([0.0], dtype=torch.float64), torch.ones(1, 2)
    k = 2.0 - math.log(2.0) - 1.0  # exp(d) − d − 1 with d = ln 2
    assert k3(lp, ref)[0, 0].item() == pytest.approx(k)
    base, s0 = ppo_clip_loss(lp, lp, adv, mask)
    assert base.item() == 0.0 and s0.kl_ref is None and s0.entropy is None  # off by default
    with_kl, s1 = ppo_clip_loss(lp, lp, adv, mask, ref_logprobs=ref, kl_coef=0.1)
    assert with_kl.item() == pytest.approx(0.1 * k) and s1.kl_ref == pytest.approx(k)
    with_ent, s2 = ppo_clip_loss(lp, lp, adv, mask, entropy=ent, entropy_coef=0.01)
    assert with_ent.item() == pytest.approx(-0.01 * math.log(4.0)) and s2.entropy == pytest.approx(math.log(4.0))
    logged_only, _ = ppo_clip_loss(lp, lp, adv, mask, ref_logprobs=ref)  # β = 0: measured, not optimised
    assert logged_only.item() == 0.0


def test_k3_is_nonnegative():
    x = torch.linspace(-5, 5, 101)
    assert (k3(x, torch.zeros_like(x)) >= 0).all()


def test_logprob_and_entropy_helpers():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 0.5]]])  # (1, 2, 4)
    tokens = torch.tensor([[3, 0]])  # (1, 2)
    lp = token_logprobs(logits, tokens)  # (1, 2)
    assert lp[0, 0].item() == pytest.approx(-math.log(4.0))
    assert lp[0, 1].item() == pytest.approx(torch.log_softmax(logits[0, 1], -1)[0].item())
    assert token_entropy(logits)[0, 0].item() == pytest.approx(math.log(4.0))


def test_argument_errors():
    lp = torch.zeros(1, 2)
    with pytest.raises(ValueError):
        ppo_clip_loss(lp, torch.zeros(1, 3), torch.zeros(1), torch.ones(1, 2))
    with pytest.raises(ValueError):
        ppo_clip_loss(lp, lp, torch.zeros(1), torch.ones(1, 2), kl_coef=0.1)
    with pytest.raises(ValueError):
        ppo_clip_loss(lp, lp, torch.zeros(1), torch.ones(1, 2), entropy_coef=0.1)
    with pytest.raises(ValueError):
        ppo_clip_loss(lp, lp, torch.zeros(1), torch.ones(1, 2), num_tokens_total=0)


def test_extreme_ratios_stay_finite():
    lp = torch.tensor([[0.0, -500.0]], requires_grad=True)  # (1, 2)
    old = torch.tensor([[-500.0, 0.0]])  # (1, 2): ratios e^500 and e^-500
    for a in (1.0, -1.0):
        lp.grad = None
        loss, stats = ppo_clip_loss(lp, old, torch.tensor([a]), torch.ones(1, 2))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(lp.grad).all() and math.isfinite(stats.approx_kl)


def test_asymmetric_upper_clip_by_hand():
    # ρ = 1.25, A = +1: the symmetric range (ε = 0.2) clips at 1.2 -> L = −1.2, clipped; the
    # reference master's upper bound 1 + 0.28 = 1.28 leaves it -> L = −1.25, not clipped.
    # ρ = 0.7, A = −1: the lower bound 0.8 applies in both -> L = −min(−0.7, −0.8) = 0.8, clipped.
    ratio = torch.tensor([[1.25, 0.7]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    sym, sym_clipped = clipped_surrogate(ratio, adv, 0.2)
    asym, asym_clipped = clipped_surrogate(ratio, adv, 0.2, 0.28)
    assert sym[0].tolist() == pytest.approx([-1.2, 0.8])
    assert asym[0].tolist() == pytest.approx([-1.25, 0.8])
    assert sym_clipped.tolist() == [[True, True]] and asym_clipped.tolist() == [[False, True]]
    lp = torch.log(ratio).requires_grad_()
    loss, stats = ppo_clip_loss(lp, torch.zeros(1, 2, dtype=torch.float64), torch.tensor([[1.0, -1.0]]),
                                torch.ones(1, 2), clip_eps=0.2, clip_eps_high=0.28)
    assert float(loss) == pytest.approx((-1.25 + 0.8) / 2)
    assert stats.clip_fraction == pytest.approx(0.5)
    loss.backward()  # the unclipped token's gradient is −A·ρ / N = −1.25 / 2; the clipped one has none
    assert lp.grad[0].tolist() == pytest.approx([-0.625, 0.0])
