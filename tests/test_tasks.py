"""The three task types end to end with the real executor, the registry, and the prompts."""

from __future__ import annotations

import random
import re

import pytest

from azr import prompts
from azr.buffers import TaskBuffer
from azr.executor import InvalidReason, SandboxConfig, SandboxPool
from azr.records import Candidate, FormatError, FormatErrorKind, Proposal, Role, Rollout, Task, TaskType
from azr.rewards import propose_reward, solve_reward
from azr.tasks import TASK_TYPES, N_INPUTS, TaskTypeModule, abduction, deduction, induction
from azr.tasks.base import program_input_answer

ID = "def f(x):\n    return x"


@pytest.fixture(scope="module")
def sandbox():
    pool = SandboxPool(SandboxConfig(workers=1))
    yield pool
    pool.close()


class CountingPool:
    """Wraps a pool to count batches: one stage of one step must be one run_many per type."""

    def __init__(self, pool: SandboxPool):
        self.pool, self.calls = pool, 0

    def run_many(self, jobs, *a, **k):
        self.calls += 1
        return self.pool.run_many(jobs, *a, **k)


def proposer_response(task: Task) -> str:
    if task.type is TaskType.INDUCTION:
        return "<think>Varied inputs.</think>\n" + induction.inputs_message_answer(task.inputs, task.message)
    return "<think>A simple function.</think>\n" + program_input_answer(task.program, task.input)


CORRECT = {
    TaskType.DEDUCTION: "<think>f returns x.</think>\n<answer>'Hello World'</answer>",
    TaskType.ABDUCTION: "<think>f returns x.</think>\n<answer>'Hello World'</answer>",
    TaskType.INDUCTION: "<think>Identity.</think>\n<answer>\n```python\ndef f(x):\n    return x\n```\n</answer>",
}
WRONG = {
    TaskType.DEDUCTION: "<think>Guess.</think>\n<answer>'hello world'</answer>",
    TaskType.ABDUCTION: "<think>Guess.</think>\n<answer>'Goodbye'</answer>",
    TaskType.INDUCTION: "<think>Guess.</think>\n<answer>\n```python\ndef f(x):\n    return str(x)\n```\n</answer>",
}


def test_registry_holds_modules_satisfying_the_protocol():
    assert set(TASK_TYPES) == set(TaskType)
    for t, mod in TASK_TYPES.items():
        assert mod.TYPE is t
        for name in ("propose_references", "propose_prompt", "parse_proposal", "copies", "validate", "solve_prompt", "parse_answer", "check"):
            assert callable(getattr(mod, name))
        _: TaskTypeModule = mod


@pytest.mark.parametrize("task_type", list(TaskType))
def test_identity_seed_end_to_end(sandbox, task_type):
    mod = TASK_TYPES[task_type]
    rng = random.Random(0)
    buf = TaskBuffer.seeded(task_type)
    refs = buf.sample_references(6, rng)
    seed = refs[0]
    program = seed.program if task_type is TaskType.INDUCTION else None

    prompt = mod.propose_prompt(refs, seed if task_type is TaskType.INDUCTION else None)
    response = proposer_response(seed)
    parsed = mod.parse_proposal(response, program)
    assert parsed == Candidate(seed.program, seed.inputs, seed.message)

    pool = CountingPool(sandbox)
    [prop] = mod.validate(pool, [Proposal(task_type, prompt, response, parsed, tuple(refs))], rng)
    assert pool.calls == 1
    assert prop.valid and prop.validation.ok and prop.error is None
    task = prop.task
    assert (task.program, task.inputs, task.outputs) == (seed.program, seed.inputs, seed.outputs)
    assert buf.add(task) is False  # same program and input(s) as the seed: deduplicated

    solve = mod.solve_prompt(task)
    assert "<answer>" in solve and "```python" in solve
    answers = [mod.parse_answer(CORRECT[task_type]), mod.parse_answer(WRONG[task_type]),
               mod.parse_answer("I do not know.")]
    assert not isinstance(answers[0], FormatError) and not isinstance(answers[1], FormatError)
    assert isinstance(answers[2], FormatError)
    pool.calls = 0
    verdicts = mod.check(pool, [task] * 3, answers)
    assert verdicts == [True, False, False]
    assert pool.calls == (0 if task_type is TaskType.DEDUCTION else 1)
    rewards = [solve_reward(not isinstance(a, FormatError), ok) for a, ok in zip(answers, verdicts)]
    assert rewards == [1.0, -0.5, -1.0]
    r = Rollout(solve, CORRECT[task_type], task_type, Role.SOLVE, rewards[0], True, task=task)
    assert r.reward == 1.0


@pytest.mark.parametrize("task_type", [TaskType.DEDUCTION, TaskType.ABDUCTION])
def test_invalid_and_malformed_proposals(sandbox, task_type):
    mod = TASK_TYPES[task_type]
    refs = [TaskBuffer.seeded(task_type).tasks[0]]
    cases = {
        "runtime": program_input_answer("def f(x):\n    return x / 0", "1"),
        "nondeterministic": program_input_answer(
            "import math\ndef f(x):\n    math.n = getattr(math, 'n', 0) + 1\n    return math.n", "1"),
        "banned": program_input_answer("import random\ndef f(x):\n    return random.random()", "1"),
        "syntax": program_input_answer("def f(x)\n    return x", "1"),
        "not_literal": program_input_answer("def f(x):\n    return object()", "1"),
        "good": program_input_answer("def f(a, b):\n    return a * b", "3, 4"),
        "format": "<answer>no blocks here</answer>",
    }
    props = [Proposal(task_type, mod.propose_prompt(refs), r, mod.parse_proposal(r)) for r in cases.values()]
    pool = CountingPool(sandbox)
    out = dict(zip(cases, mod.validate(pool, props, random.Random(0))))
    assert pool.calls == 1
    assert out["runtime"].validation.reason is InvalidReason.RUNTIME_ERROR
    assert out["nondeterministic"].validation.reason is InvalidReason.NONDETERMINISTIC
    assert out["banned"].validation.reason is InvalidReason.BANNED
    assert out["syntax"].validation.reason is InvalidReason.SYNTAX
    assert out["not_literal"].validation.reason is InvalidReason.NOT_LITERAL
    assert out["good"].valid and out["good"].task.output == "12" and out["good"].task.type is task_type
    assert out["format"].validation is None and out["format"].error.kind is FormatErrorKind.NO_PROGRAM
    for name, p in out.items():
        if name != "good":
            assert not p.valid and propose_reward(p.valid, None) == -1.0
            assert p.error is not None
    assert out["runtime"].error.kind is FormatErrorKind.INVALID_TASK


def test_abduction_accepts_any_input_that_works(sandbox):
    task = Task(TaskType.ABDUCTION, "def f(a, b):\n    return a * b", ("3, 4",), ("12",))
    answers = [abduction.parse_answer(f"<answer>{a}</answer>") for a in ("2, 6", "f(12, 1)", "3, 5", "12")]
    assert abduction.check(sandbox, [task] * 4, answers) == [True, True, False, False]


def test_induction_validation_split_and_check(sandbox):
    program = "def f(a, b):\n    return a - b"
    inputs = ("1, 2", "5, 3", "0, 0", "10, -1", "7, 7", "2, 9")
    resp = induction.inputs_message_answer(inputs, "Subtract b from a.")
    bad_resp = induction.inputs_message_answer(("1, 2", "'a', 1", "3, 4", "5, 6", "7, 8", "9, 0"), "Subtract.")
    short = induction.inputs_message_answer(inputs[:5], "Subtract.")
    ref = TaskBuffer.seeded(TaskType.INDUCTION, 6).tasks
    source = Task(TaskType.DEDUCTION, program, ("1, 2",), ("-1",))
    props = [Proposal(TaskType.INDUCTION, induction.propose_prompt(ref, source, 6), r,
                      induction.parse_proposal(r, program, 6)) for r in (resp, bad_resp, short)]
    assert props[2].error.kind is FormatErrorKind.WRONG_INPUT_COUNT
    pool = CountingPool(sandbox)
    good, bad, fmt = induction.validate(pool, props, random.Random(3))
    assert pool.calls == 1
    assert good.valid and good.task.outputs == ("-1", "2", "0", "11", "0", "-7")
    assert len(good.task.visible) == 3 and len(good.task.held_out) == 3
    assert not bad.valid and bad.validation.reason is InvalidReason.RUNTIME_ERROR
    assert bad.validation.detail.startswith("input 2:") and bad.error.kind is FormatErrorKind.INVALID_TASK
    assert fmt.validation is None and not fmt.valid

    # the split is deterministic given the seed, and varies with it
    again = induction.validate(sandbox, props[:1], random.Random(3))[0].task
    assert (again.visible, again.held_out) == (good.task.visible, good.task.held_out)
    splits = {induction.split_indices(6, random.Random(s)) for s in range(20)}
    assert len(splits) > 1 and all(len(v) == 3 and set(v) | set(h) == set(range(6)) for v, h in splits)
    assert induction.split_indices(5, random.Random(0))[0].__len__() == 2

    task = good.task
    solve = induction.solve_prompt(task)
    for i in task.visible:
        assert prompts.render_input(task.inputs[i]) in solve
    assert "Subtract b from a." in solve
    fits_visible_only = "def f(a, b):\n    return {%s}[(a, b)]" % ", ".join(
        f"({task.inputs[i]}): {task.outputs[i]}" for i in task.visible)
    answers = [induction.parse_answer(f"<answer>\n```python\n{p}\n```\n</answer>")
               for p in ("def f(a, b):\n    return a - b", fits_visible_only,
                         "import os\ndef f(a, b):\n    return a - b")]
    answers.append(FormatError(FormatErrorKind.NO_ANSWER))
    pool.calls = 0
    assert induction.check(pool, [task] * 4, answers) == [True, False, False, False]
    assert pool.calls == 1


def test_propose_prompts_show_references_in_the_answer_format():
    refs = [Task(TaskType.DEDUCTION, f"def f(x):\n    return x * {k}", (str(k),), (str(k * k),)) for k in range(3)]
    for mod in (deduction, abduction):
        p = mod.propose_prompt([Task(mod.TYPE, r.program, r.inputs, r.outputs) for r in refs])
        examples = re.findall(r"<answer>\n.*?</answer>", p, re.DOTALL)
        assert len(examples) == 3
        for r, e in zip(refs, examples):  # each example parses back to its reference
            assert mod.parse_proposal(e) == Candidate(r.program, r.inputs)
        assert "{" not in p.replace("{k}", "")  # no unfilled placeholder
    seed = induction.seed_task(N_INPUTS)
    upper = Task(TaskType.DEDUCTION, "def f(s):\n    return s.upper()", ("'abc'",), ("'ABC'",))
    p = induction.propose_prompt([seed], upper)
    [example] = re.findall(r"<answer>\n.*?</answer>", p, re.DOTALL)
    assert induction.parse_proposal(example, seed.program) == Candidate(seed.program, seed.inputs, seed.message)
    assert "def f(s):\n    return s.upper()" in p and f"Write at least {N_INPUTS} different inputs" in p
    # the source task's own input is shown as one call that runs, after its program
    assert p.endswith(f"return s.upper()\n```\nA call that runs: `f('abc')`\n\n{prompts.format_line(1)}")
    # What self-play shows: the format example, never the induction buffer (whose seed fits any one-argument f).
    refs = induction.propose_references(lambda: pytest.fail("the induction buffer was drawn from"), N_INPUTS)
    p = induction.propose_prompt(refs, upper)
    [example] = re.findall(r"<answer>\n.*?</answer>", p, re.DOTALL)
    ex = induction.format_example(N_INPUTS + induction.EXAMPLE_EXTRA_INPUTS)  # more than asked: the surplus is dropped
    assert refs == [ex]
    # parsed as a proposal, the example is valid: the last N of its inputs are kept
    got = induction.parse_proposal(example, ex.program)
    assert got == Candidate(ex.program, ex.inputs[-N_INPUTS:], ex.message)
    assert "Hello World" not in p and seed.message not in p
    with pytest.raises(ValueError):
        induction.propose_prompt([seed])
    with pytest.raises(ValueError):
        deduction.propose_prompt([])


def test_solve_prompt_examples_are_correct_and_vary_with_the_task(sandbox):
    """Each worked example answers its own example task; its numbers follow the task shown, so no answer is the same
    in every prompt (a fixed `1, 3` became the abduction solver's answer to everything, issue 16)."""
    answers = {TaskType.DEDUCTION: set(), TaskType.ABDUCTION: set()}
    for k in range(12):
        for mod in (deduction, abduction):
            task = Task(mod.TYPE, "def f(x):\n    return x * 2", (str(k),), (str(2 * k),))
            p = mod.solve_prompt(task)
            assert p == mod.solve_prompt(task)  # deterministic
            example = p[:p.index("Now this one:")]
            ex_task = Task(mod.TYPE, prompts.SOLVE_EXAMPLE_PROGRAM, (re.search(r"```input\n(.*?)\n```", example).group(1)
                           if mod is deduction else "0, 0",), (re.search(r"```output\n(.*?)\n```", example).group(1)
                           if mod is abduction else re.search(r"<answer>\n(.*?)\n</answer>", example).group(1),))
            answer = mod.parse_answer(example[example.index("<think>"):])
            assert mod.check(sandbox, [ex_task], [answer]) == [True]
            answers[mod.TYPE].add(answer)
    assert all(len(v) >= 8 for v in answers.values())
    ind = Task(TaskType.INDUCTION, "def f(a, b):\n    return a - b", ("1, 2", "3, 4", "5, 6"), ("-1", "-1", "-1"),
               "Subtract.", (0,), (1, 2))
    p = induction.solve_prompt(ind)
    example = p[:p.index("Now this one:")]
    ins, outs = (tuple(re.findall(rf"```{b}\n(.*?)\n```", example)) for b in ("input", "output"))
    ex_task = Task(TaskType.INDUCTION, prompts.SOLVE_EXAMPLE_PROGRAM, ins, outs, "m", (0,), (1, 2))
    assert induction.check(sandbox, [ex_task], [induction.parse_answer(example[example.index("<think>"):])]) == [True]


def test_strip_comments_switch_reaches_the_task(sandbox):
    prog = "def f(x):\n    '''Doubles.'''\n    return 2 * x  # why not"
    r = program_input_answer(prog, "4")
    assert deduction.parse_proposal(r).program == prog
    stripped = deduction.parse_proposal(r, strip_comments=True)
    [p] = deduction.validate(sandbox, [Proposal(TaskType.DEDUCTION, "", r, stripped)], random.Random(0))
    assert p.task.program == "def f(x):\n    return 2 * x" and p.task.output == "8"


def test_modules_reject_items_of_another_type(sandbox):
    t = TaskBuffer.seeded(TaskType.DEDUCTION).tasks[0]
    with pytest.raises(ValueError):
        abduction.check(sandbox, [t], ["1"])
    with pytest.raises(ValueError):
        induction.validate(sandbox, [Proposal(TaskType.DEDUCTION, "", "", Candidate(ID, ("1",)))], random.Random(0))


# Answer scoring as the reference does it: −1 only when no answer can be extracted; an extracted
# answer that is wrong (a non-literal, an expression with the wrong value, one that does not run)
# is −0.5; one whose value is right, literal or expression, is 1.
DED = Task(TaskType.DEDUCTION, "def f(x):\n    return x * 2", ("[1, 2]",), ("[1, 2, 1, 2]",))
ABD = Task(TaskType.ABDUCTION, "def f(x, y=0):\n    return x + y", ("3, 4",), ("7",))
SCORING = [
    (deduction, DED, "<answer>[1, 2, 1, 2]</answer>", 1.0),        # the literal
    (deduction, DED, "<answer>[1, 2] * 2</answer>", 1.0),          # an expression that evaluates right
    (deduction, DED, "<answer>[1, 2] * 3</answer>", -0.5),         # an expression with the wrong value
    (deduction, DED, "<answer>The output is [1, 2, 1, 2]</answer>", -0.5),  # prose: extracted, wrong
    (deduction, DED, "<answer>f([1, 2])</answer>", -0.5),          # f is not defined for the answer
    (deduction, DED, "<answer>__import__('os').getcwd()</answer>", -0.5),  # banned: never runs
    (deduction, DED, "The output is [1, 2, 1, 2]", -1.0),          # nothing to extract
    (abduction, ABD, "<answer>7</answer>", 1.0),
    (abduction, ABD, "<answer>x=5, y=2</answer>", 1.0),            # keyword arguments, judged by running
    (abduction, ABD, "<answer>f(3, y=4)</answer>", 1.0),           # the call unwrapped, keywords kept
    (abduction, ABD, "<answer>2 + 5</answer>", 1.0),               # an expression argument
    (abduction, ABD, "<answer>x = 7</answer>", 1.0),               # reads as the keyword argument x=7
    (abduction, ABD, "<answer>z=7</answer>", -0.5),                # runs into a TypeError
    (abduction, ABD, "<answer>x == 7</answer>", -0.5),             # NameError
    (abduction, ABD, "<answer>The input is 7</answer>", -0.5),
    (abduction, ABD, "<answer>\n</answer>", -1.0),                 # empty: nothing extracted
]


@pytest.mark.parametrize("mod,task,response,reward", SCORING)
def test_answer_scoring_matches_the_reference(sandbox, mod, task, response, reward):
    answer = mod.parse_answer(response)
    fmt_ok = not isinstance(answer, FormatError)
    [correct] = mod.check(sandbox, [task], [answer])
    assert solve_reward(fmt_ok, correct) == reward


def test_propose_prompts_state_every_validation_rule_and_each_reference_output():
    from azr.executor.bans import BANNED_ATTRIBUTES, BANNED_MODULES, BANNED_NAMES

    refs = [Task(TaskType.DEDUCTION, f"def f(x):\n    return x * {k}", (str(k),), (str(k * k),)) for k in (3, 5)]
    for mod in (deduction, abduction):
        p = mod.propose_prompt([Task(mod.TYPE, r.program, r.inputs, r.outputs) for r in refs])
        for name in BANNED_MODULES | BANNED_NAMES | BANNED_ATTRIBUTES:
            assert re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", p), name
        assert "Example 1 (f returns 9):" in p and "Example 2 (f returns 25):" in p
        assert "deterministic" in p.lower() and "literal" in p and "hard" in p and "different from the examples" in p


# -- copies of the shown references (selfplay.reject_copies) ---------------------------------------
SEED_DED = TaskBuffer.seeded(TaskType.DEDUCTION).tasks[0]  # def f(x): return x, on 'Hello World'
SEED_IND = induction.seed_task()


@pytest.mark.parametrize("mod", [deduction, abduction])
def test_a_program_input_proposal_copies_only_an_examples_program_and_input_together(mod):
    other = Task(mod.TYPE, "def f(a):\n    return a * 2", ("3",), ("6",))
    refs = [other, SEED_DED]
    # Formatting, a comment and the quote style do not make a copy new; it is example 2.
    assert mod.copies(Candidate("def f(x):  # echo\n    return (x)", ('"Hello World"',)), refs) == "the task of example 2"
    assert mod.copies(Candidate("def f(a): return a*2", ("3",)), refs) == "the task of example 1"
    assert mod.copies(Candidate("def f(x):\n    return x", ("'Hi'",)), refs) is None  # a new input
    assert mod.copies(Candidate("def f(x):\n    return x[::-1]", ("'Hello World'",)), refs) is None  # a new program
    assert mod.copies(Candidate("def f(x) return", ("3",)), refs) is None  # unparseable: compared as text


def test_induction_copies_half_the_examples_inputs_or_their_message_for_another_program():
    prog = "def f(x):\n    return x * 2"
    refs = [SEED_IND]
    # Five of the seed's ten inputs, written otherwise ("abc" for 'abc', 42.0 is not 42's repr), are half: a copy.
    five = ('"abc"', "42", "-7", "[1,2,3]", "True", "7", "8", "9", "10", "11")
    assert induction.copies(Candidate(prog, five, "Doubles x."), refs) == "5 of 10 inputs are the examples' inputs"
    four = ('"abc"', "42", "-7", "42.0", "True", "7", "8", "9", "10", "11")
    assert induction.copies(Candidate(prog, four, "Doubles x."), refs) is None
    # The seed's message for another program misleads the solver: case, spacing and the final period aside.
    new = tuple(str(k) for k in range(1, 11))
    assert induction.copies(Candidate(prog, new, "return the  input UNCHANGED"), refs) == \
        "the message of example 1, whose program differs"
    # For the seed's own program the message is true, and new inputs make a new task.
    assert induction.copies(Candidate(SEED_IND.program, new, "Return the input unchanged."), refs) is None


def test_seed_input_share_counts_the_identity_seeds_inputs_as_values():
    t = Task(TaskType.INDUCTION, "def f(x):\n    return x", ('"abc"', "42", "1", "2"), ("'abc'", "42", "1", "2"),
             "m", (0, 1), (2, 3))
    assert induction.seed_input_share(t) == 0.5
    assert induction.seed_input_share(SEED_IND) == 1.0


@pytest.mark.parametrize("n", [2, 4, 10, 12])
def test_induction_format_example_is_a_valid_task_whose_inputs_fail_on_one_argument_programs(sandbox, n):
    """The example's outputs are what its program returns (checked by running it), it has n distinct inputs, and a
    proposal that copies them for a one-argument f is invalid rather than a task."""
    ex = induction.format_example(n)
    assert len(ex.inputs) == len(set(ex.inputs)) == n and ex.visible == tuple(range(n // 2))
    again = induction.validate(sandbox, [Proposal(TaskType.INDUCTION, "", "", Candidate(ex.program, ex.inputs, ex.message))],
                               random.Random(0))[0]
    assert again.task is not None and again.task.outputs == ex.outputs
    copied = induction.validate(sandbox, [Proposal(TaskType.INDUCTION, "", "",
                                                   Candidate("def f(s):\n    return s[::-1]", ex.inputs, "m"))],
                                random.Random(0))[0]
    assert copied.task is None and copied.validation is not None and not copied.validation.ok
    assert deduction.propose_references(lambda: ["drawn"]) == ["drawn"] == abduction.propose_references(lambda: ["drawn"])
