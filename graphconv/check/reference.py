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

Without ``args`` the spec's inputs are passed in order; without ``kwargs`` every attr by name. The function
must live in one of a few modules of pure math (:data:`ALLOWED_MODULES`), named ``module.function``: a spec
can name a function but not make graphconv import or run anything else. Imports no torch until a reference
is resolved.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import Expr, as_expr, evaluate, suggest

ALLOWED_MODULES = ("torch.nn.functional", "torch.special", "torch.linalg", "torch.fft")
KEYS = ("function", "args", "kwargs", "cases")


@dataclass
class Reference:
    function: str
    args: list[Expr]
    kwargs: dict[str, Expr]
    cases: list[dict[str, Any]] = field(default_factory=list)


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

    def expr(self, value: Any, *key: Any) -> Expr:
        line, column = self.spec.meta.where("reference", *key)
        try:
            expr = as_expr(value, line, column)
        except SpecError as error:
            raise self.error(error.message, *key) from None
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


def resolve(spec: Spec, reference: Reference, allowed: Iterable[str] = ALLOWED_MODULES) -> Callable:
    """The function a reference names, imported only from an allowed module."""
    module_name, _, name = reference.function.rpartition(".")
    allowed = tuple(allowed)
    line, column = spec.meta.where("reference", "function")

    def error(message: str) -> SpecError:
        return SpecError(f"reference: {message}", path=spec.path, line=line, column=column, source=spec.source)

    if module_name not in allowed:
        raise error(f"{reference.function!r} is not in an allowed module; a reference is module.function with "
                    f"module one of: {', '.join(allowed)}")
    if not name.isidentifier() or name.startswith("_"):
        raise error(f"{name!r} is not a public function name")
    function = getattr(importlib.import_module(module_name), name, None)
    if not callable(function):
        raise error(f"{module_name} has no function {name!r}")
    return function


def call_reference(spec: Spec, function: Callable, reference: Reference, env: dict[str, Any]) -> Any:
    """Call the reference with its arguments evaluated in ``env`` (input tensors, attrs and dims by name)."""
    try:
        args = [evaluate(expr, env) for expr in reference.args]
        kwargs = {key: evaluate(expr, env) for key, expr in reference.kwargs.items()}
    except SpecError as error:
        raise SpecError(f"reference: {error.message}", path=spec.path, line=error.line, column=error.column,
                        source=spec.source) from None
    return function(*args, **kwargs)
