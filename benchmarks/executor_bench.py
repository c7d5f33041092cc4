"""Executor throughput: validate CRUXEval programs with the sandbox pool vs a naive baseline.

Validation = static checks + two runs of `f(input)` in the task's child + one varied run (the
determinism check: another hash seed, shifted heap) + literal check, with the run-time ban hook.
  * pool:  ``azr.executor.validate_many`` over all rows, every sandbox layer on.
  * without run-time checks: the same pool's layers with no audit hook and no varied run (what
           validation was before them), in passes interleaved with the pool's, so both see the
           same machine; their ratio is what the run-time checks cost.
  * naive: one fresh ``subprocess.run([sys.executable, "-c", ...])`` per execution, two per
           task, sequential, no isolation at all (on the first --naive-limit rows: it is slow).

    python benchmarks/executor_bench.py [--data CRUXEVAL.jsonl]

The last line is ``reproduced=<n>/<N> pool_tasks_per_s=<x> naive_tasks_per_s=<y> speedup=<x/y>
without_checks_tasks_per_s=<z> checks_ratio=<x/z>`` (best passes; the medians are printed above it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from azr.eval.cruxeval import SHIPPED_DATA
from azr.eval.suite import read_rows
from azr.executor import SandboxConfig, SandboxPool, call_expr, validate_many, values_equal

DEFAULT_DATA = SHIPPED_DATA  # $AZR_CRUXEVAL is for azr eval; a benchmark names its data with --data


def naive_validate(code: str, inp: str, timeout: float) -> str | None:
    """Two fresh interpreters per task; the value if both runs agree, else None."""
    script = f"{code}\nprint(repr({call_expr(inp)}))"
    outs = []
    for _ in range(2):
        try:
            p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if p.returncode != 0:
            return None
        outs.append(p.stdout.strip())
    return outs[0] if outs[0] == outs[1] else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="CRUXEval jsonl (default: the rows shipped with azr)")
    ap.add_argument("--workers", type=int, default=0, help="pool workers (0 = one per core)")
    ap.add_argument("--naive-limit", type=int, default=200, help="rows for the (slow) naive baseline")
    ap.add_argument("--repeats", type=int, default=5, help="passes of each variant over the data (interleaved)")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"data not found: {args.data} (pass --data PATH of a CRUXEval jsonl; default: the shipped rows)")
    rows = read_rows(args.data)
    tasks = [(r["code"], r["input"]) for r in rows]

    with SandboxPool(SandboxConfig(workers=args.workers)) as pool, \
            SandboxPool(SandboxConfig(workers=args.workers, audit=False)) as plain:
        print(f"sandbox layers: {', '.join(k for k, v in pool.info.layers.items() if v)}")
        for w in pool.info.warnings:
            print(f"warning: {w}")
        variants = {"pool": (pool, 1), "without run-time checks": (plain, 0)}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for p, varied in variants.values():
            validate_many(p, tasks[:50], literal_inputs=False, varied=varied)  # warm-up: workers and twins started
        reproduced = 0
        for rep in range(args.repeats):
            for name, (p, varied) in variants.items():
                t0 = time.perf_counter()
                vals = validate_many(p, tasks, literal_inputs=False, varied=varied)
                rate = len(tasks) / (time.perf_counter() - t0)
                ok = sum(v.ok and values_equal(v.output, r["output"]) for v, r in zip(vals, rows))
                reproduced = ok if name == "pool" else reproduced
                print(f"{name} pass {rep + 1}: {rate:8.1f} tasks/s  reproduced {ok}/{len(rows)}")
                rates[name].append(rate)
        best, plain_best = max(rates["pool"]), max(rates["without run-time checks"])
        print(f"medians: pool {statistics.median(rates['pool']):.1f} tasks/s, without run-time checks "
              f"{statistics.median(rates['without run-time checks']):.1f} tasks/s, ratio "
              f"{statistics.median(rates['pool']) / statistics.median(rates['without run-time checks']):.3f}")

    sub = rows[: args.naive_limit]
    t0 = time.perf_counter()
    naive_ok = sum(values_equal(naive_validate(r["code"], r["input"], 10.0), r["output"]) for r in sub)
    naive = len(sub) / (time.perf_counter() - t0)
    print(f"naive: {naive:8.1f} tasks/s  reproduced {naive_ok}/{len(sub)} (first {len(sub)} rows)")
    print(f"reproduced={reproduced}/{len(rows)} pool_tasks_per_s={best:.1f} naive_tasks_per_s={naive:.1f} "
          f"speedup={best / naive:.1f} without_checks_tasks_per_s={plain_best:.1f} checks_ratio={best / plain_best:.3f}")


if __name__ == "__main__":
    main()
