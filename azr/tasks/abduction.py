"""Abduction: from a program and an output, find an input that produces it (SPEC §1).

The proposer writes ``f`` and an input; the executor supplies the output the solver sees.
The solver's answer is an argument list; it is correct when ``f(answer)`` equals the gold
output, executed in the sandbox (any input that works counts, not only the proposed one).
"""

from __future__ import annotations

import random
from typing import Sequence

from azr import parsing, prompts
from azr.executor import AbductionCheck, SandboxPool, check_abduction_many
from azr.records import Candidate, FormatError, Proposal, Task, TaskType
from azr.tasks import base

TYPE = TaskType.ABDUCTION


def propose_prompt(references: Sequence[Task], program: str | None = None, n_inputs: int = base.N_INPUTS) -> str:
    return base.program_input_propose_prompt(prompts.ABDUCTION_PROPOSE, references)


def parse_proposal(
    response: str, program: str | None = None, n_inputs: int = base.N_INPUTS, strip_comments: bool = False
) -> Candidate | FormatError:
    return parsing.parse_program_input(response, strip_comments=strip_comments)


def validate(pool: SandboxPool, proposals: Sequence[Proposal], rng: random.Random) -> list[Proposal]:
    return base.validate_program_input(pool, TYPE, proposals)


def worked_example(shown: str) -> str:
    """The solve prompt's worked example: an input of `f(a, b) = a + 2 * b` for one drawn output
    (``prompts.example_pairs``)."""
    (a, b), *_ = prompts.example_pairs(shown)
    out = a + 2 * b
    program = prompts.render_program(prompts.SOLVE_EXAMPLE_PROGRAM)
    return prompts.solve_example(f"{program}\n{prompts.render_output(str(out))}", f"{a}, {b}",
                                 f"I need a + 2 * b = {out}; a = {a}, b = {b} works.")


def solve_prompt(task: Task) -> str:
    shown = f"{prompts.render_program(task.program)}\n{prompts.render_output(task.output)}"
    return base.solve_prompt(prompts.ABDUCTION_SOLVE, worked_example(shown), shown)


def parse_answer(response: str) -> str | FormatError:
    return parsing.parse_input_answer(response)


def check(pool: SandboxPool, tasks: Sequence[Task], answers: Sequence[str | FormatError]) -> list[bool]:
    base.check_type(TYPE, tasks)
    if len(tasks) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(tasks)} tasks")
    runnable = [i for i, a in enumerate(answers) if isinstance(a, str)]
    items = [AbductionCheck(tasks[i].program, answers[i], tasks[i].output) for i in runnable]  # type: ignore[arg-type]
    # Expressions and keyword arguments are judged by running them (as the reference does); the
    # static ban list still applies to them.
    verdicts = check_abduction_many(pool, items, literal_only=False)
    out = [False] * len(tasks)
    for i, ok in zip(runnable, verdicts):
        out[i] = ok
    return out
