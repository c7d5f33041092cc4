"""The math suite: answer equivalence (a table of true and false pairs), extraction from messy model output,
row formats (MATH-style, GSM8K, solutions), the shipped set, the judge's time limit and worker restarts, scoring
through the runner with pass@k, and `azr eval --suite math` end to end on the tiny model."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from azr.eval import SUITES, EvalDataError, EvalItem, load_items
from azr.eval.mathsuite import (MATH, SHIPPED_DATA, MathJudge, extract_answer, extract_boxed, gold_answer, is_equiv,
                                last_number, normalize)
from azr.eval.runner import compare, evaluate_suite, read_report, resolve_data

# (prediction, gold, equal?)
EQUIVALENCE = [
    # the examples
    ("1/2", "0.5", True),
    ("0.5", "1/2", True),
    ("\\frac{1}{2}", "0.5", True),
    ("1/2", "\\frac{1}{2}", True),
    ("\\frac12", "1/2", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("x=3", "3", True),
    ("3", "x=3", True),
    ("x = 3", "x=3", True),
    ("(1, 2]", "(1,2]", True),
    ("\\left(1, 2\\right]", "(1, 2]", True),
    ("[1,2)", "(1,2]", False),
    ("(1,2)", "[1,2]", False),
    ("(4, \\infty)", "(4,\\infty)", True),
    ("[2, \\infty)", "(2, \\infty)", False),
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", True),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt{2}", "\\frac{\\sqrt2}{2}", False),
    # numbers
    ("42", "42", True),
    ("42.0", "42", True),
    ("1,000", "1000", True),
    ("1{,}000", "1000", True),
    ("\\$30", "30", True),
    ("0.75", "\\frac{3}{4}", True),
    ("-27", "-27", True),
    ("27", "-27", False),
    ("2", "3", False),
    ("0.333", "\\frac{1}{3}", False),
    ("0.06", "\\frac{3}{50}", True),
    ("720^\\circ", "720", True),
    ("\\boxed{14}", "14", True),
    # expressions and symbols
    ("6\\sqrt{2}", "\\sqrt{72}", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("6\\sqrt{3}", "6\\sqrt{2}", False),
    ("9\\pi", "9 \\pi", True),
    ("3\\pi", "9\\pi", False),
    ("x^2 - x - 6", "(x+2)(x-3)", True),
    ("x^2 + x - 6", "x^2 - x - 6", False),
    ("y=3", "x=3", False),
    ("x=4", "x=3", False),
    # tuples, sets, matrices, text
    ("(7, 3)", "(7,3)", True),
    ("(3, 7)", "(7, 3)", False),
    ("2, 3", "3, 2", True),
    ("\\{1, 2\\}", "\\{2, 1\\}", True),
    ("2, 4", "2, 3", False),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
    ("\\text{Monday}", "Monday", True),
    # no answer at all
    ("", "3", False),
    (None, "3", False),
    ("\\text{I don't know}", "3", False),
]


@pytest.mark.parametrize("pred,gold,want", EQUIVALENCE, ids=[f"{p!r}~{g!r}" for p, g, _ in EQUIVALENCE])
def test_answer_equivalence_table(pred, gold, want):
    assert is_equiv(pred, gold) is want


def test_equivalence_table_is_large_and_balanced():
    assert len(EQUIVALENCE) >= 40
    assert sum(w for *_, w in EQUIVALENCE) >= 15 and sum(not w for *_, w in EQUIVALENCE) >= 15


@pytest.mark.parametrize("answer,want", [
    ("\\left( 1, 2 \\right]", "(1,2]"),
    ("x = \\boxed{3}", "x=3"),
    ("$\\dfrac{1}{2}$", "\\frac{1}{2}"),
    ("\\(x=2\\)", "x=2"),
    ("90^{\\circ}", "90"),
    ("\\text{Monday}", "Monday"),
    ("\\$1{,}000.", "1000"),
    ("  5 \\, \\text{cm}  ", "5 \\text{cm}"),
    ("\\sqrt 2", "\\sqrt 2"),
])
def test_normalize(answer, want):
    assert normalize(answer) == want


# -- extraction from messy output -------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{1} first, but then \\boxed{2}", "2"),
    ("\\boxed{\\boxed{5}}", "5"),
    ("\\boxed{x = \\boxed{3}}", "x = \\boxed{3}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{\\left( \\frac{1}{2}, \\sqrt{3} \\right)}", "\\left( \\frac{1}{2}, \\sqrt{3} \\right)"),
    ("\\fbox{7}", "7"),
    ("$\\boxed 9$ it is", "9"),
    ("the final answer is \\boxed{3} and then \\boxed{4", "3"),    # the last box was cut off
    ("put the answer in \\boxed{} ... \\boxed{12}\n\\boxed{}", "12"),  # empty boxes echo the instructions
    ("no box here: 12 and 13.", None),
    ("\\boxed{", None),
    ("", None),
])
def test_extract_boxed(text, want):
    assert extract_boxed(text) == want


@pytest.mark.parametrize("text,want", [
    ("first 12, then 13.", "13"),
    ("The total is 1,234.5 dollars", "1234.5"),
    ("x - 5 = 2 - 7, so x = -7", "-7"),
    ("3/4 of the cake", "3/4"),
    ("a_2 and x2 are not numbers, (-8) is", "-8"),
    ("no digits at all", None),
])
def test_last_number(text, want):
    assert last_number(text) == want


@pytest.mark.parametrize("response,style,want", [
    # azr style: the <answer> block first
    ("<think>3 * 4 = 12, 2 + 12 = 14</think>\n<answer>\\boxed{14}</answer>", "azr", "14"),
    ("<think>try \\boxed{13}</think>\n<answer>\\boxed{14}</answer>", "azr", "14"),
    ("<think>1/2 + 1/3</think>\n<answer>\\frac{5}{6}</answer>", "azr", "\\frac{5}{6}"),
    ("<think>solve</think>\n<answer>x = 5</answer>", "azr", "x = 5"),
    ("<think>count</think>\n<answer>The answer is 26 apples.</answer>", "azr", "26"),
    # no usable block: fall back to the whole response
    ("I think it is \\boxed{42} <answer>", "azr", "42"),
    ("<answer></answer> it is 7", "azr", "7"),
    # native style
    ("We have $\\frac{\\sqrt{2}}{2}$, so $\\boxed{\\frac{\\sqrt{2}}{2}}$.", "native", "\\frac{\\sqrt{2}}{2}"),
    ("Step 1: 60 * 2.5 = 150. So the train goes 150 miles.", "native", "150"),
    ("\\[\\boxed{\\text{(C)}}\\]\n\n**Final answer**", "native", "\\text{(C)}"),
    ("I cannot solve this.", "native", None),
])
def test_extract_answer_from_messy_responses(response, style, want):
    assert extract_answer(response, style) == want
    assert MATH.extract(response, style) == want


def test_extraction_is_linear_on_a_degenerate_response():
    text = "\\boxed{" * 20_000 + "1"
    t0 = time.perf_counter()
    assert extract_boxed(text) is None and extract_answer(text, "native") == "1"
    assert time.perf_counter() - t0 < 2.0


# -- rows and data ----------------------------------------------------------------------------

def test_gsm8k_rows_load_with_the_value_after_hashes(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    rows = [
        {"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?",
         "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72 clips.\n#### 72"},
        {"question": "A big number?", "answer": "It is 1,000 + 200.\n#### 1,200"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_items(MATH, path)
    assert [it.output for it in items] == ["72", "1,200"] and [it.id for it in items] == ["row_0", "row_1"]
    assert items[0].program.startswith("Natalia") and "Natalia" in MATH.prompt(items[0], "native")
    assert is_equiv("1200", items[1].output)


@pytest.mark.parametrize("row,want", [
    ({"problem": "p", "answer": "\\frac{1}{2}"}, "\\frac{1}{2}"),
    ({"problem": "p", "answer": 142.0}, "142"),                       # AMC files store numbers as floats
    ({"problem": "p", "answer": 3}, "3"),
    ({"question": "p", "final_answer": ["$3$", "$4$"]}, "3, 4"),  # OlympiadBench
    ({"problem": "p", "solution": "So $x = \\boxed{\\frac{3}{4}}$."}, "\\frac{3}{4}"),
    ({"problem": "p", "answer": "  ####  "}, None),
    ({"problem": "p"}, None),
])
def test_gold_answer(row, want):
    assert gold_answer(row) == want


def test_bad_math_rows_name_the_file_and_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(EvalDataError, match=r"bad\.jsonl: row 2: a math row needs problem"):
        load_items(MATH, path)


def test_shipped_set_is_the_default_and_every_gold_parses():
    assert SUITES["math"] is MATH
    assert resolve_data(["math"], []) == {"math": str(SHIPPED_DATA)}
    items = load_items(MATH, SHIPPED_DATA)
    assert len(items) >= 30 and len({it.id for it in items}) == len(items)
    assert all(it.program and it.output for it in items)
    from sympy import Basic, MatrixBase

    from azr.eval.mathsuite import _parse

    for it in items:
        parsed = _parse(normalize(it.output))
        assert parsed and isinstance(parsed[0], (Basic, MatrixBase)), (it.id, it.output, parsed)


def test_prompts_ask_for_a_boxed_answer_in_each_style():
    item = EvalItem(id="t", program="What is $2^{10}$?", output="1024")
    azr_p, nat_p = MATH.prompt(item, "azr"), MATH.prompt(item, "native")
    assert item.program in azr_p and item.program in nat_p
    assert "\\boxed{}" in azr_p and "<answer>" in azr_p and "\\boxed{14}" in azr_p
    assert "\\boxed{}" in nat_p and "<answer>" not in nat_p and "1024" not in azr_p + nat_p


# -- the judge: time limit, dead workers, threads ---------------------------------------------

def test_is_equiv_gives_up_on_a_slow_answer_within_its_limit():
    t0 = time.perf_counter()
    assert is_equiv("9^{9^{9^{9}}}", "5", timeout_s=0.5) is False
    assert time.perf_counter() - t0 < 3.0
    assert is_equiv("0.5", "1/2")  # the alarm is gone and the next answer is judged normally


def test_is_equiv_leaves_long_answers_to_string_equality():
    long = "+".join(["1"] * 300)
    assert is_equiv(long, long) and not is_equiv(long, "300")


def test_judge_kills_a_stuck_worker_and_goes_on(tmp_path):
    with MathJudge(timeout_s=0.5) as judge:
        assert judge.pid is None and judge.equiv("7", "7")  # cheap verdicts start no worker
        assert judge.equiv("0.5", "\\frac{1}{2}") and judge.pid is not None
        first = judge.pid
        os.kill(first, signal.SIGSTOP)  # stuck where no alarm reaches it
        t0 = time.perf_counter()
        assert judge.equiv("0.25", "\\frac{1}{4}") is False
        assert 0.5 <= time.perf_counter() - t0 < 10 and judge.kills == 1
        assert judge.equiv("0.25", "\\frac{1}{4}") and judge.pid != first
        os.kill(judge.pid, signal.SIGKILL)  # a worker that died between answers is replaced
        time.sleep(0.05)
        assert judge.equiv("2/4", "0.5")
        assert judge.equiv("10^{10^{9}}", "3") is False
    assert judge.pid is None


def test_score_works_off_the_main_thread():
    items = [EvalItem(id=str(i), program="p", output=g) for i, g in enumerate(["\\frac{1}{2}", "3", "(1, 2]"])]
    got = []
    th = threading.Thread(target=lambda: got.append(MATH.score(None, items, ["0.5", "x = 4", "(1,2]"])))
    th.start()
    th.join(timeout=120)
    assert got == [[True, False, True]]


# -- through the runner ----------------------------------------------------------------------

class ScriptedPolicy:
    """Answers each prompt from a table: the gold answer boxed for the first `n_right` samples of an item,
    a wrong one after that. Shows that prompts, extraction, scoring and pass@k fit together."""

    def __init__(self, golds: dict[str, str], n_right: dict[str, int]):
        self.golds, self.n_right, self.seen = golds, n_right, {}

    def generate(self, prompts, cfg, seed=None):
        from azr.policy.base import Generation

        out = []
        for p in prompts:
            problem = next(k for k in self.golds if k in p)
            k = self.seen.get(problem, 0)
            self.seen[problem] = k + 1
            answer = self.golds[problem] if k < self.n_right[problem] else "\\text{no idea}"
            response = f"<think>working</think>\n<answer>\\boxed{{{answer}}}</answer>"
            out.append(Generation(p, [1], [1, 2, 3], response, True))
        return out


def test_scoring_through_the_runner_gives_hand_computed_pass_at_k():
    items = load_items(MATH, SHIPPED_DATA, limit=4)
    golds = {it.program: it.output for it in items}
    n_right = dict(zip(golds, [4, 2, 1, 0], strict=True))
    res = evaluate_suite(ScriptedPolicy(golds, n_right), None, MATH, items, n=4, temperature=0.8, ks=(1, 2))
    assert [sum(r.correct) for r in res.items] == [4, 2, 1, 0]
    assert res.pass_at["pass@1"] == pytest.approx((4 + 2 + 1 + 0) / 16)
    # pass@2 per item: 1 - C(n-c, 2)/C(4, 2) = 1, 1 - 1/6, 1 - 3/6, 0
    assert res.pass_at["pass@2"] == pytest.approx((1 + 5 / 6 + 1 / 2 + 0) / 4)
    assert res.format_error_frac == 0.0


def test_azr_eval_math_on_the_tiny_model_writes_a_well_formed_report(tmp_path):
    from azr.cli import main

    out = tmp_path / "ev"
    rc = main(["eval", "--model", "tiny", "--suite", "math", "--max-new-tokens", "12", "--out", str(out)])
    assert rc == 0
    files = list(out.glob("*.json"))
    assert len(files) == 1
    raw = json.loads(files[0].read_text())
    n_shipped = sum(1 for line in SHIPPED_DATA.read_text().splitlines() if line.strip())
    agg = raw["aggregates"]["math"]
    assert agg["n_items"] == n_shipped and agg["n_samples"] == 1
    assert 0.0 <= agg["pass@1"] <= 1.0 and 0.0 <= agg["format_error_frac"] <= 1.0
    assert agg["tokens"] > 0 and agg["wall_s"] > 0
    assert raw["settings"]["suite"] == "math"
    report = read_report(files[0])
    s = report.suite("math")
    assert [it.id for it in s.items] == [f"azr-math/{i:02d}" for i in range(n_shipped)]
    assert all(len(it.responses) == len(it.answers) == len(it.correct) == 1 for it in s.items)
    assert s.pass_at["pass@1"] == pytest.approx(sum(it.correct[0] for it in s.items) / n_shipped)
    rows = compare(report, report)
    assert rows[0].suite == "math" and rows[0].n_items == n_shipped and rows[0].p_value == 1.0
