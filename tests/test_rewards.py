"""Rewards (SPEC §1 steps 3–5) against hand-computed values."""

from __future__ import annotations

import pytest

from azr.rewards import (
    FORMAT_PENALTY, NO_REWARD_PENALTY, accuracy, composite, learnability, propose_reward, solve_rate, solve_reward,
)


@pytest.mark.parametrize("rate,expected", [
    (0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.25, 0.75), (1 / 8, 0.875), (7 / 8, 0.125), (3 / 8, 0.625),
])
def test_learnability(rate, expected):
    assert learnability(rate) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("rate", [-0.1, 1.1, float("nan")])
def test_learnability_rejects_rates_outside_unit_interval(rate):
    with pytest.raises(ValueError):
        learnability(rate)


def test_accuracy_and_solve_rate():
    assert accuracy(True) == 1.0 and accuracy(False) == 0.0
    assert solve_rate([True, False, False, True, False, False, False, False]) == 0.25
    assert solve_rate([True] * 8) == 1.0 and solve_rate([False] * 8) == 0.0
    with pytest.raises(ValueError):
        solve_rate([])


@pytest.mark.parametrize("format_ok,r,expected", [
    (True, 1.0, 1.0), (True, 0.75, 0.75), (True, 0.125, 0.125),
    (True, 0.0, -0.5),
    (False, 1.0, -1.0), (False, 0.0, -1.0), (False, 0.5, -1.0),
])
def test_composite(format_ok, r, expected):
    assert composite(format_ok, r) == expected


def test_penalty_constants():
    assert (FORMAT_PENALTY, NO_REWARD_PENALTY) == (-1.0, -0.5)


@pytest.mark.parametrize("valid,rate,expected", [
    (False, None, -1.0),  # format error or failed validation
    (False, 0.5, -1.0),
    (True, 0.0, -0.5),  # valid but never solved: learnability 0
    (True, 1.0, -0.5),  # valid but trivial
    (True, 0.25, 0.75),
    (True, 5 / 8, 0.375),
])
def test_propose_reward(valid, rate, expected):
    assert propose_reward(valid, rate) == pytest.approx(expected)


def test_propose_reward_needs_solve_rate_when_valid():
    with pytest.raises(ValueError):
        propose_reward(True, None)


@pytest.mark.parametrize("format_ok,correct,expected", [
    (True, True, 1.0), (True, False, -0.5), (False, False, -1.0), (False, True, -1.0),
])
def test_solve_reward(format_ok, correct, expected):
    assert solve_reward(format_ok, correct) == expected
