"""Typed records: invariants, JSON round-trip, derived properties."""

from __future__ import annotations

import pytest

from azr.executor import InvalidReason, Validation
from azr.records import (
    GROUPS, Candidate, FormatError, FormatErrorKind, Proposal, Role, Rollout, SeedingRound, StepBatch, Task, TaskType,
    group_index,
)

ID = "def f(x):\n    return x"


def ded(program: str = ID, inp: str = "1", out: str = "1") -> Task:
    return Task(TaskType.DEDUCTION, program, (inp,), (out,))


def test_groups_are_the_six_type_role_pairs_in_fixed_order():
    assert len(GROUPS) == 6 and len(set(GROUPS)) == 6
    assert GROUPS[0] == (TaskType.DEDUCTION, Role.PROPOSE)
    assert [group_index(t, r) for t, r in GROUPS] == list(range(6))


def test_enums_are_str():
    assert TaskType("induction") is TaskType.INDUCTION and f"{Role.SOLVE}" == "solve"


def test_single_pair_task_properties():
    t = ded(inp="'a'", out="'a'")
    assert (t.input, t.output, t.key) == ("'a'", "'a'", (ID, ("'a'",)))


@pytest.mark.parametrize("kwargs", [
    dict(type=TaskType.DEDUCTION, program=ID, inputs=("1", "2"), outputs=("1", "2")),  # two pairs
    dict(type=TaskType.ABDUCTION, program=ID, inputs=("1",), outputs=()),  # no output
    dict(type=TaskType.DEDUCTION, program=ID, inputs=("1",), outputs=("1",), message="m"),
    dict(type=TaskType.INDUCTION, program=ID, inputs=("1", "2"), outputs=("1", "2"), visible=(0,), held_out=()),
    dict(type=TaskType.INDUCTION, program=ID, inputs=("1", "2"), outputs=("1", "2"), visible=(0,), held_out=(0,)),
    dict(type=TaskType.INDUCTION, program=ID, inputs=("1", "2"), outputs=("1", "2"), visible=(0,), held_out=(2,)),
    dict(type="nonsense", program=ID, inputs=("1",), outputs=("1",)),
    dict(type=TaskType.DEDUCTION, program=ID, inputs=(1,), outputs=("1",)),
])
def test_task_rejects_inconsistent_fields(kwargs):
    with pytest.raises((ValueError, TypeError)):
        Task(**kwargs)


def test_induction_task_pairs_and_json_round_trip():
    t = Task(TaskType.INDUCTION, ID, ("1", "2", "3", "4"), ("1", "2", "3", "4"), "id", (1, 3), (0, 2))
    assert t.visible_pairs() == [("2", "2"), ("4", "4")]
    assert t.held_out_pairs() == [("1", "1"), ("3", "3")]
    assert Task.from_json(t.to_json()) == t
    assert t.to_json()["type"] == "induction"


@pytest.mark.parametrize("bad", [[], "x", {"type": "deduction"}, {**ded().to_json(), "extra": 1},
                                 {**ded().to_json(), "inputs": "1"}])
def test_task_from_json_rejects_malformed(bad):
    with pytest.raises((ValueError, TypeError, KeyError)):
        Task.from_json(bad)


def test_proposal_error_covers_parse_and_validation_failures():
    cand = Candidate(ID, ("1",))
    p = Proposal(TaskType.DEDUCTION, "prompt", "resp", cand)
    assert p.format_ok and not p.valid and p.error is None
    bad = Proposal(TaskType.DEDUCTION, "p", "r", cand, validation=Validation(InvalidReason.TIMEOUT, detail="slow"))
    assert bad.error == FormatError(FormatErrorKind.INVALID_TASK, "timeout: slow")
    err = FormatError(FormatErrorKind.NO_ANSWER)
    assert Proposal(TaskType.DEDUCTION, "p", "r", err).error is err
    ok = Proposal(TaskType.DEDUCTION, "p", "r", cand, validation=Validation(None, "1"), task=ded())
    assert ok.valid and ok.error is None


def test_proposal_outcome_names_what_became_of_it():
    cand = Candidate(ID, ("1",))
    assert Proposal(TaskType.DEDUCTION, "p", "r", FormatError(FormatErrorKind.NO_ANSWER)).outcome == "format:no_answer"
    assert Proposal(TaskType.DEDUCTION, "p", "r", cand).outcome == "unvalidated"
    timed_out = Proposal(TaskType.DEDUCTION, "p", "r", cand, validation=Validation(InvalidReason.TIMEOUT))
    assert timed_out.outcome == "invalid:timeout"
    assert Proposal(TaskType.DEDUCTION, "p", "r", cand, validation=Validation(None, "1"), task=ded()).outcome == "valid"


def test_seeding_round_json_round_trip():
    rnd = SeedingRound(tries=10, sizes={TaskType.DEDUCTION: 4, TaskType.INDUCTION: 1},
                       outcomes={TaskType.DEDUCTION: {"added": 3, "format:no_answer": 7}, TaskType.INDUCTION: {}})
    d = rnd.to_json()
    assert d == {"tries": 10, "sizes": {"deduction": 4, "induction": 1},
                 "outcomes": {"deduction": {"added": 3, "format:no_answer": 7}, "induction": {}}}
    assert SeedingRound.from_json(d) == rnd
    later = SeedingRound(tries=20, sizes={}, outcomes={TaskType.DEDUCTION: {"added": 1, "duplicate": 2}})
    assert SeedingRound.totals([rnd, later]) == {TaskType.DEDUCTION: {"added": 4, "duplicate": 2, "format:no_answer": 7},
                                                 TaskType.ABDUCTION: {}, TaskType.INDUCTION: {}}


def test_rollout_invariant_and_advantage():
    with pytest.raises(ValueError):
        Rollout("p", "r", TaskType.DEDUCTION, Role.SOLVE, -1.0, True, error=FormatError(FormatErrorKind.NO_ANSWER))
    r = Rollout("p", "r", TaskType.INDUCTION, Role.SOLVE, 1.0, True)
    assert r.advantage is None and r.group == (TaskType.INDUCTION, Role.SOLVE)
    assert r.group_id == group_index(TaskType.INDUCTION, Role.SOLVE) == 5
    assert r.with_advantage(0.5).advantage == 0.5 and r.advantage is None


def test_step_batch_views():
    rs = [Rollout("p", "r", t, role, float(i), True) for i, (t, role) in enumerate(GROUPS)]
    t = ded()
    props = [Proposal(TaskType.DEDUCTION, "p", "r", Candidate(ID, ("1",)), task=t),
             Proposal(TaskType.DEDUCTION, "p", "r", FormatError(FormatErrorKind.NO_ANSWER))]
    b = StepBatch(3, rs, props, [t])
    assert b.rewards == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert b.group_ids == [0, 1, 2, 3, 4, 5]
    assert b.group(TaskType.ABDUCTION, Role.SOLVE) == (rs[3],)
    assert b.new_tasks == (t,)
    with pytest.raises(ValueError):
        _ = b.advantages
    b2 = b.with_advantages([0.1] * 6)
    assert b2.advantages == [0.1] * 6 and b2.step == 3
    with pytest.raises(ValueError):
        b.with_advantages([0.0])
