"""Pure parsing of model responses into candidates and answers (SPEC §2).

Every function here takes arbitrary text and returns either a value or a typed
:class:`~azr.records.FormatError`; none of them raises on model output.

Format rules (what is tolerated, and what is not):
  * Reasoning goes in ``<think>…</think>``. A missing ``<think>`` block is tolerated: the
    policy layer may pre-fill ``<think>`` in the generation prompt, and the weak embedded
    model often skips it; what we grade is the answer. An *unterminated* ``<think>`` is an
    error, because the answer would then sit inside the reasoning. Only the text after the
    last ``</think>`` is searched for the answer, so drafts inside the reasoning are ignored.
  * Exactly one ``<answer>…</answer>`` must follow, with a closing tag (a missing one means
    the response was cut off or stopped early; the policy layer must keep stop strings in
    the text). Tags are case-insensitive; text after ``</answer>`` is ignored.
  * Inside the answer, fenced blocks are ``` ``` ```lang`` … ``` ``` ``` ``. Fences may be
    indented or written on one line (```` ```input 'a'``` ````). Language tags are
    case-insensitive; ``python``, ``py``, ``python3`` and ``py3`` all mean Python. Unknown
    blocks (e.g. ``output``) and prose between blocks are ignored. An opened but never
    closed fence is an error.
  * Proposals (deduction/abduction): exactly one program block (a ``python`` block, or a
    single unlabelled block when there is none) and exactly one non-empty ``input`` block
    holding a literal argument list. Induction proposals: exactly N distinct literal
    ``input`` blocks and exactly one non-empty ``message`` block.
  * Solver answers: deduction, the output; abduction, the argument list (``f(...)`` around
    it is tolerated); induction, a program (fenced, or the bare answer text when it has no
    fence). As in the reference, a solver answer is a format error only when none can be
    extracted; whether it is a literal, parses or runs is the checker's business (a wrong
    answer, −0.5, not a format error).
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import NamedTuple

from azr.executor import parse_args, parse_literal
from azr.records import Candidate, FormatError, FormatErrorKind

PYTHON_LANGS = frozenset({"python", "py", "python3", "py3"})
INPUT_LANG = "input"
MESSAGE_LANG = "message"

# ast can fail on hostile text in more ways than SyntaxError (null bytes, deep nesting).
_AST_ERRORS = (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, OverflowError)

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*([A-Za-z][\w+.-]*)?[ \t]*(.*)$")
_FENCE = "```"


class Block(NamedTuple):
    """A fenced block: its language tag (lower case, "" when none) and its dedented body."""

    lang: str
    body: str


def extract_answer(response: str) -> str | FormatError:
    """The stripped text between the one ``<answer>`` and its ``</answer>`` after the reasoning."""
    # Tag searches only, no `<answer>(.*?)</answer>` regex: that one is quadratic on a
    # degenerate response repeating "<answer>", and responses can be long.
    text = response if isinstance(response, str) else ""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    if _THINK_OPEN.search(text):
        return FormatError(FormatErrorKind.UNTERMINATED_THINK, "<think> is never closed by </think>")
    opens = list(_ANSWER_OPEN.finditer(text))
    if not opens:
        return FormatError(FormatErrorKind.NO_ANSWER, "no <answer> after the reasoning")
    if len(opens) > 1:
        return FormatError(FormatErrorKind.MULTIPLE_ANSWERS, f"{len(opens)} <answer> tags")
    close = _ANSWER_CLOSE.search(text, opens[0].end())
    if close is None:
        return FormatError(FormatErrorKind.UNTERMINATED_ANSWER, "<answer> is never closed by </answer>")
    answer = text[opens[0].end(): close.start()].strip()
    if not answer:
        return FormatError(FormatErrorKind.EMPTY_ANSWER, "<answer></answer> is empty")
    return answer


def extract_blocks(text: str) -> list[Block] | FormatError:
    """All fenced blocks of `text`, in order. Prose outside blocks is dropped."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        lang, rest = (m.group(1) or "").lower(), m.group(2)
        if rest.rstrip().endswith(_FENCE):  # one-line block: ```input 'a'```
            blocks.append(Block(lang, rest.rstrip()[: -len(_FENCE)].strip()))
            i += 1
            continue
        body = [rest] if rest.strip() else []
        j = i + 1
        while j < len(lines) and not lines[j].rstrip().endswith(_FENCE):
            body.append(lines[j])
            j += 1
        if j == len(lines):
            return FormatError(FormatErrorKind.UNTERMINATED_FENCE, f"```{lang} block is never closed")
        last = lines[j].rstrip()[: -len(_FENCE)]
        if last.strip():
            body.append(last)
        blocks.append(Block(lang, textwrap.dedent("\n".join(body)).strip("\n").rstrip()))
        i = j + 1
    return blocks


def _answer_blocks(response: str) -> tuple[str, list[Block]] | FormatError:
    answer = extract_answer(response)
    if isinstance(answer, FormatError):
        return answer
    blocks = extract_blocks(answer)
    if isinstance(blocks, FormatError):
        return blocks
    return answer, blocks


def _program_block(blocks: list[Block]) -> str | FormatError:
    programs = [b for b in blocks if b.lang in PYTHON_LANGS]
    if not programs:
        unlabelled = [b for b in blocks if b.lang == ""]
        programs = unlabelled if len(unlabelled) == 1 else []
    if not programs:
        return FormatError(FormatErrorKind.NO_PROGRAM, "no ```python block")
    if len(programs) > 1:
        return FormatError(FormatErrorKind.MULTIPLE_PROGRAMS, f"{len(programs)} ```python blocks")
    if not programs[0].body.strip():
        return FormatError(FormatErrorKind.EMPTY_PROGRAM, "the ```python block is empty")
    return programs[0].body


def _check_input(text: str, what: str = "input") -> FormatError | None:
    if not text.strip():
        return FormatError(FormatErrorKind.BAD_INPUT, f"{what} is empty")
    if not parse_args(text).ok:
        return FormatError(FormatErrorKind.BAD_INPUT, f"{what} is not a literal argument list: {text[:200]!r}")
    return None


def strip_comments_and_docstrings(program: str) -> str:
    """The program without comments and docstrings (SPEC §2's switch, off by default).

    Round-trips through ``ast.unparse``, which drops comments and normalises layout; a program
    that does not parse is returned unchanged (validation will reject it).
    """
    try:
        tree = ast.parse(program)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
        return ast.unparse(tree)
    except _AST_ERRORS:
        return program


def parse_program_input(response: str, strip_comments: bool = False) -> Candidate | FormatError:
    """A deduction/abduction proposal: one ```python program and one ```input argument list."""
    parsed = _answer_blocks(response)
    if isinstance(parsed, FormatError):
        return parsed
    _, blocks = parsed
    program = _program_block(blocks)
    if isinstance(program, FormatError):
        return program
    inputs = [b.body for b in blocks if b.lang == INPUT_LANG]
    if not inputs:
        return FormatError(FormatErrorKind.NO_INPUT, "no ```input block")
    if len(inputs) > 1:
        return FormatError(FormatErrorKind.MULTIPLE_INPUTS, f"{len(inputs)} ```input blocks")
    bad = _check_input(inputs[0])
    if bad:
        return bad
    if strip_comments:
        program = strip_comments_and_docstrings(program)
    return Candidate(program=program, inputs=(inputs[0].strip(),))


def parse_inputs_message(response: str, program: str, n_inputs: int) -> Candidate | FormatError:
    """An induction proposal for `program`: at least `n_inputs` literal ```input blocks, of which the last
    `n_inputs` are kept and must be distinct, and one non-empty ```message block.

    Extra blocks are dropped rather than rejected, as the reference's parser does (it takes the last N and
    fails only on fewer): a 0.5B proposer often miscounts, and the surplus costs the task nothing."""
    parsed = _answer_blocks(response)
    if isinstance(parsed, FormatError):
        return parsed
    _, blocks = parsed
    inputs = [b.body.strip() for b in blocks if b.lang == INPUT_LANG]
    if len(inputs) < n_inputs:
        kind = FormatErrorKind.NO_INPUT if not inputs else FormatErrorKind.WRONG_INPUT_COUNT
        return FormatError(kind, f"{len(inputs)} ```input blocks, expected {n_inputs}")
    inputs = inputs[len(inputs) - n_inputs:]
    seen: dict[str, int] = {}
    for k, text in enumerate(inputs):
        bad = _check_input(text, f"input {k + 1}")
        if bad:
            return bad
        # Compare parsed values, not texts: "1" and "(1)" are the same call. repr keeps
        # 1, 1.0 and True apart, which `==` would not.
        canon = repr(parse_args(text).value)
        if canon in seen:
            return FormatError(FormatErrorKind.DUPLICATE_INPUTS, f"inputs {seen[canon] + 1} and {k + 1} are equal")
        seen[canon] = k
    messages = [b.body.strip() for b in blocks if b.lang == MESSAGE_LANG]
    if len(messages) > 1:
        return FormatError(FormatErrorKind.MULTIPLE_MESSAGES, f"{len(messages)} ```message blocks")
    if not messages or not messages[0]:
        return FormatError(FormatErrorKind.NO_MESSAGE, "no non-empty ```message block")
    return Candidate(program=program, inputs=tuple(inputs), message=messages[0])


def _single_value_text(response: str) -> str | FormatError:
    """The answer text, unwrapped from a single fenced block if the model used one."""
    parsed = _answer_blocks(response)
    if isinstance(parsed, FormatError):
        return parsed
    answer, blocks = parsed
    if len(blocks) > 1:
        return FormatError(FormatErrorKind.MULTIPLE_BLOCKS, f"{len(blocks)} fenced blocks in the answer")
    text = blocks[0].body.strip() if blocks else answer
    if not text:
        return FormatError(FormatErrorKind.EMPTY_ANSWER, "the answer's block is empty")
    return text


def parse_output_answer(response: str) -> str | FormatError:
    """A deduction answer: the predicted output as text. As in the reference, only a missing
    answer is a format error; a non-literal is returned as is and judged by the checker (an
    expression that evaluates to the gold output is right, anything else wrong)."""
    return _single_value_text(response)


def parse_input_answer(response: str) -> str | FormatError:
    """An abduction answer: the argument list as text (``"(1, ), (1, 2)"`` is two arguments). A
    call ``f(...)`` around it is unwrapped: small models often write the call. Only a missing
    answer is a format error; whether the arguments run (expressions and keyword arguments
    included) is the checker's business, by execution."""
    text = _single_value_text(response)
    if isinstance(text, FormatError):
        return text
    return _unwrap_call(text)


def _unwrap_call(text: str) -> str:
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except _AST_ERRORS:
        return text
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f":
        s = text.strip()
        return s[s.index("(") + 1: s.rindex(")")].strip()
    return text


def parse_program_answer(response: str) -> str | FormatError:
    """An induction answer: the program, from its one ```python block, or the whole answer
    when it has no fenced block."""
    parsed = _answer_blocks(response)
    if isinstance(parsed, FormatError):
        return parsed
    answer, blocks = parsed
    if not blocks:
        return answer
    return _program_block(blocks)
