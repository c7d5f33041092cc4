"""The executor: a sandbox pool for untrusted code, task validation, and answer checkers."""

from azr.executor.checkers import (
    AbductionCheck,
    InductionCheck,
    check_abduction_many,
    check_deduction,
    check_deduction_many,
    check_induction_many,
)
from azr.executor.literals import call_expr, parse_args, parse_literal, values_equal
from azr.executor.sandbox import ExecResult, Job, SandboxConfig, SandboxInfo, SandboxPool, Status
from azr.executor.validate import InvalidReason, Validation, static_check, validate, validate_many

__all__ = [
    "AbductionCheck", "ExecResult", "InductionCheck", "InvalidReason", "Job", "SandboxConfig", "SandboxInfo",
    "SandboxPool", "Status", "Validation", "call_expr", "check_abduction_many", "check_deduction", "check_deduction_many",
    "check_induction_many", "parse_args", "parse_literal", "static_check", "validate", "validate_many",
    "values_equal",
]
