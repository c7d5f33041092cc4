"""Task validation and checkers: every invalid reason from a program made for it, on the real
sandbox; literal parsing; and the identity seed."""

from __future__ import annotations

import pytest

from azr.executor import (
    AbductionCheck,
    InductionCheck,
    InvalidReason,
    check_abduction_many,
    check_deduction,
    check_induction_many,
    parse_args,
    parse_literal,
    validate,
    validate_many,
)

SEED = "def f(x):\n    return x"

CASES = [
    ("def f(x)\n    return x", "1", InvalidReason.SYNTAX),
    ("x = 1", "1", InvalidReason.NO_FUNCTION),
    ("def g(x):\n    return x", "1", InvalidReason.NO_FUNCTION),
    ("def f(x):\n    return g(x)\ndef g(x):\n    return x", "1", InvalidReason.MULTIPLE_FUNCTIONS),
    ("import random\ndef f(x):\n    return random.random()", "1", InvalidReason.BANNED),
    ("from os import path\ndef f(x):\n    return x", "1", InvalidReason.BANNED),
    ("def f(x):\n    return open('/etc/passwd').read()", "1", InvalidReason.BANNED),
    ("def f(x):\n    return eval(x)", "'1'", InvalidReason.BANNED),
    ("def f(x):\n    return ().__class__.__base__.__subclasses__()", "1", InvalidReason.BANNED),
    (SEED, "undefined_name", InvalidReason.BAD_INPUT),
    (SEED, "x=1", InvalidReason.BAD_INPUT),
    ("def f(x):\n    return x[10]", "[1]", InvalidReason.RUNTIME_ERROR),
    ("def f(x):\n    while True:\n        x += 1", "1", InvalidReason.TIMEOUT),
    ("def f(x):\n    return [x] * 10**10", "1", InvalidReason.MEMORY),
    ("import math\ndef f(x):\n    math.calls = getattr(math, 'calls', 0) + 1\n    return math.calls", "1",
     InvalidReason.NONDETERMINISTIC),
    ("def f(x):\n    return object()", "1", InvalidReason.NOT_LITERAL),
    ("def f(x):\n    return float('nan')", "1", InvalidReason.NOT_LITERAL),
]


@pytest.mark.parametrize("program,inp,reason", CASES, ids=[c[2].value + str(i) for i, c in enumerate(CASES)])
def test_each_invalid_reason(pool, program, inp, reason):
    v = validate(pool, program, inp)
    assert not v.ok
    assert v.reason is reason, v


def test_every_reason_is_covered():
    covered = {c[2] for c in CASES}
    # CRASHED needs a C-level crash, which the ban list (ctypes) keeps out of valid programs;
    # tests/test_sandbox_adversarial.py shows the sandbox reports it. TOO_LONG is the step's cap on a task's size
    # (azr.selfplay.cap_task_size), not the executor's, and COPIED the step's rule against copying the shown
    # references (azr.selfplay.reject_copies); tests/test_buffers.py covers both.
    assert covered | {InvalidReason.CRASHED, InvalidReason.TOO_LONG, InvalidReason.COPIED} == set(InvalidReason)


def test_identity_seed_is_valid(pool):
    v = validate(pool, SEED, "'Hello World'")
    assert v.ok and v.output == "'Hello World'"


def test_shadowed_builtin_name_is_fine(pool):
    assert validate(pool, "def f(input):\n    return input.upper()", "'a'").ok


def test_module_level_globals_and_allowed_imports_kept(pool):
    prog = "import math\nSCALE = 3\ndef f(x):\n    return math.floor(x * SCALE)"
    v = validate(pool, prog, "1.5")
    assert v.ok and v.output == "4"


def test_batch_matches_single(pool):
    tasks = [(c[0], c[1]) for c in CASES] + [(SEED, "'a'")]
    batch = validate_many(pool, tasks)
    assert [v.reason for v in batch] == [c[2] for c in CASES] + [None]


def test_parse_literal_and_args():
    assert parse_literal("[1, (2, 'a')]") == (True, [1, (2, "a")])
    assert not parse_literal("__import__('os')").ok
    assert not parse_literal(None).ok
    assert parse_args("(1, ), (1, ), (1, 2)").value == ((1,), (1,), (1, 2))
    assert parse_args("'Hello World'").value == ("Hello World",)
    assert parse_args("").value == ()
    assert not parse_args("1, x").ok
    assert not parse_args("a=1").ok
    assert not parse_args("1) or (2").ok


def test_check_deduction_by_value():
    assert check_deduction("[1, 2]", "[1,2]")
    assert check_deduction("1.0", "1")
    assert not check_deduction("[1, 2]", "[2, 1]")
    assert not check_deduction("not a literal", "1")


def test_check_abduction(pool):
    prog = "def f(a, b):\n    return a * b"
    items = [AbductionCheck(prog, "2, 3", "6"), AbductionCheck(prog, "3, 3", "6"),
             AbductionCheck(prog, "__import__('os').getpid(), 1", "6"), AbductionCheck(prog, None, "6")]
    assert check_abduction_many(pool, items) == [True, False, False, False]


def test_check_induction(pool):
    good = "def f(x):\n    return x * 2"
    wrong = "def f(x):\n    return x + 2"
    banned = "import os\ndef f(x):\n    return x * 2"
    ins, outs = ["1", "5", "'a'"], ["2", "10", "'aa'"]
    items = [InductionCheck(good, ins, outs), InductionCheck(wrong, ins, outs), InductionCheck(banned, ins, outs),
             InductionCheck(None, ins, outs), InductionCheck("def f(:", ins, outs), InductionCheck(good, [], [])]
    assert check_induction_many(pool, items) == [True, False, False, False, False, False]
