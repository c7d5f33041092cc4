"""The answer checkers of the three task types (SPEC §1 step 4).

  * deduction: predicted output == gold output, as values. A literal answer is compared without
    execution; any other expression (``[1] * 3``) is evaluated in the sandbox *without* the task's
    program, so ``f(...)`` cannot stand in for the answer, and its value is compared;
  * abduction: ``f(predicted_input)`` == gold output, executed in the sandbox; the argument list may
    hold expressions and keyword arguments (``x=[1, 2]``), judged by what the call returns;
  * induction: the predicted program reproduces every held-out output, executed in the sandbox.
The sandbox-backed checkers take batches, so that one training step is one ``run_many``. Values are
compared as parsed literals (``literals.py``).
"""

from __future__ import annotations

import ast
from typing import NamedTuple, Sequence

from azr.executor.bans import banned_usage
from azr.executor.literals import (MAX_LITERAL_CHARS, PARSE_ERRORS, call_expr, input_ok, parse_args, parse_literal,
                                   values_equal)
from azr.executor.sandbox import Job, SandboxPool
from azr.executor.validate import static_check


def check_deduction(predicted_output: str | None, gold_output: str) -> bool:
    """Deduction: the predicted output equals the gold output as Python values."""
    return values_equal(predicted_output, gold_output)


def check_deduction_many(pool: SandboxPool, predicted: Sequence[str | None], gold: Sequence[str]) -> list[bool]:
    """Deduction for a batch: literals compared directly, other expressions that pass the static ban
    list evaluated in the sandbox (one ``run_many``), with no program defined; the rest are wrong."""
    verdict = [check_deduction(p, g) for p, g in zip(predicted, gold, strict=True)]
    runnable = []
    for i, p in enumerate(predicted):
        if p is None or verdict[i] or parse_literal(p).ok or len(p) > MAX_LITERAL_CHARS:
            continue
        try:
            tree = ast.parse(p.strip(), mode="eval")
        except PARSE_ERRORS:
            continue
        if banned_usage(tree) is None:
            runnable.append(i)
    results = pool.run_many([Job("", f"({predicted[i].strip()}\n)") for i in runnable]) if runnable else []
    for i, res in zip(runnable, results):
        verdict[i] = res.ok and values_equal(res.value, gold[i])
    return verdict


class AbductionCheck(NamedTuple):
    program: str
    predicted_input: str | None
    gold_output: str


class InductionCheck(NamedTuple):
    program: str | None
    inputs: Sequence[str]
    outputs: Sequence[str]


def check_abduction_many(pool: SandboxPool, items: Sequence[AbductionCheck], literal_only: bool = True) -> list[bool]:
    """Abduction: ``f(predicted_input) == gold_output``. An input that fails :func:`input_ok`
    is wrong and never runs."""
    runnable = [i for i, it in enumerate(items) if input_ok(it.predicted_input, literal_only)]
    results = pool.run_many([Job(items[i].program, call_expr(items[i].predicted_input)) for i in runnable])
    verdict = [False] * len(items)
    for i, res in zip(runnable, results):
        verdict[i] = res.ok and values_equal(res.value, items[i].gold_output)
    return verdict


def check_induction_many(pool: SandboxPool, items: Sequence[InductionCheck]) -> list[bool]:
    """Induction: the predicted program passes the static checks and reproduces every held-out
    output. All programs' runs go to the pool as one batch."""
    jobs, owner = [], []
    for i, it in enumerate(items):
        if it.program is None or not it.inputs or static_check(it.program) is not None:
            continue
        if not all(parse_args(x).ok for x in it.inputs):
            continue
        for x, y in zip(it.inputs, it.outputs):
            jobs.append(Job(it.program, call_expr(x)))
            owner.append((i, y))
    verdict = [bool(it.inputs) and it.program is not None for it in items]
    ran = {i for i, _ in owner}
    verdict = [v and i in ran for i, v in enumerate(verdict)]
    for (i, gold), res in zip(owner, pool.run_many(jobs)):
        verdict[i] = verdict[i] and res.ok and values_equal(res.value, gold)
    return verdict
