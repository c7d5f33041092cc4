"""Learner throughput on the default model: forward + backward of self-play rollouts, with the shared
prompt prefix of a micro-batch encoded once (the default) against every row encoding its whole prompt,
alternating in one run.

The workload is one micro-batch group of the update: ``--rows`` proposer rollouts of one task type
(their prompts share the instructions and rules, ~350 tokens on Qwen, and differ from the references
on), each with ``--response-tokens`` response tokens, scored with grad in micro-batches of
``--micro-batch`` and back-propagated through a REINFORCE-style loss, as ``update_stage`` does. Response
token ids are random: the cost of a forward/backward does not depend on them.

Prints each pass, the fp32/bf16 matmul peak measured in the same run, the learner's tok/s and FLOP
fraction of the peak per variant (FLOPs counted for the tokens actually encoded, see
``azr.policy.flops``), and last::

    shared_tok_per_s=<x> unshared_tok_per_s=<y> speedup=<x/y>

Usage::

    python benchmarks/learner_bench.py                      # default model, 4 rows, 2 rounds
    python benchmarks/learner_bench.py --model tiny --rounds 1   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollout_bench import make_prompts  # noqa: E402

from azr.policy import DEFAULT_MODEL, LoraSettings, PolicyConfig, load_policy  # noqa: E402
from azr.policy.flops import matmul_peak, model_flops, prefill_ctx_pairs  # noqa: E402


def one_pass(policy, p_ids, r_ids, micro_batch: int, share_min: int) -> tuple[float, int]:
    """Seconds of one forward+backward over all rows, and the prompt tokens encoded once for several rows."""
    policy.learner_share_min = share_min
    before = policy.learner_shared_tokens
    adv = torch.linspace(-1.0, 1.0, len(p_ids))  # (B,)
    n_tok = sum(len(r) for r in r_ids)
    t0 = time.perf_counter()
    for mb in policy.iter_logprob_microbatches(p_ids, r_ids, micro_batch=micro_batch):
        (-(adv[mb.index.cpu()][:, None] * mb.logprobs).sum() / n_tok).backward()  # (G, T) -> ()
    dt = time.perf_counter() - t0
    policy.module.zero_grad(set_to_none=True)
    return dt, policy.learner_shared_tokens - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--rows", type=int, default=4, help="rollouts in the group (cpu preset: up to B = 8 a type)")
    ap.add_argument("--response-tokens", type=int, default=100)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="alternating unshared/shared pass pairs")
    ap.add_argument("--lora-rank", type=int, default=0)
    args = ap.parse_args()

    lora = LoraSettings(r=args.lora_rank, alpha=2 * args.lora_rank) if args.lora_rank else None
    policy = load_policy(args.model, PolicyConfig(device="cpu", lora=lora))
    # Deduction proposer prompts only (make_prompts alternates deduction/abduction): one update group.
    p_ids = [policy.encode_prompt(p) for p in make_prompts(2 * args.rows)[::2]]
    g = torch.Generator().manual_seed(0)
    vocab = policy.module.config.vocab_size if hasattr(policy.module, "config") else 256
    r_ids = [torch.randint(3, min(vocab, 20000), (args.response_tokens,), generator=g).tolist() for _ in p_ids]
    tokens = sum(len(p) + len(r) for p, r in zip(p_ids, r_ids))
    print(f"model {args.model}, {len(p_ids)} rows, prompt tokens {[len(p) for p in p_ids]}, "
          f"{args.response_tokens} response tokens each, micro-batch {args.micro_batch}, "
          f"shared prefix of the group {policy._shared_prefix_len(p_ids, True)} tokens", flush=True)
    peak = max(matmul_peak(dt, seconds=3.0) for dt in ("bfloat16", "float32"))
    print(f"matmul peak in this run: {peak / 1e9:.1f} GFLOP/s", flush=True)

    cfg = policy.module.get_base_model().config if hasattr(policy.module, "get_base_model") else policy.module.config
    mf = model_flops(cfg)
    bwd = 1.0 if lora else 2.0

    def flops(shared_tokens: int) -> float:
        ctx = sum(prefill_ctx_pairs(len(p) + len(r)) for p, r in zip(p_ids, r_ids))
        body = mf.body * (tokens - shared_tokens)
        head = mf.head * sum(len(r) for r in r_ids)
        return body * (1 + bwd) + head * (1 + bwd) + 3 * mf.attn_per_ctx * ctx

    times: dict[str, list[float]] = {"unshared": [], "shared": []}
    saved = 0
    for r in range(args.rounds):
        for name, share in (("unshared", 0), ("shared", 32)):
            dt, s = one_pass(policy, p_ids, r_ids, args.micro_batch, share)
            saved = s if share else saved
            times[name].append(dt)
            print(f"round {r + 1} {name}: {dt:.1f}s ({tokens / dt:.1f} tok/s, {s} prompt tokens encoded once)",
                  flush=True)
    out = {}
    for name in times:
        best = min(times[name])
        f = flops(saved if name == "shared" else 0)
        out[name] = tokens / best
        print(f"{name}: best {best:.1f}s (median {statistics.median(times[name]):.1f}s), {tokens / best:.1f} tok/s, "
              f"{f / best / 1e9:.1f} GFLOP/s = {f / best / peak:.1%} of peak")
    print(f"shared_tok_per_s={out['shared']:.1f} unshared_tok_per_s={out['unshared']:.1f} "
          f"speedup={out['shared'] / out['unshared']:.2f}")


if __name__ == "__main__":
    main()
