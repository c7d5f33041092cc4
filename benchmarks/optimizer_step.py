"""Memory and time of one AdamW step on the policy's parameters: torch's default multi-tensor ("foreach")
implementation against the fused kernel that ``azr.train.make_optimizer`` picks.

Each variant runs in its own process (RSS is per process and the heap does not shrink back), with random
gradients in place of a backward pass. It takes one step to allocate the AdamW state, then times
``--steps`` more while a thread samples RSS every 20 ms. Prints one line per variant and last::

    foreach_extra_gib=<a> fused_extra_gib=<b> foreach_s=<x> fused_s=<y> speedup=<x/y>

where *extra* is the RSS peak during a step above the RSS just before it.

Usage::

    python benchmarks/optimizer_step.py                 # the default model (0.5B)
    python benchmarks/optimizer_step.py --model tiny    # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import PeakRSS, run_child  # noqa: E402


def one_variant(model: str, fused: bool, steps: int) -> dict:
    import torch

    from azr.config import OptimConfig
    from azr.policy import PolicyConfig, load_policy
    from azr.train import make_optimizer

    policy = load_policy(model, PolicyConfig(device="cpu", seed=0))
    params = list(policy.parameters())
    opt = make_optimizer(params, OptimConfig(lr=1e-6)) if fused else torch.optim.AdamW(params, lr=1e-6, foreach=True)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()  # allocates exp_avg / exp_avg_sq
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        seconds = (time.perf_counter() - t0) / steps
    return {"rss_gib": rss.before / 2**30, "extra_gib": (rss.peak - rss.before) / 2**30, "s": seconds,
            "fused": bool(opt.defaults.get("fused")), "params": sum(p.numel() for p in params)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--variant", choices=["foreach", "fused"], help=argparse.SUPPRESS)  # child process
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(one_variant(a.model, a.variant == "fused", a.steps)))
        return
    res = {}
    for variant in ("foreach", "fused"):
        res[variant] = run_child(__file__, ["--model", a.model, "--steps", str(a.steps), "--variant", variant])
        r = res[variant]
        print(f"{variant:8s} fused={r['fused']} params={r['params'] / 1e6:.0f}M rss_before={r['rss_gib']:.2f} GiB "
              f"extra_during_step={r['extra_gib']:.2f} GiB step={r['s']:.3f} s", flush=True)
    f, u = res["foreach"], res["fused"]
    print(f"foreach_extra_gib={f['extra_gib']:.2f} fused_extra_gib={u['extra_gib']:.2f} "
          f"foreach_s={f['s']:.3f} fused_s={u['s']:.3f} speedup={f['s'] / u['s']:.2f}")


if __name__ == "__main__":
    main()
