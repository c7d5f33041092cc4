"""Soak test: a long `azr train` run of the shipped recipe, its RSS sampled every second, step by step.

Runs ``azr train --preset cpu`` (plus any extra flags, e.g. a smaller ``--selfplay.batch-size`` so that 40 steps fit in
a working session) as a child process with its output piped, so that ``azr train`` prints a line as each stage of
each step begins; those lines say which step every RSS sample belongs to. Samples are the trainer process's RSS
(the sandbox workers are separate, small processes and are not counted). Everything lands in ``--out``:

* ``train.log``: the run's own output; ``rss.csv``: ``t_s,step,stage,rss_bytes`` once a second;
* ``steps.csv``: per step, its peak RSS and its step time (from the run's ``metrics.jsonl``);
* ``run/``: the run directory (config, metrics, checkpoints; rerunning the same command resumes it).

A wall-clock budget (``--budget-min``) stops the run with Ctrl-C (it checkpoints) so that the figures exist
before a session ends. The last line is exactly

    steps=<n> peak_rss_gib=<x> early_peak_gib=<a> late_peak_gib=<b> median_step_s=<s>

where ``early_peak_gib`` is the highest per-step peak over steps 5-14 and ``late_peak_gib`` over the last 10 steps
(the creep goal: late <= early + 0.5 GiB over >= 40 steps); a value that cannot be computed (too few steps) is nan.

    python benchmarks/soak.py --out /tmp/soak --steps 40 --budget-min 75 -- --selfplay.batch-size 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

STAGE_LINE = re.compile(r"^step (\d+)/\d+ · (\w+) · ")
GIB = 2**30


def window_peak(peaks: dict[int, int], steps: range) -> float:
    """The highest per-step peak (GiB) over `steps`; nan when none of them ran."""
    seen = [peaks[s] for s in steps if s in peaks]
    return max(seen) / GIB if seen else math.nan


def summary_line(peaks: dict[int, int], step_s: list[float]) -> str:
    """The soak's last line from per-step peak RSS (bytes, by step number) and the steps' times."""
    n = max(peaks, default=0)
    early = window_peak(peaks, range(5, 15))
    late = window_peak(peaks, range(n - 9, n + 1)) if n >= 10 else math.nan
    peak = max(peaks.values(), default=0) / GIB
    median = statistics.median(step_s) if step_s else math.nan
    return (f"steps={n} peak_rss_gib={peak:.2f} early_peak_gib={early:.2f} late_peak_gib={late:.2f} "
            f"median_step_s={median:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the log, samples and the run")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--preset", default="cpu", help="the recipe to soak (tiny-test: a plumbing check in seconds)")
    ap.add_argument("--budget-min", type=float, default=0.0, help="stop (with a checkpoint) after this long; 0 = none")
    ap.add_argument("extra", nargs="*", help="more `azr train` flags, after --")
    args = ap.parse_args()
    import psutil

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "azr.cli", "train", "--preset", args.preset, "--run.out-dir", str(out),
           "--run.name", "run", "--run.steps", str(args.steps), "--run.no-tensorboard", *args.extra]
    (out / "command.txt").write_text(" ".join(cmd) + "\n")
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             env={**os.environ, "COLUMNS": "160"})
    proc = psutil.Process(child.pid)
    where = {"step": 0, "stage": "start"}
    peaks: dict[int, int] = {}
    t0 = time.monotonic()

    def read_output() -> None:
        with open(out / "train.log", "a") as log:
            for line in child.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                m = STAGE_LINE.match(line)
                if m:
                    where["step"], where["stage"] = int(m.group(1)), m.group(2)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    stopped = False
    with open(out / "rss.csv", "a", newline="") as f:
        w = csv.writer(f)
        while child.poll() is None:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                break
            step = where["step"]
            w.writerow([f"{time.monotonic() - t0:.0f}", step, where["stage"], rss])
            f.flush()
            if step:
                peaks[step] = max(peaks.get(step, 0), rss)
            if args.budget_min and not stopped and time.monotonic() - t0 > args.budget_min * 60:
                child.send_signal(signal.SIGINT)  # azr train checkpoints and exits
                stopped = True
            time.sleep(1.0)
    child.wait()
    reader.join(timeout=10)
    metrics = out / "run" / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
    step_s = {int(r["step"]): r["time/step"] for r in rows if r.get("time/step")}
    done = set(step_s)
    peaks = {s: p for s, p in peaks.items() if s in done}  # a step cut short by the budget is not a step
    with open(out / "steps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "peak_rss_gib", "step_s"])
        for s in sorted(peaks):
            w.writerow([s, f"{peaks[s] / GIB:.3f}", f"{step_s[s]:.1f}"])
    print(f"azr train exited with {child.returncode}" + (" (stopped at the budget)" if stopped else ""))
    print(summary_line(peaks, list(step_s.values())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
