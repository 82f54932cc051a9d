"""Inputs for a spec from dims: random tensors shaped by its input patterns (for op samples, check and trace)."""
from __future__ import annotations

from typing import Any

from graphconv.compiler.binding import is_wildcard, show_pattern
from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.ops.lazy_torch import torch
from graphconv.syntax.expr import evaluate, names


def input_shapes(spec: Spec, values: dict[str, Any], given: dict[str, tuple[int, ...]] | None = None
                 ) -> list[tuple[int, ...]]:
    """Each input's concrete shape: given whole (by input name), else its pattern evaluated with ``values``
    (attrs and input dims) and the derived dims that those determine."""
    env, given = dict(values), given or {}
    for dim in spec.dim_order:  # those a pattern may read; a dim that fails is reported by the Binder, in place
        if names(spec.meta.dims[dim]) <= set(env):
            try:
                env[dim] = evaluate(spec.meta.dims[dim], env)
            except SpecError:
                continue
    patterns = spec.meta.inputs or {}
    shapes = []
    for name in spec.input_names:
        pattern = patterns.get(name)
        if name in given:
            shapes.append(given[name])
            continue
        if pattern is None:
            raise SpecError(f"input {name!r} has no shape pattern under graphconv.inputs: give its shape with "
                            f"--shapes {name}=(…)", path=spec.path)
        if any(is_wildcard(entry) for entry in pattern):
            raise SpecError(f"input {name!r} has a wildcard in its pattern {show_pattern(pattern)}: give its shape "
                            f"with --shapes {name}=(…)", path=spec.path)
        missing = sorted({n for entry in pattern for n in names(entry)} - set(env))
        if missing:
            raise SpecError(f"input {name!r} {show_pattern(pattern)} needs a value for "
                            f"{', '.join(missing)}: give {'it' if len(missing) == 1 else 'them'} under "
                            f"graphconv.example or with --dims {','.join(f'{m}=…' for m in missing)}", path=spec.path)
        try:
            shapes.append(tuple(evaluate(entry, env) for entry in pattern))
        except SpecError as error:
            raise error.located(path=spec.path, source=spec.source) from None
    return shapes


def example_inputs(spec: Spec, values: dict[str, Any], generator: Any = None, dtype: Any = None) -> list[Any]:
    """Random inputs shaped by the spec's input patterns, with the dims and attrs in ``values``."""
    return [torch.randn(shape, generator=generator, dtype=dtype or torch.float64)
            for shape in input_shapes(spec, values)]


def derived_dims(spec: Spec, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (attrs and input dims) plus every derived dim."""
    env = dict(values)
    for dim in spec.dim_order:
        env[dim] = evaluate(spec.meta.dims[dim], env)
    return env
