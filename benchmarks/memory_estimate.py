"""The trainer's memory estimate (azr/memory.py) against the RSS a real update reaches.

Each variant runs in a fresh process: load the model, build AdamW, estimate what the update will add
(gradients, AdamW state, the probed activations of one micro-batch of ``--rows`` rows of ``--prompt-tokens`` +
``--response-tokens``, the runtime and margin), then run ``--updates`` real updates (forward, backward, optimizer
step) on that micro-batch while a thread samples RSS. Prints one JSON line per variant and last::

    full_est_gib=<e> full_peak_gib=<m> full_ratio=<e/m> ckpt_est_gib=<e> ckpt_peak_gib=<m> ckpt_ratio=<e/m>

A ratio >= 1 means the estimate covered what the update took; the plan is only safe if it does.

Usage::

    python benchmarks/memory_estimate.py                                 # the embedded model, 2 x (700 + 100)
    python benchmarks/memory_estimate.py --model small-llama --rows 4    # a 3-layer Llama (what the test runs)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import PeakRSS, run_child  # noqa: E402

GIB = 2**30


def small_llama():
    """A randomly initialised 3-layer Llama (hidden 384) on the tiny byte tokenizer: big enough that activations,
    not the interpreter, dominate its RSS, and fast on 2 cores."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from azr.policy.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=384, intermediate_size=1536, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg), tok


def one_variant(a: argparse.Namespace) -> dict:
    import torch

    from azr.config import OptimConfig
    from azr.memory import estimate_need, learner_costs
    from azr.policy import PolicyConfig, load_policy
    from azr.policy.hf import HFPolicy
    from azr.train import make_optimizer

    pc = PolicyConfig(device="cpu", seed=0, gradient_checkpointing=a.ckpt)
    policy = HFPolicy(*small_llama(), pc) if a.model == "small-llama" else load_policy(a.model, pc)
    policy.learner_share_min = 0  # random prompts share nothing; one micro-batch of all rows
    full, ckpt = learner_costs(policy)
    optimizer = make_optimizer(list(policy.parameters()), OptimConfig(lr=1e-7))
    n, pcfg = policy.num_parameters(), policy.config
    act = (ckpt if a.ckpt else full).bytes(a.rows, a.prompt_tokens, a.response_tokens)
    gen_copy = getattr(torch, pcfg.gen_dtype).itemsize if pcfg.gen_dtype != pcfg.param_dtype else 0
    need = estimate_need(trainable=n, params=n, param_bytes=getattr(torch, pcfg.param_dtype).itemsize,
                         gen_copy_bytes=gen_copy, kl=False, activations=act)
    g = torch.Generator().manual_seed(0)
    vocab = min(30000, policy.module.get_input_embeddings().num_embeddings) - 1
    prompts = [torch.randint(3, vocab, (a.prompt_tokens,), generator=g).tolist() for _ in range(a.rows)]
    responses = [torch.randint(3, vocab, (a.response_tokens,), generator=g).tolist() for _ in range(a.rows)]
    with PeakRSS() as rss:
        for _ in range(a.updates):
            for mb in policy.iter_logprob_microbatches(prompts, responses, micro_batch=a.rows, grad=True):
                (-mb.logprobs.sum()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    # The generation copy is built by the first rollout, which this benchmark does not run: leave it out.
    est = need.total - need.generation_copy * 1.25
    return {"variant": "ckpt" if a.ckpt else "full", "estimate_gib": est / GIB,
            "peak_gib": (rss.peak - rss.before) / GIB, "activations_gib": act / GIB,
            "ratio": est / max(rss.peak - rss.before, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-0.5b", help="a model name, or small-llama")
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=700)
    p.add_argument("--response-tokens", type=int, default=100)
    p.add_argument("--updates", type=int, default=2)
    p.add_argument("--ckpt", action="store_true", help=argparse.SUPPRESS)  # child: gradient checkpointing on
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(one_variant(a)))
        return
    base = ["--child", "--model", a.model, "--rows", str(a.rows), "--prompt-tokens", str(a.prompt_tokens),
            "--response-tokens", str(a.response_tokens), "--updates", str(a.updates)]
    res = {}
    for name, extra in (("full", []), ("ckpt", ["--ckpt"])):
        res[name] = run_child(__file__, base + extra)
        print(json.dumps(res[name]), flush=True)
    print(" ".join(f"{k}_est_gib={v['estimate_gib']:.3f} {k}_peak_gib={v['peak_gib']:.3f} {k}_ratio={v['ratio']:.2f}"
                   for k, v in res.items()))


if __name__ == "__main__":
    main()
