"""Shared fixtures: sandbox pools per test module (with and without the run-time ban hook), the CRUXEval
rows shipped with the package, and the context-sensitive tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


def make_context_sensitive(policy):
    """Re-draw the matrices of a tiny policy at gain 2, in place, and return it. At its own init scale the tiny
    model greedily repeats one token whatever the context, which would let a broken KV cache pass; at this
    scale every response and log-prob depends on the whole context."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.module.parameters():
            if p.dim() == 2:
                p.copy_((torch.randn(p.shape, generator=g) * 2.0 / p.shape[1] ** 0.5).to(p.device))
    return policy
