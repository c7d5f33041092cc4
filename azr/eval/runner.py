"""Run suites on a policy, write the JSON report, print the table, compare two models.

``evaluate`` is the whole pipeline for one model: prompts for every item (n samples each) go
through the policy's batched ``generate`` in chunks (a progress bar per suite), answers are
extracted, and all of a suite's answers are scored in one executor batch. The report holds
every item's responses and verdicts plus the aggregates (pass@k by the unbiased estimator).
``compare`` pairs two reports item by item (first sample of each) and gives McNemar's exact
p-value.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from azr.config import ConfigError
from azr.eval.stats import discordant, mcnemar_exact, mean_pass_at_k
from azr.eval.suite import DEFAULT_STYLE, EvalDataError, EvalItem, PromptStyle, Suite, load_items

DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True)
class ItemResult:
    id: str
    responses: tuple[str, ...]
    answers: tuple[str | None, ...]
    correct: tuple[bool, ...]


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    n_items: int
    n_samples: int
    pass_at: dict[str, float]
    """``{"pass@1": ..., "pass@5": ...}`` for every k <= n_samples."""
    format_error_frac: float
    """Share of responses with no usable answer."""
    wall_s: float
    tokens: int
    items: tuple[ItemResult, ...]
    style: str = DEFAULT_STYLE
    """The prompt style the suite was run in (``native`` or ``azr``); reports say it, since scores differ."""


@dataclass(frozen=True)
class EvalReport:
    model: str
    settings: dict
    suites: tuple[SuiteResult, ...]
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    def suite(self, name: str) -> SuiteResult:
        for s in self.suites:
            if s.suite == name:
                return s
        raise KeyError(f"report of {self.model} has no suite {name!r} (it has {[s.suite for s in self.suites]})")

    def metrics(self) -> dict[str, float]:
        """Flat ``eval/<suite>/pass@k`` and ``eval/<suite>/format_error_frac`` keys, as logged during training: a
        drift in the answer format shows at the step where it starts."""
        out = {f"eval/{s.suite}/{k}": v for s in self.suites for k, v in s.pass_at.items()}
        out.update({f"eval/{s.suite}/format_error_frac": s.format_error_frac for s in self.suites})
        return out


@dataclass(frozen=True)
class Comparison:
    suite: str
    a: float
    b: float
    """pass@1 of the first sample of each item, for A and B."""
    b_wins: int
    """Items B got right and A got wrong."""
    b_losses: int
    """Items A got right and B got wrong."""
    p_value: float
    n_items: int


# -- data ------------------------------------------------------------------------------------

def default_data(suite: str) -> str | None:
    """Where a suite's data is when the user names none: CRUXEval's 800 rows and the 40 math problems ship
    with the package (``$AZR_CRUXEVAL`` overrides CRUXEval's); synthesis data is the user's to supply."""
    from azr.eval import SUITES

    return SUITES[suite].default_data()


def resolve_data(suites: Sequence[str], data: Sequence[str]) -> dict[str, str]:
    """Map each suite to a data source. Entries are ``suite=PATH`` or a bare PATH, which serves
    every suite not named explicitly (``--data cruxeval.jsonl`` covers cruxeval-o and -i)."""
    named = dict(d.split("=", 1) for d in data if "=" in d and d.split("=", 1)[0] in suites)
    bare = [d for d in data if d not in {f"{k}={v}" for k, v in named.items()}]
    if len(bare) > 1:
        raise EvalDataError(f"several unnamed --data paths {bare}; name them as SUITE=PATH")
    from azr.eval import SUITES

    out = {}
    for s in suites:
        src = named.get(s) or (bare[0] if bare else default_data(s))
        if src is None:
            raise EvalDataError(f"suite {s} needs data: pass --data {s}=PATH, a .jsonl/.jsonl.gz file of "
                                f"{SUITES[s].data_format}, or a Hugging Face dataset id")
        out[s] = src
    return out


def resolve_model(spec: str) -> str:
    """``default`` is the embedded model; a run directory means its latest checkpoint; a
    checkpoint directory means its ``model/``. Anything else goes to the policy loader as is."""
    from azr.checkpoint import latest_checkpoint

    if spec in ("default", ""):
        from azr.policy.base import DEFAULT_MODEL

        return DEFAULT_MODEL
    path = Path(spec).expanduser()
    if (path / "checkpoints").is_dir():
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise EvalDataError(f"{path} is a run directory without a finished checkpoint")
        path = ckpt
    # a full model (config.json) or LoRA adapters alone (azr_policy.json names their base model)
    if (path / "model" / "config.json").is_file() or (path / "model" / "azr_policy.json").is_file():
        return str(path / "model")
    return spec


# -- evaluation ------------------------------------------------------------------------------

class Partial:
    """The finished generation chunks of one suite on one model, appended to a JSONL file as they finish, so
    that a stopped ``azr eval`` (a closed laptop, a killed job) resumes at the chunk where it stopped.

    A chunk's sampling seed depends only on its position, so a resumed evaluation generates what an
    uninterrupted one would. The first line is a key (model, suite, settings, item ids); a file written under
    another key is started afresh, and a line cut short by a kill is dropped with everything after it. A
    failed write (a full disk) stops the caching, not the evaluation; ``error`` then says why.
    """

    def __init__(self, path: str | Path, key: dict):
        self.path, self.key, self.error = Path(path), json.loads(json.dumps(key)), None
        self._open = False  # whether the file on disk starts with this key and ends on a whole line

    def load(self) -> dict[int, tuple[list[str], int]]:
        """``{chunk start: (responses, tokens)}`` of the chunks already done under this key."""
        try:
            lines = self.path.read_text().splitlines(keepends=True)
            if not lines or not lines[0].endswith("\n") or json.loads(lines[0]) != {"key": self.key}:
                return {}
        except (OSError, ValueError):
            return {}
        done, keep = {}, lines[:1]
        for line in lines[1:]:
            try:
                if not line.endswith("\n"):
                    raise ValueError("cut short")
                row = json.loads(line)
                done[int(row["start"])] = (list(row["responses"]), int(row["tokens"]))
            except (ValueError, KeyError, TypeError):
                break
            keep.append(line)
        self._open = len(keep) == len(lines) or self._write("".join(keep), "w")  # drop a cut tail first
        return done

    def add(self, start: int, responses: Sequence[str], tokens: int) -> None:
        row = json.dumps({"start": start, "responses": list(responses), "tokens": tokens}) + "\n"
        if self._open:
            self._write(row, "a")
        else:
            self._open = self._write(json.dumps({"key": self.key}) + "\n" + row, "w")

    def _write(self, text: str, mode: str) -> bool:
        if self.error:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, mode) as f:
                f.write(text)
            return True
        except OSError as e:
            self.error = f"could not write {self.path} ({e.strerror or e}); this evaluation will not resume"
            return False


def evaluate_suite(policy, pool, suite: Suite, items: Sequence[EvalItem], *, n: int = 1, temperature: float = 0.0,
                   style: PromptStyle = DEFAULT_STYLE, max_new_tokens: int = 0, batch_size: int = 32, seed: int = 0,
                   ks: Sequence[int] = DEFAULT_KS, on_progress: Callable[[int], None] | None = None,
                   response_prefix: str = "", partial: Partial | None = None) -> SuiteResult:
    """Generate n responses per item (greedy when temperature is 0), extract, score, aggregate.
    ``response_prefix`` starts every answer turn (see :class:`~azr.policy.GenerationConfig`); chunks found in
    ``partial`` are reused, and new ones are added to it."""
    from azr.policy import GenerationConfig

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature == 0 and n > 1:
        raise ValueError(f"greedy decoding (temperature 0) gives {n} identical samples; set a temperature > 0 "
                         f"for pass@k with n > 1")
    t0 = time.perf_counter()
    gen = GenerationConfig(max_new_tokens=max_new_tokens or suite.max_new_tokens, temperature=temperature,
                           greedy=temperature == 0, batch_size=batch_size, response_prefix=response_prefix)
    prompts = [suite.prompt(it, style) for it in items for _ in range(n)]
    responses, tokens = [], 0
    chunk = max(batch_size, 1) * 2
    done = partial.load() if partial else {}
    for start in range(0, len(prompts), chunk):
        if start in done:
            got, got_tokens = done[start]
        else:
            outs = policy.generate(prompts[start:start + chunk], gen, seed=seed + start)
            got, got_tokens = [g.response for g in outs], sum(g.num_response_tokens for g in outs)
            if partial:
                partial.add(start, got, got_tokens)
        responses += got
        tokens += got_tokens
        if on_progress:
            on_progress(len(got))
    answers = [suite.extract(r, style) for r in responses]
    correct = suite.score(pool, [it for it in items for _ in range(n)], answers)
    results = tuple(
        ItemResult(it.id, tuple(responses[i * n:(i + 1) * n]), tuple(answers[i * n:(i + 1) * n]),
                   tuple(correct[i * n:(i + 1) * n]))
        for i, it in enumerate(items)
    )
    counts = [(n, sum(r.correct)) for r in results]
    pass_at = {f"pass@{k}": mean_pass_at_k(counts, k) for k in sorted({1, *ks}) if k <= n}
    return SuiteResult(suite.name, len(items), n, pass_at, sum(a is None for a in answers) / max(len(answers), 1),
                       time.perf_counter() - t0, tokens, results, style)


def evaluate(policy, pool, model: str, items_by_suite: dict[str, list[EvalItem]], *, settings: dict | None = None,
             progress=None, partial_dir: str | Path | None = None, **kw) -> EvalReport:
    """Every suite in ``items_by_suite`` on one policy (``kw`` as :func:`evaluate_suite`). With ``partial_dir``,
    finished chunks are kept there (:class:`Partial`, one file per suite) until the caller has the report."""
    from azr.eval import SUITES

    out = []
    for name, items in items_by_suite.items():
        n = kw.get("n", 1)
        bar = progress.add_task(f"{name} · {slug(model)}", total=len(items) * n) if progress else None
        cb = (lambda k, bar=bar: progress.advance(bar, k)) if progress else None
        partial = None
        if partial_dir is not None:
            key = {"model": model_fingerprint(model), "suite": name, "items": [it.id for it in items], **kw}
            partial = Partial(partial_path(partial_dir, model, name), key)
        out.append(evaluate_suite(policy, pool, SUITES[name], items, on_progress=cb, partial=partial, **kw))
        if partial and partial.error and progress:
            progress.console.print(f"[yellow]warning:[/] {partial.error}")
    return EvalReport(model, dict(settings or {}), tuple(out))


def partial_path(out_dir: str | Path, model: str, suite: str) -> Path:
    """Where :func:`evaluate` keeps a suite's finished chunks, beside the model's report."""
    return Path(out_dir) / f"{slug(model)}.{suite}.partial.jsonl"


def model_fingerprint(model: str) -> list:
    """A model as a partial evaluation's key sees it: a local directory by its files' names, sizes and times
    (a checkpoint rewritten in place is a new model); anything else by its name."""
    path = Path(model)
    if not path.is_dir():
        return [model]
    stats = [(f.name, f.stat()) for f in path.iterdir() if f.is_file()]
    return [str(path.resolve())] + sorted([name, st.st_size, st.st_mtime_ns] for name, st in stats)


def load_suite_items(suites: Sequence[str], data: Sequence[str], limit: int | None,
                     split: str = "all") -> dict[str, list[EvalItem]]:
    """Each suite's items; CRUXEval's cut to ``split`` (see :func:`azr.eval.cruxeval.in_split`) before ``limit``."""
    from azr.eval import SUITES
    from azr.eval.cruxeval import in_split

    unknown = [s for s in suites if s not in SUITES]
    if not suites or unknown:  # a usage error (exit 2), found before any model loads
        what = f"unknown suite(s) {', '.join(unknown)}" if unknown else "--suite is empty"
        raise ConfigError(f"bad eval config: {what}; choose from {', '.join(SUITES)}")
    sources = resolve_data(suites, data)
    if split == "all":
        return {s: load_items(SUITES[s], sources[s], limit) for s in suites}
    out = {}
    for s in suites:
        items = [it for it in load_items(SUITES[s], sources[s]) if in_split(it.id, split)]
        if not items:
            raise EvalDataError(f"{sources[s]}: no item of the {split} split (ids sample_N, as CRUXEval's)")
        out[s] = items[:limit]
    return out


# -- reports ---------------------------------------------------------------------------------

def report_to_dict(report: EvalReport) -> dict:
    d = asdict(report)
    d["aggregates"] = {s.suite: {"n_items": s.n_items, "n_samples": s.n_samples, "style": s.style, **s.pass_at,
                                 "format_error_frac": s.format_error_frac, "wall_s": s.wall_s, "tokens": s.tokens}
                       for s in report.suites}
    return d


def report_from_dict(d: dict) -> EvalReport:
    # Reports written before the style was recorded per suite ran every suite in settings' style (then "azr").
    style = d.get("settings", {}).get("prompt_style", "azr")
    suites = tuple(
        SuiteResult(**{"style": style, **s, "items": tuple(ItemResult(**{k: tuple(v) if isinstance(v, list) else v
                                                        for k, v in it.items()}) for it in s["items"])})
        for s in d["suites"]
    )
    return EvalReport(d["model"], d["settings"], suites, d.get("created", ""))


def write_report(report: EvalReport, path: str | Path) -> Path:
    """Write the report as JSON atomically (a crash or a full disk leaves the old file or none, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(report_to_dict(report), indent=1))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)  # no half-written file left behind; the old report is untouched
        e.filename = e.filename or str(path)  # a failed write (ENOSPC) names no file by itself
        raise
    return path


def read_report(path: str | Path) -> EvalReport:
    """A report written by ``write_report``, or the same gzipped (``.json.gz``, as committed under
    benchmarks/results/ so that tables can be recomputed after the run directories are gone)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        return report_from_dict(json.loads(raw))
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise EvalDataError(f"{path} is not an azr eval report ({e})") from None


def slug(model: str) -> str:
    """A file-name-safe name for a model spec (``runs/x/checkpoints/step_3/model`` → ``x-step_3``)."""
    parts = [p for p in Path(model).parts if p not in ("checkpoints", "model", "runs", "/", ".", "..")]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts[-2:]) or model).strip("-") or "model"


def summary_table(reports: Sequence[EvalReport]):
    from rich.table import Table

    table = Table(title="azr eval")
    for col in ("model", "suite", "style", "items", "n", "pass@1", "pass@k", "format err", "wall"):
        table.add_column(col)
    for r in reports:
        for s in r.suites:
            extra = " ".join(f"{k}={v:.3f}" for k, v in s.pass_at.items() if k != "pass@1") or "-"
            table.add_row(slug(r.model), s.suite, s.style, str(s.n_items), str(s.n_samples), f"{s.pass_at['pass@1']:.3f}",
                          extra, f"{s.format_error_frac:.2f}", f"{s.wall_s:.0f}s")
    return table


# -- comparison ------------------------------------------------------------------------------

def compare(a: EvalReport, b: EvalReport) -> list[Comparison]:
    """Paired comparison on the suites both reports share, over the items both scored."""
    out = []
    for sa in a.suites:
        try:
            sb = b.suite(sa.suite)
        except KeyError:
            continue
        right_b = {it.id: it.correct[0] for it in sb.items}
        pairs = [(it.correct[0], right_b[it.id]) for it in sa.items if it.id in right_b]
        if not pairs:
            continue
        wins, losses = discordant(pairs)
        out.append(Comparison(sa.suite, sum(x for x, _ in pairs) / len(pairs), sum(y for _, y in pairs) / len(pairs),
                              wins, losses, mcnemar_exact(wins, losses), len(pairs)))
    return out


def comparison_table(rows: Sequence[Comparison], name_a: str, name_b: str):
    from rich.table import Table

    table = Table(title=f"A = {name_a}   vs   B = {name_b}  (first sample per item, paired)")
    for col in ("suite", "items", "A pass@1", "B pass@1", "B wins", "B losses", "McNemar p"):
        table.add_column(col)
    for c in rows:
        table.add_row(c.suite, str(c.n_items), f"{c.a:.3f}", f"{c.b:.3f}", str(c.b_wins), str(c.b_losses),
                      f"{c.p_value:.4g}")
    return table


def plot_comparison(rows: Sequence[Comparison], name_a: str, name_b: str, path: str | Path) -> Path:
    """Grouped bars of pass@1 per suite, A beside B (named by their slugs, not full paths), with the p-value
    over each pair."""
    from azr.report import pyplot

    fig, ax = pyplot().subplots(figsize=(1.8 + 1.6 * len(rows), 3.6))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [c.a for c in rows], 0.4, label=f"A: {slug(name_a)}")
    ax.bar([x + 0.2 for x in xs], [c.b for c in rows], 0.4, label=f"B: {slug(name_b)}")
    for x, c in zip(xs, rows):
        ax.text(x, max(c.a, c.b) + 0.01, f"p={c.p_value:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [c.suite for c in rows])
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, max([0.1] + [max(c.a, c.b) for c in rows]) * 1.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (making the folder) and close a matplotlib figure; its path."""
    from azr.report import pyplot

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path
