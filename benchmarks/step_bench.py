"""Wall time of `cpu`-preset self-play steps, broken down by what the time is spent on.

The engines are wrapped in timing proxies (the algorithm code is untouched):
  generation  = time inside ``policy.generate``
  execution   = time inside ``pool.run_many``
  logprobs    = time producing each update micro-batch's log-probs (forward with grad)
  backward    = the rest of the update stage (loss, backward, optimizer step)
  other       = everything else (parsing, rewards, metrics)

    python benchmarks/step_bench.py [--steps 2] [--preset cpu] [extra `azr train` flags]

Seeding runs first (not timed). The last line is
``step_s=<mean> generation_s=... execution_s=... logprobs_s=... backward_s=... other_s=... target_s=180 ratio=<step/target>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import defaultdict

import tyro

from azr import config as C
from azr.selfplay import selfplay_step
from azr.train import seed, setup

TIMES: dict[str, float] = defaultdict(float)


class _Timed:
    """Delegates to `inner`, adding the wall time of the named methods to TIMES[bucket]."""

    def __init__(self, inner, methods: dict[str, str]):
        self._inner, self._methods = inner, methods

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        bucket = self._methods.get(name)
        if bucket is None:
            return attr
        if name == "iter_logprob_microbatches":
            def timed_iter(*a, **k):
                it = attr(*a, **k)
                while True:
                    t0 = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:
                        TIMES[bucket] += time.perf_counter() - t0
                        return
                    TIMES[bucket] += time.perf_counter() - t0
                    yield item
            return timed_iter

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                TIMES[bucket] += time.perf_counter() - t0
        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--preset", default="cpu", choices=sorted(C.PRESETS))
    ap.add_argument("--target-s", type=float, default=180.0, help="the goal per step (issue: <= 3 min)")
    args, rest = ap.parse_known_args()
    cfg = tyro.cli(C.TrainConfig, default=C.PRESETS[args.preset](), args=rest)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=tempfile.mkdtemp(prefix="azr-bench-"),
                                                           steps=args.steps, tensorboard=False))
    run = setup(cfg)
    from rich.progress import Progress

    with Progress() as progress:
        t0 = time.perf_counter()
        seed(run, progress)
    print(f"seeding: {time.perf_counter() - t0:.1f}s, buffers {[len(b) for b in run.state.buffers.values()]}")
    eng = dataclasses.replace(
        run.eng,
        policy=_Timed(run.eng.policy, {"generate": "generation", "iter_logprob_microbatches": "logprobs"}),
        pool=_Timed(run.eng.pool, {"run_many": "execution"}),
    )
    totals = defaultdict(float)
    for i in range(args.steps):
        TIMES.clear()
        t0 = time.perf_counter()
        metrics, _ = selfplay_step(eng, run.state)
        step_s = time.perf_counter() - t0
        update_s = metrics["time/update"]
        row = {"step": step_s, "generation": TIMES["generation"], "execution": TIMES["execution"],
               "logprobs": TIMES["logprobs"], "backward": update_s - TIMES["logprobs"]}
        row["other"] = step_s - sum(v for k, v in row.items() if k != "step")
        print(f"step {i + 1}: " + " ".join(f"{k}={v:.1f}s" for k, v in row.items())
              + f"  tokens/s={metrics['perf/tokens_per_s']:.0f} update_seqs={metrics['update/sequences']:.0f}")
        for k, v in row.items():
            totals[k] += v
    run.eng.pool.close()
    mean = {k: v / args.steps for k, v in totals.items()}
    print(" ".join(f"{k}_s={v:.1f}" for k, v in mean.items())
          + f" target_s={args.target_s:.0f} ratio={mean['step'] / args.target_s:.2f}")


if __name__ == "__main__":
    main()
