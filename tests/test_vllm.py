"""The vLLM rollout backend: a clear error without vLLM or a GPU (runs everywhere); on a GPU with vLLM,
generation records like HFPolicy's and weights that follow the learner after an update (marked gpu)."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from azr import config as C
from azr.policy import GenerationConfig, PolicyConfig, load_policy

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAVE_VLLM and torch.cuda.is_available(), reason="vLLM and a GPU are both here")
def test_missing_vllm_or_gpu_is_a_clear_error():
    from azr.policy.vllm import VLLMPolicy

    learner = load_policy("tiny", PolicyConfig(device="cpu"))
    expected = (ImportError, r"pip install 'azr\[vllm\]'") if not HAVE_VLLM else (RuntimeError, "needs a CUDA GPU")
    with pytest.raises(expected[0], match=expected[1]):
        VLLMPolicy(learner)


def test_config_rejects_vllm_without_a_gpu_device():
    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, backend="vllm"))
    with pytest.raises(ValueError, match="--model.device cuda"):
        C.finalize(cfg)
    ray_cfg = dataclasses.replace(cfg, dist=dataclasses.replace(cfg.dist, ray=True))
    with pytest.raises(ValueError, match="--dist.rollout-gpus 1"):
        C.finalize(ray_cfg)


def _vllm_logprobs(policy, gens) -> list[list[float]]:
    """vLLM's own log-probs of given responses (prompt_logprobs over prompt + response)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    outs = policy.engine.llm.generate(
        [TokensPrompt(prompt_token_ids=g.prompt_ids + g.response_ids) for g in gens],
        SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0), use_tqdm=False)
    result = []
    for g, o in zip(gens, outs):
        ids = g.prompt_ids + g.response_ids
        per_pos = o.prompt_logprobs[len(g.prompt_ids):]
        result.append([per_pos[j][ids[len(g.prompt_ids) + j]].logprob for j in range(len(g.response_ids))])
    return result


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(not HAVE_VLLM, reason="needs vLLM: pip install 'azr[vllm]'")
def test_vllm_generates_and_follows_the_learner_after_an_update():
    from azr.policy.vllm import VLLMPolicy

    learner = load_policy("smollm2", PolicyConfig(device="cuda", seed=0))
    policy = VLLMPolicy(learner, gpu_memory=0.3)
    prompts = ["Write a Python function f that reverses a string.", "What is f(2) if f(x) = x * 3?", "Say hi."]
    gcfg = GenerationConfig(max_new_tokens=24, temperature=1.0)
    gens = policy.generate(prompts, gcfg, seed=3)
    assert [g.prompt for g in gens] == prompts
    assert [g.prompt_ids for g in gens] == [learner.encode_prompt(p) for p in prompts]
    for g in gens:
        assert 1 <= len(g.response_ids) <= 24
        assert g.finished == (g.response_ids[-1] in learner.eos_token_ids)
    assert [g.response_ids for g in policy.generate(prompts, gcfg, seed=3)] == [g.response_ids for g in gens]

    def learner_logprobs() -> list[list[float]]:
        lp = learner.sequence_logprobs([g.prompt_ids for g in gens], [g.response_ids for g in gens], grad=False,
                                       micro_batch=8)
        return [lp.logprobs[i, :len(g.response_ids)].tolist() for i, g in enumerate(gens)]

    def mean_gap(a: list[list[float]], b: list[list[float]]) -> float:
        pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
        return sum(abs(x - y) for x, y in pairs) / len(pairs)

    old = learner_logprobs()
    assert mean_gap(old, _vllm_logprobs(policy, gens)) < 0.1  # bf16 engine vs fp32 learner, same weights
    opt = torch.optim.Adam(list(learner.parameters()), lr=1e-3)
    opt.register_step_post_hook(lambda *_: policy.sync_weights())  # as build_engines wires it
    lp = learner.sequence_logprobs([g.prompt_ids for g in gens], [g.response_ids for g in gens], grad=True,
                                   micro_batch=8)
    (-(lp.logprobs * lp.mask).sum()).backward()
    opt.step()
    new = learner_logprobs()
    assert mean_gap(old, new) > 0.5, "the update barely moved the model: the sync check would prove nothing"
    assert mean_gap(new, _vllm_logprobs(policy, gens)) < 0.1  # vLLM follows the new weights
