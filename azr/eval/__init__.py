"""Evaluation on external benchmarks: CRUXEval-O/I, HumanEval-style synthesis and math (``azr eval``).

``SUITES`` maps a suite name to its object (see :class:`azr.eval.suite.Suite`).
"""

from azr.eval.cruxeval import CRUXEVAL_I, CRUXEVAL_O
from azr.eval.humaneval import HUMANEVAL
from azr.eval.mathsuite import MATH
from azr.eval.stats import mcnemar_exact, mean_pass_at_k, pass_at_k
from azr.eval.suite import EvalDataError, EvalItem, Suite, load_items

SUITES: dict[str, Suite] = {s.name: s for s in (CRUXEVAL_O, CRUXEVAL_I, HUMANEVAL, MATH)}

__all__ = ["SUITES", "EvalDataError", "EvalItem", "Suite", "load_items", "mcnemar_exact", "mean_pass_at_k",
           "pass_at_k"]
