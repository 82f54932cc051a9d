"""A spec's ``reference:`` — the torch function it must match, how to call it, and the cases to try.

Short form: ``reference: torch.nn.functional.conv2d`` calls it with the spec's inputs in order and every attr
as a keyword of the same name. Long form::

    reference:
      function: torch.nn.functional.layer_norm
      args: [input, (d,), weight, bias]       # expressions: input names, attrs, dims, literals
      kwargs: {eps: eps}
      cases:                                  # attrs and input dims to try beyond the defaults and example
        - {eps: 0.1}
        - {b: 1, n: 5}

Without ``args`` the spec's inputs are passed in order; without ``kwargs`` every attr by name. A word that names
no input, attr or dim is a string: ``kwargs: {approximate: tanh}`` passes ``'tanh'``.

A composite reference is one expression over calls (``reference: "conv2d(conv2d(input, dw, groups=channels,
padding=1), pw)"``, or the same under ``function:``): calls with keywords, arithmetic on tensors, tuples for
several outputs, ``a if training else b``. It is parsed by the expression grammar and evaluated by
:func:`evaluate_reference` — never by Python's ``eval``.

A function must live in one of a few modules of pure math (:data:`ALLOWED_MODULES`), named ``module.function``
or, in a composite, by its bare name (looked up in those modules in order), or be one of the pure tensor functions
of ``torch`` itself listed in :data:`TORCH_FUNCTIONS`: a spec can name a function but not make graphconv import or
run anything else. Imports no torch until a reference is resolved.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import (BINARY, COMPARE, FUNCTIONS, Apply, BinOp, Compare, Conditional, Const, Expr,
                                   Function, Name, Neg, Splice, Subscript, Tuple, as_expr, evaluate, group_value,
                                   names, parse_reference, sub_expressions, suggest, to_source)

ALLOWED_MODULES = ("torch.nn.functional", "torch.special", "torch.linalg", "torch.fft")
# Functions of torch itself a reference may call: pure tensor math, nothing that reads, writes or imports.
TORCH_FUNCTIONS = frozenset({
    "abs", "add", "amax", "amin", "cat", "chunk", "clamp", "cos", "cumsum", "div", "einsum", "erf", "exp",
    "flatten", "flip", "full_like", "gather", "index_select", "log", "logical_not", "masked_fill", "matmul",
    "maximum", "mean", "minimum", "movedim", "mul", "narrow", "ones_like", "outer", "permute", "reshape", "roll",
    "rsqrt", "select", "sigmoid", "sin", "split", "sqrt", "square", "squeeze", "stack", "sub", "sum",
    "take_along_dim", "tanh", "transpose", "tril", "triu", "unsqueeze", "var", "var_mean", "where", "zeros_like",
})
DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*")  # else: a composite expression
SHOWN = 48  # characters of a composite reference shown as the subject of a check
KEYS = ("function", "args", "kwargs", "cases")


@dataclass
class Reference:
    """``function`` is the dotted name called (for a composite, its text, shortened: what a check row shows);
    ``expression`` the composite expression, when the reference is one."""

    function: str
    args: list[Expr]
    kwargs: dict[str, Expr]
    cases: list[dict[str, Any]] = field(default_factory=list)
    expression: Expr | None = None


class _Reader:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def error(self, message: str, *key: Any) -> SpecError:
        line, column = self.spec.meta.where("reference", *key)
        return SpecError(f"reference: {message}", path=self.spec.path, line=line, column=column,
                         source=self.spec.source)

    def read(self, value: Any) -> Reference:
        if isinstance(value, str):
            value = {"function": value}
        if not isinstance(value, dict):
            raise self.error("expected a dotted name such as torch.nn.functional.conv2d, or a mapping with "
                             "function:, args:, kwargs:, cases:")
        for key in value:
            if key not in KEYS:
                raise self.error(f"unknown key {key!r}{suggest(str(key), KEYS)}", key)
        function = value.get("function")
        if not isinstance(function, str):
            raise self.error("function: expected a dotted name such as torch.nn.functional.conv2d", "function")
        if not DOTTED_NAME.fullmatch(function.strip()):
            return self.composite(function, value)
        args = value.get("args", list(self.spec.input_names))
        if not isinstance(args, list):
            raise self.error("args: expected a list", "args")
        kwargs = value.get("kwargs", {name: name for name in self.spec.attrs})
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
            raise self.error("kwargs: expected a mapping of keyword: expression", "kwargs")
        return Reference(
            function,
            [self.expr(v, "args", i) for i, v in enumerate(args)],
            {k: self.expr(v, "kwargs", k) for k, v in kwargs.items()},
            self.cases(value.get("cases")),
        )

    def composite(self, text: str, value: dict) -> Reference:
        """A reference written as one expression over calls."""
        for key in ("args", "kwargs"):
            if key in value:
                raise self.error(f"{key}: a composite reference writes its arguments in the expression", key)
        key = ("function",) if isinstance(self.spec.meta.reference, dict) else ()
        try:
            expression = parse_reference(text)
        except SpecError as error:
            raise self.error(error.message, *key) from None
        for name in sorted(names(expression) - self.known()):
            raise self.error(f"{to_source(expression)} reads {name!r}, which is no input, attr or dim"
                             f"{suggest(name, self.known())} (a string is quoted in an expression: '{name}')", *key)
        shown = text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"
        return Reference(shown, [], {}, self.cases(value.get("cases")), expression)

    def known(self) -> set[str]:
        meta = self.spec.meta
        return set(self.spec.input_names) | set(meta.attrs) | set(meta.symbols()) | set(meta.dims)

    def expr(self, value: Any, *key: Any) -> Expr:
        """An argument: an expression over inputs, attrs and dims; a word that names none of them is a string
        (``approximate: tanh``), as YAML writes one."""
        line, column = self.spec.meta.where("reference", *key)
        try:
            expr = as_expr(value, line, column)
        except SpecError as error:
            raise self.error(error.message, *key) from None
        if isinstance(expr, Name) and expr.id not in self.known():
            return Const(expr.line, expr.column, expr.id)
        return expr

    def cases(self, value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(case, dict) for case in value):
            raise self.error("cases: expected a list of mappings, each attrs and input dims to try", "cases")
        settable = set(self.spec.attrs) | set(self.spec.meta.symbols())
        for index, case in enumerate(value):
            for name in case:
                if name not in settable:
                    raise self.error(f"cases: {name!r} is not an attr or an input dim{suggest(str(name), settable)}",
                                     "cases", index, name)
        return [dict(case) for case in value]


def read_reference(spec: Spec) -> Reference | None:
    """The spec's reference, checked (None when it declares none). Raises SpecError at the bad entry."""
    if spec.meta.reference is None:
        return None
    return _Reader(spec).read(spec.meta.reference)


def resolve(spec: Spec, reference: Reference, allowed: Iterable[str] = ALLOWED_MODULES) -> Callable | dict:
    """The function a reference names, imported only from an allowed module; for a composite, every function
    its expression calls, by the name it calls it."""
    line, column = spec.meta.where("reference", "function")

    def error(message: str) -> SpecError:
        return SpecError(f"reference: {message}", path=spec.path, line=line, column=column, source=spec.source)

    if reference.expression is not None:
        return {name: _lookup(name, tuple(allowed), error) for name in sorted(_called(reference.expression))}
    return _lookup(reference.function, tuple(allowed), error, bare=False)


def _lookup(dotted: str, allowed: tuple[str, ...], error: Callable[[str], SpecError], bare: bool = True) -> Callable:
    """The public function ``module.function`` of an allowed module (or ``torch.<one of TORCH_FUNCTIONS>``); a
    ``bare`` name is looked up in the allowed modules in order, then in TORCH_FUNCTIONS."""
    module_name, _, name = dotted.rpartition(".")
    if not name.isidentifier() or name.startswith("_"):
        raise error(f"{name!r} is not a public function name")
    if module_name == "torch" and name in TORCH_FUNCTIONS:
        return getattr(importlib.import_module("torch"), name)
    if not module_name and bare:
        for candidate in allowed:
            function = getattr(importlib.import_module(candidate), name, None)
            if callable(function):
                return function
        if name in TORCH_FUNCTIONS:
            return getattr(importlib.import_module("torch"), name)
        raise error(f"no function {name!r} in {', '.join(allowed)} or among torch's {', '.join(sorted(TORCH_FUNCTIONS))}")
    if module_name not in allowed:
        raise error(f"{dotted!r} is not in an allowed module; a reference is module.function with "
                    f"module one of: {', '.join(allowed)} (or torch.<function> for torch's pure tensor functions)")
    function = getattr(importlib.import_module(module_name), name, None)
    if not callable(function):
        raise error(f"{module_name} has no function {name!r}")
    return function


def _called(expr: Expr) -> set[str]:
    """The names of the functions an expression calls."""
    found = {expr.name} if isinstance(expr, Apply) else set()
    for child in sub_expressions(expr):
        found |= _called(child)
    return found


def call_reference(spec: Spec, function: Callable | dict, reference: Reference, env: dict[str, Any]) -> Any:
    """Call the reference with its arguments evaluated in ``env`` (input tensors, attrs and dims by name); a
    composite is evaluated with ``function``, the functions it calls by name."""
    try:
        if reference.expression is not None:
            return evaluate_reference(reference.expression, env, function)
        args = [evaluate(expr, env) for expr in reference.args]
        kwargs = {key: evaluate(expr, env) for key, expr in reference.kwargs.items()}
    except SpecError as error:
        raise SpecError(f"reference: {error.message}", path=spec.path, line=error.line, column=error.column,
                        source=spec.source) from None
    return function(*args, **kwargs)


def evaluate_reference(expr: Expr, env: dict[str, Any], functions: dict[str, Callable]) -> Any:
    """The value of a composite reference: like :func:`graphconv.syntax.expr.evaluate`, but its operands may be
    tensors and it calls ``functions`` by name. No Python ``eval``."""
    def value(node: Expr) -> Any:
        return evaluate_reference(node, env, functions)

    if isinstance(expr, Apply):
        return functions[expr.name](*(value(a) for a in expr.args), **{k: value(v) for k, v in expr.kwargs})
    if isinstance(expr, Tuple):
        items: list[Any] = []
        for item in expr.items:
            items.extend(group_value(item, env) if isinstance(item, Splice) else (value(item),))
        return tuple(items)
    if isinstance(expr, Neg):
        return -value(expr.operand)
    if isinstance(expr, BinOp):
        return BINARY[expr.op](value(expr.left), value(expr.right))
    if isinstance(expr, Compare):
        return COMPARE[expr.op](value(expr.left), value(expr.right))
    if isinstance(expr, Conditional):
        return value(expr.then) if _truth(expr.test, value(expr.test)) else value(expr.otherwise)
    if isinstance(expr, Subscript):
        return value(expr.target)[value(expr.index)]
    if isinstance(expr, Function):
        return FUNCTIONS[expr.name](*(value(a) for a in expr.args))
    return evaluate(expr, env)  # constants and names


def _truth(test: Expr, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"the condition {to_source(test)} is {value!r}, not True or False", line=test.line,
                        column=test.column)
    return value
