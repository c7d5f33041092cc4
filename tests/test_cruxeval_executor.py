"""The executor on real external data: all 800 CRUXEval rows, as shipped in the package."""

from __future__ import annotations

import json

import pytest

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
from tests.conftest import CRUXEVAL, SHARED_CRUXEVAL


def test_shipped_rows_are_cruxeval_with_its_license(cruxeval_rows):
    assert len(cruxeval_rows) == 800
    assert [r["id"] for r in cruxeval_rows] == [f"sample_{i}" for i in range(800)]
    assert all(set(r) == {"code", "input", "output", "id"} for r in cruxeval_rows)
    notice = (CRUXEVAL.parent / "CRUXEVAL_LICENSE.txt").read_text()
    assert "MIT License" in notice and "Copyright (c) 2023 Meta" in notice and "2401.03065" in notice


@pytest.mark.skipif(not SHARED_CRUXEVAL.exists(), reason=f"no reference copy at {SHARED_CRUXEVAL} to compare with")
def test_shipped_rows_equal_the_reference_copy(cruxeval_rows):
    reference = [json.loads(line) for line in SHARED_CRUXEVAL.read_text().splitlines() if line.strip()]
    assert cruxeval_rows == reference


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
