"""Task buffers: seed, dedup, sampling with explicit RNGs, fill, atomic JSONL persistence; the references a
propose prompt shows, with and without the no-references ablation."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections import Counter

import pytest

from azr import buffers
from azr import config as C
from azr.buffers import BufferFileError, TaskBuffer, seed_task
from azr.policy.base import Generation
from azr.executor import InvalidReason, Validation
from azr.records import Candidate, FormatError, FormatErrorKind, Proposal, Task, TaskType
from azr.selfplay import Engines, SelfPlayState, grow_buffers_stage, propose_stage, round_outcomes
from azr.tasks.base import is_trivial
from azr.tasks import deduction, induction

ID = "def f(x):\n    return x"


def ded(i: int, program: str | None = None) -> Task:
    return Task(TaskType.DEDUCTION, program or f"def f(x):\n    return x + {i}", (str(i),), (str(2 * i),))


def test_seeded_with_the_identity_triplet():
    for t in (TaskType.DEDUCTION, TaskType.ABDUCTION):
        [seed] = TaskBuffer.seeded(t).tasks
        assert (seed.program, seed.input, seed.output) == (ID, "'Hello World'", "'Hello World'")
    ind = seed_task(TaskType.INDUCTION, 6)
    assert ind.program == ID and ind.inputs[0] == "'Hello World'" and len(ind.inputs) == 6
    assert ind.outputs == ind.inputs  # identity
    assert len(TaskBuffer.seeded(TaskType.INDUCTION).tasks[0].inputs) == 10


def test_add_dedups_by_program_and_input():
    b = TaskBuffer(TaskType.DEDUCTION)
    assert b.add(ded(1)) is True
    assert b.add(ded(1)) is False
    assert b.add(Task(TaskType.DEDUCTION, ded(1).program, ("1",), ("999",))) is False  # same key
    assert b.add(Task(TaskType.DEDUCTION, ded(1).program, ("5",), ("10",))) is True  # other input
    assert b.add(Task(TaskType.DEDUCTION, ded(1).program + " ", ("1",), ("2",))) is True  # other text
    assert len(b) == 3 and ded(1) in b and ded(2) not in b
    assert b.extend([ded(1), ded(2), ded(3), ded(3)]) == 2
    with pytest.raises(ValueError):
        b.add(Task(TaskType.ABDUCTION, ID, ("1",), ("1",)))


def test_sample_references_uniform_and_reproducible():
    b = TaskBuffer(TaskType.DEDUCTION, [ded(i) for i in range(10)])
    a1 = b.sample_references(6, random.Random(7))
    a2 = b.sample_references(6, random.Random(7))
    assert a1 == a2 and len(set(a1)) == 6
    assert sorted(b.sample_references(50, random.Random(0)), key=lambda t: t.input) == sorted(b, key=lambda t: t.input)
    rng = random.Random(1)
    counts = Counter(t.input for _ in range(3000) for t in b.sample_references(2, rng))
    assert min(counts.values()) > 450 and max(counts.values()) < 750  # expectation 600 each


def test_fill():
    b = TaskBuffer(TaskType.DEDUCTION, [ded(i) for i in range(4)])
    valid = [ded(10), ded(11)]
    assert b.fill(valid + [ded(12)], 2, random.Random(0)) == valid  # more than enough: truncated
    filled = b.fill(valid, 5, random.Random(0))
    assert filled[:2] == valid and len(filled) == 5 and len(set(filled[2:])) == 3  # no replacement
    assert filled == b.fill(valid, 5, random.Random(0))
    big = b.fill([], 9, random.Random(0))
    assert len(big) == 9 and set(big) <= set(b)  # with replacement when the buffer is short
    with pytest.raises(ValueError):
        TaskBuffer(TaskType.DEDUCTION).fill([], 1, random.Random(0))


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "sub" / "induction.jsonl"
    b = TaskBuffer.seeded(TaskType.INDUCTION, 4)
    b.add(Task(TaskType.INDUCTION, "def f(s):\n    return s[::-1]  # ünïcode \u2028 sep",
               ("'ab'", "'\u2028'"), ("'ba'", "'\u2028'"), "reverse\u2028it", (1,), (0,)))
    b.save(path)
    back = TaskBuffer.load(path, TaskType.INDUCTION)
    assert back.tasks == b.tasks and back.type is TaskType.INDUCTION
    assert TaskBuffer.load(path).tasks == b.tasks
    assert [p.name for p in path.parent.iterdir()] == ["induction.jsonl"]  # no temp files left


def test_stats():
    b = TaskBuffer(TaskType.DEDUCTION, [ded(1, "ab"), ded(2, "ab"), ded(3, "abcd")])
    s = b.stats()
    assert (s.type, s.size, s.distinct_programs) == (TaskType.DEDUCTION, 3, 2)
    assert s.mean_program_chars == pytest.approx(8 / 3)
    assert TaskBuffer(TaskType.ABDUCTION).stats().size == 0


@pytest.mark.parametrize("content,line,needle", [
    ("", 1, "empty"),
    ("not json\n", 1, "invalid JSON"),
    ('{"azr_task_buffer": 99, "type": "deduction"}\n', 1, "header"),
    ('{"azr_task_buffer": 1, "type": "cooking"}\n', 1, "unknown task type"),
    ('{"azr_task_buffer": 1, "type": "abduction"}\n', 1, "expected deduction"),
    ('{"azr_task_buffer": 1, "type": "deduction"}\n{"type": "deduction", "program": "x"}\n', 2, "bad task record"),
    ('{"azr_task_buffer": 1, "type": "deduction"}\nGOOD\n{"type": "deduction", "progr', 3, "invalid JSON"),
    ('{"azr_task_buffer": 1, "type": "deduction"}\nGOOD\n[1, 2]\n', 3, "bad task record"),
    ('{"azr_task_buffer": 1, "type": "deduction"}\n' + ('{"type": "abduction", "program": "p", "inputs": ["1"], '
                                                        '"outputs": ["1"]}') + "\n", 2, "abduction task in"),
])
def test_corrupt_file_gives_a_clear_error(tmp_path, content, line, needle):
    good = json.dumps(ded(1).to_json())
    path = tmp_path / "deduction.jsonl"
    path.write_text(content.replace("GOOD", good))
    with pytest.raises(BufferFileError) as e:
        TaskBuffer.load(path, TaskType.DEDUCTION)
    assert e.value.line == line and needle in str(e.value) and str(path) in str(e.value)
    assert f"{path}:{line}:" in str(e.value)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BufferFileError):
        TaskBuffer.load(path)


@pytest.mark.parametrize("fail_at", ["replace", "fsync"])
def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "deduction.jsonl"
    old = TaskBuffer.seeded(TaskType.DEDUCTION)
    old.save(path)
    before = path.read_bytes()
    new = TaskBuffer(TaskType.DEDUCTION, [ded(i) for i in range(50)])

    def boom(*a, **k):
        raise OSError("disk on fire")

    monkeypatch.setattr(buffers.os, fail_at, boom)
    with pytest.raises(OSError, match="disk on fire"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert TaskBuffer.load(path).tasks == old.tasks
    assert os.listdir(tmp_path) == ["deduction.jsonl"]  # the temp file was removed


def test_induction_sources_from_deduction_and_abduction_buffers():
    neg = Task(TaskType.ABDUCTION, "def f(x):\n    return -x", ("1",), ("-1",))
    other = Task(TaskType.INDUCTION, "def f(x):\n    return 0", ("1", "2"), ("0", "0"), "zero", (0,), (1,))
    buffers = {TaskType.DEDUCTION: TaskBuffer(TaskType.DEDUCTION, [ded(1)]),
               TaskType.ABDUCTION: TaskBuffer(TaskType.ABDUCTION, [neg]),
               TaskType.INDUCTION: TaskBuffer(TaskType.INDUCTION, [other])}
    got = induction.propose_sources(buffers, 200, random.Random(0))
    assert set(got) == {ded(1), neg}  # never the induction buffer's own tasks
    assert got == induction.propose_sources(buffers, 200, random.Random(0))
    assert deduction.propose_sources(buffers, 3, random.Random(0)) == [None] * 3
    empty = {t: TaskBuffer(t) for t in TaskType}
    with pytest.raises(ValueError):
        induction.propose_sources(empty, 1, random.Random(0))


TRIVIAL = [
    (Task(TaskType.DEDUCTION, "def f(x):\n    print(x)", ("1",), ("None",)), True),          # returns None
    (Task(TaskType.DEDUCTION, "def f(x):\n    return sorted(x)", ("[1, 2]",), ("[1, 2]",)), True),  # echoes its input
    (Task(TaskType.DEDUCTION, ID, ("'abc'",), ("'abc'",)), True),                          # the identity
    (Task(TaskType.DEDUCTION, 'def f(s):\n    """Doc."""\n    return s', ("3",), ("3",)), True),
    (Task(TaskType.DEDUCTION, "def f(x):\n    return sorted(x)", ("[2, 1]",), ("[1, 2]",)), False),
    (Task(TaskType.DEDUCTION, "def f(a, b):\n    return a", ("1, 2",), ("1",)), False),   # two arguments
    (Task(TaskType.INDUCTION, "def f(x):\n    return abs(x)", ("1", "2", "-3", "4"), ("1", "2", "3", "4"),
          message="m", visible=(0, 1), held_out=(2, 3)), False),                           # one pair differs
    (Task(TaskType.INDUCTION, "def f(x):\n    return abs(x)", ("1", "2", "3", "4"), ("1", "2", "3", "4"),
          message="m", visible=(0, 1), held_out=(2, 3)), True),                            # echoes every input
]


@pytest.mark.parametrize("task,trivial", TRIVIAL)
def test_is_trivial(task, trivial):
    assert is_trivial(task) is trivial


def test_grow_buffers_counts_duplicates_and_trivial_proposals():
    state = SelfPlayState(step=0, buffers={t: TaskBuffer.seeded(t, n_inputs=4) for t in TaskType},
                          rng=random.Random(0))
    seed = state.buffers[TaskType.DEDUCTION].tasks[0]
    new = ded(1)
    props = [Proposal(TaskType.DEDUCTION, "p", "r", None, (), task=t) for t in (seed, new, new, ded(2))]
    props.append(Proposal(TaskType.ABDUCTION, "p", "r", None, ()))  # invalid: no task, not counted
    m = grow_buffers_stage(state, props)
    # 4 valid: the seed copy and the second `new` are duplicates -> 2/4; only the seed copy is trivial -> 1/4
    assert m["propose/duplicate_frac"] == 0.5 and m["propose/trivial_frac"] == 0.25
    assert m["buffer/deduction/added"] == 2 and len(state.buffers[TaskType.DEDUCTION]) == 3


def test_seeding_round_outcomes_split_valid_into_added_and_duplicate_and_name_each_failure():
    state = SelfPlayState(step=0, buffers={t: TaskBuffer.seeded(t, n_inputs=4) for t in TaskType},
                          rng=random.Random(0))
    seed, new = state.buffers[TaskType.DEDUCTION].tasks[0], ded(1)
    props = [Proposal(TaskType.DEDUCTION, "p", "r", Candidate(t.program, t.inputs), task=t)
             for t in (seed, new, new, ded(2))]
    props += [Proposal(TaskType.ABDUCTION, "p", "r", FormatError(FormatErrorKind.NO_ANSWER)),
              Proposal(TaskType.ABDUCTION, "p", "r", FormatError(FormatErrorKind.NO_ANSWER)),
              Proposal(TaskType.ABDUCTION, "p", "r", Candidate(ID, ("1",)), validation=Validation(InvalidReason.TIMEOUT))]
    before = {t: len(b) for t, b in state.buffers.items()}
    grow_buffers_stage(state, props)
    after = {t: len(b) for t, b in state.buffers.items()}
    # 4 valid deductions, 2 of them new to the buffer (1 -> 3 tasks); abduction: 2 unparsed, 1 timed out
    assert round_outcomes(props, before, after) == {
        TaskType.DEDUCTION: {"added": 2, "duplicate": 2},
        TaskType.ABDUCTION: {"format:no_answer": 2, "invalid:timeout": 1},
        TaskType.INDUCTION: {},
    }


class _SilentPolicy:
    """Answers every prompt with an empty response: the propose stage's prompts are all this test reads."""

    def generate(self, prompts, gcfg, seed=0):
        return [Generation(prompt=p, prompt_ids=[1], response_ids=[], response="", finished=True) for p in prompts]


class _RecordingPolicy(_SilentPolicy):
    def __init__(self):
        self.configs = []

    def generate(self, prompts, gcfg, seed=0):
        self.configs.append(gcfg)
        return super().generate(prompts, gcfg, seed)


@pytest.mark.parametrize("stop_at_answer", [True, False])
def test_self_play_turns_stop_at_the_first_answer_close_unless_switched_off(stop_at_answer):
    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, stop_at_answer=stop_at_answer))
    state = SelfPlayState(step=0, buffers={t: TaskBuffer.seeded(t, n_inputs=4) for t in TaskType},
                          rng=random.Random(0))
    policy = _RecordingPolicy()
    propose_stage(Engines(policy=policy, pool=None, optimizer=None, cfg=cfg), state, per_type=2)  # type: ignore[arg-type]
    assert policy.configs and all(g.stop == (("</answer>",) if stop_at_answer else ()) for g in policy.configs)


@pytest.mark.parametrize("use_references", [True, False])
def test_propose_prompts_show_buffer_references_unless_the_no_references_ablation_is_on(use_references):
    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, k_refs=3, use_references=use_references))
    n = cfg.selfplay.n_induction_inputs
    bufs = {t: TaskBuffer.seeded(t, n) for t in TaskType}
    bufs[TaskType.DEDUCTION].extend(ded(i) for i in range(1, 30))
    bufs[TaskType.ABDUCTION].extend(Task(TaskType.ABDUCTION, f"def f(x):\n    return x * {i}", ("1",), (str(i),))
                                    for i in range(2, 30))
    state = SelfPlayState(step=0, buffers=bufs, rng=random.Random(0))
    eng = Engines(policy=_SilentPolicy(), pool=None, optimizer=None, cfg=cfg)  # type: ignore[arg-type]
    proposals, _ = propose_stage(eng, state, per_type=4)
    assert len(proposals) == 12
    for p in proposals:
        if p.type is TaskType.INDUCTION:  # conditioned on its sampled program alone, with a fixed format example
            assert p.references == (induction.format_example(n + induction.EXAMPLE_EXTRA_INPUTS),) and "Hello World" not in p.prompt
        elif use_references:
            assert len(p.references) == 3 and all(r in bufs[p.type] for r in p.references)
            shown = [r for r in p.references if r.program != ID]
            assert shown and all(r.program in p.prompt for r in shown)
        else:
            # The ablation still shows the fixed seed: the answer format needs one example.
            assert p.references == (seed_task(p.type, n),)
            assert "return x + " not in p.prompt and "return x * " not in p.prompt


def test_a_task_with_an_8kb_output_is_too_long_and_never_enters_a_buffer(pool):
    """`def f(x): return 1000 * x` on '1000 * x' is a valid program whose output is 8,002 characters: one such task
    in a buffer lengthens every prompt that shows it. Validation rejects it as too_long, counted in the metrics."""
    from azr.executor import InvalidReason
    from azr.policy import load_policy
    from azr.records import Candidate, StepBatch
    from azr.selfplay import step_metrics, validate_stage

    cfg = C.tiny_test()
    assert cfg.selfplay.max_task_tokens == 256
    state = SelfPlayState(step=0, buffers={t: TaskBuffer.seeded(t, n_inputs=4) for t in TaskType},
                          rng=random.Random(0))
    eng = Engines(policy=load_policy("tiny"), pool=pool, optimizer=None, cfg=cfg)  # type: ignore[arg-type]
    small = Candidate("def f(x):\n    return x * 2", ("3",))
    big = Candidate("def f(x):\n    return 1000 * x", ("'1000 * x'",))
    props = [Proposal(t, "p", "r", c) for t in (TaskType.DEDUCTION, TaskType.ABDUCTION) for c in (small, big)]
    out = validate_stage(eng, state, props)
    assert [p.valid for p in out] == [True, False, True, False]
    for p in (out[1], out[3]):
        assert p.validation.reason is InvalidReason.TOO_LONG and "over the cap of 256" in p.validation.detail
        assert p.error is not None  # the proposer earns the invalid-task penalty for it
    grow_buffers_stage(state, out)
    for t in (TaskType.DEDUCTION, TaskType.ABDUCTION):
        assert len(state.buffers[t]) == 2 and all(len(x.output) < 100 for x in state.buffers[t])
    m = step_metrics(StepBatch(step=0, rollouts=(), proposals=tuple(out), solve_tasks=()), [], state)
    assert m["propose/invalid/too_long"] == 2
    # The cap is a setting: 0 turns it off, and then the same task is valid.
    off = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, max_task_tokens=0))
    assert validate_stage(dataclasses.replace(eng, cfg=off), state, props[1:2])[0].valid


def test_copies_of_the_shown_references_are_rejected_before_execution_and_counted(pool):
    """With `selfplay.reject_copies`, a proposal repeating its prompt's references is invalid (`copied`), earns the
    invalid-task penalty, never runs and never enters a buffer; off (SPEC), the same copy is valid."""
    from azr.executor import InvalidReason
    from azr.policy import load_policy
    from azr.records import Candidate, StepBatch
    from azr.selfplay import step_metrics, validate_stage
    from azr.tasks import induction

    cfg = C.tiny_test()
    cfg = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, reject_copies=True))
    bufs = {t: TaskBuffer.seeded(t, n_inputs=4) for t in TaskType}
    state = SelfPlayState(step=0, buffers=bufs, rng=random.Random(0))
    eng = Engines(policy=load_policy("tiny"), pool=pool, optimizer=None, cfg=cfg)  # type: ignore[arg-type]
    ded_seed, ind_seed = bufs[TaskType.DEDUCTION].tasks[0], bufs[TaskType.INDUCTION].tasks[0]
    prog = "def f(x):\n    return x * 2"
    props = [
        Proposal(TaskType.DEDUCTION, "p", "r", Candidate("def f(x):\n    return x", ('"Hello World"',)), (ded_seed,)),
        Proposal(TaskType.DEDUCTION, "p", "r", Candidate(prog, ("3",)), (ded_seed,)),
        Proposal(TaskType.INDUCTION, "p", "r", Candidate(prog, ind_seed.inputs, "Doubles x."), (ind_seed,)),
        Proposal(TaskType.INDUCTION, "p", "r", Candidate(prog, ("1", "2", "3", "4"), "Doubles x."), (ind_seed,)),
    ]
    out = validate_stage(eng, state, props)
    assert [p.valid for p in out] == [False, True, False, True]
    for p in (out[0], out[2]):
        assert p.validation.reason is InvalidReason.COPIED and p.validation.output is None and p.error is not None
    assert out[0].validation.detail == "the task of example 1"
    assert out[2].validation.detail == "4 of 4 inputs are the examples' inputs"
    grow_buffers_stage(state, out)
    assert [len(state.buffers[t]) for t in (TaskType.DEDUCTION, TaskType.INDUCTION)] == [2, 2]
    m = step_metrics(StepBatch(step=0, rollouts=(), proposals=tuple(out), solve_tasks=()), [], state)
    assert m["propose/invalid/copied"] == 2 and m["propose/induction/own_inputs_frac"] == 1.0
    assert induction.seed_input_share(out[3].task) == 0.0
    off = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, reject_copies=False))
    assert [p.valid for p in validate_stage(dataclasses.replace(eng, cfg=off), state, props)] == [True] * 4
