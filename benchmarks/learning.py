"""Did self-play improve the model? The curriculum of runs, and CRUXEval-O/I before vs after, paired.

    python benchmarks/learning.py --before default --after runs/azr-cpu --split dev   # evaluate, then analyse
    python benchmarks/learning.py --reports BEFORE.json AFTER.json [--plot P.png]    # analyse reports already written
    python benchmarks/learning.py --reports B_dev.json,B_test.json A_dev.json,A_test.json   # parts merged per model
    python benchmarks/learning.py --reports B.json,B_math.json A.json,A_math.json           # + math/HumanEval, paired
    python benchmarks/learning.py --runs runs/azr-cpu runs/abl-global                 # the curriculum table
    python benchmarks/learning.py --buffers runs/azr-cpu/seeding runs/azr-cpu/buffers  # what the buffers hold
    python benchmarks/learning.py --base B.json --recipe s0=R0.json --recipe s1=R1.json \\
        --ablation global=G.json --ablation-plot abl.png                               # the ablation table

Both models are evaluated greedily on the same items with the same prompt, response prefix and token cap
(`azr eval --compare`), in the `azr` prompt style by default (the solver format the run trained; pass
`--prompt-style native` for the benchmark's own). Recipes are tuned on the fixed 200-item dev split
(`azr/eval/data/cruxeval_dev.txt`) only; the analysis reports dev, the other 600 (test) and all 800 apart.

Per suite and split it prints pass@1 before/after with McNemar's exact p; accuracy among format-valid
answers (an answer could be extracted) before/after, with the paired test on the items both models
answered in format, so that a gain made of fewer format errors shows as such; and how many of the new
wins are a verbatim copy of what the prompt shows (CRUXEval-I: the output given back as the input;
CRUXEval-O: the input given back as the output), next to how far that copy rule alone gets; and in the native
style its format errors by kind (no closed block, no assertion in it, an assertion the scorer rejects). The last
line per suite is ``suite=... before=... after=... ratio=... p=...`` (all items given).
Reports of other suites (math, HumanEval) given among the parts get a paired no-regression table.

The ablation table pairs every run with the untrained model and with the recipe's first seed, on the items all
runs scored; the recipe's other seeds measure the run-to-run spread, and an ablation counts as different only
when its paired p < 0.05 and its gap to the recipe is wider than that spread (issue 16).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from azr.eval import SUITES
from azr.eval.cruxeval import NATIVE_FAILURES, in_split, native_failure
from azr.eval.runner import (Comparison, EvalReport, ItemResult, default_data, plot_comparison, read_report,
                             resolve_model, save_figure, slug)
from azr.eval.stats import discordant, mcnemar_exact
from azr.eval.suite import EvalDataError, read_rows
from azr.executor import SandboxConfig, SandboxPool, parse_literal

COPIED = {"cruxeval-i": "output", "cruxeval-o": "input"}
"""What a copying answer repeats from the prompt, per suite."""


def _same(answer: str | None, shown: str) -> bool:
    """Whether an answer is the shown text as a Python value (so `'a'` and `"a"` count as one)."""
    if answer is None:
        return False
    a, b = parse_literal(answer), parse_literal(shown)
    if a.ok and b.ok:
        return a.value == b.value
    return answer.strip() == shown.strip()


@dataclass(frozen=True)
class Paired:
    """One suite before vs after on the same items (first sample each): the counts McNemar's test needs. On its own
    it is the no-regression check of the suites besides CRUXEval (math, HumanEval)."""
    suite: str
    items: int
    before: float
    after: float
    wins: int
    losses: int
    p: float
    format_errors_before: int
    format_errors_after: int


def paired(suite: str, b: list[ItemResult], a: list[ItemResult]) -> Paired:
    wins, losses = discordant((x.correct[0], y.correct[0]) for x, y in zip(b, a))
    n = len(b) or float("nan")  # no items: accuracies are nan, not a ZeroDivisionError
    return Paired(suite, len(b), sum(x.correct[0] for x in b) / n, sum(y.correct[0] for y in a) / n,
                  wins, losses, mcnemar_exact(losses, wins),
                  sum(x.answers[0] is None for x in b), sum(y.answers[0] is None for y in a))


@dataclass(frozen=True)
class SplitResult(Paired):
    """A CRUXEval suite on one split, with the format and copy analysis."""
    split: str
    valid_acc_before: float
    """Accuracy among the items whose answer could be extracted (format-valid)."""
    valid_acc_after: float
    both_valid: int
    """Items both models answered in format; the paired test below is on them."""
    valid_wins: int
    valid_losses: int
    valid_p: float
    win_copies: int
    """New wins whose answer is a verbatim copy of the prompt's shown value."""
    copy_rule_correct: int
    """Items the copy rule alone gets right."""
    beyond_copy: Paired
    """Before vs after on the items the copy rule does not solve (issue 28's CRUXEval-I goal: a gain there is not
    the copy rule)."""
    example_copies_before: int
    """Answers that repeat the answer of the prompt's worked example (azr style; 0 in the native style, which has
    none), by the prompts of the code at hand: reports made with other prompts read 0. A fixed example's answer
    became the abduction solver's answer to everything once (issue 16)."""
    example_copies_after: int
    failures_before: tuple[int, ...] = ()
    """Native style only: the format errors by `native_failure`'s kinds, in `NATIVE_FAILURES` order (unclosed,
    no assertion, invalid); empty in the azr style. A drift towards the self-play answer form shows as
    ``no_assertion``."""
    failures_after: tuple[int, ...] = ()


def failure_counts(items: list[ItemResult]) -> tuple[int, ...]:
    """Native-style format errors by kind (`NATIVE_FAILURES` order), from each item's first response."""
    kinds = [native_failure(it.responses[0]) for it in items if it.answers[0] is None]
    return tuple(kinds.count(k) for k in NATIVE_FAILURES)


def merge(reports: list[EvalReport]) -> dict[str, dict[str, ItemResult]]:
    """Suite → item id → result, over reports of disjoint parts (e.g. the dev and test splits)."""
    out: dict[str, dict[str, ItemResult]] = {}
    for r in reports:
        for s in r.suites:
            out.setdefault(s.suite, {}).update({it.id: it for it in s.items})
    return out


def _acc(items: list[ItemResult]) -> float:
    valid = [it for it in items if it.answers[0] is not None]
    return sum(it.correct[0] for it in valid) / len(valid) if valid else float("nan")


def _example_answer(suite: str, row: dict) -> str | None:
    """The answer of the worked example in the azr-style prompt of `row`."""
    spec = SUITES[suite]
    m = re.search(r"<answer>\n(.*?)\n</answer>", spec.prompt(spec.item(row, 0), "azr"), re.DOTALL)
    return m.group(1).strip() if m else None


def analyse(before: dict[str, dict[str, ItemResult]], after: dict[str, dict[str, ItemResult]], data: Path,
            splits: list[str], style: str = "azr") -> list[SplitResult]:
    rows = {r["id"]: r for r in read_rows(data)}
    pool = SandboxPool(SandboxConfig(workers=2))
    out = []
    try:
        for suite, field in COPIED.items():
            if suite not in before or suite not in after:
                continue
            ids = [i for i in before[suite] if i in after[suite] and i in rows]
            spec = SUITES[suite]
            rule_ok = dict(zip(ids, spec.score(pool, [spec.item(rows[i], 0) for i in ids],
                                               [rows[i][field] for i in ids])))
            example = {i: _example_answer(suite, rows[i]) if style == "azr" else None for i in ids}
            for split in splits:
                part = [i for i in ids if in_split(i, split)]
                if not part:
                    continue
                b, a = [before[suite][i] for i in part], [after[suite][i] for i in part]
                wins = [i for i, x, y in zip(part, b, a) if y.correct[0] and not x.correct[0]]
                both = [(x, y) for x, y in zip(b, a) if x.answers[0] is not None and y.answers[0] is not None]
                vw, vl = discordant((x.correct[0], y.correct[0]) for x, y in both)
                ex_b, ex_a = (sum(example[i] is not None and (side[suite][i].answers[0] or "").strip() == example[i]
                                  for i in part) for side in (before, after))
                rest = [i for i in part if not rule_ok[i]]
                beyond = paired(suite, [before[suite][i] for i in rest], [after[suite][i] for i in rest])
                out.append(SplitResult(
                    **dataclasses.asdict(paired(suite, b, a)), split=split, beyond_copy=beyond, valid_acc_before=_acc(b),
                    valid_acc_after=_acc(a), both_valid=len(both), valid_wins=vw, valid_losses=vl,
                    valid_p=mcnemar_exact(vl, vw),
                    win_copies=sum(_same(after[suite][i].answers[0], rows[i][field]) for i in wins),
                    copy_rule_correct=sum(rule_ok[i] for i in part), example_copies_before=ex_b, example_copies_after=ex_a,
                    failures_before=failure_counts(b) if style == "native" else (),
                    failures_after=failure_counts(a) if style == "native" else ()))
    finally:
        pool.close()
    return out


def other_suites(before: dict[str, dict[str, ItemResult]], after: dict[str, dict[str, ItemResult]]) -> list[Paired]:
    """Every non-CRUXEval suite both sides scored, over the items both scored (first sample), McNemar exact."""
    out = []
    for suite in sorted(set(before) & set(after) - set(COPIED)):
        ids = [i for i in before[suite] if i in after[suite]]
        if ids:
            out.append(paired(suite, [before[suite][i] for i in ids], [after[suite][i] for i in ids]))
    return out


def _header(*cols: str) -> list[str]:
    """A markdown table's first two lines."""
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def _beyond(r: Paired) -> str:
    if not r.items:
        return "0"
    return f"{r.items}, {r.before:.3f} → {r.after:.3f}, {r.wins}/{r.losses}, {r.p:.2g}"


def _kinds(before: tuple[int, ...], after: tuple[int, ...]) -> str:
    if not before:
        return "–"
    return "/".join(map(str, before)) + " → " + "/".join(map(str, after))


def markdown(results: list[SplitResult]) -> str:
    lines = _header("suite", "split", "items", "before", "after", "W/L", "p", "format errors before → after",
                    "acc. among format-valid before → after", "both valid: W/L, p", "new wins that copy",
                    "copy rule alone", "beyond it: items, before → after, W/L, p",
                    "example's answer repeated before → after",
                    "native format errors (unclosed/no assertion/invalid) before → after")
    for r in results:
        lines.append(f"| {r.suite} | {r.split} | {r.items} | {r.before:.3f} | {r.after:.3f} | {r.wins}/{r.losses} | "
                     f"{r.p:.2g} | {r.format_errors_before} → {r.format_errors_after} | "
                     f"{r.valid_acc_before:.3f} → {r.valid_acc_after:.3f} | {r.valid_wins}/{r.valid_losses}, "
                     f"{r.valid_p:.2g} (n={r.both_valid}) | {r.win_copies}/{r.wins} | {r.copy_rule_correct} | "
                     f"{_beyond(r.beyond_copy)} | {r.example_copies_before} → {r.example_copies_after} | "
                     f"{_kinds(r.failures_before, r.failures_after)} |")
    return "\n".join(lines)


def other_markdown(results: list[Paired]) -> str:
    lines = _header("suite", "items", "before", "after", "W/L", "p", "format errors before → after")
    lines += [f"| {r.suite} | {r.items} | {r.before:.3f} | {r.after:.3f} | {r.wins}/{r.losses} | {r.p:.2g} | "
              f"{r.format_errors_before} → {r.format_errors_after} |" for r in results]
    return "\n".join(lines)


def curriculum_table(run_dirs: list[Path]) -> str:
    from azr.metrics import read_metrics
    from azr.report import curriculum

    cols = ("run", "steps", "step time", "valid every step", "valid first → last", "buffers ded/abd/ind",
            "steps with learnability > 0", "AST nodes first → last third", "Halstead volume first → last",
            "duplicate frac (mean)", "induction own inputs")
    lines = _header(*cols)
    for d in run_dirs:
        rows = read_metrics(d)
        if not rows:
            lines.append(f"| {Path(d).name} | 0 |" + " – |" * (len(cols) - 2))
            continue
        c = curriculum(rows)
        b = c.buffers
        lines.append(f"| {Path(d).name} | {c.steps} | {c.step_s / 60:.0f} min | {'yes' if c.valid_every_step else 'no'} | "
                     f"{c.valid_frac_first_last[0]:.2f} → {c.valid_frac_first_last[1]:.2f} | "
                     f"{b.get('deduction')}/{b.get('abduction')}/{b.get('induction')} | "
                     f"{c.learnability_nonzero_steps:.0%} | {c.ast_nodes_first_last[0]:.1f} → {c.ast_nodes_first_last[1]:.1f} | "
                     f"{c.halstead_first_last[0]:.1f} → {c.halstead_first_last[1]:.1f} | {c.duplicate_frac_mean:.2f} | "
                     f"{'–' if c.own_inputs_frac is None else format(c.own_inputs_frac, '.2f')} |")
    return "\n".join(lines)


def buffer_table(dirs: list[Path]) -> str:
    """What the buffers hold, read from their files (a run's `buffers/` or `seeding/` directory), seeds excluded:
    tasks per type, distinct deduction+abduction programs (up to formatting) and their mean AST size, and the share
    of induction tasks whose inputs are mostly their own (not the identity seed's) and whose message is not the
    seed's. Seeding alone logs no step metrics, so this is how a seeding run's curriculum is read."""
    from azr.buffers import TaskBuffer
    from azr.complexity import program_complexity
    from azr.records import TaskType
    from azr.tasks.base import program_key
    from azr.tasks.induction import SEED_MESSAGE, seed_input_share

    cols = ("buffers", "ded/abd/ind", "distinct ded+abd programs", "mean AST nodes (ded+abd)",
            "induction: own inputs", "induction: own message")
    lines = _header(*cols)
    for d in dirs:
        bufs = {t: TaskBuffer.load(Path(d) / f"{t}.jsonl", t).tasks[1:] for t in TaskType}  # [0] is the seed
        progs = [t.program for ty in (TaskType.DEDUCTION, TaskType.ABDUCTION) for t in bufs[ty]]
        sizes = [c.ast_nodes for c in map(program_complexity, progs) if c is not None]
        ind = bufs[TaskType.INDUCTION]

        def share(xs: list[bool]) -> str:
            return f"{sum(xs)}/{len(xs)}" if xs else "–"

        lines.append(f"| {d} | {'/'.join(str(len(bufs[t])) for t in TaskType)} | "
                     f"{len({program_key(p) for p in progs})} | "
                     f"{sum(sizes) / len(sizes) if sizes else float('nan'):.1f} | "
                     f"{share([seed_input_share(t) < 0.5 for t in ind])} | "
                     f"{share([t.message.strip() != SEED_MESSAGE for t in ind])} |")
    return "\n".join(lines)


def seeding_table(dirs: list[Path]) -> str:
    """Where seeding's proposals went, from the `rounds.jsonl` that a `seeding/` directory holds: per type, the
    proposals made, how many were added or duplicates, and every failure reason with its count, most common first.
    Empty when no directory has the file (runs from before it was written)."""
    from azr.records import SeedingRound

    lines = _header("seeding", "type", "proposals", "added", "duplicate", "failed: reason count, most common first")
    for d in dirs:
        path = Path(d) / "rounds.jsonl"
        if not path.is_file():
            continue
        rounds = [SeedingRound.from_json(json.loads(x)) for x in path.read_text().splitlines() if x.strip()]
        for t, c in SeedingRound.totals(rounds).items():
            added, dup = c.pop("added", 0), c.pop("duplicate", 0)
            fails = ", ".join(f"{k} {v}" for k, v in c.most_common())
            lines.append(f"| {d} | {t} | {added + dup + sum(c.values())} | {added} | {dup} | {fails or '–'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


@dataclass(frozen=True)
class AblationRow:
    """One run of the ablation table on one suite: its accuracy, paired against the untrained model and against
    the recipe's first seed, and whether it differs from the recipe beyond the seeds' spread."""
    run: str
    suite: str
    items: int
    vs_base: Paired
    vs_recipe: Paired | None
    """None for the recipe's first seed itself."""
    spread: float
    """max |acc(seed k) − acc(seed 0)| over the recipe's seeds: the run-to-run spread on these items."""

    @property
    def acc(self) -> float:
        """This run's pass@1 on the items (the 'after' side of its pairing with the untrained model)."""
        return self.vs_base.after

    @property
    def beyond_spread(self) -> bool:
        """Different from the recipe: paired p < 0.05 against it and a gap wider than the seeds' spread."""
        return (self.vs_recipe is not None and self.vs_recipe.p < 0.05
                and abs(self.acc - self.vs_recipe.before) > self.spread)


def ablation_rows(base: dict[str, dict[str, ItemResult]], recipe: list[tuple[str, dict[str, dict[str, ItemResult]]]],
                  ablations: list[tuple[str, dict[str, dict[str, ItemResult]]]], split: str) -> list[AblationRow]:
    """The recipe's seeds then each ablation, per CRUXEval suite, on the items of `split` that every run scored.
    The first seed is the reference every other run is paired against; the other seeds give the spread."""
    runs = recipe + ablations
    out = []
    for suite in ("cruxeval-o", "cruxeval-i"):
        if not all(suite in m for _, m in [("base", base)] + runs):
            continue
        ids = [i for i in base[suite] if in_split(i, split) and all(i in m[suite] for _, m in runs)]
        if not ids:
            continue
        col = {name: [m[suite][i] for i in ids] for name, m in runs}
        base_items, ref = [base[suite][i] for i in ids], col[recipe[0][0]]
        vs_base = {name: paired(suite, base_items, col[name]) for name, _ in runs}
        seed0 = vs_base[recipe[0][0]].after
        spread = max(abs(vs_base[n].after - seed0) for n, _ in recipe)
        out += [AblationRow(name, suite, len(ids), vs_base[name], None if k == 0 else paired(suite, ref, col[name]),
                            spread) for k, (name, _) in enumerate(runs)]
    return out


def ablation_markdown(rows: list[AblationRow]) -> str:
    lines = _header("run", "suite", "items", "pass@1", "vs untrained W/L, p", "vs recipe (seed 0) W/L, p",
                    "Δ vs recipe", "seed spread", "different from the recipe")
    for r in rows:
        vs = "–" if r.vs_recipe is None else f"{r.vs_recipe.wins}/{r.vs_recipe.losses}, {r.vs_recipe.p:.2g}"
        delta = "–" if r.vs_recipe is None else f"{r.acc - r.vs_recipe.before:+.3f}"
        verdict = "–" if r.vs_recipe is None else ("yes" if r.beyond_spread else "no")
        lines.append(f"| {r.run} | {r.suite} | {r.items} | {r.acc:.3f} | {r.vs_base.wins}/{r.vs_base.losses}, "
                     f"{r.vs_base.p:.2g} | {vs} | {delta} | {r.spread:.3f} | {verdict} |")
    return "\n".join(lines)


def plot_ablations(rows: list[AblationRow], path: str | Path) -> Path:
    """Bars of pass@1 per suite, one per run; the untrained model as a dashed line and the recipe seeds' range as
    a shaded band, so that an ablation outside the band stands out."""
    from azr.report import pyplot

    suites = list(dict.fromkeys(r.suite for r in rows))
    runs = list(dict.fromkeys(r.run for r in rows))
    acc = {(r.suite, r.run): r.acc for r in rows}
    base_acc = {r.suite: r.vs_base.before for r in rows}
    width = 0.8 / len(runs)
    fig, ax = pyplot().subplots(figsize=(3.5 + 0.7 * len(suites) * len(runs), 3.8))
    for k, run in enumerate(runs):
        xs = [x - 0.4 + width * (k + 0.5) for x in range(len(suites))]
        bars = ax.bar(xs, [acc[(s, run)] for s in suites], width, label=run, alpha=0.85, zorder=2)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, zorder=3)
    for x, s in enumerate(suites):
        ref = next(r for r in rows if r.suite == s and r.vs_recipe is None).acc
        spread = next(r.spread for r in rows if r.suite == s)
        ax.axhspan(ref - spread, ref + spread, xmin=(x + 0.05) / len(suites), xmax=(x + 0.95) / len(suites),
                   color="grey", alpha=0.3, lw=0, zorder=1)
        ax.hlines(base_acc[s], x - 0.45, x + 0.45, colors="black", linestyles="dashed", lw=1, zorder=4)
    ax.set_xticks(range(len(suites)), suites)
    ax.set_xlim(-0.5, len(suites) - 0.5)
    ax.set_ylabel("pass@1 (greedy)")
    ax.set_ylim(0, max([0.1] + list(acc.values()) + list(base_acc.values())) * 1.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="dashed: untrained\nband: recipe ± seed spread", title_fontsize=7)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="default", help="model before self-play (default: the embedded Qwen)")
    ap.add_argument("--after", help="the run directory or checkpoint after self-play")
    ap.add_argument("--reports", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="analyse existing reports; each side may be several comma-separated reports of disjoint items")
    ap.add_argument("--runs", nargs="+", help="print the curriculum table of these run directories")
    ap.add_argument("--buffers", nargs="+", help="print what these buffer directories hold (a run's buffers/ or "
                                                  "seeding/)")
    ap.add_argument("--split", default="all", choices=("all", "dev", "test"), help="items to evaluate (with --after)")
    ap.add_argument("--splits", default="dev,test,all", help="splits to report, comma-separated")
    ap.add_argument("--limit", type=int, default=None, help="first N items of the split only")
    ap.add_argument("--response-prefix", default="<answer>\\n", help="as the run's rollout.solve_prefix")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="as the run's rollout.max_new_tokens_solve")
    ap.add_argument("--out", default="runs/eval/learning")
    ap.add_argument("--prompt-style", default="azr", choices=("azr", "native"), help="as the run's solver: azr")
    ap.add_argument("--data", default=None, help="CRUXEval jsonl (default: $AZR_CRUXEVAL or the rows shipped with azr)")
    ap.add_argument("--plot", default=None, help="also write the before/after bar plot (all items given) to this PNG")
    ap.add_argument("--base", help="ablation table: the untrained model's reports (comma-separated parts)")
    ap.add_argument("--recipe", action="append", default=[], metavar="NAME=PARTS",
                    help="ablation table: a seed of the recipe (repeat per seed; the first is the reference)")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=PARTS",
                    help="ablation table: an ablation's reports (repeat per ablation)")
    ap.add_argument("--ablation-plot", default=None, help="also write the ablation bar plot (last split) to this PNG")
    args = ap.parse_args(argv)
    if args.buffers:
        print(buffer_table([Path(d) for d in args.buffers]))
        seeding = seeding_table([Path(d) for d in args.buffers])
        if seeding:
            print("\n" + seeding)
        if not (args.runs or args.reports or args.after or args.recipe):
            return 0
    if args.runs:
        print(curriculum_table([Path(d) for d in args.runs]))
        if not (args.reports or args.after or args.recipe):
            return 0
    if args.recipe:
        return _ablation_main(ap, args)
    data = Path(args.data or default_data("cruxeval-o") or "")
    if not data.is_file():
        ap.error(f"CRUXEval data not found at {data!s}; pass --data PATH")
    if args.reports:
        before_paths, after_paths = ([Path(p) for p in side.split(",")] for side in args.reports)
    else:
        if not args.after:
            ap.error("--after RUN_DIR is required (or --reports A B, or --runs RUN...)")
        from azr.cli import main as azr

        cmd = ["eval", "--compare", args.before, args.after, "--suite", "cruxeval-o,cruxeval-i", "--out", args.out,
               "--prompt-style", args.prompt_style, "--response-prefix", args.response_prefix,
               "--max-new-tokens", str(args.max_new_tokens), "--data", str(data), "--split", args.split]
        if azr(cmd + (["--limit", str(args.limit)] if args.limit else [])) != 0:
            return 1
        before_paths, after_paths = ([Path(args.out) / f"{slug(resolve_model(m))}.json"] for m in (args.before, args.after))
    a_reports, b_reports = [read_report(p) for p in before_paths], [read_report(p) for p in after_paths]
    style = a_reports[0].suites[0].style if a_reports[0].suites else "azr"
    before, after = merge(a_reports), merge(b_reports)
    results = analyse(before, after, data, [s.strip() for s in args.splits.split(",") if s.strip()], style)
    if results:
        print(markdown(results))
    others = other_suites(before, after)
    if others:  # math / HumanEval reports given too: the no-regression table
        print(other_markdown(others))
    last = {r.suite: r for r in results}  # per suite, the split named last in --splits
    if args.plot:
        rows = [Comparison(r.suite, r.before, r.after, r.wins, r.losses, r.p, r.items) for r in last.values()]
        print(plot_comparison(rows, a_reports[0].model, b_reports[0].model, args.plot))
    for r in last.values():
        ratio = f"{r.after / r.before:.2f}" if r.before else "n/a"
        print(f"suite={r.suite} split={r.split} before={r.before:.4f} after={r.after:.4f} ratio={ratio} "
              f"wins={r.wins} losses={r.losses} p={r.p:.3g}")
    return 0


def _ablation_main(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    def named(spec: str) -> tuple[str, dict[str, dict[str, ItemResult]]]:
        name, sep, parts = spec.partition("=")
        if not sep or not name or not parts:
            ap.error(f"expected NAME=REPORT[,REPORT...], got {spec!r}")
        return name, merge([read_report(Path(x)) for x in parts.split(",")])

    if not args.base:
        ap.error("--base REPORTS (the untrained model) is required with --recipe")
    base = merge([read_report(Path(x)) for x in args.base.split(",")])
    recipe, ablations = [named(x) for x in args.recipe], [named(x) for x in args.ablation]
    rows: list[AblationRow] = []
    for split in [x.strip() for x in args.splits.split(",") if x.strip()]:
        rows = ablation_rows(base, recipe, ablations, split)
        print(f"split: {split}")
        print(ablation_markdown(rows))
    if args.ablation_plot and rows:
        print(plot_ablations(rows, args.ablation_plot))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EvalDataError as e:  # a missing or unreadable report: say which, without a traceback
        sys.exit(f"learning.py: {e}")
