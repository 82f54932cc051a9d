"""Inputs for a spec from dims: random tensors shaped by its input patterns (for op samples, check and trace).

Each input is made as it declares itself: floating-point from a standard normal distribution (or uniformly from
its ``range: [low, high)``), ``dtype: int`` uniformly from its range, ``dtype: bool`` a fair coin per element.
"""
from __future__ import annotations

from typing import Any

from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.ops.lazy_torch import torch
from graphconv.syntax.expr import Expr, Splice, evaluate, group_value, names
from graphconv.syntax.metadata import WILDCARD, InputType


def example_inputs(spec: Spec, values: dict[str, Any], generator: Any = None, dtype: Any = None,
                   shapes: dict[str, tuple[int, ...]] | None = None) -> list[Any]:
    """Random inputs shaped by the spec's input patterns, with the dims and attrs in ``values``; ``shapes`` gives
    whole shapes by input name (for inputs without a pattern; default: the example's)."""
    given = spec.example_shapes if shapes is None else {**spec.example_shapes, **shapes}
    env = derived_dims(spec, values, partial=True)
    tensors = []
    for name in spec.input_names:
        shape = given[name] if name in given else _pattern_shape(spec, name, env)
        declared = spec.meta.input_types.get(name, InputType("float"))
        tensors.append(_random(spec, name, declared, shape, env, generator, dtype or torch.float64))
    return tensors


def _pattern_shape(spec: Spec, name: str, env: dict[str, Any]) -> tuple[int, ...]:
    pattern = (spec.meta.inputs or {}).get(name)
    if pattern is None:
        raise SpecError(f"input {name!r} has no shape pattern under graphconv.inputs, so it cannot be made: give its "
                        f"shape under graphconv.example ({name}: [2, 3]) or with --shapes {name}=(2,3)",
                        path=spec.path)
    shape: list[int] = []
    for entry in pattern:
        _require(spec, name, entry, env)
        if isinstance(entry, Splice):
            shape.extend(group_value(entry, env))
        else:
            shape.append(evaluate(entry, env))
    return tuple(shape)


def _require(spec: Spec, name: str, entry: Expr, env: dict[str, Any]) -> None:
    missing = sorted(names(entry) - set(env))
    if missing:
        what = "a wildcard '_'" if missing == [WILDCARD] else f"dim {missing[0]!r}"
        raise SpecError(f"input {name!r}: {what} has no size; give it under graphconv.example",
                        path=spec.path, line=entry.line, column=entry.column, source=spec.source)


def _random(spec: Spec, name: str, declared: InputType, shape: tuple[int, ...], env: dict[str, Any],
            generator: Any, dtype: Any) -> Any:
    if declared.dtype == "bool":
        return torch.rand(shape, generator=generator) < 0.5
    if declared.dtype == "int":
        if declared.range is None:
            raise SpecError(f"input {name!r} is dtype int but declares no range to draw its values from: add "
                            f"range: [low, high] (high excluded)", path=spec.path, line=spec.meta.where("inputs", name)[0])
        low, high = (_bound(spec, name, bound, env, int) for bound in declared.range)
        return torch.randint(low, high, shape, generator=generator)
    if declared.range is not None:
        low, high = (_bound(spec, name, bound, env, (int, float)) for bound in declared.range)
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)
    return torch.randn(shape, generator=generator, dtype=dtype)


def _bound(spec: Spec, name: str, bound: Expr, env: dict[str, Any], kind: type | tuple) -> int | float:
    _require(spec, name, bound, env)
    value = evaluate(bound, env)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SpecError(f"input {name!r}: the range bound {value!r} is not {'an integer' if kind is int else 'a number'}",
                        path=spec.path, line=bound.line, column=bound.column, source=spec.source)
    return value


def derived_dims(spec: Spec, values: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """``values`` (attrs and input dims) plus every derived dim (``partial``: those that ``values`` determine)."""
    env = dict(values)
    for dim in spec.dim_order:
        if partial and not names(spec.meta.dims[dim]) <= set(env):
            continue
        env[dim] = evaluate(spec.meta.dims[dim], env)
    return env
