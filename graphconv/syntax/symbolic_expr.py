"""Spec expressions evaluated where names are symbolic integers (:mod:`graphconv.syntax.symbolic`).

``evaluate_symbolic(parse_expr("(i_h - k + 2 * p) // s + 1"), env)`` with Dims for ``i_h``, ``k``… gives the Dim of
that window count. Wherever no operand is symbolic, the plain evaluator runs (same values, same errors). A symbolic
operand goes through the normal form; what it cannot express — true division, a power that is not a small
integer, a comparison it cannot settle — raises Undecided naming the symbols, and the caller then gives those
symbols values. Comparing a symbolic integer with a string, None or a tuple is settled (a size is none of those):
``padding == 'same'`` is False for a symbolic ``padding``.
"""
from __future__ import annotations

from typing import Any, Mapping

from graphconv.errors import SpecError
from graphconv.syntax import symbolic
from graphconv.syntax.expr import (BinOp, Compare, Const, Expr, Function, Neg, STRUCTURE, Subscript, TUPLE_FUNCTIONS,
                                   evaluate, evaluate_structure, to_source)
from graphconv.syntax.symbolic import Dim, Undecided, has_symbols, symbols_of

ARITHMETIC = {"+": symbolic.add, "-": lambda a, b: symbolic.add(a, symbolic.negate(b)), "*": symbolic.multiply,
              "//": symbolic.floor_divide, "%": symbolic.modulo}


def evaluate_symbolic(expr: Expr, env: Mapping[str, Any]) -> Any:
    """The value of ``expr``: a symbolic integer where it reads symbolic names, else what :func:`evaluate` gives."""
    if isinstance(expr, STRUCTURE):
        return evaluate_structure(expr, env, evaluate_symbolic)
    if isinstance(expr, Subscript):
        target, index = evaluate_symbolic(expr.target, env), evaluate_symbolic(expr.index, env)
        if isinstance(index, Dim):
            raise _undecided(expr, [index], "the index needs a value")
        return _plain(Subscript(expr.line, expr.column, _const(expr.target, target), _const(expr.index, index)))
    operands = [evaluate_symbolic(child, env) for child in _operands(expr)]
    if not any(has_symbols(value) for value in operands):
        return _plain(_rebuilt(expr, operands))
    return _symbolic(expr, operands)


def _operands(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, Neg):
        return (expr.operand,)
    if isinstance(expr, (BinOp, Compare)):
        return (expr.left, expr.right)
    if isinstance(expr, Function):
        return expr.args
    raise TypeError(f"not an expression: {expr!r}")


def _const(at: Expr, value: Any) -> Const:
    return Const(at.line, at.column, value)


def _rebuilt(expr: Expr, operands: list) -> Expr:
    """``expr`` with its operands replaced by their (plain) values."""
    consts = [_const(child, value) for child, value in zip(_operands(expr), operands)]
    if isinstance(expr, Neg):
        return Neg(expr.line, expr.column, consts[0])
    if isinstance(expr, Function):
        return Function(expr.line, expr.column, expr.name, tuple(consts))
    return type(expr)(expr.line, expr.column, expr.op, *consts)


def _plain(expr: Expr) -> Any:
    """The plain evaluator's value (a tuple function or a subscript may carry symbolic items through)."""
    return evaluate(expr, {})


def _symbolic(expr: Expr, operands: list) -> Any:
    if isinstance(expr, Function) and expr.name == "prod":
        product: Any = 1
        for item in operands[0] if isinstance(operands[0], tuple) else operands:
            product = symbolic.multiply(product, item)
        return product
    if isinstance(expr, Function) and expr.name in TUPLE_FUNCTIONS:
        return _plain(_rebuilt(expr, operands))  # pair(stride): items are carried, not computed with
    if isinstance(expr, Compare):
        return _compare(expr, *operands)
    for child, value in zip(_operands(expr), operands):
        if not (isinstance(value, Dim) or (isinstance(value, int) and not isinstance(value, bool))):
            raise _undecided(expr, operands, f"{to_source(child)} is {value!r}, not an integer")
    try:
        if isinstance(expr, Neg):
            return symbolic.negate(operands[0])
        if isinstance(expr, Function):
            return symbolic.call(expr.name, *operands) if expr.name != "ceil_div" else _ceil_div(*operands)
        if expr.op == "**":
            return operands[0] ** _small_exponent(expr, operands)
        if expr.op not in ARITHMETIC:
            raise _undecided(expr, operands, "true division gives a fraction")
        return ARITHMETIC[expr.op](*operands)
    except ZeroDivisionError:
        raise SpecError(f"division by zero in {to_source(expr)}", line=expr.line, column=expr.column) from None


def _ceil_div(a: Any, b: Any) -> Any:
    return symbolic.negate(symbolic.floor_divide(symbolic.negate(a), b))


def _small_exponent(expr: BinOp, operands: list) -> int:
    exponent = operands[1]
    if isinstance(exponent, Dim) or not 0 <= exponent <= 64:
        raise _undecided(expr, operands, "its exponent is not a small constant")
    return exponent


def _undecided(expr: Expr, operands: list, why: str) -> Undecided:
    return Undecided(f"{to_source(expr)}: {why}", symbols_of(tuple(operands)))


def _compare(expr: Compare, left: Any, right: Any) -> bool:
    if expr.op in ("==", "!="):
        equal = _equal(left, right)
        if equal is None:
            raise _undecided(expr, [left, right], "the comparison needs values")
        return equal if expr.op == "==" else not equal
    try:
        return {"<": lambda: left < right, "<=": lambda: left <= right, ">": lambda: left > right,
                ">=": lambda: left >= right}[expr.op]()
    except TypeError:
        raise SpecError(f"{to_source(expr)}: cannot compare {left!r} with {right!r}", line=expr.line,
                        column=expr.column) from None


def _equal(left: Any, right: Any) -> bool | None:
    """Whether two values are equal; None when it depends on the symbols' values."""
    if isinstance(left, tuple) or isinstance(right, tuple):
        if not (isinstance(left, tuple) and isinstance(right, tuple)) or len(left) != len(right):
            return False
        answers = [_equal(a, b) for a, b in zip(left, right)]
        return False if False in answers else (None if None in answers else True)
    numbers = [isinstance(v, Dim) or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in (left, right)]
    if not all(numbers):
        return False if any(isinstance(v, Dim) for v in (left, right)) else left == right
    try:
        return left == right
    except Undecided:
        return None
