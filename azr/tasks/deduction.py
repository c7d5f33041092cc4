"""Deduction: from a program and an input, predict the output (SPEC §1).

The proposer writes ``f`` and an input; the executor supplies the gold output. The solver's
answer is compared with the gold output as Python values: a literal directly, an expression
after evaluating it in the sandbox without the program (see ``check_deduction_many``).
"""

from __future__ import annotations

import functools
from typing import Sequence

from azr import parsing, prompts
from azr.executor import SandboxPool, check_deduction_many
from azr.records import FormatError, Task, TaskType
from azr.tasks import base

TYPE = TaskType.DEDUCTION


# Proposing is the same for deduction and abduction but for the prompt's template.
propose_sources = base.no_sources
propose_references = base.drawn_references
propose_prompt = functools.partial(base.program_input_propose_prompt, prompts.DEDUCTION_PROPOSE)
parse_proposal = base.parse_program_input_proposal
copies = base.program_input_copies
validate = functools.partial(base.validate_program_input, TYPE)


def worked_example(shown: str) -> str:
    """The solve prompt's worked example: the output of `f(a, b) = a + 2 * b` on one drawn input."""
    a, b, out, program = base.drawn_example(shown)
    return prompts.solve_example(f"{program}\n{prompts.render_input(f'{a}, {b}')}", str(out),
                                 f"a + 2 * b = {a} + {2 * b} = {out}")


solve_prompt = functools.partial(base.program_solve_prompt, prompts.DEDUCTION_SOLVE, worked_example, base.shown_input)
parse_answer = parsing.parse_output_answer


def check(pool: SandboxPool, tasks: Sequence[Task], answers: Sequence[str | FormatError]) -> list[bool]:
    base.check_answers(TYPE, tasks, answers)
    predicted = [a if isinstance(a, str) else None for a in answers]
    return check_deduction_many(pool, predicted, [t.output for t in tasks])
