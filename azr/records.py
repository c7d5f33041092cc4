"""Typed records that cross stage boundaries in self-play (SPEC §1).

A step flows through these records, never through dicts of lists:

    Candidate  (parsed proposer answer)  -> Proposal (prompt, response, parse, validation, solve rate)
    Task       (a validated program + its I/O, what buffers hold and solvers answer)
    Rollout    (one response to train on, with its reward and, later, its advantage)
    StepBatch  (everything of one step the trainer needs for the update and the buffers)
    SeedingRound (what one round of seeding proposed, and what became of it)

A response that cannot be used is a :class:`FormatError` value, never an exception.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from collections import Counter
from typing import Any, Iterable, Sequence

from azr.executor import Validation


class TaskType(StrEnum):
    DEDUCTION = "deduction"
    ABDUCTION = "abduction"
    INDUCTION = "induction"


class Role(StrEnum):
    PROPOSE = "propose"
    SOLVE = "solve"


GROUPS: tuple[tuple[TaskType, Role], ...] = tuple((t, r) for t in TaskType for r in Role)
"""The 6 (task type × role) groups of TRR++, in a fixed order: a group's id is its index here."""


def group_index(task_type: TaskType, role: Role) -> int:
    """Index of (task_type, role) in :data:`GROUPS`."""
    return GROUPS.index((task_type, role))


class FormatErrorKind(StrEnum):
    """Why a response earns the format penalty (−1)."""

    UNTERMINATED_THINK = "unterminated_think"
    NO_ANSWER = "no_answer"
    UNTERMINATED_ANSWER = "unterminated_answer"
    MULTIPLE_ANSWERS = "multiple_answers"
    EMPTY_ANSWER = "empty_answer"
    UNTERMINATED_FENCE = "unterminated_fence"
    MULTIPLE_BLOCKS = "multiple_blocks"
    NO_PROGRAM = "no_program"
    MULTIPLE_PROGRAMS = "multiple_programs"
    EMPTY_PROGRAM = "empty_program"
    NO_INPUT = "no_input"
    MULTIPLE_INPUTS = "multiple_inputs"
    BAD_INPUT = "bad_input"
    WRONG_INPUT_COUNT = "wrong_input_count"
    DUPLICATE_INPUTS = "duplicate_inputs"
    NO_MESSAGE = "no_message"
    MULTIPLE_MESSAGES = "multiple_messages"
    BAD_OUTPUT = "bad_output"
    INVALID_TASK = "invalid_task"
    """Not produced by parsing: a well-parsed proposal that failed validation (SPEC §1 step 2),
    which the composite reward treats as a format error (SPEC §1 step 5)."""


@dataclass(frozen=True)
class FormatError:
    kind: FormatErrorKind
    detail: str = ""


@dataclass(frozen=True)
class Task:
    """A validated task: a program with its inputs and the gold outputs it produces.

    Deduction and abduction tasks have exactly one input/output pair. Induction tasks have N
    pairs, a message describing ``f``, and a split of the pair indices into ``visible`` (shown
    to the solver) and ``held_out`` (used to check the solver's program).
    Inputs are argument-list texts (``"1, 'a'"``); outputs are ``repr`` texts.
    """

    type: TaskType
    program: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    message: str = ""
    visible: tuple[int, ...] = ()
    held_out: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", TaskType(self.type))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "visible", tuple(self.visible))
        object.__setattr__(self, "held_out", tuple(self.held_out))
        if not isinstance(self.program, str) or not isinstance(self.message, str):
            raise TypeError("Task.program and Task.message must be str")
        if not all(isinstance(x, str) for x in self.inputs + self.outputs):
            raise TypeError("Task.inputs and Task.outputs must be str texts")
        if not all(type(i) is int for i in self.visible + self.held_out):
            raise TypeError("Task.visible and Task.held_out must be int indices")
        if not self.inputs or len(self.inputs) != len(self.outputs):
            raise ValueError(f"Task needs as many outputs as inputs (>= 1), got {len(self.inputs)}/{len(self.outputs)}")
        if self.type is TaskType.INDUCTION:
            split = sorted(self.visible + self.held_out)
            if split != list(range(len(self.inputs))) or not self.visible or not self.held_out:
                raise ValueError("induction Task: visible and held_out must partition the pair indices, both non-empty")
        elif len(self.inputs) != 1 or self.visible or self.held_out or self.message:
            raise ValueError(f"{self.type} Task has exactly one input/output pair and no message or split")

    @property
    def input(self) -> str:
        """The (first) input; the only one of a deduction or abduction task."""
        return self.inputs[0]

    @property
    def output(self) -> str:
        """The (first) gold output; the only one of a deduction or abduction task."""
        return self.outputs[0]

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """Buffer dedup key: program text and input(s), as written (SPEC §1 step 7)."""
        return self.program, self.inputs

    def visible_pairs(self) -> list[tuple[str, str]]:
        return [(self.inputs[i], self.outputs[i]) for i in self.visible]

    def held_out_pairs(self) -> list[tuple[str, str]]:
        return [(self.inputs[i], self.outputs[i]) for i in self.held_out]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["type"] = str(self.type)
        for name in ("inputs", "outputs", "visible", "held_out"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_json(cls, d: Any) -> Task:
        """Inverse of :meth:`to_json`; raises ValueError/TypeError/KeyError on a malformed record."""
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        for name in ("inputs", "outputs", "visible", "held_out"):
            if name in d and not isinstance(d[name], list):
                raise TypeError(f"field {name!r} must be a list")
        return cls(**d)


@dataclass(frozen=True)
class Candidate:
    """A parsed proposer answer, not yet validated: the program, its input(s), and (induction)
    the message. For induction the program is the sampled one the proposer was shown."""

    program: str
    inputs: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True)
class Proposal:
    """One proposer response and what became of it, stage by stage."""

    type: TaskType
    prompt: str
    response: str
    parsed: Candidate | FormatError
    references: tuple[Task, ...] = ()
    """The K reference tasks the prompt showed (for diversity metrics)."""
    validation: Validation | None = None
    """The executor's verdict once validated; None if not validated (e.g. a format error).
    For induction: the first failing input's verdict, or an ok verdict when all N pass."""
    task: Task | None = None
    """The validated task; set iff the proposal is valid."""
    solve_rate: float | None = None
    """r̄, the Monte-Carlo solve accuracy of the task (learnability stage), once known."""

    @property
    def format_ok(self) -> bool:
        """The response parsed (validation is a separate question, see :attr:`valid`)."""
        return isinstance(self.parsed, Candidate)

    @property
    def valid(self) -> bool:
        return self.task is not None

    @property
    def error(self) -> FormatError | None:
        """What earns this proposal −1: a parse error, or a failed validation; None otherwise."""
        if isinstance(self.parsed, FormatError):
            return self.parsed
        if self.validation is not None and not self.validation.ok:
            return FormatError(FormatErrorKind.INVALID_TASK, f"{self.validation.reason}: {self.validation.detail}")
        return None

    @property
    def outcome(self) -> str:
        """What became of it, as one label: `valid`, `format:<kind>` (the response did not parse),
        `invalid:<reason>` (the executor rejected it) or `unvalidated` (parsed, not yet validated)."""
        if isinstance(self.parsed, FormatError):
            return f"format:{self.parsed.kind}"
        if self.task is not None:
            return "valid"
        if self.validation is not None and not self.validation.ok:
            return f"invalid:{self.validation.reason}"
        return "unvalidated"


@dataclass(frozen=True)
class Rollout:
    """One response to train on."""

    prompt: str
    response: str
    type: TaskType
    role: Role
    reward: float
    format_ok: bool
    """False iff the response earned the format penalty (for proposers: also a failed validation)."""
    advantage: float | None = None
    """Set by the advantage stage (TRR++); None before."""
    error: FormatError | None = None
    task: Task | None = None
    """The task proposed (if valid) or solved, for logging."""

    def __post_init__(self) -> None:
        if self.error is not None and self.format_ok:
            raise ValueError("a Rollout with a format error cannot be format_ok")

    @property
    def group(self) -> tuple[TaskType, Role]:
        return self.type, self.role

    @property
    def group_id(self) -> int:
        return group_index(self.type, self.role)

    def with_advantage(self, advantage: float) -> Rollout:
        return dataclasses.replace(self, advantage=float(advantage))


@dataclass(frozen=True)
class StepBatch:
    """All rollouts of one step, plus the proposals and solve tasks they came from."""

    step: int
    rollouts: tuple[Rollout, ...]
    proposals: tuple[Proposal, ...] = ()
    solve_tasks: tuple[Task, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rollouts", tuple(self.rollouts))
        object.__setattr__(self, "proposals", tuple(self.proposals))
        object.__setattr__(self, "solve_tasks", tuple(self.solve_tasks))

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.rollouts]

    @property
    def group_ids(self) -> list[int]:
        return [r.group_id for r in self.rollouts]

    @property
    def advantages(self) -> list[float]:
        missing = [i for i, r in enumerate(self.rollouts) if r.advantage is None]
        if missing:
            raise ValueError(f"advantages not assigned for rollouts {missing[:5]}...")
        return [r.advantage for r in self.rollouts]  # type: ignore[misc]

    def group(self, task_type: TaskType, role: Role) -> tuple[Rollout, ...]:
        return tuple(r for r in self.rollouts if r.group == (task_type, role))

    @property
    def new_tasks(self) -> tuple[Task, ...]:
        """Tasks of the valid proposals, to grow the buffers with (SPEC §1 step 7)."""
        return tuple(p.task for p in self.proposals if p.task is not None)

    def with_advantages(self, advantages: Sequence[float]) -> StepBatch:
        if len(advantages) != len(self.rollouts):
            raise ValueError(f"{len(advantages)} advantages for {len(self.rollouts)} rollouts")
        return dataclasses.replace(
            self, rollouts=tuple(r.with_advantage(a) for r, a in zip(self.rollouts, advantages))
        )


@dataclass(frozen=True)
class SeedingRound:
    """One round of seeding: how its proposals ended, per task type, and the buffer sizes after it.
    Outcome labels are :attr:`Proposal.outcome`'s, with `valid` split into `added` and `duplicate`
    (already in the buffer)."""

    tries: int
    """Proposer generations per task type so far, this round's included."""
    sizes: dict[TaskType, int]
    outcomes: dict[TaskType, dict[str, int]]

    def to_json(self) -> dict[str, Any]:
        return {"tries": self.tries, "sizes": {str(t): n for t, n in self.sizes.items()},
                "outcomes": {str(t): dict(c) for t, c in self.outcomes.items()}}

    @staticmethod
    def totals(rounds: Iterable[SeedingRound]) -> dict[TaskType, Counter[str]]:
        """Each task type's outcomes summed over `rounds` (every type present, empty where none)."""
        out: dict[TaskType, Counter[str]] = {t: Counter() for t in TaskType}
        for r in rounds:
            for t, c in r.outcomes.items():
                out[t].update(c)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SeedingRound:
        return cls(tries=int(d["tries"]), sizes={TaskType(t): int(n) for t, n in d["sizes"].items()},
                   outcomes={TaskType(t): {k: int(v) for k, v in c.items()} for t, c in d["outcomes"].items()})
