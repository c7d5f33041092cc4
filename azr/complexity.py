"""Task complexity and diversity metrics for proposed programs (SPEC §4).

Complexity uses radon (cyclomatic complexity, Halstead volume/difficulty/effort) plus the AST
node count. Diversity is the fraction of distinct programs in a batch and the mean tree edit
distance (APTED) between each new program's AST and its reference programs'. All functions are
pure and never raise on bad code: a program that does not parse scores None and is skipped.
"""

from __future__ import annotations

import ast
from statistics import fmean
from typing import NamedTuple, Sequence


class Complexity(NamedTuple):
    cyclomatic: float
    halstead_volume: float
    halstead_difficulty: float
    halstead_effort: float
    ast_nodes: int


def program_complexity(program: str) -> Complexity | None:
    """Cyclomatic complexity (sum over blocks), Halstead totals and AST size of one program."""
    from radon.complexity import cc_visit
    from radon.metrics import h_visit

    try:
        tree = ast.parse(program)
        blocks = cc_visit(program)
        hal = h_visit(program).total
    except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError, AttributeError):
        return None
    return Complexity(
        cyclomatic=float(sum(b.complexity for b in blocks)) if blocks else 1.0,
        halstead_volume=float(hal.volume),
        halstead_difficulty=float(hal.difficulty),
        halstead_effort=float(hal.effort),
        ast_nodes=sum(1 for _ in ast.walk(tree)),
    )


def _ast_tree(program: str):
    """An APTED tree (label, children) of a program's AST: node types, plus names and constants
    so that renaming a variable counts as an edit."""
    from apted.helpers import Tree

    def build(node: ast.AST) -> Tree:
        label = type(node).__name__
        for attr in ("id", "arg", "attr", "name"):
            if isinstance(getattr(node, attr, None), str):
                label += ":" + getattr(node, attr)
        if isinstance(node, ast.Constant):
            label += ":" + repr(node.value)[:20]
        return Tree(label, *[build(c) for c in ast.iter_child_nodes(node)])

    return build(ast.parse(program))


def ast_edit_distance(a: str, b: str) -> int | None:
    """Tree edit distance (unit costs) between two programs' ASTs; None if either won't parse."""
    from apted import APTED

    try:
        return int(APTED(_ast_tree(a), _ast_tree(b)).compute_edit_distance())
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def distinct_fraction(programs: Sequence[str]) -> float:
    """Distinct programs / programs (whitespace-normalised); 0 for an empty batch."""
    if not programs:
        return 0.0
    return len({"\n".join(line.rstrip() for line in p.strip().splitlines()) for p in programs}) / len(programs)


def mean_edit_distance_to_refs(pairs: Sequence[tuple[str, Sequence[str]]]) -> float | None:
    """Mean over new programs of the mean AST edit distance to that program's references."""
    per_program = []
    for program, refs in pairs:
        ds = [d for d in (ast_edit_distance(program, r) for r in refs) if d is not None]
        if ds:
            per_program.append(fmean(ds))
    return fmean(per_program) if per_program else None


def batch_complexity(programs: Sequence[str]) -> dict[str, float]:
    """Mean complexity metrics over the parseable programs of a batch, as flat metric keys."""
    cs = [c for c in map(program_complexity, programs) if c is not None]
    if not cs:
        return {}
    return {f"complexity/{name}": fmean(float(getattr(c, name)) for c in cs) for name in Complexity._fields}
