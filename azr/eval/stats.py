"""The statistics of an evaluation: the unbiased pass@k estimator and McNemar's exact test.

Both are small pure functions with the formula in the docstring; ``tests/test_eval.py``
checks them against numbers worked out by hand.
"""

from __future__ import annotations

from math import comb
from typing import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021):

        pass@k = 1 - C(n - c, k) / C(n, k)

    the probability that at least one of k samples drawn without replacement from the n is
    correct. It is 1 when n - c < k (every k-subset holds a correct sample)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over items, each given as ``(n, c)``."""
    if not counts:
        return float("nan")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def discordant(pairs: Iterable[tuple[bool, bool]]) -> tuple[int, int]:
    """(B wins, B losses) over paired outcomes ``(A right, B right)``: the items only B got right and those only A
    got right, the two counts :func:`mcnemar_exact` takes (as ``mcnemar_exact(losses, wins)``)."""
    wins = losses = 0
    for a, b in pairs:
        wins += b and not a
        losses += a and not b
    return wins, losses


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes.

    b = items only model A got right, c = items only model B got right (ties carry no
    information). Under H0 the discordant items split as Binomial(b + c, 1/2), so

        p = min(1, 2 * sum_{i=0}^{min(b,c)} C(b + c, i) / 2^(b + c))

    and p = 1 when there are no discordant items."""
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)
