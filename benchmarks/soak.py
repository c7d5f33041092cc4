"""Soak test: a long `azr train` run of the shipped recipe, its RSS sampled every second, step by step.

Runs ``azr train --preset cpu`` (plus any extra flags, e.g. a smaller ``--selfplay.batch-size`` so that 40 steps fit in
a working session) as a child process with its output piped, so that ``azr train`` prints a line as each stage of
each step begins; those lines say which step every RSS sample belongs to. Samples are the trainer process's RSS
(the sandbox workers are separate, small processes and are not counted). Everything lands in ``--out``:

* ``train.log``: the run's own output; ``rss.csv``: ``t_s,step,stage,rss_bytes`` once a second;
* ``steps.csv``: per step, its RSS as it began, its peak and the stage of the peak, and its step time (from the
  run's ``metrics.jsonl``);
* ``run/``: the run directory (config, metrics, checkpoints; rerunning the same command resumes it).

A wall-clock budget (``--budget-min``) stops the run with Ctrl-C (it checkpoints) so that the figures exist
before a session ends. The last line is exactly

    steps=<n> peak_rss_gib=<x> early_peak_gib=<a> late_peak_gib=<b> median_step_s=<s>

where ``early_peak_gib`` is the highest per-step peak over steps 5-14 and ``late_peak_gib`` over the last 10 steps
(the creep goal: late <= early + 0.5 GiB over >= 40 steps); a value that cannot be computed (too few steps) is nan.

    python benchmarks/soak.py --out /tmp/soak --steps 40 --budget-min 75 -- --selfplay.batch-size 2
    python benchmarks/soak.py --out /tmp/soak --plot rss.png /tmp/soak-other     # the soaks side by side
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


def per_step(rss_csv: Path, done: set[int]) -> dict[int, dict]:
    """Per finished step, from the samples: its RSS as it began, its peak, and the stage the peak fell in."""
    out: dict[int, dict] = {}
    with open(rss_csv) as f:
        for t, step, stage, rss in csv.reader(f):
            s, b = int(step), int(rss)
            if s not in done:
                continue
            row = out.setdefault(s, {"start": b, "peak": b, "peak_stage": stage})
            if b > row["peak"]:
                row["peak"], row["peak_stage"] = b, stage
    return out


def summarize(out: Path) -> str:
    """Write steps.csv from rss.csv and the run's metrics; return the summary line. Works on a finished, resumed
    or interrupted soak (``--summarize-only``)."""
    metrics = out / "run" / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
    step_s = {int(r["step"]): r["time/step"] for r in rows if r.get("time/step")}
    steps = per_step(out / "rss.csv", set(step_s))  # a step cut short by the budget is not a step
    with open(out / "steps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "start_rss_gib", "peak_rss_gib", "peak_stage", "step_s"])
        for s in sorted(steps):
            r = steps[s]
            w.writerow([s, f"{r['start'] / GIB:.3f}", f"{r['peak'] / GIB:.3f}", r["peak_stage"], f"{step_s[s]:.1f}"])
    return summary_line({s: r["peak"] for s, r in steps.items()}, list(step_s.values()))


def plot(png: Path, outs: list[Path]) -> Path:
    """Per-step peak RSS (solid) and RSS as each step began (dashed) of one or more soaks, one colour each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for k, out in enumerate(outs):
        with open(out / "steps.csv") as f:
            rows = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in rows]
        colour = f"C{k}"
        label = (out / "label.txt").read_text().strip() if (out / "label.txt").exists() else out.name
        ax.plot(steps, [float(r["peak_rss_gib"]) for r in rows], color=colour, label=f"{label}: peak")
        ax.plot(steps, [float(r["start_rss_gib"]) for r in rows], color=colour, ls="--", label=f"{label}: at step start")
    ax.set_xlabel("self-play step")
    ax.set_ylabel("trainer RSS (GiB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return png


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the log, samples and the run")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--preset", default="cpu", help="the recipe to soak (tiny-test: a plumbing check in seconds)")
    ap.add_argument("--budget-min", type=float, default=0.0, help="stop (with a checkpoint) after this long; 0 = none")
    ap.add_argument("--summarize-only", action="store_true", help="recompute steps.csv and the last line from --out")
    ap.add_argument("--plot", metavar="PNG", help="draw the per-step RSS of --out and of the soak directories given "
                    "after it (their label.txt names each line) into PNG, and exit")
    ap.add_argument("extra", nargs="*", help="more `azr train` flags, after --")
    args = ap.parse_args()
    if args.summarize_only:
        print(summarize(Path(args.out)))
        return 0
    if args.plot:
        print(plot(Path(args.plot), [Path(args.out), *map(Path, args.extra)]))
        return 0
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
            w.writerow([f"{time.monotonic() - t0:.0f}", where["step"], where["stage"], rss])
            f.flush()
            if args.budget_min and not stopped and time.monotonic() - t0 > args.budget_min * 60:
                child.send_signal(signal.SIGINT)  # azr train checkpoints and exits
                stopped = True
            time.sleep(1.0)
    child.wait()
    reader.join(timeout=10)
    print(f"azr train exited with {child.returncode}" + (" (stopped at the budget)" if stopped else ""))
    print(summarize(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
