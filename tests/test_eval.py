"""Evaluation: pass@k and McNemar by hand, CRUXEval scoring on all 800 rows, HumanEval-style
scoring against hostile completions, answer extraction, and `azr eval` end to end on the tiny model."""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import pytest

from azr.eval import SUITES, EvalDataError, EvalItem, load_items, mcnemar_exact, mean_pass_at_k, pass_at_k
from azr.eval.runner import compare, read_report, resolve_data, resolve_model
from tests.conftest import CRUXEVAL

O, I, HE = SUITES["cruxeval-o"], SUITES["cruxeval-i"], SUITES["humaneval"]


# -- statistics, by hand -----------------------------------------------------------------------

@pytest.mark.parametrize("n,c,k,want", [
    (5, 2, 1, 0.4),                 # c / n
    (5, 2, 2, 1 - 3 / 10),          # 1 - C(3,2)/C(5,2)
    (10, 3, 5, 1 - 21 / 252),       # 1 - C(7,5)/C(10,5)
    (10, 0, 5, 0.0),
    (3, 3, 2, 1.0),
    (4, 1, 4, 1.0),                 # n - c < k: every 4-subset holds the correct one
    (1, 1, 1, 1.0),
])
def test_pass_at_k_hand_values(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 2, 6), (5, 2, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_items():
    assert mean_pass_at_k([(2, 1), (2, 0), (2, 2)], 1) == pytest.approx((0.5 + 0 + 1) / 3)
    assert mean_pass_at_k([(2, 1), (2, 0)], 2) == pytest.approx(0.5)
    assert math.isnan(mean_pass_at_k([], 1))


@pytest.mark.parametrize("b,c,want", [
    (0, 0, 1.0),
    (5, 0, 2 / 32),                  # 2 * C(5,0) / 2^5
    (0, 5, 2 / 32),
    (10, 2, 2 * (1 + 12 + 66) / 4096),
    (3, 3, 1.0),                     # capped at 1
    (1, 0, 1.0),
])
def test_mcnemar_exact_hand_values(b, c, want):
    assert mcnemar_exact(b, c) == pytest.approx(want)


def test_discordant_counts_by_hand():
    from azr.eval.stats import discordant

    # (A right, B right): one B-only, two A-only, ties ignored
    assert discordant([(False, True), (True, False), (True, False), (True, True), (False, False)]) == (1, 2)
    assert discordant([]) == (0, 0)
    assert discordant(iter([(0, 1)])) == (1, 0)  # any truthy values, any iterable


# -- CRUXEval scoring on real data -------------------------------------------------------------

@pytest.fixture(scope="module")
def crux_items(cruxeval_rows):
    return [O.item(r, i) for i, r in enumerate(cruxeval_rows)]


def test_cruxeval_gold_answers_score_100_percent(pool, crux_items):
    assert len(crux_items) == 800
    assert all(O.score(pool, crux_items, [it.output for it in crux_items]))
    assert all(I.score(pool, crux_items, [it.input for it in crux_items]))


def test_cruxeval_wrong_answers_score_0_percent(pool, crux_items):
    wrong_o = [repr(("__azr_wrong__", it.output)) for it in crux_items]
    assert not any(O.score(pool, crux_items, wrong_o))
    # A wrong input must be wrong for every f: many inputs give [] or False, so a fixed guess
    # is sometimes right (12 rows for ('x', ('x',))). Twelve surplus arguments never are.
    wrong_i = [it.input + ", " + ", ".join(["'__azr_extra__'"] * 12) for it in crux_items]
    assert not any(I.score(pool, crux_items, wrong_i))
    assert not any(I.score(pool, crux_items, [None] * len(crux_items)))


def test_cruxeval_answers_round_trip_through_both_prompt_styles(pool, crux_items):
    items = crux_items[:40]
    azr_o = [f"<think>run it</think>\n<answer>\n{it.output}\n</answer>" for it in items]
    azr_i = [f"<think>guess</think>\n<answer>\n```input\n{it.input}\n```\n</answer>" for it in items]
    nat_o = [f"[ANSWER]assert f({it.input}) == {it.output}[/ANSWER]" for it in items]
    nat_i = [f"Sure.\n[ANSWER]\nassert f({it.input}) == {it.output}\n[/ANSWER]" for it in items]
    # The azr-style abduction answer is literal-only (the training rule); skip CRUXEval's expression inputs.
    literal = [i for i, it in enumerate(items) if I.extract(azr_i[i], "azr") is not None]
    assert len(literal) >= 35
    assert all(O.score(pool, items, [O.extract(r, "azr") for r in azr_o]))
    assert all(O.score(pool, items, [O.extract(r, "native") for r in nat_o]))
    assert all(I.score(pool, items, [I.extract(r, "native") for r in nat_i]))
    sub = [items[i] for i in literal]
    assert all(I.score(pool, sub, [I.extract(azr_i[i], "azr") for i in literal]))


def test_prompts_show_the_task_in_each_style(crux_items):
    it = crux_items[0]
    for suite in (O, I):
        azr_p, nat_p = suite.prompt(it, "azr"), suite.prompt(it, "native")
        assert it.program in azr_p and it.program in nat_p
        assert "<answer>" in azr_p and "[ANSWER]" in nat_p
    assert it.input in O.prompt(it, "azr") and it.output not in O.prompt(it, "native").split("==")[-1]
    assert it.output in I.prompt(it, "native")


@pytest.mark.parametrize("response", ["", "no tags at all", "<answer></answer>", "[ANSWER]assert f(1) ==[/ANSWER]",
                                      "<answer>\n```python\nimport os\n```\n```python\nx\n```\n</answer>"])
def test_malformed_responses_extract_to_none(response):
    for suite in (O, I):
        for style in ("azr", "native"):
            assert suite.extract(response, style) is None or response.startswith("<answer>\n```")


@pytest.mark.parametrize("response, output, input_", [
    ("[ANSWER]assert f('a') == (1, 'b')[/ANSWER]", "(1, 'b')", "'a'"),  # the completed assertion
    ("[ANSWER]True[/ANSWER]", "True", None),  # a bare literal: the reference runs `assert gold == True`
    ("[ANSWER] [{'k': 5}][/ANSWER] and then some", "[{'k': 5}]", None),
    ("[ANSWER]f('x', 2)[/ANSWER]", None, "'x', 2"),  # a bare call: the reference runs `assert gold == f('x', 2)`
    ("[ANSWER]assert f(1)[/ANSWER]", None, "1"),
    ("[ANSWER]assert f(1) == f(1)[/ANSWER]", None, "1"),  # an output that calls f predicts nothing
    ("[ANSWER]{'a': 1}\\n[/ANSWER]", None, None),  # a literal backslash-n is no Python
    ("[ANSWER]assert g(1) == 2[/ANSWER]", "2", None),  # I needs a call of f
    ("Therefore the answer is 3", None, None),  # prose is no literal
])
def test_native_extraction_follows_the_reference_scorer(response, output, input_):
    assert O.extract(response, "native") == output
    assert I.extract(response, "native") == input_


@pytest.mark.parametrize("response, kind", [
    ("Here's a step-by-step breakdown of how the code", "unclosed"),  # out of tokens in prose
    ("[ANSWER]assert f('1000000000000000000000", "unclosed"),  # out of tokens in a repeated digit
    ("[ANSWER] ['123', '23', '3'][/ANSWER]", "no_assertion"),  # a bare input: the self-play abduction form
    ("[ANSWER]The output is 3[/ANSWER]", "no_assertion"),
    ("[ANSWER]assert f(1) == f(1)[/ANSWER]", "invalid"),  # an output that calls f
    ("[ANSWER]assert g(1) == 2[/ANSWER]", "invalid"),  # CRUXEval-I needs a call of f
    ("[ANSWER]assert f(x=1) == 2[/ANSWER]", "invalid"),  # keywords
])
def test_native_failure_kinds(response, kind):
    from azr.eval.cruxeval import native_failure

    assert native_failure(response) == kind
    assert None in (O.extract(response, "native"), I.extract(response, "native"))  # a reply that fails somewhere


# -- HumanEval-style scoring --------------------------------------------------------------------

HE_PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'
HE_TEST = "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n"
HE_ITEM = EvalItem(id="t/0", program=HE_PROMPT, test=HE_TEST, entry_point="total")

COMPLETIONS = {
    "canonical body": ("    return sum(xs)\n", True),
    "full function": ("def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n", True),
    "broken": ("    return len(xs)\n", False),
    "hangs": ("    while True:\n        pass\n", False),
    "raises": ("    raise ValueError('no')\n", False),
    "exits": ("    raise SystemExit(0)\n", False),
    "hostile: kills the parent": ("    import os; os.kill(os.getppid(), 9)\n    return sum(xs)\n", False),
    "hostile: reads a host file": ("    return len(open('/etc/passwd').read()) * 0 + sum(xs)\n", False),
    "hostile: patches the checker": ("    return sum(xs)\nimport builtins\nbuiltins.AssertionError = None\n", True),
    "syntax error": ("    return (\n", False),
}


def test_humaneval_scoring_of_canonical_broken_hanging_and_hostile_completions(pool):
    names = list(COMPLETIONS)
    items = [HE_ITEM] * len(names)
    verdict = HE.score(pool, items, [COMPLETIONS[n][0] for n in names])
    assert dict(zip(names, verdict)) == {n: COMPLETIONS[n][1] for n in names}
    assert HE.score(pool, [HE_ITEM], [None]) == [False]


def test_humaneval_extraction_in_both_styles():
    body = "def total(xs):\n    return sum(xs)"
    assert HE.extract(f"<think>easy</think>\n<answer>\n```python\n{body}\n```\n</answer>", "azr") == body
    assert HE.extract(f"Here you go:\n```python\n{body}\n```\nDone.", "native").strip() == body
    assert HE.extract("<answer></answer>", "azr") is None
    p = HE.prompt(HE_ITEM, "azr")
    assert HE_PROMPT.rstrip() in p and "`total`" in p and "<answer>" in p


FENCED = "```python\nfrom typing import List\n\n\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
FENCED_RESPONSES = {
    "bare fence": FENCED,
    "prose around the fence": f"Here is the function:\n\n{FENCED}\n\nIt adds the numbers up.",
    "reasoning, then the fence, no answer tags": f"<think>sum them</think>\n{FENCED}",
    "a usage example first, then the solution": f"```python\nprint(total([1]))\n```\nSolution:\n{FENCED}",
    "inside answer tags": f"<think>easy</think>\n<answer>\n{FENCED}\n</answer>",
}


@pytest.mark.parametrize("style", ["native", "azr"])
@pytest.mark.parametrize("name", list(FENCED_RESPONSES))
def test_a_correct_fenced_solution_scores_in_each_style(pool, style, name):
    answer = HE.extract(FENCED_RESPONSES[name], style)
    assert answer is not None and "return sum(xs)" in answer
    assert HE.score(pool, [HE_ITEM], [answer]) == [True]


def test_azr_style_still_needs_an_answer_for_unfenced_text():
    # A bare function with neither fence nor tags is an answer only where the prompt style allows it.
    body = "def total(xs):\n    return sum(xs)\n"
    assert HE.extract(body, "native") == body
    assert HE.extract(body, "azr") is None


def test_eval_defaults_to_the_native_style():
    from azr.config import EvalCommand, EvalConfig, cpu

    assert EvalConfig().prompt_style == "native" and EvalCommand().eval.prompt_style == "native"
    # The cpu recipe's in-training probe watches the native style, where its drift shows (docs/RESULTS.md 4g).
    assert cpu().eval.prompt_style == "native" and cpu().eval.response_prefix == ""
    assert cpu().eval.suites == ["cruxeval-o", "cruxeval-i"] and cpu().eval.split == "dev"


def test_humaneval_rows_load_from_gzipped_jsonl(tmp_path):
    path = tmp_path / "he.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for i in range(3):
            fh.write(json.dumps({"task_id": f"X/{i}", "prompt": HE_PROMPT, "test": HE_TEST, "entry_point": "total",
                                 "canonical_solution": "    return sum(xs)\n"}) + "\n")
    items = load_items(HE, path, limit=2)
    assert [it.id for it in items] == ["X/0", "X/1"] and items[0].entry_point == "total"


# -- data and model resolution ------------------------------------------------------------------

def test_data_errors_are_clear(tmp_path):
    with pytest.raises(EvalDataError, match="data not found"):
        load_items(O, tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"code": "def f(x): return x", "input": "1"}\n')
    with pytest.raises(EvalDataError, match="lacks .*output"):
        load_items(O, bad)
    bad.write_text("{not json\n")
    with pytest.raises(EvalDataError, match="not a readable JSONL"):
        load_items(O, bad)


def test_shipped_humaneval_canonical_solutions_pass_except_those_needing_unloaded_modules(pool):
    """The 164 shipped problems through the real sandbox: every canonical solution passes but six, whose program or
    test needs what the sandbox refuses (the tests of /32, /38, /50 and /53 import random, /160 calls eval, /162
    imports hashlib): those fail for every model alike."""
    from azr.eval.suite import read_rows

    rows = read_rows(HE.default_data())
    items = [HE.item(r, i) for i, r in enumerate(rows)]
    ok = HE.score(pool, items, [r["canonical_solution"] for r in rows])
    assert len(items) == 164
    assert [it.id for it, o in zip(items, ok) if not o] == [f"HumanEval/{i}" for i in (32, 38, 50, 53, 160, 162)]


def test_resolve_data_named_and_bare_paths(monkeypatch):
    got = resolve_data(["cruxeval-o", "humaneval"], ["x.jsonl", "humaneval=he.jsonl.gz"])
    assert got == {"cruxeval-o": "x.jsonl", "humaneval": "he.jsonl.gz"}
    monkeypatch.delenv("AZR_CRUXEVAL", raising=False)
    assert Path(resolve_data(["cruxeval-i"], [])["cruxeval-i"]).resolve() == CRUXEVAL.resolve()
    monkeypatch.setenv("AZR_CRUXEVAL", "/elsewhere/crux.jsonl")  # the environment overrides the shipped rows
    assert resolve_data(["cruxeval-o"], []) == {"cruxeval-o": "/elsewhere/crux.jsonl"}
    assert resolve_data(["cruxeval-o"], ["mine.jsonl"]) == {"cruxeval-o": "mine.jsonl"}  # and --data overrides both


@pytest.mark.parametrize("suite,fields", [("cruxeval-o", '"code"'), ("cruxeval-i", '"output"'),
                                          ("humaneval", '"entry_point"'), ("math", '"problem"')])
def test_data_not_found_messages_describe_the_suites_own_format(tmp_path, suite, fields):
    with pytest.raises(EvalDataError, match="data not found") as e:
        load_items(SUITES[suite], tmp_path / "missing.jsonl")
    assert fields in str(e.value) and SUITES[suite].data_format in str(e.value)
    if SUITES[suite].default_data() is None:
        with pytest.raises(EvalDataError, match=f"{suite}=PATH") as e:
            resolve_data([suite], [])
        assert fields in str(e.value) and "task_id, prompt, test" not in str(e.value)


def test_cruxeval_message_never_describes_humaneval_rows(tmp_path):
    for suite in ("cruxeval-o", "cruxeval-i"):
        with pytest.raises(EvalDataError) as e:
            load_items(SUITES[suite], tmp_path / "missing.jsonl")
        assert "entry_point" not in str(e.value) and '"code"' in str(e.value)


def test_resolve_model_maps_runs_and_checkpoints(tmp_path):
    assert resolve_model("default") == "qwen2.5-coder-0.5b"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    step = tmp_path / "run" / "checkpoints" / "step_000002"
    (step / "model").mkdir(parents=True)
    (step / "model" / "config.json").write_text("{}")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_000002")
    assert resolve_model(str(tmp_path / "run")) == str(step / "model")
    assert resolve_model(str(step)) == str(step / "model")
    # a LoRA run's checkpoint holds adapters alone: no config.json, an azr_policy.json naming the base
    lora = tmp_path / "lora" / "checkpoints" / "step_000001"
    (lora / "model" / "adapter").mkdir(parents=True)
    (lora / "model" / "azr_policy.json").write_text('{"lora_adapter": "adapter", "base_model": "tiny"}')
    (tmp_path / "lora" / "checkpoints" / "latest").write_text("step_000001")
    assert resolve_model(str(tmp_path / "lora")) == str(lora / "model")


# -- end to end -------------------------------------------------------------------------------

def test_azr_eval_of_the_tiny_model_writes_a_well_formed_report(tmp_path, monkeypatch):
    from azr.cli import main

    monkeypatch.delenv("AZR_CRUXEVAL", raising=False)
    out = tmp_path / "ev"
    # No --data: the CRUXEval rows shipped with the package.
    rc = main(["eval", "--model", "tiny", "--suite", "cruxeval-o,cruxeval-i", "--limit", "10",
               "--max-new-tokens", "12", "--out", str(out), "--prompt-style", "azr", "--response-prefix", "<answer>\\n"])
    assert rc == 0
    files = list(out.glob("*.json"))
    assert len(files) == 1
    raw = json.loads(files[0].read_text())
    assert set(raw["aggregates"]) == {"cruxeval-o", "cruxeval-i"}
    for name, agg in raw["aggregates"].items():
        assert agg["n_items"] == 10 and agg["n_samples"] == 1 and agg["style"] == "azr"
        assert 0.0 <= agg["pass@1"] <= 1.0 and agg["wall_s"] > 0 and agg["tokens"] > 0
    report = read_report(files[0])
    for s in report.suites:
        assert len(s.items) == 10 and all(len(it.responses) == len(it.correct) == 1 for it in s.items)
        assert [it.id for it in s.items] == [f"sample_{i}" for i in range(10)]
        # The prefix as typed on a command line: `\n` arrives as a newline.
        assert all(r.startswith("<answer>\n") for it in s.items for r in it.responses)


def test_a_gzipped_report_reads_as_the_plain_one_and_a_corrupt_one_is_a_clear_error(tmp_path):
    from azr.eval.runner import EvalReport, ItemResult, SuiteResult, write_report

    items = (ItemResult("sample_0", ("<answer>\n1",), ("1",), (True,)),
             ItemResult("sample_1", ("no answer",), (None,), (False,)))
    report = EvalReport("m", {"prompt_style": "azr"}, (SuiteResult("cruxeval-o", 2, 1, {"pass@1": 0.5}, 0.5, 1.0, 9,
                                                                    items, "azr"),), "2026-11-27T00:00:00")
    plain = write_report(report, tmp_path / "r.json")
    packed = tmp_path / "r.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_report(packed) == read_report(plain) == report
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(plain.read_bytes())[:-20])  # cut short, as by a full disk
    with pytest.raises(EvalDataError, match="bad.json.gz is not an azr eval report"):
        read_report(bad)


def test_azr_eval_compare_pairs_two_models_and_plots(tmp_path):
    from azr.cli import main

    out = tmp_path / "cmp"
    rc = main(["eval", "--compare", "tiny", "tiny", "--suite", "cruxeval-o", "--limit", "6", "--n", "2",
               "--temperature", "0.8", "--max-new-tokens", "8", "--out", str(out), "--data", str(CRUXEVAL)])
    assert rc == 0
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp["suites"][0]["n_items"] == 6 and 0 <= cmp["suites"][0]["p_value"] <= 1
    assert (out / "compare.png").stat().st_size > 1000
    rep = read_report(next(out.glob("tiny*.json")))
    assert rep.suite("cruxeval-o").style == "native"  # no --prompt-style: each suite's own
    assert set(rep.suite("cruxeval-o").pass_at) == {"pass@1"} or "pass@2" not in rep.suite("cruxeval-o").pass_at
    rows = compare(rep, rep)
    assert rows[0].b_wins == rows[0].b_losses == 0 and rows[0].p_value == 1.0


class _Scripted:
    """A stand-in policy for the resume tests: the response to a prompt is a function of the prompt and the
    chunk's seed, and it can be told to die on its k-th call (a killed `azr eval`)."""

    def __init__(self, die_on: int = 0):
        self.calls, self.die_on = [], die_on

    def generate(self, prompts, gen, seed=None):
        from types import SimpleNamespace

        self.calls.append(seed)
        if len(self.calls) == self.die_on:
            raise KeyboardInterrupt
        return [SimpleNamespace(response=f"{seed}:{len(p)}", num_response_tokens=3) for p in prompts]


def _run(policy, pool, items, partial, **kw):
    from azr.eval.runner import evaluate_suite

    return evaluate_suite(policy, pool, O, items, batch_size=2, partial=partial, **kw)  # chunks of 4 prompts


def test_a_stopped_evaluation_resumes_at_the_chunk_where_it_stopped(pool, crux_items, tmp_path):
    from azr.eval.runner import Partial

    items = crux_items[:10]  # chunks start at 0, 4, 8
    key = {"model": ["m"], "suite": "cruxeval-o"}
    straight = _run(_Scripted(), pool, items, None)
    with pytest.raises(KeyboardInterrupt):
        _run(_Scripted(die_on=3), pool, items, Partial(tmp_path / "p.jsonl", key))
    resumed_policy = _Scripted()
    resumed = _run(resumed_policy, pool, items, Partial(tmp_path / "p.jsonl", key))
    assert resumed_policy.calls == [8]  # chunks 0 and 4 came from the file
    assert resumed.items == straight.items and resumed.tokens == straight.tokens == 30

    # a line cut by the kill is dropped (and so is the file's tail after it); that chunk is generated again
    text = (tmp_path / "p.jsonl").read_text()
    (tmp_path / "p.jsonl").write_text(text[: text.index('{"start": 4') + 20])
    again = _Scripted()
    assert _run(again, pool, items, Partial(tmp_path / "p.jsonl", key)).items == straight.items
    assert again.calls == [4, 8]
    assert (tmp_path / "p.jsonl").read_text() == text  # whole lines again, nothing duplicated

    # other settings (or another model, suite or item list) mean another key: nothing is reused
    other = _Scripted()
    _run(other, pool, items, Partial(tmp_path / "p.jsonl", {**key, "max_new_tokens": 8}))
    assert other.calls == [0, 4, 8]


def test_a_partial_file_that_cannot_be_written_costs_the_resume_not_the_evaluation(pool, crux_items, tmp_path):
    from azr.eval.runner import Partial

    (tmp_path / "blocker").write_text("a file where the partial's directory should be")
    partial = Partial(tmp_path / "blocker" / "p.jsonl", {"model": ["m"]})
    result = _run(_Scripted(), pool, crux_items[:6], partial)
    assert len(result.items) == 6 and "will not resume" in partial.error


def test_azr_eval_killed_midway_resumes_and_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    # the real command, the tiny model and the real executor; only the kill is simulated
    import azr.policy
    from azr.cli import main

    real_load = azr.policy.load_policy
    calls, die_on = [], [2]

    def load_dying(*a, **kw):
        policy = real_load(*a, **kw)
        generate = policy.generate

        def counted(prompts, gen, seed=None):
            calls.append(seed)
            if len(calls) == die_on[0]:
                raise KeyboardInterrupt
            return generate(prompts, gen, seed=seed)
        policy.generate = counted
        return policy

    argv = ["eval", "--model", "tiny", "--suite", "cruxeval-o", "--limit", "10", "--batch-size", "2",
            "--max-new-tokens", "8", "--data", str(CRUXEVAL)]
    assert main([*argv, "--out", str(tmp_path / "straight")]) == 0
    monkeypatch.setattr(azr.policy, "load_policy", load_dying)
    out = tmp_path / "killed"
    assert main([*argv, "--out", str(out)]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["tiny.cruxeval-o.partial.jsonl"]
    calls.clear()
    die_on[0] = 0
    assert main([*argv, "--out", str(out)]) == 0
    assert calls == [4, 8]  # chunk 0 was read back from the partial file
    assert [p.name for p in out.iterdir()] == ["tiny.json"]  # the partial file is gone once the report exists
    a, b = read_report(tmp_path / "straight" / "tiny.json"), read_report(out / "tiny.json")
    assert a.suites[0].items == b.suites[0].items


def test_bad_eval_flags_exit_with_a_fix(capsys):
    from azr.cli import main

    assert main(["eval", "--model", "tiny", "--n", "3"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny", "--suite", "mmlu"]) == 2
    assert "unknown suite" in capsys.readouterr().err


def test_eval_refuses_the_training_only_every_flag(capsys):
    """--every belongs to `azr train --eval-every`; `azr eval` has nothing to repeat and must not accept it."""
    from azr.cli import main

    assert main(["eval", "--model", "tiny", "--every", "3"]) == 2
    assert "--every" in capsys.readouterr().err


# -- the dev/test split (issue 16) -------------------------------------------------------------

def test_the_dev_split_is_the_documented_draw_of_200_ids():
    import random

    from azr.eval.cruxeval import dev_ids

    want = {f"sample_{i}" for i in random.Random(16).sample(range(800), 200)}
    assert dev_ids() == want and len(want) == 200


def test_splits_partition_the_800_items():
    from azr.eval.runner import load_suite_items

    parts = {s: load_suite_items(["cruxeval-o"], [str(CRUXEVAL)], None, s)["cruxeval-o"] for s in ("all", "dev", "test")}
    dev, test = ({it.id for it in parts[s]} for s in ("dev", "test"))
    assert (len(parts["all"]), len(dev), len(test)) == (800, 200, 600)
    assert not dev & test and dev | test == {it.id for it in parts["all"]}
    # --limit applies within the split: the first items of the split, in file order
    first = load_suite_items(["cruxeval-i"], [str(CRUXEVAL)], 3, "dev")["cruxeval-i"]
    assert [it.id for it in first] == [it.id for it in parts["dev"][:3]]


def test_split_is_refused_for_suites_without_one(capsys):
    from azr.cli import main

    assert main(["eval", "--model", "tiny", "--suite", "math", "--split", "dev"]) == 2
    assert "CRUXEval only" in capsys.readouterr().err


def test_learning_analysis_by_hand(cruxeval_rows, monkeypatch):
    """benchmarks/learning.py on two hand-made reports of real CRUXEval-I items, one dev and two test."""
    import importlib.util

    from azr.eval.runner import EvalReport, ItemResult, SuiteResult

    spec = importlib.util.spec_from_file_location("learning", Path(__file__).parents[1] / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learning", learning)  # its dataclasses look their module up
    spec.loader.exec_module(learning)
    rows = {r["id"]: r for r in cruxeval_rows}

    def report(*items):
        res = tuple(ItemResult(i, ("",), (a,), (ok,)) for i, a, ok in items)
        return EvalReport("m", {}, (SuiteResult("cruxeval-i", len(res), 1, {}, 0.0, 0.0, 0, res),))

    # sample_5 is in the dev split, sample_0 and sample_1 are not.
    before = report(("sample_5", "1", False), ("sample_0", None, False), ("sample_1", "2", True))
    example = learning._example_answer("cruxeval-i", rows["sample_0"])  # the worked example's answer in its prompt
    after = report(("sample_5", rows["sample_5"]["output"], True), ("sample_0", example, True), ("sample_1", "4", False))
    res = {r.split: r for r in learning.analyse(learning.merge([before]), learning.merge([after]), CRUXEVAL,
                                                ["dev", "test", "all"])}
    dev, test, all_ = res["dev"], res["test"], res["all"]
    assert (dev.items, dev.wins, dev.losses, dev.win_copies) == (1, 1, 0, 1)  # the win copies the shown output
    assert (test.items, test.wins, test.losses, test.p) == (2, 1, 1, 1.0)
    assert (test.format_errors_before, test.format_errors_after) == (1, 0)
    # among format-valid answers: before 1 of 1 (sample_1), after 1 of 2; paired on sample_1 only: one loss
    assert (test.valid_acc_before, test.valid_acc_after) == (1.0, 0.5)
    assert (test.both_valid, test.valid_wins, test.valid_losses) == (1, 0, 1)
    assert (test.example_copies_before, test.example_copies_after, dev.example_copies_after) == (0, 1, 0)
    assert (all_.items, all_.wins, all_.losses, all_.before, all_.after) == (3, 2, 1, 1 / 3, 2 / 3)
    # f(output) == output holds for none of the three (sample_0 sorts count pairs; the others take 3 arguments),
    # so every item is beyond the copy rule and that part is the whole split
    assert all_.copy_rule_correct == 0
    bc = all_.beyond_copy
    assert (bc.items, bc.wins, bc.losses, bc.before, bc.after) == (3, 2, 1, 1 / 3, 2 / 3)
    assert "| 0 | 3, 0.333 → 0.667, 2/1, 1 |" in learning.markdown([all_])
    empty = learning.paired("cruxeval-i", [], [])
    assert empty.items == 0 and math.isnan(empty.before) and learning._beyond(empty) == "0"
    # a math report among the parts: the paired no-regression table (2 shared items: one win; an item only one
    # side scored is left out)
    math_b = EvalReport("m", {}, (SuiteResult("math", 3, 1, {}, 0.0, 0.0, 0, (
        ItemResult("m0", ("",), ("1",), (False,)), ItemResult("m1", ("",), (None,), (False,)),
        ItemResult("m2", ("",), ("3",), (True,)))),))
    math_a = EvalReport("m", {}, (SuiteResult("math", 2, 1, {}, 0.0, 0.0, 0, (
        ItemResult("m0", ("",), ("2",), (True,)), ItemResult("m1", ("",), ("5",), (False,)))),))
    [m] = learning.other_suites(learning.merge([before, math_b]), learning.merge([after, math_a]))
    assert (m.suite, m.items, m.before, m.after, m.wins, m.losses, m.p) == ("math", 2, 0.0, 0.5, 1, 0, 1.0)
    assert (m.format_errors_before, m.format_errors_after) == (1, 0)
    assert "| math | 2 | 0.000 | 0.500 | 1/0 | 1 | 1 → 0 |" in learning.other_markdown([m])
    assert (all_.failures_before, learning.markdown([all_]).endswith("| 0 → 1 | – |")) == ((), True)  # azr style
    # native style: the format errors by kind, from the responses (sample_1's after is a bare input literal)
    def native(*items):
        res = tuple(ItemResult(i, (r,), (None,), (False,)) for i, r in items)
        return learning.merge([EvalReport("m", {}, (SuiteResult("cruxeval-i", len(res), 1, {}, 0.0, 0.0, 0, res),))])
    nb = native(("sample_0", "Step by step"), ("sample_1", "[ANSWER]assert g(1) == 2[/ANSWER]"))
    na = native(("sample_0", "[ANSWER]assert f(1"), ("sample_1", "[ANSWER] [1, 2][/ANSWER]"))
    [r] = learning.analyse(nb, na, CRUXEVAL, ["test"], "native")
    assert (r.failures_before, r.failures_after) == ((1, 0, 1), (1, 1, 0))
    assert learning.markdown([r]).endswith("| 1/0/1 → 1/1/0 |")


def test_ablation_table_by_hand(tmp_path, monkeypatch, capsys):
    """benchmarks/learning.py's ablation table on hand-made CRUXEval-I reports of 8 test items."""
    import importlib.util

    from azr.eval.cruxeval import in_split
    from azr.eval.runner import EvalReport, ItemResult, SuiteResult

    spec = importlib.util.spec_from_file_location("learning", Path(__file__).parents[1] / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learning", learning)
    spec.loader.exec_module(learning)
    ids = [f"sample_{n}" for n in range(40) if in_split(f"sample_{n}", "test")][:8]

    def run(right: int) -> dict:  # the first `right` items correct
        res = tuple(ItemResult(i, ("",), ("1",), (k < right,)) for k, i in enumerate(ids))
        return learning.merge([EvalReport("m", {}, (SuiteResult("cruxeval-i", 8, 1, {}, 0.0, 0.0, 0, res),))])

    base, s0, s1, abl = run(0), run(0), run(1), run(6)
    rows = learning.ablation_rows(base, [("s0", s0), ("s1", s1)], [("abl", abl)], "test")
    by = {r.run: r for r in rows}
    assert [r.run for r in rows] == ["s0", "s1", "abl"] and all(r.items == 8 for r in rows)
    # spread: |0.125 - 0| from the second seed
    assert all(r.spread == 0.125 for r in rows)
    assert by["s0"].vs_recipe is None and not by["s0"].beyond_spread
    # the second seed: one win over the first, p = 1: within the spread by definition
    assert (by["s1"].vs_recipe.wins, by["s1"].vs_recipe.losses, by["s1"].vs_recipe.p) == (1, 0, 1.0)
    assert not by["s1"].beyond_spread
    # the ablation: 6 wins, 0 losses, p = 2 * 0.5**6, gap 0.75 > 0.125
    assert (by["abl"].acc, by["abl"].vs_recipe.wins, by["abl"].vs_recipe.losses) == (0.75, 6, 0)
    assert by["abl"].vs_recipe.p == pytest.approx(2 * 0.5**6) and by["abl"].beyond_spread
    assert (by["abl"].vs_base.wins, by["abl"].vs_base.losses) == (6, 0)
    table = learning.ablation_markdown(rows)
    assert "| abl | cruxeval-i | 8 | 0.750 | 6/0, 0.031 | 6/0, 0.031 | +0.750 | 0.125 | yes |" in table
    assert "| s1 | cruxeval-i | 8 | 0.125 | 1/0, 1 | 1/0, 1 | +0.125 | 0.125 | no |" in table
    # the dev split has none of these items: no rows
    assert learning.ablation_rows(base, [("s0", s0)], [], "dev") == []
    png = learning.plot_ablations(rows, tmp_path / "abl.png")
    assert png.stat().st_size > 1000

    # the command line, on reports written to disk: the same table, and a clear error for a malformed run spec
    from azr.eval.runner import write_report

    def file(name: str, right: int) -> str:
        res = tuple(ItemResult(i, ("",), ("1",), (k < right,)) for k, i in enumerate(ids))
        rep = EvalReport(name, {}, (SuiteResult("cruxeval-i", 8, 1, {}, 0.0, 0.0, 0, res),))
        return str(write_report(rep, tmp_path / f"{name}.json"))

    argv = ["--splits", "test", "--base", file("base", 0), "--recipe", f"s0={file('s0', 0)}",
            "--recipe", f"s1={file('s1', 1)}", "--ablation", f"abl={file('abl', 6)}",
            "--ablation-plot", str(tmp_path / "cli.png")]
    assert learning.main(argv) == 0
    out = capsys.readouterr().out
    assert "| abl | cruxeval-i | 8 | 0.750 | 6/0, 0.031 | 6/0, 0.031 | +0.750 | 0.125 | yes |" in out
    assert (tmp_path / "cli.png").is_file()
    with pytest.raises(SystemExit):
        learning.main(["--base", file("base", 0), "--recipe", "no-equals-sign"])
    assert "expected NAME=REPORT" in capsys.readouterr().err


def test_soak_summary_line_by_hand():
    """benchmarks/soak.py's last line: early = max of steps 5-14, late = max of the last 10 steps (GiB)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("soak", Path(__file__).parents[1] / "benchmarks" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    gib = 2**30
    peaks = {s: int((10 + 0.1 * s) * gib) for s in range(1, 41)}  # 10.1 ... 14.0 GiB, creeping 0.1 a step
    assert soak.summary_line(peaks, [100.0, 120.0, 90.0]) == (
        "steps=40 peak_rss_gib=14.00 early_peak_gib=11.40 late_peak_gib=14.00 median_step_s=100.0")
    assert soak.summary_line({1: 2 * gib, 2: 3 * gib}, [50.0]) == (
        "steps=2 peak_rss_gib=3.00 early_peak_gib=nan late_peak_gib=nan median_step_s=50.0")


def test_buffer_table_by_hand(tmp_path, monkeypatch):
    """benchmarks/learning.py --buffers on hand-made buffers: seeds excluded, programs compared up to formatting,
    induction inputs and messages against the identity seed's."""
    import importlib.util

    from azr.buffers import TaskBuffer
    from azr.records import Task, TaskType

    spec = importlib.util.spec_from_file_location("learning", Path(__file__).parents[1] / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learning", learning)
    spec.loader.exec_module(learning)
    bufs = {t: TaskBuffer.seeded(t, n_inputs=4) for t in TaskType}
    # Two formattings of one program, 7 AST nodes each (Module, FunctionDef, arguments, arg, Return, Name, Load);
    # `return -x` has 9 (UnaryOp and USub besides): the mean is 23 / 3.
    bufs[TaskType.DEDUCTION].extend([Task(TaskType.DEDUCTION, "def f(x):\n    return x", ("1",), ("1",)),
                                     Task(TaskType.DEDUCTION, "def f(x): return (x)", ("2",), ("2",))])
    bufs[TaskType.ABDUCTION].add(Task(TaskType.ABDUCTION, "def f(x):\n    return -x", ("1",), ("-1",)))
    seed_inputs = bufs[TaskType.INDUCTION].tasks[0].inputs  # 'Hello World', 'abc', 42, -7
    bufs[TaskType.INDUCTION].extend([
        Task(TaskType.INDUCTION, "def f(x):\n    return -x", ("1", "2", "3", "-7"), ("-1", "-2", "-3", "7"),
             "Negates.", (0, 1), (2, 3)),
        Task(TaskType.INDUCTION, "def f(x):\n    return -x", ("5", "6") + seed_inputs[2:], ("-5", "-6", "-42", "7"),
             "Return the input unchanged.", (0, 1), (2, 3))])
    for t, b in bufs.items():
        b.save(tmp_path / f"{t}.jsonl")
    table = learning.buffer_table([tmp_path])
    assert table.splitlines()[-1] == f"| {tmp_path} | 2/1/2 | 2 | 7.7 | 1/2 | 1/2 |"


def test_seeding_table_sums_the_rounds_by_hand(tmp_path, monkeypatch):
    """benchmarks/learning.py --buffers on a seeding directory's rounds.jsonl: outcomes summed over rounds, the
    failures listed most common first; a directory without the file adds no table."""
    import importlib.util

    from azr.records import SeedingRound, TaskType

    spec = importlib.util.spec_from_file_location("learning", Path(__file__).parents[1] / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learning", learning)
    spec.loader.exec_module(learning)
    assert learning.seeding_table([tmp_path]) == ""
    sizes = {t: 1 for t in TaskType}
    rounds = [SeedingRound(2, sizes, {TaskType.INDUCTION: {"added": 1, "invalid:too_few_inputs": 1}}),
              SeedingRound(4, sizes, {TaskType.INDUCTION: {"duplicate": 1, "format:no_answer": 2,
                                                           "invalid:too_few_inputs": 3}})]
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rounds))
    lines = learning.seeding_table([tmp_path]).splitlines()
    assert lines[2] == f"| {tmp_path} | deduction | 0 | 0 | 0 | – |"
    # induction: 2 + 6 proposals; 1 added, 1 duplicate; 4 too few inputs, 2 unparsed
    assert lines[4] == f"| {tmp_path} | induction | 8 | 1 | 1 | invalid:too_few_inputs 4, format:no_answer 2 |"
