"""Shared fixtures: one sandbox pool per test module, and the CRUXEval path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azr.executor import SandboxConfig, SandboxPool

CRUXEVAL = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "cruxeval.jsonl"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(workers=2, timeout_s=5)) as p:
        yield p


@pytest.fixture(scope="session")
def cruxeval_rows():
    if not CRUXEVAL.exists():
        pytest.skip(f"CRUXEval data not found at {CRUXEVAL} (expected ../shared/benchmarks/cruxeval.jsonl)")
    return [json.loads(line) for line in CRUXEVAL.read_text().splitlines() if line.strip()]
