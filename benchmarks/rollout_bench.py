"""Rollout throughput: the policy's batched generation against one-by-one ``model.generate``.

Measures generated tokens per second on the policy's device (CPU by default) for
``HFPolicy.generate`` at batch sizes 1, 8 and 32, and for the naive baseline: a plain
transformers ``model.generate`` call per prompt on the same weights (the policy's generation
copy, so both sides run in the same dtype and only the batching/decoding differs). Both sample
with the same temperature/top-p; response lengths differ between runs, so the metric is tokens
actually generated divided by wall time.

Prints a table and a final machine-readable line::

    best_batch=<b> batched_tok_s=<x> one_by_one_tok_s=<y> speedup=<x/y>

Usage::

    python benchmarks/rollout_bench.py                       # smollm2, 32 prompts, 128 new tokens
    python benchmarks/rollout_bench.py --model tiny --prompts 4 --max-new-tokens 8   # smoke run
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from azr.policy import GenerationConfig, PolicyConfig, load_policy

# Self-play-like prompts of varied length (deduction/abduction flavoured), cycled to --prompts.
_TEMPLATES = [
    "Given the program\n```python\ndef f(x):\n    return x * {k} + 1\n```\nand the input {k}, what is the output? "
    "Reason in <think></think> and answer in <answer></answer>.",
    "Write a Python function f that takes a list of integers and returns the sum of the elements greater than {k}.",
    "Propose a new deterministic Python function f(x) and an input for it, different from:\n```python\n"
    "def f(s):\n    return s[::-1] + str(len(s) * {k})\n```",
    "What input makes f return {k}?\n```python\ndef f(a, b):\n    return a * b - a\n```",
]


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    mode: str
    batch: int
    tokens: int
    seconds: float

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def make_prompts(n: int) -> list[str]:
    return [_TEMPLATES[i % len(_TEMPLATES)].format(k=i + 2) for i in range(n)]


def bench_batched(policy, prompts: list[str], batch: int, max_new: int, temperature: float, top_p: float) -> Row:
    cfg = GenerationConfig(max_new_tokens=max_new, temperature=temperature, top_p=top_p, batch_size=batch)
    t0 = time.perf_counter()
    gens = policy.generate(prompts, cfg, seed=0)
    dt = time.perf_counter() - t0
    return Row("policy.generate", batch, sum(len(g.response_ids) for g in gens), dt)


def bench_one_by_one(policy, prompts: list[str], max_new: int, temperature: float, top_p: float) -> Row:
    model = policy._generation_model()  # same weights and dtype the batched path uses
    eos = policy.eos_token_ids
    torch.manual_seed(0)
    tokens = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([policy.encode_prompt(prompt)], device=policy.device)  # (1, P)
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=top_p,
                eos_token_id=eos,
                pad_token_id=policy.tokenizer.pad_token_id or eos[0],
            )  # (1, P + n)
            tokens += out.shape[1] - ids.shape[1]
    return Row("model.generate x1", 1, tokens, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (default), tiny, a hub id or a path")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=32, help="number of prompts per measurement")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes for policy.generate")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gen-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    policy = load_policy(args.model, PolicyConfig(device=args.device, gen_dtype=args.gen_dtype))
    info = policy.info
    print(
        f"model={args.model} kind={info.kind if info else '?'} from_cache={info.from_cache if info else '?'} "
        f"load_s={time.perf_counter() - t0:.2f} params={policy.num_parameters() / 1e6:.1f}M "
        f"device={policy.device} gen_dtype={args.gen_dtype} threads={torch.get_num_threads()}"
    )
    prompts = make_prompts(args.prompts)
    # The first forward passes on CPU are several times slower (allocator, kernel selection): warm up.
    policy.generate(prompts[: min(4, len(prompts))], GenerationConfig(max_new_tokens=8, batch_size=4), seed=0)

    rows = [bench_one_by_one(policy, prompts, args.max_new_tokens, args.temperature, args.top_p)]
    for b in (int(x) for x in args.batches.split(",") if x.strip()):
        rows.append(bench_batched(policy, prompts, b, args.max_new_tokens, args.temperature, args.top_p))

    print(f"{'mode':<20}{'batch':>6}{'tokens':>9}{'seconds':>10}{'tok/s':>10}")
    for r in rows:
        print(f"{r.mode:<20}{r.batch:>6}{r.tokens:>9}{r.seconds:>10.2f}{r.tok_s:>10.1f}")
    base = rows[0]
    best = max(rows[1:], key=lambda r: r.tok_s)
    speedup = best.tok_s / base.tok_s if base.tok_s > 0 else float("inf")
    print(
        f"best_batch={best.batch} batched_tok_s={best.tok_s:.1f} "
        f"one_by_one_tok_s={base.tok_s:.1f} speedup={speedup:.2f}"
    )


if __name__ == "__main__":
    main()
