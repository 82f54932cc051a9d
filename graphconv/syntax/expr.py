"""Expressions in op labels and dims: parsed by ``expr.lark`` into a few small nodes, evaluated without ``eval``.

``parse_call("reshape(b * patches, patch_size)")`` gives a :class:`Call`; ``parse_expr("o_h * o_w")`` an
:class:`Expr`. ``evaluate(expr, env)`` computes a value from named ints (and tuples, floats, strings, bools).
"""
from __future__ import annotations

import difflib
import math
import operator
import re
import reprlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from graphconv.errors import SpecError
from graphconv.syntax.grammar import open_grammar

# Bounds that keep a hostile spec from hanging the tool on arithmetic (exponentially large numbers).
NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")  # a name in an expression: expr.lark's NAME token
MAX_INT_BITS = 256
MAX_INT_DIGITS = len(str(2 ** MAX_INT_BITS))  # a literal with more digits is over MAX_INT_BITS for sure
MAX_POWER_EXPONENT = 64
MAX_LENGTH = 10_000  # characters in one expression or label: longer text is refused before parsing
# Items in one value, counted through nested tuples: a tuple of tuples that share their items is cheap to build
# (d2: (d1, d1, d1, d1)) and exponential to print, compare or hash.
MAX_VALUE_ITEMS = 10_000

CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None, "true": True, "false": False,
                             "inf": math.inf}
MAX_NTUPLE = 16


@dataclass(frozen=True)
class Expr:
    line: int
    column: int


@dataclass(frozen=True)
class Const(Expr):
    value: Any


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr


@dataclass(frozen=True)
class Compare(Expr):
    """``left == right`` (also ``!=``, ``<``, ``<=``, ``>``, ``>=``): a bool."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Conditional(Expr):
    """``then if test else otherwise``: only the chosen branch is evaluated."""

    test: Expr
    then: Expr
    otherwise: Expr


@dataclass(frozen=True)
class Subscript(Expr):
    """``target[index]``: an item of a tuple (``pair(stride)[0]``)."""

    target: Expr
    index: Expr


@dataclass(frozen=True)
class Tuple(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Function(Expr):
    """``min(a, b)``, ``max(…)``, ``abs(x)``, ``ceil_div(a, b)`` — the only calls allowed inside an expression."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Splice(Expr):
    """``...batch``: a group of dims — any number of them, a tuple — spliced into a shape or a tuple."""

    id: str


@dataclass(frozen=True)
class Apply(Expr):
    """``conv2d(x, w, padding=1)``, ``torch.cat((a, b), dim=-1)``: a call of a named function with keywords,
    which only a reference expression may make (graphconv.check.reference resolves and checks the name)."""

    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True)
class Call:
    """An op label: the op's name and its arguments (positional, then keyword) as expressions."""

    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...]
    line: int
    column: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _ntuple(value: Any, n: int) -> tuple:
    """``value`` as a tuple of ``n`` items: a number repeated, a tuple of ``n`` as it is (torch's ``_ntuple``)."""
    if not isinstance(n, int) or not 1 <= n <= MAX_NTUPLE:
        raise ValueError(f"the length must be an integer from 1 to {MAX_NTUPLE}, got {show_value(n)}")
    if isinstance(value, tuple):
        if len(value) != n:
            raise ValueError(f"expected {n} values, got {show_value(value)}")
        return value
    return (value,) * n


def _pair(value: Any) -> tuple:
    return _ntuple(value, 2)


def _prod(value: Any) -> int | float:
    """The product of a tuple's numbers (``prod(spatial)``: how many positions a group of dims holds); 1 for ()."""
    items = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise ValueError(f"expected numbers, got {value!r}")
    result = 1
    for item in items:
        result *= item
        if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            raise ValueError(f"the product is too large (more than {MAX_INT_BITS} bits)")
    return result


FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs, "ceil_div": _ceil_div,
                                            "pair": _pair, "ntuple": _ntuple, "prod": _prod}
ARITY: dict[str, tuple[int, float]] = {"min": (2, math.inf), "max": (2, math.inf), "abs": (1, 1),
                                       "ceil_div": (2, 2), "pair": (1, 1), "ntuple": (2, 2), "prod": (1, 1)}
TUPLE_FUNCTIONS = ("pair", "ntuple", "prod")  # these take any value (a number, a tuple, a string), not only numbers
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "/": operator.truediv,
    "%": operator.mod,
    "**": operator.pow,
}


def _pos(meta_or_token: Any) -> tuple[int, int]:
    return getattr(meta_or_token, "line", 1), getattr(meta_or_token, "column", 1)


@v_args(meta=True)
class ExprTransformer(Transformer):
    """One method per rule of ``expr.lark``. With ``calls`` (a reference expression), a call of any name, dotted
    or not and with keywords, becomes an :class:`Apply`; otherwise only :data:`FUNCTIONS` may be called."""

    def __init__(self, calls: bool = False) -> None:
        super().__init__()
        self.calls = calls

    def call(self, meta, children):
        name, arguments = children[0], (children[1] if len(children) > 1 else None) or []
        args = tuple(a for a in arguments if not isinstance(a, tuple))
        kwargs = tuple(a for a in arguments if isinstance(a, tuple))
        seen_keyword = False
        for a in arguments:
            if isinstance(a, tuple):
                seen_keyword = True
            elif seen_keyword:
                raise SpecError("positional argument after a keyword argument", line=a.line, column=a.column)
        return Call(str(name), args, kwargs, *_pos(name))

    def arguments(self, meta, children):
        return [c for c in children if c is not None]

    def keyword(self, meta, children):
        return (str(children[0]), children[1])

    def binary(self, meta, children):
        left, symbol, right = children
        return BinOp(*_pos(meta), str(symbol), left, right)

    def compare(self, meta, children):
        left, symbol, right = children
        return Compare(*_pos(meta), str(symbol), left, right)

    def conditional(self, meta, children):
        then, test, otherwise = children
        return Conditional(*_pos(meta), test, then, otherwise)

    def subscript(self, meta, children):
        return Subscript(*_pos(meta), children[0], children[1])

    def neg(self, meta, children):
        return Neg(*_pos(meta), children[0])

    def integer(self, meta, children):
        token = children[0]
        if len(token.lstrip("0")) > MAX_INT_DIGITS or int(token).bit_length() > MAX_INT_BITS:
            raise SpecError(f"the integer {token[:20]}… is too large (more than {MAX_INT_BITS} bits)",
                            line=token.line, column=token.column)
        return Const(*_pos(token), int(token))

    def real(self, meta, children):
        return Const(*_pos(children[0]), float(children[0]))

    def string(self, meta, children):
        return Const(*_pos(children[0]), str(children[0])[1:-1])

    def name(self, meta, children):
        token = children[0]
        if str(token) in CONSTANTS:
            return Const(*_pos(token), CONSTANTS[str(token)])
        return Name(*_pos(token), str(token))

    def function(self, meta, children):
        parts = [c for c in children if isinstance(c, Token)]
        arguments = next((c for c in children if isinstance(c, list)), [])
        name, first = ".".join(parts), parts[0]
        args = tuple(a for a in arguments if not isinstance(a, tuple))
        kwargs = tuple(a for a in arguments if isinstance(a, tuple))
        if self.calls:
            return Apply(*_pos(first), name, args, kwargs)
        if name not in FUNCTIONS:
            raise SpecError(
                f"unknown function {name}() in an expression; allowed: {', '.join(sorted(FUNCTIONS))}",
                line=first.line,
                column=first.column,
            )
        if kwargs:
            raise SpecError(f"{name}() takes no keyword arguments", line=first.line, column=first.column)
        least, most = ARITY[name]
        if not least <= len(args) <= most:
            count = str(least) if least == most else f"at least {least}"
            raise SpecError(f"{name}() takes {count} argument(s), got {len(args)}", line=first.line,
                            column=first.column)
        return Function(*_pos(first), name, args)

    def splice(self, meta, children):
        return Splice(*_pos(meta), str(children[0]))

    def tuple(self, meta, children):
        return Tuple(*_pos(meta), tuple(c for c in children if c is not None))

    def empty_tuple(self, meta, children):
        return Tuple(*_pos(meta), ())


MAX_DEPTH = 100  # deeper expressions are refused: evaluating them would exhaust Python's stack


@lru_cache(maxsize=None)
def _parser() -> Lark:
    """One parser for both start rules (built on first use, so importing this module costs no grammar)."""
    return open_grammar("expr.lark", start=["call", "expr"])


@lru_cache(maxsize=4096)
def _parse(text: str, start: str, calls: bool = False) -> Any:
    """Parse ``text`` from rule ``start``; cached, since labels and dims repeat (the results are immutable).
    ``calls``: any function may be called (a reference expression)."""
    if len(text) > MAX_LENGTH:
        raise SpecError(f"expression longer than {MAX_LENGTH} characters ({len(text)})", line=1, column=1)
    try:
        result = ExprTransformer(calls).transform(_parser().parse(text, start=start))
    except RecursionError:
        raise SpecError(f"expression nested more than {MAX_DEPTH} levels deep", line=1, column=1) from None
    except UnexpectedInput as error:
        dot = _attribute_dot(text)
        if dot is not None and not isinstance(error, UnexpectedCharacters):  # x.y outside a call: no attributes
            raise SpecError(f"unexpected character '.' in {text!r} (names have no attributes)", line=1,
                            column=dot + 1, source=text) from None
        raise SpecError(_describe(error, text), line=error.line, column=error.column, source=text) from None
    except SpecError as error:
        raise error.located(source=text) from None
    except Exception as error:  # lark wraps errors raised inside the transformer
        inner = getattr(error, "orig_exc", None)
        if isinstance(inner, SpecError):
            raise inner.located(source=text) from None
        raise
    if _depth(result) > MAX_DEPTH:
        raise SpecError(f"expression nested more than {MAX_DEPTH} levels deep", line=1, column=1, source=text)
    return result


def sub_expressions(node: Any) -> list:
    """The sub-expressions of a node (or a call's arguments)."""
    if isinstance(node, (Call, Apply)):
        return list(node.args) + [v for _, v in node.kwargs]
    found = []
    for value in (getattr(node, f) for f in node.__dataclass_fields__):
        if isinstance(value, Expr):
            found.append(value)
        elif isinstance(value, tuple):
            found.extend(v for v in value if isinstance(v, Expr))
    return found


def _depth(root: Any) -> int:
    """How deeply ``root`` nests (iteratively, so a hostile expression cannot overflow the stack here)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in sub_expressions(node))
    return deepest


_DOTTED = re.compile(r"'[^']*'|\"[^\"]*\"|[A-Za-z_][A-Za-z_0-9]*(\.)[A-Za-z_]")


def _attribute_dot(text: str) -> int | None:
    """Where the first ``name.name`` of ``text`` (outside string literals) has its dot, if anywhere."""
    return next((m.start(1) for m in _DOTTED.finditer(text) if m.group(1)), None)


def _describe(error: UnexpectedInput, text: str) -> str:
    if isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        return f"unexpected end of expression {text!r}"
    if isinstance(error, UnexpectedCharacters):
        return f"unexpected character {text[error.pos_in_stream]!r} in {text!r}"
    token = getattr(error, "token", None)
    return f"unexpected {str(token)!r} in {text!r}"


def parse_call(text: str) -> Call:
    """Parse an op label: ``name`` or ``name(arg, ..., key=value)``."""
    return _parse(text.strip(), "call")


def parse_expr(text: str) -> Expr:
    """Parse one expression: ``(i_h - kernel_h + 2 * padding) // stride + 1``."""
    return _parse(text.strip(), "expr")


def parse_reference(text: str) -> Expr:
    """Parse a reference expression, where any function may be called: ``conv2d(conv2d(x, dw, groups=c), pw)``."""
    return _parse(text.strip(), "expr", True)


def as_expr(value: Any, line: int = 0, column: int = 0) -> Expr:
    """A YAML value as an expression: strings are parsed, numbers and lists become constants and tuples."""
    if isinstance(value, str):
        try:
            return _shift(parse_expr(value), line, column)
        except SpecError as error:
            if not line:
                raise
            at = column + (error.column or 1) - 1
            raise SpecError(error.message, line=line, column=at) from None
    if isinstance(value, (list, tuple)):
        return Tuple(line, column, tuple(as_expr(v, line, column) for v in value))
    if value is None or isinstance(value, (bool, int, float)):
        return Const(line, column, value)
    raise SpecError(f"expected a number, a name, an expression or a list, got {show_value(value)}", line=line,
                    column=column)


def _shift(expr: Expr, line: int, column: int) -> Expr:
    """Place an expression parsed from a one-line string at ``line``/``column`` of a larger file."""
    if not line:
        return expr
    fields = {k: getattr(expr, k) for k in expr.__dataclass_fields__}
    for key, value in fields.items():
        if isinstance(value, Expr):
            fields[key] = _shift(value, line, column)
        elif isinstance(value, tuple) and value and isinstance(value[0], Expr):
            fields[key] = tuple(_shift(v, line, column) for v in value)
        elif key == "kwargs":  # an Apply's (keyword, expression) pairs
            fields[key] = tuple((k, _shift(v, line, column)) for k, v in value)
    fields["line"], fields["column"] = line, column + expr.column - 1
    return type(expr)(**fields)


def names(expr: Expr | Call) -> set[str]:
    """The free names an expression (or a call's arguments) reads."""
    if isinstance(expr, (Name, Splice)):
        return {expr.id}
    found: set[str] = set()
    for child in sub_expressions(expr):
        found |= names(child)
    return found


def evaluate(expr: Expr, env: Mapping[str, Any]) -> Any:
    """The value of ``expr`` with names looked up in ``env``. Raises SpecError at the expression's position."""
    if isinstance(expr, STRUCTURE):
        return evaluate_structure(expr, env, evaluate)
    if isinstance(expr, Splice):
        raise SpecError(f"...{expr.id} splices a group of dims: write it inside a shape or a tuple "
                        f"((...{expr.id}, n)), or use {expr.id} for the tuple itself", line=expr.line,
                        column=expr.column)
    if isinstance(expr, Apply):
        raise SpecError(f"{expr.name}(): only a reference expression calls functions with keywords or dotted "
                        "names", line=expr.line, column=expr.column)
    if isinstance(expr, Neg):
        return _check_number(expr, -_number(expr.operand, env))
    if isinstance(expr, Function) and expr.name in TUPLE_FUNCTIONS:
        try:
            value = FUNCTIONS[expr.name](*(evaluate(a, env) for a in expr.args))
        except (TypeError, ValueError) as error:
            raise SpecError(f"{to_source(expr)}: {error}", line=expr.line, column=expr.column) from None
        return _check_size(expr, value)
    if isinstance(expr, Function):
        return _arithmetic(expr, FUNCTIONS[expr.name], *(_number(a, env) for a in expr.args))
    if isinstance(expr, Compare):
        return _compare(expr, evaluate(expr.left, env), evaluate(expr.right, env))
    if isinstance(expr, Subscript):
        return _subscript(expr, evaluate(expr.target, env), evaluate(expr.index, env))
    if isinstance(expr, BinOp):
        left, right = _number(expr.left, env), _number(expr.right, env)
        if expr.op in ("//", "/", "%") and right == 0:
            raise SpecError(f"division by zero in {to_source(expr)}", line=expr.line, column=expr.column)
        if expr.op == "**" and (abs(right) > MAX_POWER_EXPONENT or (isinstance(right, int) and right < 0)):
            raise SpecError(f"exponent {right} out of range in {to_source(expr)}", line=expr.line, column=expr.column)
        return _arithmetic(expr, BINARY[expr.op], left, right)
    raise TypeError(f"not an expression: {expr!r}")


STRUCTURE = (Const, Name, Tuple, Conditional)  # the nodes evaluate_structure handles


def evaluate_structure(expr: Const | Name | Tuple | Conditional, env: Mapping[str, Any],
                       evaluate_child: Callable[[Expr, Mapping[str, Any]], Any]) -> Any:
    """The value of a constant, a name, a tuple (each ``...group`` spliced in) or a conditional (only the chosen
    branch evaluated), ``evaluate_child`` giving each sub-expression's value. Both evaluators, :func:`evaluate`
    and the symbolic one (:mod:`graphconv.syntax.symbolic_expr`), run these cases here: same values, same errors."""
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Name):
        if expr.id not in env:
            raise SpecError(f"unknown name {expr.id!r}{suggest(expr.id, env)}", line=expr.line, column=expr.column)
        return env[expr.id]
    if isinstance(expr, Tuple):
        values: list[Any] = []
        for item in expr.items:
            if isinstance(item, Splice):
                values.extend(group_value(item, env))
            else:
                values.append(evaluate_child(item, env))
        return _check_size(expr, tuple(values))
    if isinstance(expr, Conditional):
        test = evaluate_child(expr.test, env)
        if not isinstance(test, bool):
            raise SpecError(f"the condition {to_source(expr.test)} is {show_value(test)}, not True or False",
                            line=expr.test.line, column=expr.test.column)
        return evaluate_child(expr.then if test else expr.otherwise, env)
    raise TypeError(f"not a constant, name, tuple or conditional: {expr!r}")


def group_value(splice: Splice, env: Mapping[str, Any]) -> tuple:
    """The tuple a ``...group`` stands for."""
    value = evaluate(Name(splice.line, splice.column, splice.id), env)
    if not isinstance(value, tuple):
        raise SpecError(f"...{splice.id}: {splice.id} is {value!r}, not a group of dims (a tuple)",
                        line=splice.line, column=splice.column)
    return value


def _compare(expr: Compare, left: Any, right: Any) -> bool:
    if expr.op in ("==", "!="):
        return COMPARE[expr.op](left, right)
    for side, value in ((expr.left, left), (expr.right, right)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{to_source(side)} is {show_value(value)}, not a number", line=side.line,
                            column=side.column)
    return COMPARE[expr.op](left, right)


def _subscript(expr: Subscript, target: Any, index: Any) -> Any:
    if not isinstance(target, tuple):
        raise SpecError(f"{to_source(expr.target)} is {show_value(target)}, not a tuple", line=expr.line,
                        column=expr.column)
    if isinstance(index, bool) or not isinstance(index, int) or not -len(target) <= index < len(target):
        raise SpecError(f"index {show_value(index)} out of range for {to_source(expr.target)} = "
                        f"{show_value(target)}", line=expr.line, column=expr.column)
    return target[index]


def _number(expr: Expr, env: Mapping[str, Any]) -> int | float:
    value = evaluate(expr, env)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{to_source(expr)} is {show_value(value)}, not a number", line=expr.line,
                        column=expr.column)
    return value


def _arithmetic(expr: Expr, function: Callable[..., Any], *operands: int | float) -> int | float:
    """``function(*operands)``, with what Python's arithmetic raises (``0.0 ** -1.5``, ``ceil_div(a, 0)``,
    ``1e300 ** 2``) as a SpecError at ``expr``."""
    try:
        value = function(*operands)
    except ZeroDivisionError:
        raise SpecError(f"division by zero in {to_source(expr)}", line=expr.line, column=expr.column) from None
    except OverflowError:
        raise SpecError(f"{to_source(expr)} is too large", line=expr.line, column=expr.column) from None
    return _check_number(expr, value)


def _check_number(expr: Expr, value: int | float) -> int | float:
    if isinstance(value, complex):  # (-8) ** 0.5
        raise SpecError(f"{to_source(expr)} is not a real number", line=expr.line, column=expr.column)
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise SpecError(f"{to_source(expr)} is too large ({value.bit_length()} bits)", line=expr.line, column=expr.column)
    return value


def _check_size(expr: Expr, value: Any) -> Any:
    if _items_over(value, MAX_VALUE_ITEMS):
        raise SpecError(f"{to_source(expr)} holds more than {MAX_VALUE_ITEMS} items (counted through nested "
                        "tuples)", line=expr.line, column=expr.column)
    return value


def _items_over(value: Any, limit: int) -> bool:
    """Whether ``value`` holds more than ``limit`` items, counting each tuple and each item of nested tuples.
    Stops at the limit: walking a tuple of tuples that share their items costs at most ``limit`` steps."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, tuple):
            stack.extend(item)
    return False


MAX_SHOWN = 160  # characters of a value in a message
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxtuple, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxset = 3, 8, 8, 8, 8
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = MAX_SHOWN, MAX_SHOWN, MAX_SHOWN


def show_value(value: Any) -> str:
    """``repr(value)`` cut short for a message: a few items of each tuple, list or dict, a few levels deep, at
    most :data:`MAX_SHOWN` characters. Every message that shows a value uses it: a value can be huge, and printing
    it whole would hang."""
    text = _SHORT.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def suggest(name: str, known: Any) -> str:
    """``"; did you mean 'x'?"`` for the nearest known names, or ``""``."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "/": 2, "%": 2, "**": 4}


def to_source(expr: Expr | Call, parent: float = 0) -> str:
    """Expression text again, with only the parentheses it needs."""
    if isinstance(expr, (Call, Apply)):
        args = [to_source(a) for a in expr.args] + [f"{k}={to_source(v)}" for k, v in expr.kwargs]
        return f"{expr.name}({', '.join(args)})" if args or isinstance(expr, Apply) else expr.name
    if isinstance(expr, Splice):
        return f"...{expr.id}"
    if isinstance(expr, Const):
        return repr(expr.value)
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Tuple):
        inner = ", ".join(to_source(i) for i in expr.items)
        return f"({inner},)" if len(expr.items) == 1 else f"({inner})"
    if isinstance(expr, Function):
        return f"{expr.name}({', '.join(to_source(a) for a in expr.args)})"
    if isinstance(expr, Neg):
        text = f"-{to_source(expr.operand, 3)}"
        return f"({text})" if parent > 4 else text  # the base of a power: -a ** 2 is -(a ** 2)
    if isinstance(expr, Subscript):
        target = to_source(expr.target, 5)
        return f"{target}[{to_source(expr.index)}]"
    if isinstance(expr, Conditional):
        text = f"{to_source(expr.then, 0.5)} if {to_source(expr.test, 0.5)} else {to_source(expr.otherwise)}"
        return f"({text})" if parent > 0 else text
    if isinstance(expr, Compare):
        text = f"{to_source(expr.left, 1)} {expr.op} {to_source(expr.right, 1)}"
        return f"({text})" if parent >= 1 else text
    level = PRECEDENCE[expr.op]
    right_level = level if expr.op == "**" else level + 1
    text = f"{to_source(expr.left, level + (expr.op == '**'))} {expr.op} {to_source(expr.right, right_level)}"
    return f"({text})" if level < parent else text
