"""Executor scaling: CRUXEval validation tasks/s on the Ray executor pool at 1, 2, … actors vs the local pool.

Same work as ``executor_bench.py`` (static checks, two runs for the determinism check, literal
output, every sandbox layer on), through ``validate_many``:
  * local: one ``SandboxPool`` in this process (``--local-workers``, default one per core);
  * ray-N: ``RayExecutorPool`` with N executor actors of one CPU each, each actor a one-worker
           sandbox pool, on a private local Ray cluster, so N actors use N cores.

Each figure is the best of ``--repeats`` passes over the rows. The driver's own CPU time per task
(static checks, chunking, Ray calls, unpickling) is measured too: one driver can feed at most
1 / that many tasks per second, whatever the cluster's size.

    python benchmarks/executor_scaling.py [--data CRUXEVAL.jsonl] --actors 1,2

The last line is ``reproduced=<n>/<N> local_tasks_per_s=<x> ray<k>_tasks_per_s=<y> ... scaling=<ray_max/ray_1>
ray_max_vs_local=<ray_max/x> driver_ceiling_tasks_per_s=<z>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from azr.eval.cruxeval import SHIPPED_DATA
from azr.eval.suite import read_rows
from azr.executor import SandboxConfig, SandboxPool, validate_many, values_equal

DEFAULT_DATA = SHIPPED_DATA  # $AZR_CRUXEVAL is for azr eval; a benchmark names its data with --data


def best_rate(pool, tasks, rows, repeats: int, label: str) -> tuple[float, int, float]:
    """(best tasks/s, rows reproduced, driver CPU seconds per task on the best pass)."""
    validate_many(pool, tasks[:50], literal_inputs=False)  # warm-up: workers started, code paths hot
    best, reproduced, driver = 0.0, 0, 0.0
    for rep in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        vals = validate_many(pool, tasks, literal_inputs=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rate = len(tasks) / wall
        reproduced = sum(v.ok and values_equal(v.output, r["output"]) for v, r in zip(vals, rows))
        print(f"{label:>8} pass {rep + 1}: {rate:8.1f} tasks/s  driver CPU {1e3 * cpu / len(tasks):.3f} ms/task  "
              f"reproduced {reproduced}/{len(rows)}")
        if rate > best:
            best, driver = rate, cpu / len(tasks)
    return best, reproduced, driver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="CRUXEval jsonl (default: the rows shipped with azr)")
    ap.add_argument("--actors", default="1,2", help="comma-separated Ray executor actor counts")
    ap.add_argument("--local-workers", type=int, default=0, help="local pool workers (0 = one per core)")
    ap.add_argument("--chunk", type=int, default=64, help="jobs per actor call (--dist.executor-chunk)")
    ap.add_argument("--repeats", type=int, default=3, help="passes per configuration; the best is reported")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"data not found: {args.data} (pass --data PATH of a CRUXEval jsonl; default: the shipped rows)")
    try:
        import ray
    except ImportError:
        sys.exit("needs ray: pip install 'azr[ray]'")
    from azr.distributed.executor import RayExecutorPool

    rows = read_rows(args.data)
    tasks = [(r["code"], r["input"]) for r in rows]
    actor_counts = [int(a) for a in args.actors.split(",")]
    cores = os.cpu_count() or 1
    print(f"{len(rows)} CRUXEval rows, {cores} cores, actors {actor_counts}")

    with SandboxPool(SandboxConfig(workers=args.local_workers)) as pool:
        print(f"sandbox layers: {', '.join(k for k, v in pool.info.layers.items() if v)}")
        local, reproduced, local_driver = best_rate(pool, tasks, rows, args.repeats, "local")

    ray.init(num_cpus=max(cores, *actor_counts), include_dashboard=False, logging_level=logging.WARNING)
    rates: dict[int, float] = {}
    drivers: dict[int, float] = {}
    try:
        for n in actor_counts:
            with RayExecutorPool(SandboxConfig(workers=1), workers=n, cpus_per_worker=1.0, chunk=args.chunk) as rpool:
                rates[n], rep_n, drivers[n] = best_rate(rpool, tasks, rows, args.repeats, f"ray-{n}")
                reproduced = min(reproduced, rep_n)
    finally:
        ray.shutdown()

    lo, hi = min(actor_counts), max(actor_counts)
    ceiling = 1.0 / max(drivers.values())
    print(f"local pool: {local:.1f} tasks/s (driver {1e3 * local_driver:.3f} ms/task)")
    for n in actor_counts:
        print(f"ray {n} actor(s): {rates[n]:.1f} tasks/s ({rates[n] / n:.1f} per actor; "
              f"{rates[n] / local:.2f}x local; driver {1e3 * drivers[n]:.3f} ms/task)")
    print(f"one driver feeds at most ~{ceiling:.0f} tasks/s (its CPU per task on the Ray pool)")
    figures = " ".join(f"ray{n}_tasks_per_s={rates[n]:.1f}" for n in actor_counts)
    print(f"reproduced={reproduced}/{len(rows)} local_tasks_per_s={local:.1f} {figures} "
          f"scaling={rates[hi] / rates[lo]:.2f} ray_max_vs_local={rates[hi] / local:.2f} "
          f"driver_ceiling_tasks_per_s={ceiling:.0f}")


if __name__ == "__main__":
    main()
