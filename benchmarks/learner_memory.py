"""Peak RSS of the learner's forward + backward on the policy: the default against smaller micro-batches and
against gradient checkpointing, each in its own process (RSS is per process and the heap does not shrink).

The workload is ``--rows`` rows of ``--prompt-tokens`` random prompt tokens and ``--response-tokens``
response tokens, scored with grad through ``iter_logprob_microbatches`` and back-propagated, as
``update_stage`` does (no optimizer: ``optimizer_step.py`` measures that). Prints one line per variant and
last::

    default_gib=<a> micro2_gib=<b> ckpt_gib=<c> micro2_ratio=<b/a> ckpt_ratio=<c/a>

Usage::

    python benchmarks/learner_memory.py                      # the default model, 4 x (1400 + 100) tokens
    python benchmarks/learner_memory.py --model tiny         # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import PeakRSS, run_child  # noqa: E402


def one_variant(a: argparse.Namespace) -> dict:
    import torch

    from azr.policy import PolicyConfig, load_policy

    policy = load_policy(a.model, PolicyConfig(device="cpu", gradient_checkpointing=a.ckpt, seed=0))
    g = torch.Generator().manual_seed(0)
    vocab = min(30000, len(policy.tokenizer) - 1)
    prompts = [torch.randint(100, vocab, (a.prompt_tokens,), generator=g).tolist() for _ in range(a.rows)]
    responses = [torch.randint(100, vocab, (a.response_tokens,), generator=g).tolist() for _ in range(a.rows)]
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        for mb in policy.iter_logprob_microbatches(prompts, responses, micro_batch=a.micro_batch, grad=True,
                                                   temperature=0.7):
            (-(mb.logprobs * mb.mask).sum() / mb.mask.sum()).backward()
        seconds = time.perf_counter() - t0
    return {"peak_gib": rss.peak / 2**30, "s": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=1400)
    ap.add_argument("--response-tokens", type=int, default=100)
    ap.add_argument("--micro-batch", type=int, default=4, help=argparse.SUPPRESS)  # child process
    ap.add_argument("--ckpt", action="store_true", help=argparse.SUPPRESS)  # child process
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one_variant(a)))
        return
    common = ["--model", a.model, "--rows", str(a.rows), "--prompt-tokens", str(a.prompt_tokens),
              "--response-tokens", str(a.response_tokens), "--child"]
    variants = {"default": ["--micro-batch", str(a.rows)], "micro2": ["--micro-batch", "2"],
                "ckpt": ["--micro-batch", str(a.rows), "--ckpt"]}
    res = {}
    for name, extra in variants.items():
        res[name] = run_child(__file__, [*common, *extra])
        print(f"{name:8s} peak_rss={res[name]['peak_gib']:.2f} GiB fwd+bwd={res[name]['s']:.1f} s", flush=True)
    d = res["default"]["peak_gib"]
    print(f"default_gib={d:.2f} micro2_gib={res['micro2']['peak_gib']:.2f} ckpt_gib={res['ckpt']['peak_gib']:.2f} "
          f"micro2_ratio={res['micro2']['peak_gib'] / d:.2f} ckpt_ratio={res['ckpt']['peak_gib'] / d:.2f}")


if __name__ == "__main__":
    main()
