"""All prompt text of self-play, as module constants (SPEC §2).

Prompts are the *user message*; the policy layer applies the model's chat template. They ask
for ``<think>…</think>`` then ``<answer>…</answer>``, and they show that format by example:
small models only follow it when they see it (SPEC §6). Deduction and abduction propose prompts show
the K references as complete example answers, with their output in the example's header; the
induction propose prompt shows one fixed format example (``azr.tasks.induction.format_example``). Solve prompts carry one worked example, `f(a, b) = a + 2 * b`, whose
numbers are drawn from the task shown (same task, same prompt): a fixed one is an attractor. With
a fixed input `1, 3`, the untrained Qwen-0.5B answered `1, 3` on 53 of the 200 CRUXEval-I dev
items and after 10 self-play steps on 105 (a well-formed wrong answer, -0.5, beats a format error,
-1, within a group). A form with placeholders instead was copied too ("the output of f") and
halved CRUXEval-O (docs/RESULTS.md, "How the cpu recipe was chosen"). The proposer is told
every rule validation enforces, the banned names read from validation's own lists.

Every program, input, output and message is rendered by the same ``render_*`` functions in
every prompt, so a reference looks exactly like the answer it asks for. Prompts are kept short:
on CPU every prompt token costs time.
"""

from __future__ import annotations

import random
import zlib
from typing import Sequence

from azr.executor.bans import BANNED_ATTRIBUTES, BANNED_MODULES, BANNED_NAMES

FENCE = "```"

PROGRAM_BLOCK = FENCE + "python\n{}\n" + FENCE
INPUT_BLOCK = FENCE + "input\n{}\n" + FENCE
OUTPUT_BLOCK = FENCE + "output\n{}\n" + FENCE
MESSAGE_BLOCK = FENCE + "message\n{}\n" + FENCE
ANSWER = "<answer>\n{}\n</answer>"
EXAMPLE_HEADER = "Example {}:"
EXAMPLE_WITH_OUTPUT_HEADER = "Example {} (f returns {}):"

FORMAT_LINE = (
    "First think inside <think> </think>, then give your answer inside <answer> </answer>, "
    "exactly as in the example{s}."
)

# Every rule validation enforces (azr/executor/validate.py), stated to the proposer; the banned
# names come from the one list validation uses, so the two cannot drift apart.
RULES = (
    "Rules (a task that breaks one is rejected):\n"
    "- Define exactly one top-level function, `f`; helper functions go inside `f`, imports at the top. "
    "Give `f` at least one parameter and make it return a value.\n"
    "- Deterministic: the same input always gives the same output. No randomness, dates or times, printing, "
    "files, network, or anything that depends on object ids or on the order of a set of strings.\n"
    "- Do not use the modules " + ", ".join(sorted(BANNED_MODULES)) + "; the names "
    + ", ".join(sorted(BANNED_NAMES)) + "; or the attributes " + ", ".join(sorted(BANNED_ATTRIBUTES)) + ".\n"
    "- It must finish in a few seconds, and its output must be a Python literal (numbers, strings, lists, "
    "tuples, dicts, sets, booleans, None).\n"
    "- The input is the arguments of `f`: Python literals separated by commas, strings quoted. Do not write "
    "the input into the code."
)

CRITERIA = (
    "A good task runs, is hard (it needs several steps of reasoning: loops, data structures, recursion, "
    "string or arithmetic manipulation) and is different from the examples. Plan it, then write it."
)

DEDUCTION_PROPOSE = (
    "Write a new Python function `f` and an input for it. The puzzle: predict the output of `f` "
    "from its code and the input. {criteria}\n"
    "{rules}\n\n{examples}\n\nNow write a new one. {format_line}"
)

ABDUCTION_PROPOSE = (
    "Write a new Python function `f` and an input for it. The puzzle: from the code of `f` and "
    "its output, find an input that produces it. {criteria}\n"
    "{rules}\n\n{examples}\n\nNow write a new one. {format_line}"
)

INDUCTION_PROPOSE = (
    "Write at least {n} different inputs for the function `f` below, and a message that says what `f` does. "
    "The puzzle: from the message and half of the inputs with their outputs, write `f`. "
    "Each input is the arguments of `f` (Python literals separated by commas) in its own input block. "
    "Good inputs cover what `f` can take and give varied outputs; a good message helps without giving "
    "the code away. The example shows the format, for another function: write inputs and a message for this `f`.\n\n"
    "{examples}\n\nNow this one:\n{task}\n\n{format_line}"
)
INDUCTION_PROGRAM_AND_CALL = "{program}\nA call that runs: {call}"

DEDUCTION_SOLVE = (
    "Predict the output of the function `f` for the input. Answer with the output as a Python literal.\n\n"
    "{example}\n\nNow this one:\n{task}\n\n{format_line}"
)

ABDUCTION_SOLVE = (
    "Find an input of the function `f` that produces the output. Answer with the input: "
    "the arguments of `f` as Python literals separated by commas.\n\n"
    "{example}\n\nNow this one:\n{task}\n\n{format_line}"
)

INDUCTION_SOLVE = (
    "Write the Python function `f` described by the message that maps each input to its output. "
    "Answer with the code of `f`.\n\n"
    "{example}\n\nNow this one:\n{task}\n\n{format_line}"
)

# The worked example of the solve prompts: small, multi-argument (so the abduction answer shows a
# comma-separated argument list), not the identity seed; its numbers come from `example_pairs`.
SOLVE_EXAMPLE_PROGRAM = "def f(a, b):\n    return a + 2 * b"
SOLVE_EXAMPLE_MESSAGE = "Add a and twice b."


def render_program(program: str) -> str:
    return PROGRAM_BLOCK.format(program)


def render_input(inp: str) -> str:
    return INPUT_BLOCK.format(inp)


def render_call(inp: str) -> str:
    """`inp`, an argument list, as one inline call of `f`."""
    return f"`f({inp})`"


def render_output(out: str) -> str:
    return OUTPUT_BLOCK.format(out)


def render_message(message: str) -> str:
    return MESSAGE_BLOCK.format(message)


def render_answer(body: str, think: str | None = None) -> str:
    answer = ANSWER.format(body)
    return f"<think>{think}</think>\n{answer}" if think is not None else answer


def render_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{render_input(i)}\n{render_output(o)}" for i, o in pairs)


def render_examples(examples: Sequence[str], outputs: Sequence[str] | None = None) -> str:
    """Numbered examples; with `outputs`, each header also says what f returns (the references of
    deduction and abduction prompts are program + input + output, as in the paper)."""
    heads = ([EXAMPLE_WITH_OUTPUT_HEADER.format(k + 1, o) for k, o in enumerate(outputs)] if outputs is not None
             else [EXAMPLE_HEADER.format(k + 1) for k in range(len(examples))])
    return "\n\n".join(f"{h}\n{e}" for h, e in zip(heads, examples, strict=True))


def format_line(n_examples: int) -> str:
    return FORMAT_LINE.format(s="s" if n_examples != 1 else "")


def solve_example(task: str, answer_body: str, think: str) -> str:
    return f"{EXAMPLE_HEADER.format(1)}\n{task}\n{render_answer(answer_body, think)}"


def example_pairs(shown: str) -> list[tuple[int, int]]:
    """Three (a, b) for the solve prompts' worked example `f(a, b) = a + 2 * b`, drawn from a hash of `shown`
    (the task's own text): prompts stay deterministic, but no example answer is the same for every task, so
    copying it is no strategy (a fixed example's answer became the solver's answer to everything, issue 16)."""
    rng = random.Random(zlib.crc32(shown.encode()))
    return [(rng.randint(-9, 9), rng.randint(0, 9)) for _ in range(3)]
