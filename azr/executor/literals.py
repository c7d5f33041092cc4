"""Literal values across the sandbox boundary, and the argument lists of a call.

Values travel as ``repr`` text and are read back with ``ast.literal_eval`` (never ``eval``);
equality is Python ``==`` on the parsed values (SPEC §3). Inputs are argument lists written
the CRUXEval way: ``"(1, ), (1, ), (1, 2)"`` is a call with three arguments.
"""

from __future__ import annotations

import ast
from typing import Any, NamedTuple

from azr.executor.bans import banned_usage

PARSE_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, AttributeError)
MAX_LITERAL_CHARS = 100_000


class Parsed(NamedTuple):
    ok: bool
    value: Any = None


def parse_literal(text: str | None) -> Parsed:
    """Parse one Python literal; ``Parsed(False)`` for anything that is not a literal."""
    if text is None or len(text) > MAX_LITERAL_CHARS:
        return Parsed(False)
    try:
        return Parsed(True, ast.literal_eval(text.strip()))
    except PARSE_ERRORS:
        return Parsed(False)


def parse_args(text: str | None) -> Parsed:
    """Parse a call's argument list (``"1, 'a'"`` or ``"(1, ), (1, 2)"``) into a tuple of values."""
    node = _call_node(text)
    if node is None or node.keywords:
        return Parsed(False)
    try:
        return Parsed(True, tuple(ast.literal_eval(a) for a in node.args))
    except PARSE_ERRORS:
        return Parsed(False)


def _call_node(text: str | None) -> ast.Call | None:
    if text is None or len(text) > MAX_LITERAL_CHARS:
        return None
    try:
        node = ast.parse(call_expr(text), mode="eval").body
    except PARSE_ERRORS:
        return None
    return node if isinstance(node, ast.Call) else None


def input_ok(text: str | None, literal_only: bool = True) -> bool:
    """Is `text` an acceptable argument list? Literal values only (the training rule), or, with
    ``literal_only=False``, any argument expressions that pass the static ban list (CRUXEval's
    reference semantics: a few of its inputs are expressions such as ``'a' * 20``)."""
    if literal_only:
        return parse_args(text).ok
    node = _call_node(text)
    return node is not None and banned_usage(node) is None


def call_expr(args_text: str) -> str:
    """The call the sandbox evaluates for an input: ``f(<args>)``."""
    return f"f({args_text.strip()}\n)"


def values_equal(a: str | None, b: str | None) -> bool:
    """True iff both texts are literals and their values are ``==``."""
    pa, pb = parse_literal(a), parse_literal(b)
    if not (pa.ok and pb.ok):
        return False
    try:
        return bool(pa.value == pb.value)
    except PARSE_ERRORS:
        return False
