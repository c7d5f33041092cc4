"""CRUXEval-O (predict the output) and CRUXEval-I (find an input), scored by execution.

Rows are ``{"code", "input", "output", "id"}``. The 800 rows of CRUXEval ship with the package
(``data/cruxeval.jsonl.gz``, MIT; license text and citation in ``data/CRUXEVAL_LICENSE.txt``);
``$AZR_CRUXEVAL`` or ``--data`` point at another copy.

In the native style (the default) the prompt asks for the completed assertion between ``[ANSWER]``
tags, as the CRUXEval paper's prompts do, and answers are taken as the reference scorer takes them: the
right side (O) or the ``f(...)`` call (I) of the assertion, or a bare literal (O) or a bare call (I). In
the ``azr`` style the prompts and answer parsing are exactly the deduction and abduction solver's, so
the eval measures the skill self-play trains. Scoring follows the reference scorer: an O answer is right
when its value ``==`` the gold output; an I answer is right when running ``f(answer)`` in the sandbox
gives a value ``==`` the gold output.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from azr.eval.suite import EvalItem, PromptStyle
from azr.executor import AbductionCheck, SandboxPool, check_abduction_many, parse_literal, values_equal
from azr.records import FormatError, Task, TaskType
from azr.tasks import TASK_TYPES

NATIVE_O = (
    "Complete the assertion with the exact output of the Python function `f` on the given input. "
    "Write the output as a Python literal, even if the function looks wrong.\n\n"
    "[PYTHON]\n{code}\nassert f({input}) == ??\n[/PYTHON]\n\n"
    "Reply with the completed assertion between [ANSWER] and [/ANSWER]."
)
NATIVE_I = (
    "Find an input for which the Python function `f` returns the given output, and complete the "
    "assertion with it. If several inputs work, give any one.\n\n"
    "[PYTHON]\n{code}\nassert f(??) == {output}\n[/PYTHON]\n\n"
    "Reply with the completed assertion between [ANSWER] and [/ANSWER]."
)
SHIPPED_DATA = Path(__file__).with_name("data") / "cruxeval.jsonl.gz"
DEV_SPLIT = Path(__file__).with_name("data") / "cruxeval_dev.txt"
"""The 200 CRUXEval ids that recipes are tuned on (``sorted(random.Random(16).sample(range(800), 200))``);
the other 600 are the ``test`` split, reported and never tuned on."""
SPLITS = ("all", "dev", "test")
DATA_ENV = "AZR_CRUXEVAL"
DATA_FORMAT = ('one JSON object per line, {"code": "def f(...): ...", "input": "<the call\'s arguments>", '
               '"output": "<repr of f(input)>", "id": "sample_N"} (CRUXEval\'s data/cruxeval.jsonl)')

_ANSWER_BLOCK = re.compile(r"\[ANSWER\](.*?)(?:\[/ANSWER\]|$)", re.DOTALL)


def _item(row: dict, index: int) -> EvalItem:
    return EvalItem(id=str(row.get("id", f"row_{index}")), program=row["code"], input=row["input"],
                    output=row["output"])


def _task(item: EvalItem, task_type: TaskType) -> Task:
    return Task(task_type, item.program, (item.input,), (item.output,))


def _default_data() -> str:
    """``$AZR_CRUXEVAL`` when set (even to a missing file: that is reported, not silently replaced), else the
    rows shipped with the package."""
    return os.environ.get(DATA_ENV) or str(SHIPPED_DATA)


@functools.cache
def dev_ids() -> frozenset[str]:
    """The ids of the dev split (``sample_N``), read once from the shipped list."""
    lines = DEV_SPLIT.read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def in_split(item_id: str, split: str) -> bool:
    """Whether a CRUXEval item belongs to ``split``: ``all``, ``dev`` (the 200 tuning items) or ``test`` (the
    other 600). Split membership is by id, so a report of any subset can be cut afterwards."""
    if split not in SPLITS:
        raise ValueError(f"unknown CRUXEval split {split!r}; choose from {', '.join(SPLITS)}")
    return split == "all" or (item_id in dev_ids()) == (split == "dev")


def _native_text(response: str) -> str:
    """What a native-style reply answers: the first [ANSWER] block (the reference stops generating at
    ``[/ANSWER]``), else the whole reply."""
    m = _ANSWER_BLOCK.search(response)
    return (m.group(1) if m else response).strip().strip("`").strip()


def _expression(line: str) -> ast.expr | None:
    """``line`` (without a leading ``assert``) as one Python expression, or None."""
    line = line.strip()
    if line.startswith("assert "):
        line = line[len("assert "):]
    try:
        return ast.parse(line, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _native_assertion(response: str) -> ast.Compare | None:
    """The last ``assert f(...) == X`` line of a native-style reply."""
    for line in reversed(_native_text(response).splitlines()):
        node = _expression(line)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            return node
    return None


def _calls_f(node: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "f" for n in ast.walk(node))


def native_output(response: str) -> str | None:
    """A CRUXEval-O answer in the native style: the right side of the completed assertion, or, as the reference
    scorer accepts (``assert gold == answer``), a bare literal as the whole answer. An answer that calls ``f``
    is no prediction (the reference rejects those too)."""
    node = _native_assertion(response)
    answer = node.comparators[0] if node is not None else None
    if answer is None and parse_literal(text := _native_text(response)).ok:
        answer = _expression(text)
    return ast.unparse(answer) if answer is not None and not _calls_f(answer) else None


def native_input(response: str) -> str | None:
    """A CRUXEval-I answer in the native style: the arguments of the ``f(...)`` call on the left of the completed
    assertion, or of a bare ``f(...)`` (the reference scorer runs ``assert gold == f(...)``); positional only."""
    node = _native_assertion(response)
    call = node.left if node is not None else _expression(_native_text(response))
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"
            and not call.keywords and call.args):
        return None
    return ", ".join(ast.unparse(a) for a in call.args)


NATIVE_FAILURES = ("unclosed", "no_assertion", "invalid")
"""Why a native-style reply yields no answer (`native_failure`), in the order reports list them."""


def native_failure(response: str) -> str:
    """Why a native-style reply that yields no answer failed: ``unclosed`` when it never closes an ``[ANSWER]``
    block (it ran out of tokens, often in prose or a repeated digit, or never answered in tags); ``no_assertion``
    when a closed block holds no ``assert ... == ...`` line (for CRUXEval-I that includes a bare input literal,
    the form the self-play abduction solver answers in); ``invalid`` when the block has an assertion whose answer
    the reference scorer rejects (an output that calls ``f``, a call of another function, keyword arguments)."""
    if "[/ANSWER]" not in response:
        return "unclosed"
    return "invalid" if _native_assertion(response) is not None else "no_assertion"


def _score_output(pool: SandboxPool, items: Sequence[EvalItem], answers: Sequence[str | None]) -> list[bool]:
    """CRUXEval-O: output answers are literals, so comparing values needs no execution."""
    return [a is not None and values_equal(a, it.output) for it, a in zip(items, answers, strict=True)]


def _score_input(pool: SandboxPool, items: Sequence[EvalItem], answers: Sequence[str | None]) -> list[bool]:
    """CRUXEval-I: the reference scorer executes f(answer); CRUXEval's own inputs include expressions such as
    'a' * 20, so argument expressions are allowed (still under the static ban list)."""
    checks = [AbductionCheck(it.program, a, it.output) for it, a in zip(items, answers, strict=True)]
    return check_abduction_many(pool, checks, literal_only=False)


@dataclass(frozen=True)
class CruxEval:
    """One CRUXEval suite: -O asks for the output (in the azr style, a deduction task), -I for an input (an
    abduction task). The two differ only in the fields below."""

    name: str
    task_type: TaskType
    """The self-play task type whose solver prompt and answer parsing the ``azr`` style uses."""
    native_template: str
    """The native prompt; ``{code}``, ``{input}`` and ``{output}`` are filled from the item."""
    native_answer: Callable[[str], str | None]
    """The answer in a native-style reply (``native_output`` / ``native_input``)."""
    scorer: Callable[[SandboxPool, Sequence[EvalItem], Sequence[str | None]], list[bool]]
    data_format: str = DATA_FORMAT
    required_fields: tuple[str, ...] = ("code", "input", "output")
    max_new_tokens: int = 192

    def default_data(self) -> str:
        return _default_data()

    def item(self, row: dict, index: int) -> EvalItem:
        return _item(row, index)

    def prompt(self, item: EvalItem, style: PromptStyle) -> str:
        if style == "native":
            return self.native_template.format(code=item.program, input=item.input, output=item.output)
        return TASK_TYPES[self.task_type].solve_prompt(_task(item, self.task_type))

    def extract(self, response: str, style: PromptStyle) -> str | None:
        if style == "native":
            return self.native_answer(response)
        answer = TASK_TYPES[self.task_type].parse_answer(response)
        return None if isinstance(answer, FormatError) else answer

    def score(self, pool: SandboxPool, items: Sequence[EvalItem], answers: Sequence[str | None]) -> list[bool]:
        return self.scorer(pool, items, answers)


CRUXEVAL_O = CruxEval("cruxeval-o", TaskType.DEDUCTION, NATIVE_O, native_output, _score_output)
CRUXEVAL_I = CruxEval("cruxeval-i", TaskType.ABDUCTION, NATIVE_I, native_input, _score_input)
