"""What an evaluation suite is: a typed item record, the Suite protocol, and data loading.

A suite turns rows of a benchmark file into :class:`EvalItem` records, writes the prompt for
an item in one of two styles, pulls the answer out of a model response, and scores a batch of
answers by execution in the sandbox. It also says where its data is when the user names none
(``default_data``) and what a row looks like (``data_format``, quoted by every message about
missing or malformed data). ``azr.eval.SUITES`` maps a suite name to its object; the runner
never branches on the name.

Prompt styles:
  * ``native`` (the default): the benchmark's own style (assertion completion for CRUXEval,
    a fenced function for HumanEval, a boxed answer for math), the one published numbers use.
  * ``azr``: the answer format the solver learns in self-play (SPEC §2): a worked example,
    then ``<think>`` and ``<answer>`` tags. CRUXEval-O is a deduction task, CRUXEval-I an
    abduction task and synthesis is close to induction, so this measures what training trains.
Extraction accepts what the style asks for; for program synthesis a fenced code block is an
answer in either style, as the common harnesses score it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

from azr.executor import SandboxPool

PromptStyle = Literal["native", "azr"]
DEFAULT_STYLE: PromptStyle = "native"
"""External suites are scored in their own style by default, so a capable model gets the score its published
numbers describe; ``azr`` measures what self-play trains."""


class EvalDataError(ValueError):
    """A benchmark file is missing or malformed; the message names the file and what to fix."""


@dataclass(frozen=True)
class EvalItem:
    """One benchmark problem. CRUXEval uses program/input/output; synthesis uses
    program (the prompt: signature and docstring), test and entry_point; math uses program
    (the problem text) and output (the gold final answer)."""

    id: str
    program: str
    input: str = ""
    output: str = ""
    test: str = ""
    entry_point: str = ""


class Suite(Protocol):
    name: str
    """The name used on the command line and in metric keys (``eval/<name>/pass@1``)."""
    required_fields: tuple[str, ...]
    """Keys every data row must have."""
    max_new_tokens: int
    """Default response cap: answers are short for CRUXEval and longer for synthesis."""
    data_format: str
    """What a row of this suite's data looks like, quoted in every message about missing or malformed data."""

    def default_data(self) -> str | None:
        """The data used when the user names none (shipped with the package, or an environment override);
        None when the user must supply it."""
        ...

    def item(self, row: dict, index: int) -> EvalItem:
        """One data row as an item."""
        ...

    def prompt(self, item: EvalItem, style: PromptStyle) -> str:
        """The user message for `item`."""
        ...

    def extract(self, response: str, style: PromptStyle) -> str | None:
        """The answer text in a response, or None when the response has no usable answer."""
        ...

    def score(self, pool: SandboxPool, items: Sequence[EvalItem], answers: Sequence[str | None]) -> list[bool]:
        """Is each answer correct? One executor batch; a None answer is wrong and never runs."""
        ...


def read_rows(source: str | Path, expected: str = "") -> list[dict]:
    """Rows of a ``.jsonl`` or ``.jsonl.gz`` file, or of a Hugging Face dataset id (``org/name``
    or ``org/name:split``, which needs the ``datasets`` package and network). ``expected`` (what a
    row should look like) is added to the messages about missing or unreadable data."""
    hint = f"; expected {expected}" if expected else ""
    path = Path(source).expanduser()
    if path.exists():
        opener = gzip.open if path.suffix == ".gz" else open
        rows = []
        try:
            with opener(path, "rt", encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise EvalDataError(f"{path}:{n}: a row must be a JSON object, got {type(row).__name__}")
                        rows.append(row)
        except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
            raise EvalDataError(f"{path}: not a readable JSONL file ({e}){hint}") from None
        return rows
    if "/" in str(source) and not str(source).startswith((".", "/", "~")) and str(source).count("/") == 1:
        return _hf_rows(str(source), hint)
    raise EvalDataError(f"data not found: {source} (pass a .jsonl / .jsonl.gz path, or a Hugging Face dataset id)"
                        f"{hint}")


def _hf_rows(dataset_id: str, hint: str = "") -> list[dict]:
    name, _, split = dataset_id.partition(":")
    try:
        import datasets  # optional: pip install 'azr[eval]'
    except ImportError:
        raise EvalDataError(f"{dataset_id!r} is not a local file, and loading a Hugging Face dataset needs the "
                            f"`datasets` package: pip install 'azr[eval]'{hint}") from None
    try:
        ds = datasets.load_dataset(name, split=split or "test")
    except Exception as e:  # noqa: BLE001 - network, auth, unknown id: one readable message
        raise EvalDataError(f"could not load Hugging Face dataset {name!r} (split {split or 'test'}): {e}{hint}") from None
    return [dict(r) for r in ds]


def load_items(suite: Suite, source: str | Path, limit: int | None = None) -> list[EvalItem]:
    """The first `limit` items (all when None) of `source` for `suite`, checked for the suite's fields."""
    rows = read_rows(source, f"{suite.name} rows: {suite.data_format}")
    if limit is not None:
        rows = rows[:limit]
    items = []
    for i, row in enumerate(rows):
        missing = [k for k in suite.required_fields if k not in row]
        if missing:
            raise EvalDataError(f"{source}: row {i + 1} lacks {missing} needed by suite {suite.name} "
                                f"(it has {sorted(row)[:8]}; {suite.name} rows are {suite.data_format})")
        try:
            items.append(suite.item(row, i))
        except EvalDataError as e:  # a suite that checks rows itself names the row; the file is named here
            raise EvalDataError(f"{source}: {e}") from None
    if not items:
        raise EvalDataError(f"{source}: no rows; {suite.name} rows are {suite.data_format}")
    return items
