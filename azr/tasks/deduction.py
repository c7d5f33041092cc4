"""Deduction: from a program and an input, predict the output (SPEC §1).

The proposer writes ``f`` and an input; the executor supplies the gold output. The solver's
answer is compared with the gold output as Python values: a literal directly, an expression
after evaluating it in the sandbox without the program (see ``check_deduction_many``).
"""

from __future__ import annotations

import random
from typing import Sequence

from azr import parsing, prompts
from azr.executor import SandboxPool, check_deduction_many
from azr.records import Candidate, FormatError, Proposal, Task, TaskType
from azr.tasks import base

TYPE = TaskType.DEDUCTION


def propose_prompt(references: Sequence[Task], program: str | None = None, n_inputs: int = base.N_INPUTS) -> str:
    return base.program_input_propose_prompt(prompts.DEDUCTION_PROPOSE, references)


def parse_proposal(
    response: str, program: str | None = None, n_inputs: int = base.N_INPUTS, strip_comments: bool = False
) -> Candidate | FormatError:
    return parsing.parse_program_input(response, strip_comments=strip_comments)


def validate(pool: SandboxPool, proposals: Sequence[Proposal], rng: random.Random) -> list[Proposal]:
    return base.validate_program_input(pool, TYPE, proposals)


def worked_example(shown: str) -> str:
    """The solve prompt's worked example: `f(a, b) = a + 2 * b` on one drawn input (``prompts.example_pairs``)."""
    (a, b), *_ = prompts.example_pairs(shown)
    out = a + 2 * b
    program = prompts.render_program(prompts.SOLVE_EXAMPLE_PROGRAM)
    return prompts.solve_example(f"{program}\n{prompts.render_input(f'{a}, {b}')}", str(out),
                                 f"a + 2 * b = {a} + {2 * b} = {out}")


def solve_prompt(task: Task) -> str:
    shown = f"{prompts.render_program(task.program)}\n{prompts.render_input(task.input)}"
    return base.solve_prompt(prompts.DEDUCTION_SOLVE, worked_example(shown), shown)


def parse_answer(response: str) -> str | FormatError:
    return parsing.parse_output_answer(response)


def check(pool: SandboxPool, tasks: Sequence[Task], answers: Sequence[str | FormatError]) -> list[bool]:
    base.check_type(TYPE, tasks)
    predicted = [a if isinstance(a, str) else None for a in answers]
    return check_deduction_many(pool, predicted, [t.output for t in tasks])
