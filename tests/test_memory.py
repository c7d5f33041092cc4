"""The trainer's memory plan (azr/memory.py): its formulas by hand, its activation probe, the estimate against a
measured update of a small model, the learner's budgeted micro-batches (same gradients), and `azr train`'s
too-little-memory path."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from azr.memory import (MARGIN, RUNTIME, ActivationCost, MemoryPlanError, estimate_need, optimizer_state_bytes,
                        plan_memory, probe_activations, update_budget, with_backward)

ROOT = Path(__file__).resolve().parents[1]


def test_activation_cost_by_hand():
    c = ActivationCost(fixed=100, per_prompt_token=3, per_response_token=7)
    assert c.bytes(2, 10, 5) == 100 + 2 * (3 * 10 + 7 * 5)  # 230
    assert c.bytes(1, 0, 0) == 100


def test_estimate_need_by_hand():
    need = estimate_need(trainable=10, params=20, param_bytes=4, gen_copy_bytes=2, kl=True, activations=50)
    assert (need.gradients, need.optimizer, need.generation_copy, need.reference, need.activations) == \
        (40, 80, 40, 80, 50)
    assert need.total == pytest.approx(290 * (1 + MARGIN) + RUNTIME)
    lora = estimate_need(trainable=10, params=20, param_bytes=4, gen_copy_bytes=0, kl=False, activations=0)
    assert (lora.generation_copy, lora.reference) == (0, 0)


def test_with_backward_adds_two_layers_worth_and_the_heads_gradients_by_hand():
    full, ckpt = ActivationCost(5, 30, 60), ActivationCost(5, 6, 12)
    f, c = with_backward(full, ckpt, layers=4, vocab=0)  # 2 * (30 - 6) / 4 = 12; 2 * (60 - 12) / 4 = 24
    assert (f.fixed, f.per_prompt_token, f.per_response_token) == (5, 42, 84)
    assert (c.fixed, c.per_prompt_token, c.per_response_token) == (5, 18, 36)
    f, c = with_backward(full, ckpt, layers=4, vocab=10)  # + 16 * 10 = 160 a response token, none a prompt token
    assert (f.per_prompt_token, f.per_response_token, c.per_prompt_token, c.per_response_token) == (42, 244, 18, 196)


# static = gradients 400 + AdamW 800 = 1200 bytes; the budget is (available - 1200 * 1.25 - RUNTIME) / 1.25.
STATIC = {"trainable": 100, "params": 100, "param_bytes": 4, "gen_copy_bytes": 0, "kl": False}
FULL, CKPT = ActivationCost(0, 10, 10), ActivationCost(0, 1, 1)  # a row of 90 + 10 tokens: 1000 / 100 bytes


def _available(budget: float) -> float:
    return 1200 * (1 + MARGIN) + RUNTIME + budget * (1 + MARGIN)


def test_plan_keeps_settings_that_fit_and_counts_rows_by_hand():
    plan = plan_memory(FULL, CKPT, micro_batch=4, gradient_checkpointing=False, prompt_tokens=90,
                       response_tokens=10, available=_available(2000), **STATIC)
    assert plan.activation_budget == pytest.approx(2000)
    assert not plan.gradient_checkpointing and plan.rows_at_longest == 2  # 2 rows = 2000 bytes
    assert plan.cost == FULL
    assert plan.need.activations == 2000


def test_plan_turns_checkpointing_on_when_one_row_does_not_fit():
    plan = plan_memory(FULL, CKPT, micro_batch=4, gradient_checkpointing=False, prompt_tokens=90,
                       response_tokens=10, available=_available(500), **STATIC)
    assert plan.gradient_checkpointing and plan.cost == CKPT
    assert plan.rows_at_longest == 4  # 4 * 100 = 400 <= 500; the configured micro-batch caps it


def test_plan_stops_with_one_line_when_nothing_fits():
    with pytest.raises(MemoryPlanError) as e:
        plan_memory(FULL, CKPT, micro_batch=4, gradient_checkpointing=False, prompt_tokens=90, response_tokens=10,
                    available=_available(50), **STATIC)
    msg = str(e.value)
    assert "\n" not in msg and "--model.lora-rank" in msg and "available" in msg


def test_update_budget_counts_what_the_update_still_allocates_by_hand():
    GIB = 2**30
    # gradients 1 GiB, AdamW 2 GiB; the plan at start allowed 10 GiB of activations
    plan = plan_memory(FULL, CKPT, micro_batch=4, gradient_checkpointing=False, prompt_tokens=90, response_tokens=10,
                       available=_available(10 * GIB), **STATIC)
    plan = dataclasses.replace(plan, need=dataclasses.replace(plan.need, gradients=1 * GIB, optimizer=2 * GIB))
    # first update: gradients and AdamW to come, (8 - 3 * 1.25 - 0.5) / 1.25 = 3.0 GiB
    assert update_budget(plan, available=8 * GIB, optimizer_held=0) == pytest.approx(3.0 * GIB)
    # later updates: AdamW's moments are held already, (8 - 1 * 1.25 - 0.5) / 1.25 = 5.0 GiB
    assert update_budget(plan, available=8 * GIB, optimizer_held=2 * GIB) == pytest.approx(5.0 * GIB)
    # never more than the plan at start allowed; below zero when nothing fits
    assert update_budget(plan, available=100 * GIB, optimizer_held=0) == pytest.approx(10 * GIB)
    assert update_budget(plan, available=1 * GIB, optimizer_held=0) < 0


def test_optimizer_state_bytes_by_hand():
    layer = torch.nn.Linear(4, 3)  # 12 weights + 3 biases
    opt = torch.optim.AdamW(layer.parameters())
    assert optimizer_state_bytes(opt) == 0  # AdamW allocates its moments at its first step
    layer(torch.ones(1, 4)).sum().backward()
    opt.step()
    # two fp32 moments per parameter, and one fp32 step counter per tensor: 2 * 15 * 4 + 2 * 4
    assert optimizer_state_bytes(opt) == 128


def test_before_the_update_the_budget_follows_what_the_process_holds(tmp_path):
    """`Run.before_stage("update")` sets the learner's budget from the RSS and the limit at that moment: one more
    GiB of limit gives 1 / 1.25 GiB more activations; the other stages leave the budget alone."""
    from azr import config as C
    from azr.heap import GIB, rss_bytes, trim
    from azr.train import setup

    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path), memory_limit_gib=64.0))
    run = setup(cfg)
    try:
        at_start = run.eng.policy.learner_budget.max_bytes
        assert at_start == run.memory.activation_budget
        run.before_stage("propose")
        assert run.eng.policy.learner_budget.max_bytes == at_start and not run.update_memory

        def budget_at(limit_over_rss_gib: float) -> float:
            trim()  # as before_stage does first: otherwise the heap it returns (~0.9 GiB on a bf16 host) moves RSS
            limit = rss_bytes() / GIB + limit_over_rss_gib
            run.cfg = dataclasses.replace(run.cfg, run=dataclasses.replace(run.cfg.run, memory_limit_gib=limit))
            run.before_stage("update")
            return run.eng.policy.learner_budget.max_bytes

        one, two = budget_at(1.0), budget_at(2.0)
        assert 0 < one < two < at_start
        assert two - one == pytest.approx(GIB / (1 + MARGIN), abs=64 * 2**20)  # RSS may move a little in between
        assert run.update_memory["memory/update_budget_gib"] == pytest.approx(two / GIB)
        assert budget_at(-1.0) < 0 and run.update_memory["memory/update_budget_gib"] == 0.0
    finally:
        run.close()


@pytest.mark.parametrize("gen_dtype", ["float32", "bfloat16"])
def test_plan_counts_a_generation_copy_only_where_rollouts_read_another_dtype(gen_dtype):
    from azr import config as C
    from azr.memory import plan_for
    from azr.policy import PolicyConfig, load_policy

    policy = load_policy("tiny", PolicyConfig(device="cpu", seed=0, gen_dtype=gen_dtype))
    plan = plan_for(policy, C.tiny_test(), prompt_tokens=64, available=64 * 2**30)
    if gen_dtype == "float32":  # the trained fp32 weights are what generation reads
        assert policy.gen_copy_dtype is None and plan.need.generation_copy == 0
    else:
        assert policy.gen_copy_dtype is torch.bfloat16
        assert plan.need.generation_copy == 2 * policy.num_parameters()


def test_plan_counts_a_kl_reference_only_where_it_is_a_second_copy(tmp_path):
    from azr import config as C
    from azr.memory import plan_for
    from azr.policy import LoraSettings, PolicyConfig, load_policy
    from azr.train import reference_shares_weights

    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, kl_coef=0.1))
    policy = load_policy("tiny", PolicyConfig(device="cpu", seed=0))
    plan = plan_for(policy, cfg, prompt_tokens=64, available=64 * 2**30)
    assert plan.need.reference == 4 * policy.num_parameters()  # a frozen fp32 copy
    assert plan_for(policy, cfg, prompt_tokens=64, available=64 * 2**30, reference_copy=False).need.reference == 0
    # LoRA on a plain model: the reference is the policy with its adapters off; on an adapter checkpoint it is not
    lora = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lora_rank=4))
    assert reference_shares_weights(lora) and not reference_shares_weights(cfg)
    saved = load_policy("tiny", PolicyConfig(device="cpu", seed=0, lora=LoraSettings(r=4))).save(tmp_path / "adapter")
    on_adapter = dataclasses.replace(lora, model=dataclasses.replace(lora.model, name=str(saved)))
    assert not reference_shares_weights(on_adapter)  # its starting model includes the saved adapters


def test_probe_counts_what_autograd_saves_linearly_in_tokens():
    from azr.policy import PolicyConfig, load_policy

    policy = load_policy("tiny", PolicyConfig(device="cpu", seed=0))
    full = probe_activations(policy, False)
    ckpt = probe_activations(policy, True)
    assert full.per_prompt_token > 0 and full.per_response_token > full.per_prompt_token  # logits rows
    assert ckpt.per_prompt_token < full.per_prompt_token / 2  # checkpointing keeps layer inputs only
    assert not policy.config.gradient_checkpointing  # the probe leaves the setting as it was
    # the linear model predicts a long row it never measured
    long = probe_activations(policy, False, sizes=((400, 16), (464, 16), (400, 48)))
    assert long.bytes(1, 400, 16) == pytest.approx(full.bytes(1, 400, 16), rel=0.02)


def test_estimate_covers_a_measured_update_of_a_small_model():
    """benchmarks/memory_estimate.py runs three real updates of a 3-layer Llama in fresh processes and samples
    their RSS: the estimate must cover the peak (the plan is only safe if it does) without being a vacuous bound."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_estimate.py"), "--model", "small-llama",
                          "--rows", "4", "--updates", "3"], capture_output=True, text=True, timeout=600, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["variant"] for r in rows] == ["full", "ckpt"]
    for r in rows:
        assert r["peak_gib"] > 0.2, r  # the update really allocated its activations
        assert 1.0 <= r["ratio"] <= 3.0, r


def _grads(policy, prompts, responses, budget=None):
    from azr.policy.hf import LearnerBudget

    policy.learner_budget = budget
    policy.module.zero_grad(set_to_none=True)
    n_tokens = sum(len(r) for r in responses)
    sizes = []
    for mb in policy.iter_logprob_microbatches(prompts, responses, micro_batch=4, grad=True):
        sizes.append(len(mb.index))
        (-(mb.logprobs.sum()) / n_tokens).backward()
    policy.learner_budget = None
    assert budget is None or isinstance(budget, LearnerBudget)
    return sizes, [p.grad.clone() for p in policy.parameters()]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_budgeted_microbatches_give_the_same_gradients(lora):
    from azr.policy import LoraSettings, PolicyConfig, load_policy
    from azr.policy.hf import LearnerBudget

    # fp32 throughout: under bf16 autocast (the default on AVX512-BF16 hosts) rows padded to another length round
    # differently, and this test is about how rows are grouped, not about bf16 rounding
    policy = load_policy("tiny", PolicyConfig(device="cpu", seed=0, train_autocast=None,
                                              lora=LoraSettings(r=4) if lora else None))
    if lora:  # B starts at zero, which would leave A without a gradient: give the adapters a value to differentiate
        with torch.no_grad():
            for p in policy.parameters():
                p.normal_(0, 0.05)
    g = torch.Generator().manual_seed(0)
    shared = torch.randint(3, 250, (130,), generator=g).tolist()  # the instructions every row shares
    prompts = [shared + torch.randint(3, 250, (n,), generator=g).tolist() for n in (30, 20, 10, 5)]
    responses = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (8, 6, 7, 5)]
    sizes, ref = _grads(policy, prompts, responses)
    assert sizes == [4]
    cost = ActivationCost(0, 1, 1)
    # rows of 160+8, 150+6, 140+7, 135+5 tokens: 2 of the longest (336 bytes) fit in 340, 3 (504) do not
    sizes, two = _grads(policy, prompts, responses, LearnerBudget(340, cost))
    assert sizes == [2, 2]
    # one row never fits: each is recomputed in backward (gradient checkpointing for that micro-batch)
    sizes, one = _grads(policy, prompts, responses, LearnerBudget(10, cost))
    assert sizes == [1, 1, 1, 1] and not policy.config.gradient_checkpointing
    for a, b, c in zip(ref, two, one):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-6)


def test_learner_microbatches_cut_at_the_budget_by_hand():
    from azr.policy.hf import LearnerBudget, _learner_microbatches

    prompts = [[1] * 10, [1] * 40, [1] * 20, [1] * 30]
    responses = [[2] * 5] * 4
    budget = LearnerBudget(100, ActivationCost(0, 1, 1))  # rows padded to the longest: 45, 35, 25, 15 tokens
    # longest first: [1] alone (45 + 35 padded to 45 each = 90 fits), then 2 rows of 45 = 90, 3 would be 135
    assert list(_learner_microbatches(prompts, responses, 4, 0, budget)) == [[1, 3], [2, 0]]
    assert list(_learner_microbatches(prompts, responses, 4, 0, None)) == [[1, 3, 2, 0]]
