"""The update stage (SPEC §1 step 6): the loss normaliser, PPO mini-batches against old log-probs, and
the direction of a real update on the tiny model.

The hand-computed cases use a one-parameter policy whose log-prob of every response token is θ (so
ρ = exp(θ − θ_old) exactly) and plain SGD, so each optimizer step can be written down.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from azr import config as C
from azr.policy import Generation, GenerationConfig, LogprobMicroBatch, PolicyConfig, TokenLogprobs, load_policy
from azr.records import Role, Rollout, StepBatch, TaskType
from azr.selfplay import Engines, update_stage


class ThetaPolicy:
    """log π(token) = θ for every response token: a policy whose every number is known."""

    def __init__(self, theta: float = 0.0):
        self.theta = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))

    def parameters(self):
        return iter([self.theta])

    def _rows(self, response_ids):
        t = max(len(r) for r in response_ids)
        mask = torch.tensor([[1.0] * len(r) + [0.0] * (t - len(r)) for r in response_ids], dtype=torch.float64)
        return mask  # (B, T)

    def iter_logprob_microbatches(self, prompt_ids, response_ids, *, micro_batch, grad=True, temperature=1.0,
                                  with_entropy=False):
        mask = self._rows(response_ids)  # (B, T)
        for s in range(0, len(response_ids), micro_batch):
            idx = torch.arange(s, min(s + micro_batch, len(response_ids)))  # (G,)
            lp = self.theta * mask[idx] if grad else (self.theta.detach() * mask[idx])  # (G, T)
            yield LogprobMicroBatch(index=idx, logprobs=lp, mask=mask[idx])

    def sequence_logprobs(self, prompt_ids, response_ids, *, grad, micro_batch, temperature=1.0, with_entropy=False):
        mask = self._rows(response_ids)
        return TokenLogprobs(logprobs=self.theta.detach() * mask, mask=mask)


def _batch(advantages, lengths):
    gens = [Generation(prompt=f"p{i}", prompt_ids=[1], response_ids=[1] * n, response="r", finished=True)
            for i, n in enumerate(lengths)]
    rollouts = tuple(Rollout(prompt=g.prompt, response="r", type=TaskType.DEDUCTION, role=Role.SOLVE, reward=0.0,
                             format_ok=True, advantage=a) for g, a in zip(gens, advantages))
    return StepBatch(step=0, rollouts=rollouts), gens


def _engines(policy, lr, **optim) -> Engines:
    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, max_grad_norm=1e9, entropy_coef=0.0,
                                                             micro_batch=8, **optim),
                              rollout=dataclasses.replace(cfg.rollout, temperature=1.0))
    return Engines(policy, None, torch.optim.SGD([policy.theta], lr=lr), cfg)


def test_token_mean_counts_zero_advantage_tokens():
    # Row A: advantage +1, 2 tokens. Row B: advantage 0, 3 tokens. At ρ = 1 the loss gradient is
    # −Σ_tokens A / N = −(1 + 1) / 5 = −0.4 with N = all 5 response tokens (the reference's token
    # mean). Dropping B's tokens from N would give −1. SGD, lr 1: θ moves by +0.4.
    pol = ThetaPolicy()
    batch, gens = _batch([1.0, 0.0], [2, 3])
    m = update_stage(_engines(pol, lr=1.0), batch, gens)
    assert pol.theta.item() == pytest.approx(0.4)
    assert m["update/tokens"] == 5 and m["update/sequences"] == 1 and m["update/optimizer_steps"] == 1
    assert m["update/grad_norm"] == pytest.approx(0.4)


@pytest.mark.parametrize("lr", [0.1, 0.5])
def test_mini_batches_step_against_the_old_logprobs(lr):
    # Two rows, advantage +1, one token each; mini_batches = 2 -> row 0 then row 1, old log-probs
    # θ_old = 0 taken before the first step.
    # Step 1: ρ = 1, dL/dθ = −1 -> θ1 = lr.
    # Step 2: ρ = exp(lr). lr 0.1: ρ = 1.105 < 1.2, unclipped, dL/dθ = −ρ -> θ2 = 0.1 + 0.1·1.105.
    #         lr 0.5: ρ = 1.649 > 1.2 with A > 0, clipped: no gradient -> θ2 = 0.5.
    pol = ThetaPolicy()
    batch, gens = _batch([1.0, 1.0], [1, 1])
    m = update_stage(_engines(pol, lr=lr, mini_batches=2, clip_eps=0.2), batch, gens)
    rho = math.exp(lr)
    expected = lr + lr * rho if rho <= 1.2 else lr
    assert pol.theta.item() == pytest.approx(expected)
    assert m["update/optimizer_steps"] == 2
    assert m["update/clip_frac"] == pytest.approx(0.0 if rho <= 1.2 else 0.5)
    # approx KL is the token mean of (ρ − 1) − log ρ: 0 for step 1's token, exp(lr) − 1 − lr for step 2's.
    assert m["update/approx_kl"] == pytest.approx((rho - 1 - lr) / 2)


def test_one_mini_batch_has_ratio_one_and_no_clipping():
    pol = ThetaPolicy()
    batch, gens = _batch([1.0, -1.0, 0.5], [2, 1, 3])
    m = update_stage(_engines(pol, lr=0.5, mini_batches=1), batch, gens)
    assert m["update/clip_frac"] == 0.0 and m["update/approx_kl"] == 0.0
    # dL/dθ = −(2·1 − 1·1 + 3·0.5) / 6 = −2.5 / 6; θ = 0.5 · 2.5 / 6
    assert pol.theta.item() == pytest.approx(0.5 * 2.5 / 6)


def test_kl_penalty_pulls_towards_the_reference():
    # θ = 0.3 now, reference θ_ref = 0, all advantages 0: only the KL term has a gradient.
    # k3 = exp(d) − d − 1 with d = θ_ref − θ; dk3/dθ = 1 − exp(θ_ref − θ) = 1 − e^−0.3 per token,
    # β = 0.5, token mean over 2 tokens of identical terms -> dL/dθ = 0.5 (1 − e^−0.3); θ falls.
    pol, ref = ThetaPolicy(0.3), ThetaPolicy(0.0)
    batch, gens = _batch([0.0, 0.0], [1, 1])
    eng = dataclasses.replace(_engines(pol, lr=1.0, kl_coef=0.5), reference=ref)
    m = update_stage(eng, batch, gens)
    assert pol.theta.item() == pytest.approx(0.3 - 0.5 * (1 - math.exp(-0.3)))
    assert m["update/kl_ref"] == pytest.approx(math.exp(-0.3) + 0.3 - 1)


def test_a_real_update_moves_logprobs_in_the_direction_of_the_advantage():
    # A flipped advantage sign would pass every test above that is symmetric in A; this one is not.
    policy = load_policy("tiny", PolicyConfig(device="cpu", train_autocast=None, seed=0))
    gens = policy.generate(["def f(x): return x + 1", "f(3) = ?"], GenerationConfig(max_new_tokens=8), seed=3)
    batch = StepBatch(step=0, rollouts=tuple(
        Rollout(prompt=g.prompt, response=g.response, type=TaskType.DEDUCTION, role=Role.SOLVE, reward=r,
                format_ok=True, advantage=a) for g, r, a in zip(gens, (1.0, -0.5), (1.0, -1.0))))

    def seq_logprob() -> list[float]:
        out = policy.sequence_logprobs([g.prompt_ids for g in gens], [g.response_ids for g in gens], grad=False,
                                       micro_batch=4)
        return out.logprobs.sum(-1).tolist()

    before = seq_logprob()
    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, entropy_coef=0.0),
                              rollout=dataclasses.replace(cfg.rollout, temperature=1.0))
    update_stage(Engines(policy, None, torch.optim.SGD(list(policy.parameters()), lr=0.05), cfg), batch, gens)
    after = seq_logprob()
    assert after[0] > before[0] + 1e-4  # positive advantage: more likely
    assert after[1] < before[1] - 1e-4  # negative advantage: less likely
