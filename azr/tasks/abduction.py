"""Abduction: from a program and an output, find an input that produces it (SPEC §1).

The proposer writes ``f`` and an input; the executor supplies the output the solver sees.
The solver's answer is an argument list; it is correct when ``f(answer)`` equals the gold
output, executed in the sandbox (any input that works counts, not only the proposed one).
"""

from __future__ import annotations

import functools
from typing import Sequence

from azr import parsing, prompts
from azr.executor import AbductionCheck, SandboxPool, check_abduction_many
from azr.records import FormatError, Task, TaskType
from azr.tasks import base

TYPE = TaskType.ABDUCTION


# Proposing is the same for deduction and abduction but for the prompt's template.
propose_sources = base.no_sources
propose_references = base.drawn_references
propose_prompt = functools.partial(base.program_input_propose_prompt, prompts.ABDUCTION_PROPOSE)
parse_proposal = base.parse_program_input_proposal
copies = base.program_input_copies
validate = functools.partial(base.validate_program_input, TYPE)


def worked_example(shown: str) -> str:
    """The solve prompt's worked example: an input of `f(a, b) = a + 2 * b` for one drawn output."""
    a, b, out, program = base.drawn_example(shown)
    return prompts.solve_example(f"{program}\n{prompts.render_output(str(out))}", f"{a}, {b}",
                                 f"I need a + 2 * b = {out}; a = {a}, b = {b} works.")


solve_prompt = functools.partial(base.program_solve_prompt, prompts.ABDUCTION_SOLVE, worked_example, base.shown_output)
parse_answer = parsing.parse_input_answer


def check(pool: SandboxPool, tasks: Sequence[Task], answers: Sequence[str | FormatError]) -> list[bool]:
    base.check_answers(TYPE, tasks, answers)
    runnable = [i for i, a in enumerate(answers) if isinstance(a, str)]
    items = [AbductionCheck(tasks[i].program, answers[i], tasks[i].output) for i in runnable]  # type: ignore[arg-type]
    # Expressions and keyword arguments are judged by running them (as the reference does); the
    # static ban list still applies to them.
    verdicts = check_abduction_many(pool, items, literal_only=False)
    out = [False] * len(tasks)
    for i, ok in zip(runnable, verdicts):
        out[i] = ok
    return out
