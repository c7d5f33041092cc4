"""Did self-play improve the model? CRUXEval-O/I before vs after a run, paired, with what the gains are made of.

    python benchmarks/learning.py --before default --after runs/azr-cpu [--limit N] [--out runs/eval/learning]
    python benchmarks/learning.py --reports A.json B.json [--plot P.png]   # re-analyse reports already written

Both models are evaluated greedily on the same items with the same prompt, response prefix and token cap
(`azr eval --compare`), in the `azr` prompt style by default: the solver format the run trained, not the
benchmark's native style that `azr eval` defaults to. Besides pass@1 and McNemar's exact p-value, it counts how many correct answers are a
verbatim copy of what the prompt shows (CRUXEval-I: the output given back as the input; CRUXEval-O: the
input given back as the output), and how far that copy rule alone gets on all items, so that a gain can be
read for what it is. The last line per suite is ``suite=... before=... after=... ratio=... p=...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from azr.eval import SUITES
from azr.eval.runner import (EvalReport, compare, default_data, plot_comparison, read_report, resolve_model,
                             slug)
from azr.eval.suite import read_rows
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


def analyse(before: EvalReport, after: EvalReport, data: Path) -> list[dict]:
    rows = {f"sample_{i}": row for i, row in enumerate(read_rows(data))}
    by_suite = {c.suite: c for c in compare(before, after)}
    pool = SandboxPool(SandboxConfig(workers=2))
    out = []
    try:
        for suite, field in COPIED.items():
            if suite not in by_suite:
                continue
            c = by_suite[suite]
            items = after.suite(suite).items
            shown = {it.id: rows[it.id][field] for it in items if it.id in rows}
            copies_right = sum(1 for it in items if it.correct[0] and _same(it.answers[0], shown.get(it.id, "")))
            copies = sum(1 for it in items if _same(it.answers[0], shown.get(it.id, "")))
            spec = SUITES[suite]
            eval_items = [spec.item(rows[it.id], int(it.id.split("_")[1])) for it in items]
            rule = sum(spec.score(pool, eval_items, [rows[it.id][field] for it in items]))
            out.append(dict(suite=suite, items=c.n_items, before=c.a, after=c.b, wins=c.b_wins, losses=c.b_losses,
                            p=c.p_value, after_copies=copies, after_correct_copies=copies_right,
                            copy_rule_correct=rule))
    finally:
        pool.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="default", help="model before self-play (default: the embedded SmolLM2)")
    ap.add_argument("--after", help="the run directory or checkpoint after self-play")
    ap.add_argument("--reports", nargs=2, metavar=("BEFORE_JSON", "AFTER_JSON"), help="analyse existing reports")
    ap.add_argument("--limit", type=int, default=None, help="first N items only (default: all 800)")
    ap.add_argument("--response-prefix", default="<answer>\\n", help="as the run's rollout.solve_prefix")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="as the run's rollout.max_new_tokens_solve")
    ap.add_argument("--out", default="runs/eval/learning")
    ap.add_argument("--prompt-style", default="azr", choices=("azr", "native"), help="as the run's solver: azr")
    ap.add_argument("--data", default=None, help="CRUXEval jsonl (default: $AZR_CRUXEVAL or the rows shipped with azr)")
    ap.add_argument("--plot", default=None, help="also write the before/after bar plot of --reports to this PNG")
    args = ap.parse_args(argv)
    data = Path(args.data or default_data("cruxeval-o") or "")
    if not data.is_file():
        ap.error(f"CRUXEval data not found at {data!s}; pass --data PATH")
    if args.reports:
        before, after = map(Path, args.reports)
    else:
        if not args.after:
            ap.error("--after RUN_DIR is required (or --reports A B)")
        from azr.cli import main as azr

        cmd = ["eval", "--compare", args.before, args.after, "--suite", "cruxeval-o,cruxeval-i", "--out", args.out,
               "--prompt-style", args.prompt_style, "--response-prefix", args.response_prefix, "--max-new-tokens", str(args.max_new_tokens),
               "--data", str(data)] + (["--limit", str(args.limit)] if args.limit else [])
        if azr(cmd) != 0:
            return 1
        before, after = (Path(args.out) / f"{slug(resolve_model(m))}.json" for m in (args.before, args.after))
    a, b = read_report(before), read_report(after)
    if args.plot:
        print(plot_comparison(compare(a, b), a.model, b.model, args.plot))
    for r in analyse(a, b, data):
        print(f"{r['suite']}: {r['items']} items, after-model answers that copy the prompt's {COPIED[r['suite']]}: "
              f"{r['after_copies']} ({r['after_correct_copies']} of them correct); copying alone scores "
              f"{r['copy_rule_correct']}/{r['items']}")
        ratio = f"{r['after'] / r['before']:.2f}" if r["before"] else "n/a"
        print(f"suite={r['suite']} before={r['before']:.4f} after={r['after']:.4f} ratio={ratio} "
              f"wins={r['wins']} losses={r['losses']} p={r['p']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
