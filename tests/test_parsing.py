"""Parsing: a table of malformed, small-model-like responses gives the right typed error and
never raises; well-formed variants parse to the exact task; arbitrary text never raises."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azr import parsing
from azr.records import Candidate, FormatError, FormatErrorKind as K

ID = "def f(x):\n    return x"
PROG = "```python\ndef f(x):\n    return x\n```"
INP = "```input\n'Hello World'\n```"


def ans(*parts: str, think: str = "<think>Let me think.</think>\n") -> str:
    return think + "<answer>\n" + "\n".join(parts) + "\n</answer>"


def inputs_msg(inputs: list[str], message: str | None = "Returns x.") -> str:
    blocks = [f"```input\n{x}\n```" for x in inputs]
    if message is not None:
        blocks.append(f"```message\n{message}\n```")
    return ans(*blocks)


def proposal(r):
    return parsing.parse_program_input(r)


def induction3(r):
    return parsing.parse_inputs_message(r, ID, 3)


PARSE = {
    "proposal": proposal,
    "induction": induction3,
    "output": parsing.parse_output_answer,
    "input": parsing.parse_input_answer,
    "program": parsing.parse_program_answer,
}

MALFORMED = [
    # --- tags -------------------------------------------------------------------------------
    ("proposal", "def f(x):\n    return x * 2\n\nInput: 5", K.NO_ANSWER),
    ("proposal", "<think>I will write a function that doubles the numbers in a list and", K.UNTERMINATED_THINK),
    ("proposal", "<think>Let me think.</think>\nThe function is:\n" + PROG + "\n" + INP, K.NO_ANSWER),
    ("proposal", "<think>ok</think>\n<answer>\n" + PROG + "\n" + INP, K.UNTERMINATED_ANSWER),
    ("proposal", ans(PROG, INP) + "\n" + ans(PROG, INP, think=""), K.MULTIPLE_ANSWERS),
    ("proposal", "<answer></answer>", K.EMPTY_ANSWER),
    ("proposal", "<think>hmm</think><answer>  \n\n  </answer>", K.EMPTY_ANSWER),
    ("proposal", "<think>first</think> ok <think>second thought, maybe <answer>", K.UNTERMINATED_THINK),
    ("proposal", "<think>draft: <answer>" + PROG + INP + "</answer></think>", K.NO_ANSWER),
    ("proposal", "<answer>\n<answer>\n" + PROG + "\n" + INP + "\n</answer>", K.MULTIPLE_ANSWERS),
    ("proposal", "Sure! Here is my answer:\n</answer>", K.NO_ANSWER),
    ("output", "The output of f('Hello World') is 'Hello World'.", K.NO_ANSWER),
    ("output", "<think>f returns x so the answer is", K.UNTERMINATED_THINK),
    ("output", "<answer>'Hello World'", K.UNTERMINATED_ANSWER),
    ("output", "<answer>1</answer><answer>1</answer>", K.MULTIPLE_ANSWERS),
    # --- fences -----------------------------------------------------------------------------
    ("proposal", ans("```python\ndef f(x):\n    return x + 1"), K.UNTERMINATED_FENCE),
    # the program's fence is never closed, so the input's closing fence closes it: no input
    ("proposal", ans("```python\ndef f(x):\n    return x + 1\n", INP.replace("```input", "input:")), K.NO_INPUT),
    ("proposal", ans(PROG, "```input\n'Hello World'"), K.UNTERMINATED_FENCE),
    ("proposal", ans(INP), K.NO_PROGRAM),
    ("proposal", ans("def f(x): return x", "Input: 'a'"), K.NO_PROGRAM),
    ("proposal", ans("```\ndef f(x):\n    return x\n```", "```\n'a'\n```"), K.NO_PROGRAM),
    ("proposal", ans(PROG), K.NO_INPUT),
    ("proposal", ans(PROG, "Input: 'Hello World'"), K.NO_INPUT),
    ("proposal", ans(PROG, PROG, INP), K.MULTIPLE_PROGRAMS),
    ("proposal", ans("```python\n```", INP), K.EMPTY_PROGRAM),
    ("proposal", ans(PROG, INP, INP), K.MULTIPLE_INPUTS),
    # --- inputs -----------------------------------------------------------------------------
    ("proposal", ans(PROG, "```input\nx = 5\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\nHello World\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\n\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\nx=[1, 2]\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\n[1, 2\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\nf('Hello World')\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\na = [1, 2]; b = 3\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\nlambda x: x\n```"), K.BAD_INPUT),
    ("proposal", ans(PROG, "```input\n1) + (2\n```"), K.BAD_INPUT),
    # --- induction proposals (N = 3) -------------------------------------------------------
    ("induction", inputs_msg(["1", "2"]), K.WRONG_INPUT_COUNT),
    ("induction", inputs_msg(["1", "2", "3", "3"]), K.DUPLICATE_INPUTS),
    ("induction", inputs_msg([]), K.NO_INPUT),
    ("induction", ans("```input\n1\n2\n3\n```", "```message\nid\n```"), K.WRONG_INPUT_COUNT),
    ("induction", inputs_msg(["1", "2", "3"], None), K.NO_MESSAGE),
    ("induction", inputs_msg(["1", "2", "3"], "   "), K.NO_MESSAGE),
    ("induction", inputs_msg(["1", "2", "3"], None) + "", K.NO_MESSAGE),
    ("induction", ans(*[f"```input\n{x}\n```" for x in "123"], "Message: returns x"), K.NO_MESSAGE),
    ("induction", ans(*[f"```input\n{x}\n```" for x in "123"], "```message\na\n```", "```message\nb\n```"),
     K.MULTIPLE_MESSAGES),
    ("induction", inputs_msg(["1", "(1)", "3"]), K.DUPLICATE_INPUTS),
    ("induction", inputs_msg(["'a'", "'a'", "'b'"]), K.DUPLICATE_INPUTS),
    ("induction", inputs_msg(["1", "two", "3"]), K.BAD_INPUT),
    ("induction", inputs_msg(["1", "", "3"]), K.BAD_INPUT),
    ("induction", "<think>I need three inputs</think>", K.NO_ANSWER),
    ("induction", ans(*[f"```input\n{x}\n```" for x in "123"], "```message\nreturns x"), K.UNTERMINATED_FENCE),
    # --- solver answers ---------------------------------------------------------------------
    ("output", ans("```output\n1\n```", "```output\n2\n```"), K.MULTIPLE_BLOCKS),
    ("output", ans("```output\n```"), K.EMPTY_ANSWER),
    ("output", ans("```output\n'Hello World'"), K.UNTERMINATED_FENCE),
    ("input", "I think the input is 'Hello World'", K.NO_ANSWER),
    ("program", ans(PROG, PROG), K.MULTIPLE_PROGRAMS),
    ("program", ans("```python\ndef f(x):\n    return x"), K.UNTERMINATED_FENCE),
    ("program", ans("```python\n```"), K.EMPTY_PROGRAM),
    ("program", ans("```output\n5\n```"), K.NO_PROGRAM),
    ("program", "def f(x):\n    return x", K.NO_ANSWER),
]


# As in the reference, a solver answer that can be extracted is never a format error, however wrong
# it is: the checker judges it (−0.5 when wrong; tests/test_tasks.py scores these by execution).
EXTRACTED_BUT_NOT_LITERAL = [
    ("output", ans("The output is 'Hello World'"), "The output is 'Hello World'"),
    ("output", ans("f('Hello World') == 'Hello World'"), "f('Hello World') == 'Hello World'"),
    ("output", ans("x"), "x"),
    ("output", ans("'Hello' + ' World'"), "'Hello' + ' World'"),
    ("input", ans("x = 'Hello World'"), "x = 'Hello World'"),
    ("input", ans("f(x='Hello World')"), "x='Hello World'"),
    ("input", ans("'Hello World"), "'Hello World"),
    ("input", ans("The input is 'Hello World'"), "The input is 'Hello World'"),
]


@pytest.mark.parametrize("fn,response,text", EXTRACTED_BUT_NOT_LITERAL)
def test_extracted_solver_answers_are_not_format_errors(fn, response, text):
    assert PARSE[fn](response) == text


def test_table_is_large_enough():
    assert len(MALFORMED) >= 40


@pytest.mark.parametrize("fn,response,kind", MALFORMED, ids=[f"{i}-{k}" for i, (_, _, k) in enumerate(MALFORMED)])
def test_malformed_responses_give_the_right_format_error(fn, response, kind):
    got = PARSE[fn](response)
    assert isinstance(got, FormatError), got
    assert got.kind is kind, got


SEED = Candidate(ID, ("'Hello World'",))
WELL_FORMED_PROPOSALS = [
    ans(PROG, INP),
    "<answer>\n" + PROG + "\n" + INP + "\n</answer>",  # no <think>
    "<think>\nplan\n</think>\n\n  <ANSWER>\n\n" + PROG + "\n\n" + INP + "\n\n  </Answer>  \n",  # case, whitespace
    ans("```py\ndef f(x):\n    return x\n```", INP),
    ans("```Python3\ndef f(x):\n    return x\n```", "```Input\n  'Hello World'  \n```"),
    ans("  ```python\n  def f(x):\n      return x\n  ```", "  ```input\n  'Hello World'\n  ```"),  # indented
    ans("Here is the code:", PROG, "And the input:", INP, "```output\n'Hello World'\n```"),  # prose, extra block
    ans(PROG, "```input 'Hello World'```"),  # one-line fence
    ans("```python\ndef f(x):\n    return x```", INP),  # closing fence at line end
    ans("```\ndef f(x):\n    return x\n```", INP),  # a single unlabelled block is the program
    ans(PROG, INP) + "\nI hope this helps! <answer is above>",  # chatter after the answer
    "<think>draft <answer>```python\ndef f(y): pass\n```</answer></think>" + ans(PROG, INP, think=""),
    "</think>" + ans(PROG, INP, think=""),  # <think> pre-filled by the prompt
]


@pytest.mark.parametrize("response", WELL_FORMED_PROPOSALS)
def test_well_formed_proposals_parse_to_the_exact_task(response):
    assert parsing.parse_program_input(response) == SEED


def test_multi_argument_input_kept_as_text():
    got = parsing.parse_program_input(ans("```python\ndef f(a, b):\n    return a\n```", "```input\n(1, ), (1, 2)\n```"))
    assert got == Candidate("def f(a, b):\n    return a", ("(1, ), (1, 2)",))


def test_program_body_keeps_relative_indentation_and_comments():
    prog = "X = 3  # a global\n\ndef f(x):\n    '''doc'''\n    # why\n    return x * X"
    got = parsing.parse_program_input(ans(f"```python\n{prog}\n```", INP))
    assert got.program == prog


def test_strip_comments_switch_off_by_default_and_strips_when_on():
    prog = "def f(x):\n    '''Docstring.'''\n    # comment\n    return x  # trailing"
    r = ans(f"```python\n{prog}\n```", INP)
    assert parsing.parse_program_input(r).program == prog
    assert parsing.parse_program_input(r, strip_comments=True).program == "def f(x):\n    return x"
    only_doc = "def f(x):\n    '''Only a docstring.'''"
    assert parsing.strip_comments_and_docstrings(only_doc) == "def f(x):\n    pass"
    assert parsing.strip_comments_and_docstrings("def f(:") == "def f(:"


def test_induction_well_formed():
    r = inputs_msg(["'a'", "1, 2", "[1, 2]"], "  Returns the first argument.  ")
    expected = Candidate(ID, ("'a'", "1, 2", "[1, 2]"), "Returns the first argument.")
    assert parsing.parse_inputs_message(r, ID, 3) == expected
    # the model may repeat the program; it is ignored (the program is the sampled one)
    r2 = ans(PROG, *[f"```input\n{x}\n```" for x in ("1", "2", "3")], "```message\nid\n```")
    assert parsing.parse_inputs_message(r2, ID, 3) == Candidate(ID, ("1", "2", "3"), "id")
    # 1, 1.0 and True are different inputs
    r3 = inputs_msg(["1", "1.0", "True"])
    assert isinstance(parsing.parse_inputs_message(r3, ID, 3), Candidate)
    # more inputs than asked: the last N are kept (the reference's rule), and only they are checked
    r4 = inputs_msg(["x = 1", "1", "2", "3"])
    assert parsing.parse_inputs_message(r4, ID, 3) == Candidate(ID, ("1", "2", "3"), "Returns x.")


@pytest.mark.parametrize("response,expected", [
    (ans("'Hello World'"), "'Hello World'"),
    ("<answer>[1, 2, 3]</answer>", "[1, 2, 3]"),
    (ans("```output\n'Hello World'\n```"), "'Hello World'"),
    (ans("```\n{'a': (1, 2)}\n```"), "{'a': (1, 2)}"),
    (ans(" -3.5 "), "-3.5"),
])
def test_output_answers(response, expected):
    assert parsing.parse_output_answer(response) == expected


@pytest.mark.parametrize("response,expected", [
    (ans("'Hello World'"), "'Hello World'"),
    (ans("(1, ), (1, 2)"), "(1, ), (1, 2)"),
    (ans("f('Hello World')"), "'Hello World'"),
    (ans("f((1, 2), 'a')"), "(1, 2), 'a'"),
    (ans("```input\n1, 2\n```"), "1, 2"),
])
def test_input_answers(response, expected):
    assert parsing.parse_input_answer(response) == expected


@pytest.mark.parametrize("response,expected", [
    (ans(PROG), ID),
    (ans("```py\ndef f(a, b):\n    return a + b\n```"), "def f(a, b):\n    return a + b"),
    (ans("def f(x):\n    return x"), ID),  # no fence: the answer is the program
    (ans("Here it is:", PROG), ID),
])
def test_program_answers(response, expected):
    assert parsing.parse_program_answer(response) == expected


def test_extract_blocks():
    assert parsing.extract_blocks("a\n```x\n1\n```\nb\n```\n2\n```") == [("x", "1"), ("", "2")]
    assert parsing.extract_blocks("no fences") == []
    assert isinstance(parsing.extract_blocks("```x\n1"), FormatError)


ALL_PARSERS = [
    parsing.extract_answer,
    parsing.extract_blocks,
    parsing.parse_program_input,
    lambda r: parsing.parse_program_input(r, strip_comments=True),
    lambda r: parsing.parse_inputs_message(r, ID, 3),
    parsing.parse_output_answer,
    parsing.parse_input_answer,
    parsing.parse_program_answer,
    parsing.strip_comments_and_docstrings,
]

FRAGMENTS = st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "```", "```python\n", "```input\n", "```message\n", "\n",
    "def f(x):\n    return x\n", "'Hello World'", "(", ")", "[", "]", "f(", "1, 2", "\x00", "\u2028", "  ", "#",
    "'''", "(" * 200, "lambda", "x=1",
])
TEXTS = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=10)), max_size=30).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_parsers_never_raise(text):
    for fn in ALL_PARSERS:
        out = fn(text)
        assert isinstance(out, (str, list, Candidate, FormatError))


@pytest.mark.parametrize("text", [
    "<answer>" * 20000, "<think>" * 20000, "</think>" * 20000, "```\n" * 20000, "```python\n" * 20000,
    "<answer>" + "(" * 50000 + "</answer>", "<answer>" + "[1, " * 20000 + "</answer>", "x" * 1_000_000,
])
def test_degenerate_long_responses_parse_quickly(text):
    # A hang guard, not a speed figure: every parser is linear here (~0.15 s for all of them on the 160 kB inputs
    # on this 2-core host), while a backtracking regex would take minutes. The bound leaves room for a loaded
    # CI machine (a full suite beside a running evaluation once took over 2 s).
    import time

    start = time.perf_counter()
    for fn in ALL_PARSERS:
        fn(text)
    assert time.perf_counter() - start < 20.0
