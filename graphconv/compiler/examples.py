"""Inputs for a spec from dims: random tensors shaped by its input patterns (for op samples, check and trace)."""
from __future__ import annotations

from typing import Any

from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.ops.lazy_torch import torch
from graphconv.syntax.expr import evaluate, names
from graphconv.syntax.metadata import WILDCARD


def example_inputs(spec: Spec, values: dict[str, Any], generator: Any = None, dtype: Any = None) -> list[Any]:
    """Random inputs shaped by the spec's input patterns, with the dims and attrs in ``values``."""
    tensors = []
    for name in spec.input_names:
        pattern = (spec.meta.inputs or {}).get(name)
        if pattern is None:
            raise SpecError(f"input {name!r} has no shape pattern under graphconv.inputs, so it cannot be made",
                            path=spec.path)
        shape = []
        for entry in pattern:
            missing = sorted(names(entry) - set(values))
            if missing:
                what = "a wildcard '_'" if missing == [WILDCARD] else f"dim {missing[0]!r}"
                raise SpecError(f"input {name!r}: {what} has no size; give it under graphconv.example",
                                path=spec.path, line=entry.line, column=entry.column, source=spec.source)
            shape.append(evaluate(entry, values))
        tensors.append(torch.randn(shape, generator=generator, dtype=dtype or torch.float64))
    return tensors


def derived_dims(spec: Spec, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (attrs and input dims) plus every derived dim."""
    env = dict(values)
    for dim in spec.dim_order:
        env[dim] = evaluate(spec.meta.dims[dim], env)
    return env
