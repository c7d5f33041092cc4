"""`azr report RUN_DIR`: learning-curve PNGs and one self-contained HTML page for a run.

Reads ``metrics.jsonl`` and the latest ``samples/step_N.jsonl``; writes ``report/*.png`` and
``report/index.html`` (images inlined as base64, so the page can be mailed or attached).

`azr report RUN_A RUN_B ... [--out DIR]` compares runs (an ablation against its recipe): one
panel per metric in ``COMPARED`` with one line per run, and a table of each run's summary.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import NamedTuple

from azr.metrics import read_metrics


class Panel(NamedTuple):
    title: str
    pattern: str
    """Regex over metric keys; every matching key is one line of the panel."""


PANELS = (
    Panel("Reward by group (mean)", r"^reward/(propose|solve)/\w+/mean$"),
    Panel("Valid proposals and format errors", r"^(propose/valid_frac|format_error_frac/.+)$"),
    Panel("Learnability (proposer reward > 0 share, mean r_propose)", r"^propose/learnability/.+$"),
    Panel("Solve accuracy by task type", r"^solve/\w+/accuracy$"),
    Panel("Complexity of new programs", r"^complexity/(cyclomatic|ast_nodes|halstead_volume)$"),
    Panel("Diversity of new programs", r"^diversity/.+$"),
    Panel("Duplicate, trivial and own-input proposals",
          r"^propose/((duplicate|trivial)_frac|induction/own_inputs_frac)$"),
    Panel("Valid proposals by task type", r"^propose/\w+/valid_frac$"),
    Panel("Buffer sizes", r"^buffer/\w+/size$"),
    Panel("Step time by stage (s)", r"^time/.+$"),
    Panel("Trainer memory (GiB): RSS at the step's end, highest so far", r"^memory/.+_gib$"),
    Panel("Prompt length (tokens)", r"^prompt/length_(mean|max)$"),
    Panel("Evaluation: pass@1 and format errors", r"^eval/.+/(pass@1|format_error_frac)$"),
)


COMPARED = (
    "solve/deduction/accuracy", "solve/abduction/accuracy", "solve/induction/accuracy",
    "format_error_frac/solve/deduction", "format_error_frac/solve/abduction", "format_error_frac/solve/induction",
    "propose/valid_frac", "propose/learnability/nonzero_frac", "complexity/ast_nodes", "propose/duplicate_frac",
    "buffer/deduction/size", "buffer/abduction/size", "buffer/induction/size", "time/step",
)
"""The metrics a comparison plots, one panel each: what tells runs of one recipe apart."""


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported on first use (matplotlib is heavy)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    return plt


def _plot_line(ax, rows: list[dict], key: str, label: str, markersize: float) -> None:
    """One metric over steps on `ax`, skipping steps that did not log it."""
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", markersize=markersize, label=label)


def plot_panels(rows: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    plt = pyplot()
    keys = sorted({k for r in rows for k in r if k != "step"})
    made = []
    for panel in PANELS:
        series = [k for k in keys if re.search(panel.pattern, k)]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for k in series:
            _plot_line(ax, rows, k, k, markersize=3)
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"{_slug(panel.title)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append((panel.title, path))
    return made


def _samples_table(run_dir: Path, limit: int = 30) -> str:
    files = sorted((run_dir / "samples").glob("step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        return "<p>No samples dumped.</p>"
    rows = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()][:limit]
    head = "<tr><th>type</th><th>role</th><th>reward</th><th>prompt (tail)</th><th>response</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(str(r.get('type')))}</td><td>{html.escape(str(r.get('role')))}</td>"
        f"<td>{r.get('reward')}</td><td><pre>{html.escape(str(r.get('prompt', ''))[-600:])}</pre></td>"
        f"<td><pre>{html.escape(str(r.get('response', ''))[:1500])}</pre></td></tr>"
        for r in rows
    )
    return f"<h2>Samples from {files[-1].name}</h2><table>{head}{body}</table>"


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise ValueError(f"{run_dir}/metrics.jsonl has no steps yet; run `azr train` first")
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    images = plot_panels(rows, out)
    last = rows[-1]
    summary = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
                      for k, v in sorted(last.items()) if isinstance(v, (int, float)))
    figs = "".join(_inline(t, p) for t, p in images)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>azr report: {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1500px}} figure{{display:inline-block;margin:.5em}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:3px;vertical-align:top}}
pre{{white-space:pre-wrap;max-width:600px;margin:0}}</style></head><body>
<h1>azr run <code>{html.escape(run_dir.name)}</code></h1><p>{len(rows)} steps logged.</p>
{figs}<h2>Last step (step {last.get('step')})</h2><table>{summary}</table>{_samples_table(run_dir)}</body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index


def _inline(title: str, path: Path) -> str:
    return (f"<figure><img src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def plot_runs(runs: dict[str, list[dict]], out_dir: Path) -> Path | None:
    """One figure, a panel per `COMPARED` metric that some run logged, a line per run."""
    plt = pyplot()
    keys = [k for k in COMPARED if any(k in r for rows in runs.values() for r in rows)]
    if not keys:
        return None
    cols = 3
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, rows in runs.items():
            _plot_line(ax, rows, key, name, markersize=2.5)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out_dir / "comparison.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _values(rows: list[dict], key: str) -> list[float]:
    """`key` over the steps that logged it as a number."""
    return [r[key] for r in rows if isinstance(r.get(key), (int, float))]


def _mean(rows: list[dict], key: str, last: int | None = None) -> float | None:
    vals = _values(rows, key)
    vals = vals[-last:] if last else vals
    return sum(vals) / len(vals) if vals else None


def step_rows(rows: list[dict]) -> list[dict]:
    """The rows of self-play steps: a step-0 row (the evaluation before self-play, with `--eval-every`) is not a
    step."""
    return [r for r in rows if r.get("step", 1) >= 1]


def summarize_run(rows: list[dict]) -> dict[str, float | None]:
    """Per-run figures for the comparison table: length, mean step time, and the last 5 steps' means."""
    rows = step_rows(rows)
    out: dict[str, float | None] = {"steps": float(len(rows)), "time/step mean": _mean(rows, "time/step")}
    for key in COMPARED:
        if key != "time/step":
            out[f"{key} (last 5)"] = _mean(rows, key, last=5)
    return out


class Curriculum(NamedTuple):
    """Is the curriculum alive? Read from one run's metrics (issue 16's goal 1)."""

    steps: int
    step_s: float
    """Seconds of all steps together (seeding and evaluation are not steps)."""
    valid_every_step: bool
    valid_frac_first_last: tuple[float, float]
    buffers: dict[str, int]
    """Final size per task type."""
    learnability_nonzero_steps: float
    """Share of steps with some proposal of learnability > 0."""
    ast_nodes_first_last: tuple[float, float]
    """Mean AST nodes of new programs over the first and the last third of the steps that logged it."""
    halstead_first_last: tuple[float, float]
    """The same for the Halstead volume."""
    duplicate_frac_mean: float
    own_inputs_frac: float | None
    """Share of valid induction proposals whose inputs are mostly not the identity seed's, averaged over the steps
    that logged it (``propose/induction/own_inputs_frac``); None when the run did not log it."""


def _thirds(rows: list[dict], key: str) -> tuple[float, float]:
    vals = _values(rows, key)
    if not vals:
        return float("nan"), float("nan")
    k = max(1, len(vals) // 3)
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


def curriculum(rows: list[dict]) -> Curriculum:
    """What the self-play steps' rows (`step_rows`) say about the curriculum."""
    rows = step_rows(rows)
    if not rows:
        raise ValueError("no steps logged yet: no curriculum to read")
    valid = [r.get("propose/valid_frac", 0.0) or 0.0 for r in rows]
    sizes = {t: int(rows[-1].get(f"buffer/{t}/size", 0)) for t in ("deduction", "abduction", "induction")}
    nonzero = [r.get("propose/learnability/nonzero_frac", 0.0) or 0.0 for r in rows]
    return Curriculum(
        steps=len(rows), step_s=sum(r.get("time/step", 0.0) for r in rows), valid_every_step=all(v > 0 for v in valid),
        valid_frac_first_last=(valid[0], valid[-1]), buffers=sizes,
        learnability_nonzero_steps=sum(v > 0 for v in nonzero) / max(1, len(nonzero)),
        ast_nodes_first_last=_thirds(rows, "complexity/ast_nodes"),
        halstead_first_last=_thirds(rows, "complexity/halstead_volume"),
        duplicate_frac_mean=_mean(rows, "propose/duplicate_frac") or 0.0,
        own_inputs_frac=_mean(rows, "propose/induction/own_inputs_frac"))


def write_comparison(run_dirs: list[Path], out_dir: Path) -> Path:
    """Compare runs: ``out_dir/comparison.png``, ``summary.json`` and a self-contained ``index.html``."""
    run_dirs = [Path(d) for d in run_dirs]
    names = [d.name for d in run_dirs]
    if len(set(names)) != len(names):
        names = [str(d) for d in run_dirs]
    runs = {}
    for name, d in zip(names, run_dirs):
        rows = read_metrics(d)
        if not rows:
            raise ValueError(f"{d}/metrics.jsonl has no steps yet; nothing to compare")
        runs[name] = rows
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plot_runs(runs, out_dir)
    summary = {name: summarize_run(rows) for name, rows in runs.items()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    cols = list(next(iter(summary.values())))
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = "".join(
        f"<tr><td>{html.escape(n)}</td>" + "".join(
            f"<td>{'–' if s[c] is None else format(s[c], '.3g')}</td>" for c in cols) + "</tr>"
        for n, s in summary.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>azr comparison</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px}}</style></head><body>
<h1>azr runs compared</h1>{_inline("one line per run", figure) if figure else "<p>No compared metric logged.</p>"}
<table>{head}{body}</table></body></html>"""
    index = out_dir / "index.html"
    index.write_text(page)
    return index
