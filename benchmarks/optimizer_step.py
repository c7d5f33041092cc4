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
import subprocess
import sys
import threading
import time


def one_variant(model: str, fused: bool, steps: int) -> dict:
    import psutil
    import torch

    from azr.policy import PolicyConfig, load_policy

    policy = load_policy(model, PolicyConfig(device="cpu", seed=0))
    params = list(policy.parameters())
    opt = torch.optim.AdamW(params, lr=1e-6, **({"fused": True} if fused else {"foreach": True}))
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()  # allocates exp_avg / exp_avg_sq
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    seconds = (time.perf_counter() - t0) / steps
    done.set()
    watcher.join()
    return {"rss_gib": before / 2**30, "extra_gib": (peak[0] - before) / 2**30, "s": seconds,
            "params": sum(p.numel() for p in params)}


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
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--steps", str(a.steps),
                              "--variant", variant], capture_output=True, text=True, check=True).stdout
        res[variant] = json.loads(out.strip().splitlines()[-1])
        r = res[variant]
        print(f"{variant:8s} params={r['params'] / 1e6:.0f}M rss_before={r['rss_gib']:.2f} GiB "
              f"extra_during_step={r['extra_gib']:.2f} GiB step={r['s']:.3f} s", flush=True)
    f, u = res["foreach"], res["fused"]
    print(f"foreach_extra_gib={f['extra_gib']:.2f} fused_extra_gib={u['extra_gib']:.2f} "
          f"foreach_s={f['s']:.3f} fused_s={u['s']:.3f} speedup={f['s'] / u['s']:.2f}")


if __name__ == "__main__":
    main()
