"""Call-time binding: a call's input shapes and attrs → the values of every spec name (dims, attrs).

Input shapes are unified against the spec's patterns (a symbol used twice must agree, a literal must match),
then derived dims are computed once, in dependency order. Imports no torch: it works on shape tuples.
"""
from __future__ import annotations

from typing import Any, Sequence

from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.spec.expr import Expr, Name, evaluate, names, suggest, to_source
from graphconv.spec.metadata import WILDCARD


class CallError(SpecError, TypeError):
    """A compiled op was called wrongly: wrong number or kind of inputs, unknown attrs."""


class ShapeError(SpecError, ValueError):
    """A tensor's shape does not fit the spec: an input against its pattern, or a declared intermediate shape."""


class Binder:
    """Binds calls of one spec; ``bind(shapes, attrs)`` returns the environment of spec names."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.names = spec.input_names
        patterns = spec.meta.inputs or {}
        self.patterns = [patterns.get(name) for name in self.names]
        self.attr_names = list(spec.meta.attrs)

    def error(self, cls: type, message: str, *key: Any) -> SpecError:
        line, column = self.spec.meta.where(*key) if key else (None, None)
        return cls(message, path=self.spec.path, line=line, column=column, source=self.spec.source)

    def check_arity(self, count: int) -> None:
        if count != len(self.names):
            raise self.error(CallError, f"{self.spec.name} takes {len(self.names)} input(s) "
                                        f"({', '.join(self.names)}) but {count} were given")

    def attrs(self, given: dict[str, Any]) -> dict[str, Any]:
        """The spec's attr defaults overridden by the call's keywords."""
        for key in given:
            if key not in self.spec.meta.attrs:
                raise self.error(CallError, f"{self.spec.name} has no attr {key!r}"
                                            f"{suggest(key, self.attr_names)}; its attrs are: "
                                            f"{', '.join(self.attr_names) or 'none'}")
        values = {**self.spec.meta.attrs, **given}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    def bind(self, shapes: Sequence[tuple[int, ...]], attrs: dict[str, Any]) -> dict[str, Any]:
        env = dict(attrs)
        bound_by: dict[str, str] = {}
        deferred: list[tuple[str, int, Expr, int]] = []
        for name, pattern, shape in zip(self.names, self.patterns, shapes):
            if pattern is None:
                continue
            if len(shape) != len(pattern):
                raise self.error(ShapeError, f"{name}: expected {len(pattern)} dims {_show(pattern)}, got shape "
                                             f"{tuple(shape)} ({len(shape)} dims)", "inputs", name)
            for axis, (entry, size) in enumerate(zip(pattern, shape)):
                if isinstance(entry, Name) and entry.id == WILDCARD:
                    continue
                if isinstance(entry, Name) and entry.id not in env:
                    env[entry.id], bound_by[entry.id] = size, name
                elif isinstance(entry, Name) or not names(entry) - set(env):
                    self.check_size(name, shape, axis, entry, env, bound_by)
                else:  # an expression of dims bound by a later input
                    deferred.append((name, shape, axis, entry))
        for name, shape, axis, entry in deferred:
            self.check_size(name, shape, axis, entry, env, bound_by)
        for dim in self.spec.dim_order:
            env[dim] = self.evaluate(self.spec.meta.dims[dim], env, "dims", dim)
        return env

    def check_size(self, name: str, shape: tuple, axis: int, entry: Expr, env: dict, bound_by: dict) -> None:
        size, expected = shape[axis], self.evaluate(entry, env, "inputs", name)
        if expected == size:
            return
        if isinstance(entry, Name) and entry.id in bound_by:
            message = f"{name}: {entry.id} is {size} but {bound_by[entry.id]} says {expected}"
        elif isinstance(entry, Name):
            message = f"{name}: {entry.id} is {size} but the attr {entry.id} is {expected}"
        else:
            message = f"{name}: dim {axis} is {size} but {to_source(entry)} is {expected}"
        raise self.error(ShapeError, f"{message} ({name} has shape {tuple(shape)}, pattern "
                                     f"{_show(self.patterns[self.names.index(name)])})", "inputs", name)

    def evaluate(self, expr: Expr, env: dict, *key: Any) -> Any:
        try:
            return evaluate(expr, env)
        except SpecError as error:
            raise self.error(ShapeError, f"{'.'.join(map(str, key))}: {error.message}", *key) from None


def _show(pattern: list[Expr]) -> str:
    return "[" + ", ".join(to_source(e) for e in pattern) + "]"


def shape_mismatch(spec: Spec, name: str, actual: tuple[int, ...], env: dict[str, Any]) -> ShapeError | None:
    """A ShapeError if ``name`` has a declared shape that ``actual`` does not match, else None."""
    declared = spec.meta.shapes.get(name)
    if declared is None:
        return None
    expected = tuple(size if isinstance(e, Name) and e.id == WILDCARD else evaluate(e, env)
                     for e, size in zip(declared, actual))
    if len(declared) == len(actual) and expected == actual:
        return None
    if len(declared) != len(actual):
        expected = tuple(evaluate(e, env) for e in declared if not (isinstance(e, Name) and e.id == WILDCARD))
    tensor = spec.tensor(spec.tensor_id(name))
    producer = spec.op(tensor.producer) if tensor.producer else None
    made_by = f"produced by op {producer.id} ({producer.label}) at line {producer.line}" if producer else "an input"
    symbolic = "[" + ", ".join(to_source(e) for e in declared) + "]"
    line, column = spec.meta.where("shapes", name)
    return ShapeError(f"tensor {name!r} ({made_by}) has shape {actual} but is declared {symbolic} = {expected}",
                      path=spec.path, line=line, column=column, source=spec.source)
