"""The interface every task type implements, and the helpers deduction and abduction share.

A task type is a plain module (``deduction``, ``abduction``, ``induction``) that satisfies
:class:`TaskTypeModule`; the trainer reaches it through ``azr.tasks.TASK_TYPES[task_type]``
and never branches on the type itself. Every executor-backed function takes a whole batch so
that one stage of one step is one ``run_many`` per type.
"""

from __future__ import annotations

import ast
import dataclasses
import random
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from azr import parsing, prompts
from azr.executor import SandboxPool, parse_args, parse_literal, validate_many
from azr.records import Candidate, FormatError, Proposal, Task, TaskType

N_INPUTS = 10
"""N, the number of inputs an induction proposal must give (SPEC §1, reference default)."""


class TaskTypeModule(Protocol):
    TYPE: TaskType

    def propose_sources(self, buffers: Mapping[TaskType, Iterable[Task]], count: int,
                        rng: random.Random) -> list[Task | None]:
        """The buffer task each of `count` propose prompts is about, drawn from the run's `buffers` (induction: its
        program and one call of it are shown); None for a type whose proposer writes its own program."""
        ...

    def propose_references(self, draw: Callable[[], list[Task]], n_inputs: int = N_INPUTS) -> list[Task]:
        """The example tasks a propose prompt shows. `draw()` returns K references from this type's buffer (SPEC §1
        step 1); a type whose proposer is conditioned on its sampled program alone shows a fixed format example
        instead and never calls it."""
        ...

    def propose_prompt(self, references: Sequence[Task], source: Task | None = None, n_inputs: int = N_INPUTS) -> str:
        """The proposer's user message, showing the K `references` as example answers.
        Induction also needs the sampled `source` task and asks for `n_inputs` inputs."""
        ...

    def parse_proposal(
        self, response: str, program: str | None = None, n_inputs: int = N_INPUTS, strip_comments: bool = False
    ) -> Candidate | FormatError:
        """The proposer's response as a candidate task, or a format error. Never raises on
        model text. Induction needs the `program` its prompt showed."""
        ...

    def copies(self, candidate: Candidate, references: Sequence[Task]) -> str | None:
        """Why the parsed proposal repeats the `references` its prompt showed (``selfplay.reject_copies``), or None
        when it is its own. Pure: no execution."""
        ...

    def validate(self, pool: SandboxPool, proposals: Sequence[Proposal], rng: random.Random) -> list[Proposal]:
        """Validate all parsed proposals in one executor batch; returns them, in order, with
        ``validation`` set and ``task`` set for the valid ones. Format errors pass through."""
        ...

    def solve_prompt(self, task: Task) -> str:
        """The solver's user message for `task`."""
        ...

    def parse_answer(self, response: str) -> str | FormatError:
        """The solver's answer text, or a format error. Never raises on model text."""
        ...

    def check(self, pool: SandboxPool, tasks: Sequence[Task], answers: Sequence[str | FormatError]) -> list[bool]:
        """Is each answer correct for its task (SPEC §1 step 4)? A format error is wrong and
        never runs. At most one executor batch."""
        ...


def require_references(references: Sequence[Task]) -> None:
    if not references:
        raise ValueError("a propose prompt needs at least one reference task (buffers start seeded)")


def program_input_answer(program: str, inp: str) -> str:
    """How a deduction/abduction proposal's answer looks; references are shown exactly so."""
    return prompts.render_answer(f"{prompts.render_program(program)}\n{prompts.render_input(inp)}")


def drawn_references(draw: Callable[[], list[Task]], n_inputs: int = N_INPUTS) -> list[Task]:
    """Deduction and abduction proposers see K references drawn from their buffer."""
    return draw()


def no_sources(buffers: Mapping[TaskType, Iterable[Task]], count: int, rng: random.Random) -> list[Task | None]:
    """Deduction and abduction proposers write their own program: their prompts show no buffer task to work on."""
    return [None] * count


def program_input_propose_prompt(template: str, references: Sequence[Task], source: Task | None = None,
                                 n_inputs: int = N_INPUTS) -> str:
    """A deduction or abduction propose prompt: `template` filled with the K `references` as example answers."""
    require_references(references)
    examples = [program_input_answer(t.program, t.input) for t in references]
    return template.format(
        rules=prompts.RULES, criteria=prompts.CRITERIA,
        examples=prompts.render_examples(examples, [t.output for t in references]),
        format_line=prompts.format_line(len(examples))
    )


def drawn_example(shown: str) -> tuple[int, int, int, str]:
    """The numbers of a deduction or abduction solve prompt's worked example: an input (a, b) of
    `f(a, b) = a + 2 * b` drawn from the task shown (``prompts.example_pairs``), its output, and the program
    as prompts render it."""
    (a, b), *_ = prompts.example_pairs(shown)
    return a, b, a + 2 * b, prompts.render_program(prompts.SOLVE_EXAMPLE_PROGRAM)


def program_solve_prompt(template: str, worked_example: Callable[[str], str], given: Callable[[Task], str],
                         task: Task) -> str:
    """A deduction or abduction solve prompt: the task's program and what is `given` of it (its input or its
    output, rendered), after a worked example drawn from them."""
    shown = f"{prompts.render_program(task.program)}\n{given(task)}"
    return solve_prompt(template, worked_example(shown), shown)


def shown_input(task: Task) -> str:
    """What a deduction solver is given besides the program: the rendered input."""
    return prompts.render_input(task.input)


def shown_output(task: Task) -> str:
    """What an abduction solver is given besides the program: the rendered output."""
    return prompts.render_output(task.output)


def solve_prompt(template: str, example: str, task_text: str) -> str:
    return template.format(example=example, task=task_text, format_line=prompts.format_line(1))


def check_type(task_type: TaskType, items: Sequence[Proposal] | Sequence[Task]) -> None:
    wrong = [x.type for x in items if x.type is not task_type]
    if wrong:
        raise ValueError(f"{task_type} module got items of type {wrong[0]}")


def check_answers(task_type: TaskType, tasks: Sequence[Task], answers: Sequence[object]) -> None:
    """What every ``check`` requires of its arguments: tasks of its type, and one answer per task."""
    check_type(task_type, tasks)
    if len(tasks) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(tasks)} tasks")


def literal_key(text: str) -> str:
    """An argument list as a comparable key: the ``repr`` of its parsed values, so that `'a'` and `"a"`, or `1,2`
    and `1, 2`, are one input; the stripped text when it does not parse."""
    parsed = parse_args(text)
    return repr(parsed.value) if parsed.ok else text.strip()


def program_key(program: str) -> str:
    """A program as a comparable key: ``ast.unparse`` of its tree, so that formatting, quotes and comments do not
    make a copy new; the stripped text when it does not parse."""
    try:
        return ast.unparse(ast.parse(program))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return program.strip()


def program_input_copies(candidate: Candidate, references: Sequence[Task]) -> str | None:
    """A deduction or abduction proposal copies reference k when it has k's program (up to formatting,
    ``program_key``) and k's input (as values, ``literal_key``): the task is one the proposer was shown."""
    prog, inp = program_key(candidate.program), literal_key(candidate.inputs[0])
    for k, ref in enumerate(references, 1):
        if program_key(ref.program) == prog and literal_key(ref.inputs[0]) == inp:
            return f"the task of example {k}"
    return None


def parse_program_input_proposal(
    response: str, program: str | None = None, n_inputs: int = N_INPUTS, strip_comments: bool = False
) -> Candidate | FormatError:
    """A deduction or abduction proposal: a program and one input."""
    return parsing.parse_program_input(response, strip_comments=strip_comments)


def validate_program_input(
    task_type: TaskType, pool: SandboxPool, proposals: Sequence[Proposal], rng: random.Random | None = None,
    runs: int = 2,
) -> list[Proposal]:
    """Deduction/abduction validation: ``validate_many`` gives each (program, input) its gold
    output (SPEC §1 step 2). `rng` is unused (the Protocol's signature: induction draws its split)."""
    check_type(task_type, proposals)
    todo = [i for i, p in enumerate(proposals) if isinstance(p.parsed, Candidate)]
    cands = [proposals[i].parsed for i in todo]
    verdicts = validate_many(pool, [(c.program, c.inputs[0]) for c in cands], runs=runs)  # type: ignore[union-attr]
    out = list(proposals)
    for i, c, v in zip(todo, cands, verdicts):
        task = Task(task_type, c.program, c.inputs, (v.output,)) if v.ok else None  # type: ignore[union-attr]
        out[i] = dataclasses.replace(proposals[i], validation=v, task=task)
    return out


def task_text(task: Task) -> str:
    """The whole of a task as one text (program, inputs, outputs, message): what its size is measured on."""
    return "\n".join((task.program, *task.inputs, *task.outputs, task.message or ""))


def is_trivial(task: Task) -> bool:
    """A task that tests nothing (logged as ``propose/trivial_frac``; kept, as the paper keeps them):
    every output is None, every output equals its single-argument input, or ``f`` is the identity
    (one parameter, body ``return <that parameter>``, a docstring aside)."""
    outs = [parse_literal(o) for o in task.outputs]
    if all(o.ok and o.value is None for o in outs):
        return True
    args = [parse_args(x) for x in task.inputs]
    try:
        if all(a.ok and len(a.value) == 1 and o.ok and a.value[0] == o.value for a, o in zip(args, outs)):
            return True
    except Exception:  # noqa: BLE001 - `==` on exotic literal values can raise; then it is not an echo
        pass
    return _is_identity(task.program)


def _is_identity(program: str) -> bool:
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    fs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "f"]
    if len(fs) != 1 or len(fs[0].args.args) != 1 or fs[0].args.vararg or fs[0].args.kwarg:
        return False
    body = [n for n in fs[0].body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return (len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Name)
            and body[0].value.id == fs[0].args.args[0].arg)
