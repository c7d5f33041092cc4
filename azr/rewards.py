"""Rewards of self-play (SPEC §1 steps 3–5), as pure functions of plain values.

    r_propose = learnability(r̄)           r̄ = mean solve accuracy over n Monte-Carlo tries
    r_solve   = accuracy(correct)
    R         = composite(format_ok, r_role)
"""

from __future__ import annotations

import statistics
from typing import Sequence

FORMAT_PENALTY = -1.0
"""Reward of a format error; for the proposer also of a proposal that fails validation."""
NO_REWARD_PENALTY = -0.5
"""Reward of a well-formatted response that earns nothing."""


def learnability(solve_rate: float) -> float:
    """r_propose = 0 if r̄ ∈ {0, 1} else 1 − r̄.

    A task the solver always or never solves teaches nothing; otherwise harder is better.
    """
    if not 0.0 <= solve_rate <= 1.0:
        raise ValueError(f"solve rate must be in [0, 1], got {solve_rate}")
    return 0.0 if solve_rate in (0.0, 1.0) else 1.0 - solve_rate


def accuracy(correct: bool) -> float:
    """r_solve = 1 if the answer is correct by execution else 0."""
    return 1.0 if correct else 0.0


def solve_rate(correct: Sequence[bool]) -> float:
    """r̄ = (1/n) Σ_i 1[answer_i correct], over the n Monte-Carlo solves of one task."""
    if not correct:
        raise ValueError("solve rate of zero attempts is undefined")
    return statistics.fmean(accuracy(c) for c in correct)


def composite(format_ok: bool, role_reward: float) -> float:
    """R = r_role if well-formatted and r_role > 0; −0.5 if well-formatted and r_role ≤ 0;
    −1 if not well-formatted (SPEC §1 step 5)."""
    if not format_ok:
        return FORMAT_PENALTY
    return role_reward if role_reward > 0 else NO_REWARD_PENALTY


def propose_reward(valid: bool, solve_rate: float | None) -> float:
    """R_propose = composite(valid, learnability(r̄)): an invalid proposal (format error or
    failed validation) gets −1, a valid one with learnability 0 gets −0.5, else 1 − r̄."""
    if not valid:
        return FORMAT_PENALTY
    if solve_rate is None:
        raise ValueError("a valid proposal needs its solve rate (learnability stage) to be rewarded")
    return composite(True, learnability(solve_rate))


def solve_reward(format_ok: bool, correct: bool) -> float:
    """R_solve = composite(format_ok, accuracy(correct)): 1, −0.5 or −1."""
    return composite(format_ok, accuracy(correct and format_ok))
