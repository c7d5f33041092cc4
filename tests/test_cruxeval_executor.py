"""The executor on real external data: all 800 CRUXEval rows (../shared/benchmarks)."""

from __future__ import annotations

from azr.executor import (
    AbductionCheck,
    Job,
    call_expr,
    check_abduction_many,
    check_deduction,
    parse_literal,
    validate_many,
    values_equal,
)


def test_every_row_reproduces(pool, cruxeval_rows):
    results = pool.run_many([Job(r["code"], call_expr(r["input"])) for r in cruxeval_rows])
    wrong = [r["id"] for r, res in zip(cruxeval_rows, results) if not (res.ok and values_equal(res.value, r["output"]))]
    assert len(cruxeval_rows) == 800
    assert wrong == []


def test_abduction_checker_accepts_gold_inputs(pool, cruxeval_rows):
    # CRUXEval's reference semantics: 13 inputs are expressions ('a' * 20, a lambda), so the
    # literal-only rule of training is relaxed here (the ban list still applies).
    items = [AbductionCheck(r["code"], r["input"], r["output"]) for r in cruxeval_rows]
    verdict = check_abduction_many(pool, items, literal_only=False)
    assert [r["id"] for r, ok in zip(cruxeval_rows, verdict) if not ok] == []


def test_deduction_checker_rejects_wrong_outputs(cruxeval_rows):
    for r in cruxeval_rows:
        gold = parse_literal(r["output"])
        assert gold.ok, r["id"]
        assert check_deduction(r["output"], r["output"])
        assert not check_deduction(repr((gold.value, "wrong")), r["output"]), r["id"]


def test_all_rows_validate_deterministically(pool, cruxeval_rows):
    vals = validate_many(pool, [(r["code"], r["input"]) for r in cruxeval_rows], literal_inputs=False)
    bad = [(r["id"], v.reason) for r, v in zip(cruxeval_rows, vals) if not (v.ok and values_equal(v.output, r["output"]))]
    assert bad == []
