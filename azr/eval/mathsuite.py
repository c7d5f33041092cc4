"""Math word problems scored by answer equivalence (``--suite math``), for the paper's code → math transfer claim.

Rows are ``{"problem", "answer"}`` (MATH-500, AIME, AMC style), or ``{"question", "answer"}`` with a GSM8K
answer whose final value follows ``####``. ``solution`` (a worked solution with a ``\\boxed{}``) stands in for a
missing ``answer``, and OlympiadBench's ``final_answer`` list is accepted too. The item keeps the problem text in
``EvalItem.program`` and the gold final answer in ``EvalItem.output``. With no ``--data`` the suite runs on
``data/math_small.jsonl``, 40 short problems written for this project, so it works out of the box and in tests.

Both prompt styles ask for reasoning and a final ``\\boxed{}`` answer. Extraction is the last complete
``\\boxed{...}`` (or ``\\fbox``), nested braces handled, falling back to the last number; in the ``azr`` style the
``<answer>`` block is searched first when there is one. Scoring is answer equivalence by ``math-verify``
(sympy-based: ``1/2`` = ``0.5`` = ``\\frac{1}{2}``, ``x=3`` = ``3``, intervals, sets, matrices), never string
equality alone. It needs no sandbox, but parsing model text with sympy can hang or eat memory (comparing
``9^{9^{9^9}}`` with 5 ran past 20 s when tried, 40 nested parentheses take seconds), so :func:`is_equiv` caps the
answer length and sets a per-answer alarm, and :meth:`MathSuite.score` runs it in a worker process
(:class:`MathJudge`) under a memory cap, killing the worker when an answer outlives its time limit. Model text
is never passed to ``eval``: math-verify parses LaTeX with an ANTLR grammar, and the only plain expressions it
hands to sympy's parser are digits and arithmetic operators.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from azr import parsing, prompts
from azr.eval.suite import EvalDataError, EvalItem, PromptStyle
from azr.executor import SandboxPool
from azr.records import FormatError

SHIPPED_DATA = Path(__file__).resolve().parent / "data" / "math_small.jsonl"
"""The suite's default data: problems written for this project (real benchmark files are supplied by users)."""
MAX_ANSWER_CHARS = 400
"""Longer answers are compared as normalized strings only: sympy time grows fast with length, and real final
answers (a matrix, a set of intervals) stay well under this."""
ANSWER_TIMEOUT_S = 3.0
"""Parsing and comparing one answer gets this long; a typical answer takes a few milliseconds."""
JUDGE_GRACE_S = 2.0
"""How much longer than the time limit the judge waits before it kills its worker."""
JUDGE_MEMORY_BYTES = 4 << 30
"""Address-space cap of the judge's worker: a huge power fails with MemoryError instead of swapping the host."""

AZR_PROMPT = (
    "Solve the math problem. Reason step by step, then give the final answer in \\boxed{{}}.\n\n"
    "{example}\n\nNow this one:\nProblem: {problem}\n\n{format_line}"
)
AZR_EXAMPLE = prompts.solve_example("Problem: What is $2 + 3 \\times 4$?", "\\boxed{14}",
                                    "Multiplication first: 3 * 4 = 12, and 2 + 12 = 14.")
NATIVE_PROMPT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# A minus sign belongs to the number unless it follows a letter, digit or closing bracket (then it subtracts).
_NUMBER = re.compile(r"(?:(?<![\w)\]}])-)?(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?(?![\d])")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# Not after a backslash: in "1 \\ 2" (a matrix row break) the second backslash is not a spacing command.
_SPACING = re.compile(r"(?<!\\)(?:\\(?:left|right|displaystyle|textstyle|!|,|;|:)(?![A-Za-z])|\\ )")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_CURRENCY = re.compile(r"^\\?\$\s*(?=\d)")
_WHOLE_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_SPACE_NEAR_SYMBOL = re.compile(r"\s+(?=[^\w\\\s])|(?<=[^\w\s])\s+")
_WORDS = re.compile(r"[A-Za-z]{3,}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


# -- pure helpers ----------------------------------------------------------------------------

def _box_spans(text: str) -> list[tuple[int, int, int, int]]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}`` (and ``\\boxed 5``) in `text` as (start, content start,
    content end, end), in one pass with a stack of open boxes and a brace depth, so that a degenerate response
    of many unclosed boxes stays linear."""
    spans: list[tuple[int, int, int, int]] = []
    stack: list[tuple[int, int, int]] = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            m = _BOX.match(text, i)
            if m is None:
                i += 2  # an escaped character such as \{ neither opens nor closes a group
                continue
            j = m.end()
            while j < n and text[j] == " ":
                j += 1
            if j < n and text[j] == "{":
                stack.append((i, j + 1, depth))
                depth += 1
                i = j + 1
            elif j > m.end():
                k = j
                while k < n and not text[k].isspace() and text[k] != "$":
                    k += 1
                if k > j:
                    spans.append((i, j, k, k))
                i = k
            else:
                i = j
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if stack and stack[-1][2] == depth:
                start, content_start, _ = stack.pop()
                spans.append((start, content_start, i, i + 1))
        i += 1
    return spans


def extract_boxed(text: str) -> str | None:
    """The content of the last complete, non-empty ``\\boxed{...}`` or ``\\fbox{...}`` in `text` (the one that
    ends last, so ``\\boxed{x = \\boxed{3}}`` gives ``x = \\boxed{3}``), with wrappers like
    ``\\boxed{\\boxed{5}}`` peeled; None when there is none. A box cut off by the token limit does not count, and
    an empty ``\\boxed{}`` (an echo of the instructions) is skipped."""
    spans = [sp for sp in _box_spans(text) if text[sp[1]:sp[2]].strip()]
    if not spans:
        return None
    _, cs, ce, _ = max(spans, key=lambda sp: sp[3])
    content = text[cs:ce].strip()
    for _ in range(8):  # wrappers nested deeper than this are left for normalize() to strip
        whole = [sp for sp in _box_spans(content) if sp[0] == 0 and sp[3] == len(content)]
        if not whole or not content[whole[0][1]:whole[0][2]].strip():
            break
        content = content[whole[0][1]:whole[0][2]].strip()
    return content


def _unbox(text: str) -> str:
    """`text` with every box wrapper removed and its content kept (``a + \\boxed{b}`` → ``a + b``), in one pass."""
    drop = sorted((r for sp in _box_spans(text) for r in ((sp[0], sp[1]), (sp[2], sp[3]))), key=lambda r: r[0])
    out, pos = [], 0
    for lo, hi in drop:
        out.append(text[pos:lo])
        pos = hi
    out.append(text[pos:])
    return "".join(out)


def last_number(text: str) -> str | None:
    """The last number in `text` (integer, decimal, or a fraction like ``3/4``; a leading minus counts only when
    it cannot be a subtraction), with thousands separators dropped; None when there is none."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def normalize(answer: str) -> str:
    """A canonical spelling of a final answer, for cheap string equality and as math-verify's input: inner
    boxes, ``$``/``\\(``/``\\[`` delimiters, ``\\left``/``\\right``, spacing commands, degree signs, a leading
    currency sign and a trailing period dropped; ``\\dfrac``/``\\tfrac`` → ``\\frac``; an answer that is all
    ``\\text{...}`` unwrapped; ``1{,}000`` and ``1,000`` → ``1000``; whitespace removed next to symbols and
    collapsed elsewhere."""
    s = _unbox(answer).strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        inner = s[len(left):len(s) - len(right)]
        # "$3$, $4$" is two formulas, not one wrapped in dollars
        if s.startswith(left) and s.endswith(right) and not s.endswith("\\$") and "$" not in inner.replace("\\$", ""):
            s = inner.strip()
            break
    s = _SPACING.sub(" ", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    s = _DEGREES.sub("", s)
    s = _CURRENCY.sub("", s)
    whole = _WHOLE_TEXT.fullmatch(s.strip())
    if whole:
        s = whole.group(1)
    s = " ".join(s.split())
    s = _SPACE_NEAR_SYMBOL.sub("", s)
    s = s.rstrip(".").strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


class _AnswerTimeout(BaseException):
    """Raised by the alarm; a BaseException so that the ``except Exception`` inside sympy and math-verify
    cannot swallow it and go on to the next slow comparison."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _AnswerTimeout in the main thread after `seconds`. Off the main thread signals are not available and
    this does nothing (MathJudge's worker gives the hard limit). An outer alarm that is due sooner (pytest-timeout,
    an enclosing limit) is left alone; a later one is re-armed afterwards with what was left of it."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if 0 < outer_delay <= seconds:
        yield
        return

    armed = True

    def on_alarm(signum, frame):
        # An alarm that lands after the body finished must not break off the clean-up below.
        if armed:
            raise _AnswerTimeout

    t0 = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if outer_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - t0), 1e-3), outer_interval)


class _DropTimeoutNotice:
    """math-verify warns that its own timeout is off; here _deadline (and the judge's kill) provide it."""

    @staticmethod
    def filter(record) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


_NOTICE_FILTER = _DropTimeoutNotice()


def _math_verify():
    import logging

    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logger = logging.getLogger(name)
        if _NOTICE_FILTER not in logger.filters:
            logger.addFilter(_NOTICE_FILTER)
    return math_verify


def _parse(answer: str) -> list:
    parse = _math_verify().parse
    # Wrapped in a box because that is where the answer came from; parsing_timeout=None because math-verify's
    # own signal.alarm would cancel the enclosing _deadline (both use ITIMER_REAL).
    return parse(f"\\boxed{{{answer}}}", parsing_timeout=None)


def is_equiv(pred: str | None, gold: str, timeout_s: float = ANSWER_TIMEOUT_S) -> bool:
    """Is the answer `pred` mathematically equal to the gold answer `gold`? Normalized string equality first,
    then math-verify (parse both, then numeric, symbolic, set, interval and relation comparison). An empty or
    unparseable answer, one over MAX_ANSWER_CHARS that is not string-equal, and one that takes longer than
    `timeout_s` (main thread only; see :class:`MathJudge` for a hard limit) are not equal. Never raises."""
    if pred is None:
        return False
    p, g = normalize(pred), normalize(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    if len(p) > MAX_ANSWER_CHARS or len(g) > MAX_ANSWER_CHARS:
        return False
    verify = _math_verify().verify
    try:
        with _deadline(timeout_s):
            gold_parsed, pred_parsed = _parse(g), _parse(p)
            return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except (_AnswerTimeout, Exception):  # noqa: BLE001 - any failure to parse or compare means "not shown equal"
        return False


def gold_answer(row: dict) -> str | None:
    """The gold final answer of a data row: ``answer`` (the part after the last ``####`` for GSM8K), else
    OlympiadBench's ``final_answer`` list joined with commas, else the boxed answer of ``solution``."""
    answer = row.get("answer")
    if answer is None and row.get("final_answer") is not None:
        fa = row["final_answer"]
        answer = ", ".join(normalize(str(a)) for a in fa) if isinstance(fa, (list, tuple)) else fa
    if answer is None and isinstance(row.get("solution"), str):
        answer = extract_boxed(row["solution"])
    if answer is None:
        return None
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)  # AMC files store 142 as 142.0
    text = str(answer)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    text = text.strip()
    return text or None


def extract_answer(response: str, style: PromptStyle = "native") -> str | None:
    """The final answer in a model response. In the azr style the ``<answer>`` block is searched first when the
    response has one (a box inside it, else the block itself when it is short and has no words, such as
    ``x = 3``); then, in both styles, the last box in the whole response, then the last number."""
    if style == "azr":
        block = parsing.extract_answer(response)
        if not isinstance(block, FormatError):
            boxed = extract_boxed(block)
            if boxed is not None:
                return boxed
            bare = _LATEX_COMMAND.sub("", _WHOLE_TEXT.sub("", block))
            if len(block) <= 80 and not _WORDS.search(bare) and normalize(block):
                return block.strip()
            number = last_number(block)
            if number is not None:
                return number
    boxed = extract_boxed(response)
    return boxed if boxed is not None else last_number(response)


# -- the hard time limit: a worker process --------------------------------------------------

_REPLY = b"azr-judge:"


class MathJudge:
    """Runs :func:`is_equiv` in a worker process (started on first need) under a memory cap. The worker's alarm
    stops a slow answer after `timeout_s`; when an answer is stuck where an alarm cannot reach (a C-level bigint
    power) the worker is killed after `timeout_s` + JUDGE_GRACE_S, that answer is wrong, and a fresh worker takes
    the next one. Usable from any thread. Use as a context manager, or call close()."""

    def __init__(self, timeout_s: float = ANSWER_TIMEOUT_S, startup_s: float = 120.0):
        self.timeout_s = timeout_s
        self.startup_s = startup_s
        self.kills = 0
        """Workers killed because an answer ran past the limit (or lost while judging one)."""
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._stderr = None

    def __enter__(self) -> MathJudge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def equiv(self, pred: str | None, gold: str) -> bool:
        """As :func:`is_equiv`, with the hard limit. Cheap verdicts never start the worker."""
        if pred is None:
            return False
        p, g = normalize(pred), normalize(gold)
        if not p or not g or p == g or len(p) > MAX_ANSWER_CHARS or len(g) > MAX_ANSWER_CHARS:
            return bool(p) and p == g
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps([p, g]).encode() + b"\n")
            self._proc.stdin.flush()
            line = self._read_line(time.monotonic() + self.timeout_s + JUDGE_GRACE_S)
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            self.kills += 1
            self._kill()
            return False
        return line == b"1"

    def close(self) -> None:
        if self._proc is not None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _start(self) -> None:
        self._kill()
        if self._stderr is None:
            self._stderr = tempfile.TemporaryFile()
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        # A new session: Ctrl-C in the terminal reaches the parent, which then closes the worker's stdin.
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from azr.eval.mathsuite import serve; serve()", str(self.timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env, start_new_session=True)
        self._buf = b""
        if self._read_line(time.monotonic() + self.startup_s) != b"ready":
            self._kill()
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"the math answer judge did not start (is math-verify installed?): {tail}")

    def _read_line(self, deadline: float) -> bytes | None:
        """The payload of the worker's next reply line, or None at the deadline or when the worker is gone.
        Lines without the reply prefix (a library printing to stdout) are skipped."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.startswith(_REPLY):
                    return line[len(_REPLY):]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for fh in (self._proc.stdin, self._proc.stdout):
                if fh is not None:
                    try:
                        fh.close()
                    except OSError:
                        pass
            self._proc = None


def serve() -> None:
    """The judge's worker: one JSON ``[pred, gold]`` per stdin line, one ``azr-judge:1`` or ``azr-judge:0`` per
    stdout line, until stdin closes. Its argument is the per-answer time limit in seconds."""
    import logging
    import resource

    timeout_s = float(sys.argv[1]) if len(sys.argv) > 1 else ANSWER_TIMEOUT_S
    try:
        resource.setrlimit(resource.RLIMIT_AS, (JUDGE_MEMORY_BYTES, JUDGE_MEMORY_BYTES))
    except (ValueError, OSError):
        pass  # a lower hard limit is already in force
    # math-verify warns once that its own timeout is off (the worker sets the alarm) and on every failed parse.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    out = sys.stdout.buffer
    is_equiv("1", "1/1", timeout_s=60.0)  # warm up the parser before saying ready
    out.write(_REPLY + b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            pred, gold = json.loads(line)
            ok = is_equiv(str(pred), str(gold), timeout_s=timeout_s)
        except (ValueError, TypeError, MemoryError, RecursionError):
            ok = False
        out.write(_REPLY + (b"1\n" if ok else b"0\n"))
        out.flush()


# -- the suite -------------------------------------------------------------------------------

class MathSuite:
    name = "math"
    required_fields: tuple[str, ...] = ()
    """Checked per row in item(): the problem is ``problem`` or ``question``, the answer is ``answer``,
    ``final_answer`` or ``solution``."""
    max_new_tokens = 512
    data_format = ('one JSON object per line, {"problem", "answer"} (MATH-500, AIME, AMC), {"question", "answer" '
                   'ending in "#### value"} (GSM8K), a "solution" with a \\boxed{} answer, or OlympiadBench\'s '
                   '"final_answer" list')

    def default_data(self) -> str:
        return str(SHIPPED_DATA)

    def item(self, row: dict, index: int) -> EvalItem:
        problem = row.get("problem", row.get("question"))
        gold = gold_answer(row)
        if not isinstance(problem, str) or not problem.strip() or gold is None:
            raise EvalDataError(f"row {index + 1}: a math row needs problem (or question) and answer (or "
                                f"final_answer, or a solution with a \\boxed{{}} answer); it has {sorted(row)[:8]}")
        rid = next((row[k] for k in ("id", "unique_id", "task_id", "idx") if row.get(k) is not None), f"row_{index}")
        return EvalItem(id=str(rid), program=problem.strip(), output=gold)

    def prompt(self, item: EvalItem, style: PromptStyle) -> str:
        if style == "native":
            return NATIVE_PROMPT.format(problem=item.program)
        return AZR_PROMPT.format(example=AZR_EXAMPLE, problem=item.program, format_line=prompts.format_line(1))

    def extract(self, response: str, style: PromptStyle) -> str | None:
        return extract_answer(response, style)

    def score(self, pool: SandboxPool, items: Sequence[EvalItem], answers: Sequence[str | None]) -> list[bool]:
        # No sandbox: nothing is executed. The judge's worker process gives the time and memory limits.
        pairs = list(zip(items, answers, strict=True))
        with MathJudge() as judge:
            return [judge.equiv(a, it.output) for it, a in pairs]


MATH = MathSuite()
