"""`azr eval`: load the model(s), run the suites, write reports, print tables, compare.

    azr eval --model default --suite cruxeval-o,cruxeval-i --limit 50
    azr eval --model runs/azr-cpu --suite humaneval      # the shipped 164 problems; --data humaneval=PATH for others
    azr eval --compare default runs/azr-cpu --suite cruxeval-o,cruxeval-i
    azr eval --compare default runs/azr-cpu --split dev   # the 200 items recipes are tuned on; --split test: the rest
    azr eval --model runs/azr-cpu --suite math --data math=MATH-500.jsonl   # no --data: the shipped 40 problems

Reports go to ``<out>/<model-slug>.json``; ``--compare`` also writes ``<out>/compare.json``
and ``<out>/compare.png``. While it runs, finished generation chunks are kept in
``<out>/<model-slug>.<suite>.partial.jsonl``: a stopped command, run again with the same flags, resumes
where it stopped, and the files go once every report is written.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from azr import config as C
from azr.eval.runner import (EvalReport, compare, comparison_table, evaluate, load_suite_items, partial_path,
                             plot_comparison, resolve_model, slug, summary_table, write_report)


def eval_kwargs(cfg: C.EvalConfig) -> dict:
    return dict(n=cfg.n, temperature=cfg.temperature, style=cfg.prompt_style, max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size, seed=cfg.seed, response_prefix=cfg.response_prefix)


def evaluate_model(spec: str, items, cmd: C.EvalCommand, pool, progress) -> EvalReport:
    from azr.policy import PolicyConfig, load_policy

    model = resolve_model(spec)
    policy = load_policy(model, PolicyConfig(device=cmd.device))
    settings = {**json.loads(json.dumps(C.to_dict_eval(cmd.eval))), "model_spec": spec}
    report = evaluate(policy, pool, model, items, settings=settings, progress=progress, partial_dir=cmd.out,
                      **eval_kwargs(cmd.eval))
    del policy
    return report


def main_eval(cmd: C.EvalCommand) -> int:
    from transformers.utils import logging as hf_logging

    from azr.executor import SandboxPool
    from azr.progress import LogProgress, make_console

    console = make_console()
    hf_logging.disable_progress_bar()
    # Bad flags (ConfigError), data (EvalDataError) and models (PolicyLoadError) end the command with one line
    # (azr.cli); they are checked before the model is loaded, so a typo costs seconds, not a model load.
    cfg = C.finalize_eval(cmd.eval)
    cmd = dataclasses.replace(cmd, eval=cfg)  # evaluate with the finalized values (e.g. an unescaped prefix)
    items = load_suite_items(cfg.suites, cfg.data, cfg.limit, cfg.split)
    models = list(cmd.compare) if cmd.compare else [cmd.model]
    out = Path(cmd.out)
    reports = []
    with SandboxPool(C.TrainConfig().sandbox) as pool, LogProgress(console=console) as progress:
        for spec in models:
            try:
                report = evaluate_model(spec, items, cmd, pool, progress)
            except KeyboardInterrupt:
                # azr.cli prints this as the command's last line and exits with 130.
                raise KeyboardInterrupt(f"interrupted while evaluating {spec}; the finished chunks are kept in "
                                        f"{out}/*.partial.jsonl: run the same command again to resume") from None
            path = write_report(report, out / f"{slug(report.model)}.json")
            progress.console.print(f"report: [cyan]{path}[/]")
            reports.append(report)
    # Kept until every model is done, so that a `--compare` stopped in its second model resumes both quickly.
    for report in reports:
        for name in items:
            partial_path(out, report.model, name).unlink(missing_ok=True)
    console.print(summary_table(reports))
    if cmd.compare:
        (a, b), (na, nb) = reports, cmd.compare
        rows = compare(a, b)
        console.print(comparison_table(rows, na, nb))
        (out / "compare.json").write_text(json.dumps({"a": na, "b": nb, "suites": [dataclasses.asdict(r)
                                                      for r in rows]}, indent=1))
        console.print(f"plot: [cyan]{plot_comparison(rows, na, nb, out / 'compare.png')}[/]")
    return 0
