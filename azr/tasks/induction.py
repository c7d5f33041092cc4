"""Induction: from a message and some input/output pairs, write the program (SPEC §1).

The proposer is shown a task sampled from the deduction and abduction buffers (its program, and its
input as one call that runs) and writes N inputs plus a message describing ``f``. As in SPEC §1 and the reference, it is conditioned on that
program alone: the prompt shows no tasks from the induction buffer, only a fixed example of the
answer's format, for a two-argument function of its own. Shown the buffer instead, whose first task
is the identity seed with ten inputs that fit any one-argument ``f``, the 0.5B proposer re-listed
those inputs and the seed's message for every program (docs/RESULTS.md §4b). The executor runs the program on each input (each
must be a literal argument list, run deterministically, and give a literal output). Half of
the pairs, chosen at random but reproducibly from the caller's RNG, are shown to the solver
with the message; the other half are held out, and the solver's program must reproduce
every held-out output.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, Iterable, Mapping, Sequence

from azr import parsing, prompts
from azr.executor import InductionCheck, SandboxPool, Validation, check_induction_many, validate_many
from azr.records import Candidate, FormatError, Proposal, Task, TaskType
from azr.tasks import base

TYPE = TaskType.INDUCTION
SEED_MESSAGE = "Return the input unchanged."
# Identity-seed inputs: varied types, so the seed example shows what an input can be.
_SEED_INPUTS = ("'Hello World'", "'abc'", "42", "-7", "3.5", "[1, 2, 3]", "(1, 'a')", "{'k': 1}", "True", "''")


def seed_input_share(task: Task) -> float:
    """The share of `task`'s inputs that are the identity seed's (as values): 1.0 for a proposal that re-lists
    them, what the curriculum metric ``propose/induction/own_inputs_frac`` counts below one half."""
    seed = {base.literal_key(x) for x in _SEED_INPUTS}
    return sum(base.literal_key(x) in seed for x in task.inputs) / max(1, len(task.inputs))


def split_indices(n: int, rng: random.Random) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(visible, held_out): a random half of range(n) (n // 2 indices) and the rest, sorted."""
    if n < 2:
        raise ValueError(f"an induction task needs at least 2 pairs, got {n}")
    perm = rng.sample(range(n), n)
    return tuple(sorted(perm[: n // 2])), tuple(sorted(perm[n // 2:]))


def seed_task(n_inputs: int = base.N_INPUTS) -> Task:
    """The identity program with `n_inputs` fixed inputs: the induction buffer's seed, whose
    only job is to show the proposer the answer format. Split: first half visible."""
    inputs = (_SEED_INPUTS + tuple(str(k) for k in range(100, 100 + n_inputs)))[:n_inputs]
    outputs = tuple(repr(parsing.parse_args(x).value[0]) for x in inputs)
    half = n_inputs // 2
    return Task(TYPE, "def f(x):\n    return x", inputs, outputs, SEED_MESSAGE,
                tuple(range(half)), tuple(range(half, n_inputs)))


_FORMAT_PROGRAM = "def f(word, n):\n    return word[:n]"
_FORMAT_WORDS = ("pear", "fig", "melon", "kiwi", "plum", "lime", "date", "apple", "grape", "mango")
_FORMAT_COUNTS = (2, 5, 0, 3, 1, 4, 2, 9, 3, 1)


def format_example(n_inputs: int = base.N_INPUTS) -> Task:
    """The one example an induction propose prompt shows: `n_inputs` inputs and a message for a two-argument
    function that is not the one to write for. Its inputs fail on the one-argument programs the buffers mostly
    hold, so a proposal that copies them is invalid there, not a task."""
    pairs = [(_FORMAT_WORDS[k % len(_FORMAT_WORDS)], _FORMAT_COUNTS[k % len(_FORMAT_COUNTS)] + k // len(_FORMAT_WORDS))
             for k in range(n_inputs)]
    half = n_inputs // 2
    return Task(TYPE, _FORMAT_PROGRAM, tuple(f"{w!r}, {c}" for w, c in pairs), tuple(repr(w[:c]) for w, c in pairs),
                "Keep the first n letters of the word.", tuple(range(half)), tuple(range(half, n_inputs)))


EXAMPLE_EXTRA_INPUTS = 2
"""The format example shows this many inputs more than a proposal must write: a 0.5B proposer writes one or two
fewer than it is shown (asked for 6 with 6 shown, 7 of 8 short proposals had 4 or 5; asked for 4, they had 3),
and the parser keeps the last N of any surplus."""


def propose_references(draw: Callable[[], list[Task]], n_inputs: int = base.N_INPUTS) -> list[Task]:
    """The format example alone, with `EXAMPLE_EXTRA_INPUTS` more inputs than asked for; the induction buffer is
    never drawn from for a propose prompt."""
    return [format_example(n_inputs + EXAMPLE_EXTRA_INPUTS)]


def propose_sources(buffers: Mapping[TaskType, Iterable[Task]], count: int, rng: random.Random) -> list[Task | None]:
    """The task each induction propose prompt is about, drawn uniformly with replacement from the deduction and
    abduction buffers (SPEC §1 step 1 samples its program; the prompt also shows the task's own input as one call
    that runs)."""
    pool = [t for b in (buffers[TaskType.DEDUCTION], buffers[TaskType.ABDUCTION]) for t in b]
    if not pool:
        raise ValueError("no programs to sample from")
    return list(rng.choices(pool, k=count))


def inputs_message_answer(inputs: Sequence[str], message: str) -> str:
    """How an induction proposal's answer looks; references are shown exactly so."""
    blocks = [prompts.render_input(x) for x in inputs] + [prompts.render_message(message)]
    return prompts.render_answer("\n".join(blocks))


def propose_prompt(references: Sequence[Task], source: Task | None = None, n_inputs: int = base.N_INPUTS) -> str:
    """The format example, then the `source` task's program and its own input as a call that runs.

    Why the call: shown a two-argument example and a program alone, a 0.5B proposer wrote the example's
    `'word', n` inputs for programs of one argument, or for `x + y` (invalid, runtime errors). One known call
    says how many arguments `f` takes and of what kind, without suggesting the rest."""
    base.require_references(references)
    if source is None:
        raise ValueError("the induction propose prompt needs the sampled source task")
    examples = [f"{_program_and_call(t)}\n{inputs_message_answer(t.inputs, t.message)}" for t in references]
    return prompts.INDUCTION_PROPOSE.format(
        n=n_inputs, examples=prompts.render_examples(examples), task=_program_and_call(source),
        format_line=prompts.format_line(len(examples)),
    )


def _program_and_call(task: Task) -> str:
    return prompts.INDUCTION_PROGRAM_AND_CALL.format(program=prompts.render_program(task.program),
                                                     call=prompts.render_call(task.inputs[0]))


def parse_proposal(
    response: str, program: str | None = None, n_inputs: int = base.N_INPUTS, strip_comments: bool = False
) -> Candidate | FormatError:
    """`strip_comments` does not apply: the program is the sampled one, not the model's."""
    if program is None:
        raise ValueError("parsing an induction proposal needs the program its prompt showed")
    return parsing.parse_inputs_message(response, program, n_inputs)


def _message_key(message: str) -> str:
    return " ".join(message.casefold().split()).rstrip(".")


def copies(candidate: Candidate, references: Sequence[Task]) -> str | None:
    """An induction proposal copies its examples when at least half of its inputs are inputs that the references
    show (as values, ``base.literal_key``), or when its message is the message of a reference with another program
    (case, spacing and a final period aside). Both are what the identity seed invites: its ten inputs fit any
    one-argument ``f``, and "Return the input unchanged." then describes a program that does something else."""
    shown = {base.literal_key(x) for ref in references for x in ref.inputs}
    shared = sum(base.literal_key(x) in shown for x in candidate.inputs)
    if candidate.inputs and 2 * shared >= len(candidate.inputs):
        return f"{shared} of {len(candidate.inputs)} inputs are the examples' inputs"
    msg, prog = _message_key(candidate.message), base.program_key(candidate.program)
    for k, ref in enumerate(references, 1):
        if msg and _message_key(ref.message) == msg and base.program_key(ref.program) != prog:
            return f"the message of example {k}, whose program differs"
    return None


def validate(pool: SandboxPool, proposals: Sequence[Proposal], rng: random.Random) -> list[Proposal]:
    """All N runs of all proposals go to ``validate_many`` as one batch. A proposal is valid iff
    every one of its inputs is; its ``validation`` is then an ok verdict with no single output,
    else the first failing input's verdict."""
    base.check_type(TYPE, proposals)
    todo = [i for i, p in enumerate(proposals) if isinstance(p.parsed, Candidate)]
    cands: list[Candidate] = [proposals[i].parsed for i in todo]  # type: ignore[misc]
    verdicts = iter(validate_many(pool, [(c.program, x) for c in cands for x in c.inputs]))
    out = list(proposals)
    for i, c in zip(todo, cands):
        vs = [next(verdicts) for _ in c.inputs]
        bad = next(((k, v) for k, v in enumerate(vs) if not v.ok), None)
        if bad is not None:
            k, v = bad
            verdict = dataclasses.replace(v, detail=f"input {k + 1}: {v.detail}")
            out[i] = dataclasses.replace(proposals[i], validation=verdict)
            continue
        visible, held_out = split_indices(len(c.inputs), rng)
        outputs = tuple(v.output for v in vs)
        task = Task(TYPE, c.program, c.inputs, outputs, c.message, visible, held_out)  # type: ignore[arg-type]
        out[i] = dataclasses.replace(proposals[i], validation=Validation(None), task=task)
    return out


def worked_example(shown: str) -> str:
    """The solve prompt's worked example: `f(a, b) = a + 2 * b` recovered from three drawn pairs
    (``prompts.example_pairs``)."""
    pairs = prompts.example_pairs(shown)
    shown_pairs = prompts.render_pairs([(f"{x}, {y}", str(x + 2 * y)) for x, y in pairs])
    think = " and ".join(f"{x} + 2 * {y} = {x + 2 * y}" for x, y in pairs[:2]) + ", so f returns a + 2 * b."
    return prompts.solve_example(f"{prompts.render_message(prompts.SOLVE_EXAMPLE_MESSAGE)}\n{shown_pairs}",
                                 prompts.render_program(prompts.SOLVE_EXAMPLE_PROGRAM), think)


def solve_prompt(task: Task) -> str:
    shown = f"{prompts.render_message(task.message)}\n{prompts.render_pairs(task.visible_pairs())}"
    return base.solve_prompt(prompts.INDUCTION_SOLVE, worked_example(shown), shown)


def parse_answer(response: str) -> str | FormatError:
    return parsing.parse_program_answer(response)


def check(pool: SandboxPool, tasks: Sequence[Task], answers: Sequence[str | FormatError]) -> list[bool]:
    base.check_answers(TYPE, tasks, answers)
    items = []
    for t, a in zip(tasks, answers):
        held = t.held_out_pairs()
        items.append(InductionCheck(a if isinstance(a, str) else None, [x for x, _ in held], [y for _, y in held]))
    return check_induction_many(pool, items)
