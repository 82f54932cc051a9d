"""Inputs for a spec from dims: random tensors shaped by its input patterns (for op samples, check and trace).

Each input is made as it declares itself: floating-point from a standard normal distribution (or uniformly from
its ``range: [low, high)``), ``dtype: int`` uniformly from its range, ``dtype: bool`` a fair coin per element.
"""
from __future__ import annotations

from typing import Any

from graphconv.compiler.binding import expected_shape, is_wildcard, show_pattern
from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.ops.lazy_torch import torch
from graphconv.syntax.expr import Expr, evaluate, names
from graphconv.syntax.metadata import InputType


def input_shapes(spec: Spec, values: dict[str, Any], given: dict[str, tuple[int, ...]] | None = None
                 ) -> list[tuple[int, ...]]:
    """Each input's concrete shape: given whole (by input name), else its pattern evaluated with ``values``
    (attrs and input dims, a group of dims as a tuple) and the derived dims that those determine."""
    env, given = known_dims(spec, values), given or {}
    patterns = spec.meta.inputs or {}
    shapes = []
    for name in spec.input_names:
        pattern = patterns.get(name)
        if name in given:
            shapes.append(given[name])
            continue
        if pattern is None:
            raise SpecError(f"input {name!r} has no shape pattern under graphconv.inputs: give its shape under "
                            f"graphconv.example ({name}: [2, 3]) or with --shapes {name}=(…)", path=spec.path)
        if any(is_wildcard(entry) for entry in pattern):
            raise SpecError(f"input {name!r} has a wildcard in its pattern {show_pattern(pattern)}: give its shape "
                            f"with --shapes {name}=(…)", path=spec.path)
        missing = sorted({n for entry in pattern for n in names(entry)} - set(env))
        if missing:
            raise SpecError(f"input {name!r} {show_pattern(pattern)} needs a value for "
                            f"{', '.join(missing)}: give {'it' if len(missing) == 1 else 'them'} under "
                            f"graphconv.example or with --dims {','.join(f'{m}=…' for m in missing)}", path=spec.path)
        try:
            shapes.append(expected_shape(pattern, env))
        except SpecError as error:
            raise error.located(path=spec.path, source=spec.source) from None
    return shapes


def known_dims(spec: Spec, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus the derived dims they determine (a dim that fails is reported by the Binder, in place)."""
    env = dict(values)
    for dim in spec.dim_order:
        if names(spec.meta.dims[dim]) <= set(env):
            try:
                env[dim] = evaluate(spec.meta.dims[dim], env)
            except SpecError:
                continue
    return env


def example_inputs(spec: Spec, values: dict[str, Any], generator: Any = None, dtype: Any = None,
                   shapes: dict[str, tuple[int, ...]] | None = None) -> list[Any]:
    """Random inputs shaped by the spec's input patterns, with the dims and attrs in ``values``; ``shapes`` gives
    whole shapes by input name (for inputs without a pattern), over the example's."""
    made = input_shapes(spec, values, {**spec.example_shapes, **(shapes or {})})
    env = known_dims(spec, values)
    return [_random(spec, name, spec.meta.input_types.get(name, InputType("float")), shape, env, generator,
                    dtype or torch.float64) for name, shape in zip(spec.input_names, made)]


def _random(spec: Spec, name: str, declared: InputType, shape: tuple[int, ...], env: dict[str, Any],
            generator: Any, dtype: Any) -> Any:
    if declared.dtype == "bool":
        return torch.rand(shape, generator=generator) < 0.5
    if declared.dtype == "int":
        if declared.range is None:
            line, column = spec.meta.where("inputs", name)
            raise SpecError(f"input {name!r} is dtype int but declares no range to draw its values from: add "
                            "range: [low, high] (high excluded)", path=spec.path, line=line, column=column,
                            source=spec.source)
        low, high = (_bound(spec, name, bound, env, int) for bound in declared.range)
        return torch.randint(low, high, shape, generator=generator)
    if declared.range is not None:
        low, high = (_bound(spec, name, bound, env, (int, float)) for bound in declared.range)
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)
    return torch.randn(shape, generator=generator, dtype=dtype)


def _bound(spec: Spec, name: str, bound: Expr, env: dict[str, Any], kind: type | tuple) -> int | float:
    missing = sorted(names(bound) - set(env))
    if missing:
        raise SpecError(f"input {name!r}: its range reads {missing[0]!r}, which has no value here", path=spec.path,
                        line=bound.line, column=bound.column, source=spec.source)
    value = evaluate(bound, env)
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if kind is int else "a number"
        raise SpecError(f"input {name!r}: the range bound {value!r} is not {what}", path=spec.path,
                        line=bound.line, column=bound.column, source=spec.source)
    return value


def derived_dims(spec: Spec, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (attrs and input dims) plus every derived dim."""
    env = dict(values)
    for dim in spec.dim_order:
        env[dim] = evaluate(spec.meta.dims[dim], env)
    return env
