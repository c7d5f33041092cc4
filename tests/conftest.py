"""Shared fixtures: sandbox pools per test module (with and without the run-time ban hook), and the CRUXEval
rows shipped with the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from azr.eval.cruxeval import SHIPPED_DATA
from azr.eval.suite import read_rows
from azr.executor import SandboxConfig, SandboxPool

CRUXEVAL = SHIPPED_DATA
"""CRUXEval as shipped in the package: present on every install, so no test skips for want of it."""
SHARED_CRUXEVAL = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "cruxeval.jsonl"
"""The project's reference copy beside the checkout, when there is one; the shipped rows must equal it."""


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(workers=2, timeout_s=5)) as p:
        yield p


@pytest.fixture(scope="module")
def raw_pool():
    """A pool without the run-time ban hook, for tests of the sandbox's other layers on their own."""
    with SandboxPool(SandboxConfig(workers=2, timeout_s=5, audit=False)) as p:
        yield p


@pytest.fixture(scope="session")
def cruxeval_rows():
    return read_rows(CRUXEVAL)
