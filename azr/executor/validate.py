"""Task validation (SPEC §1 step 2 and §3): is a proposed (program, input) a usable task?

A task is valid when the program parses, defines exactly one top-level ``f`` (helpers inside
``f`` are fine; module-level constants and imports are kept, SPEC §2), uses nothing banned,
and ``f(input)`` runs without error within the limit, with equal results on every run
(determinism), producing a Python literal. Every failure comes back as a :class:`Validation`
whose ``reason`` is an :class:`InvalidReason`; nothing here raises on bad programs.

Banned use is checked twice (``bans.py``): statically on the AST, a cheap first pass for honest
mistakes, and at run time by an audit hook in the jailed child, which sees what the program does
however it spells it (``getattr(__builtins__, '__imp' + 'ort__')('o' + 's')``). Neither is the
security boundary; the sandbox is.

Determinism: the program runs ``runs`` times in its own child, each from fresh globals (a value
that carries state from one run to the next differs), and once more in a varied run: another
process with another string hash seed and a shifted heap (a value that depends on set order or
object addresses differs). A solver could not predict such a value, and it would change on
another machine.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from enum import StrEnum
from typing import Sequence

from azr.executor.bans import banned_usage
from azr.executor.literals import call_expr, input_ok, parse_literal
from azr.executor.sandbox import Job, SandboxPool, Status

__all__ = ["InvalidReason", "Validation", "static_check", "validate", "validate_many"]


class InvalidReason(StrEnum):
    SYNTAX = "syntax"
    NO_FUNCTION = "no_function"
    MULTIPLE_FUNCTIONS = "multiple_functions"
    BANNED = "banned"
    BAD_INPUT = "bad_input"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASHED = "crashed"
    NONDETERMINISTIC = "nondeterministic"
    NOT_LITERAL = "not_literal"
    TOO_LONG = "too_long"
    """Valid, but longer than the run's cap on a task's size (``selfplay.max_task_tokens``)."""
    COPIED = "copied"
    """A copy of the reference tasks its prompt showed (``selfplay.reject_copies``); never executed."""


@dataclass(frozen=True)
class Validation:
    reason: InvalidReason | None
    """None when the task is valid."""
    output: str | None = None
    """The gold output (``repr`` text) of a valid task."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


_STATUS_REASON = {
    Status.ERROR: InvalidReason.RUNTIME_ERROR,
    Status.TIMEOUT: InvalidReason.TIMEOUT,
    Status.MEMORY: InvalidReason.MEMORY,
    Status.KILLED: InvalidReason.CRASHED,
    Status.BANNED: InvalidReason.BANNED,
}


def static_check(program: str) -> tuple[InvalidReason, str] | None:
    """The checks that need no execution; None when they pass."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        return InvalidReason.SYNTAX, f"{type(e).__name__}: {e}"
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    fs = [n for n in defs if isinstance(n, ast.FunctionDef) and n.name == "f"]
    if not fs:
        return InvalidReason.NO_FUNCTION, "no top-level `def f`"
    if len(defs) > 1:
        return InvalidReason.MULTIPLE_FUNCTIONS, "top-level definitions: " + ", ".join(n.name for n in defs)
    banned = banned_usage(tree)
    if banned:
        return InvalidReason.BANNED, banned
    return None


def validate_many(
    pool: SandboxPool, tasks: Sequence[tuple[str, str]], runs: int = 2, literal_inputs: bool = True,
    varied: int = 1,
) -> list[Validation]:
    """Validate (program, input) pairs; executions go to the pool as one batch.

    The determinism check runs the program `runs` times, each from fresh globals, in the task's
    own jailed child, then `varied` times in a varied run (another hash seed and heap layout; see
    ``Job.varied``; 0 skips it, for measuring its cost), and requires equal values. The check is
    probabilistic: a value that keeps only a little of the varied state (an address modulo 1000, one
    bit of set order) can match by chance, and such a task is then accepted. Proposed inputs
    must be literal argument lists; ``literal_inputs=False`` accepts argument expressions (see
    ``input_ok``).
    """
    out: list[Validation | None] = [None] * len(tasks)
    to_run = []
    for i, (program, inp) in enumerate(tasks):
        bad = static_check(program)
        if bad:
            out[i] = Validation(*bad)
        elif not input_ok(inp, literal_inputs):
            out[i] = Validation(InvalidReason.BAD_INPUT, detail=f"input is not a literal argument list: {inp[:200]!r}")
        else:
            to_run.append(i)
    results = pool.run_many([Job(tasks[i][0], call_expr(tasks[i][1]), repeat=runs, varied=varied)
                            for i in to_run])
    for i, res in zip(to_run, results):
        out[i] = _judge(res)
    return out  # type: ignore[return-value]


def _judge(res) -> Validation:
    if not res.ok:
        return Validation(_STATUS_REASON[res.status], detail=res.error)
    parsed = [parse_literal(v) for v in res.values]
    if not parsed[0].ok:
        return Validation(InvalidReason.NOT_LITERAL, detail=f"output is not a literal: {res.values[0][:200]}")
    if any(not p.ok or p.value != parsed[0].value for p in parsed[1:]):
        return Validation(InvalidReason.NONDETERMINISTIC, detail=" != ".join(v[:100] for v in res.values))
    return Validation(None, output=res.values[0])


def validate(pool: SandboxPool, program: str, inp: str, runs: int = 2, literal_inputs: bool = True,
             varied: int = 1) -> Validation:
    return validate_many(pool, [(program, inp)], runs, literal_inputs, varied)[0]
