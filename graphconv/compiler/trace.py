"""Shape tracing for ``graphconv run``: run a spec on the meta device (no memory, no compute) — or on real
random data — and report every tensor's symbolic and concrete shape, and its gradient's with ``backward``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from graphconv.compiler import executor
from graphconv.compiler.binding import Binder, shape_mismatch
from graphconv.compiler.program import Program
from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.spec.expr import evaluate, names, suggest, to_source


@dataclass
class Row:
    name: str
    op: str  # the producing op's label, "input" for a graph input
    line: int
    symbolic: str | None
    shape: tuple[int, ...] | None
    dtype: str | None
    grad_shape: tuple[int, ...] | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Trace:
    rows: list[Row]
    dims: dict[str, Any]
    failure: SpecError | None = None  # an op that could not run (shapes that do not fit)

    @property
    def ok(self) -> bool:
        return self.failure is None and not any(row.problems for row in self.rows)

    def problems(self) -> list[str]:
        found = [p for row in self.rows for p in row.problems]
        return found + ([str(self.failure)] if self.failure else [])


def input_shapes(spec: Spec, dims: dict[str, int], attrs: dict[str, Any]) -> list[tuple[int, ...]]:
    """Concrete input shapes from the input patterns, ``example`` dims and the given dims."""
    env = {**attrs, **spec.meta.example, **dims}
    shapes = []
    for name in spec.input_names:
        pattern = (spec.meta.inputs or {}).get(name)
        if pattern is None:
            raise SpecError(f"input {name!r} has no shape pattern under graphconv.inputs, so `run` cannot make it",
                            path=spec.path)
        shape = []
        for entry in pattern:
            missing = sorted(names(entry) - set(env))
            if missing:
                raise SpecError(f"run needs a value for dim {missing[0]!r} of input {name!r}: give it under "
                                f"graphconv.example or with --dims {missing[0]}=…", path=spec.path)
            shape.append(evaluate(entry, env))
        shapes.append(tuple(shape))
    return shapes


def trace(spec: Spec, dims: dict[str, int] | None = None, attrs: dict[str, Any] | None = None, *,
          device: str = "meta", backward: bool = False, dtype: torch.dtype = torch.float32) -> Trace:
    dims = dict(dims or {})
    binder = Binder(spec)
    settable = set(spec.meta.symbols()) | set(spec.meta.attrs)
    for name in dims:
        if name not in settable:
            raise SpecError(f"--dims {name}: not an input dim of {spec.name}{suggest(name, settable)}", path=spec.path)
    attr_values = binder.attrs({**{k: v for k, v in spec.meta.example.items() if k in spec.meta.attrs},
                                **(attrs or {})})
    shapes = input_shapes(spec, dims, attr_values)
    env = binder.bind(shapes, attr_values)
    program = Program(spec)
    args = program.arguments(env)
    inputs = [_random(shape, dtype, device) for shape in shapes]
    rows = [_row(spec, name) for name in program.names]
    result = Trace(rows, {k: v for k, v in env.items() if k not in spec.meta.attrs})
    try:
        _, saved, values = executor.forward(program, args, inputs, save=backward, keep=True)
    except SpecError as error:
        result.failure = error
        return result
    for row, value in zip(rows, values):
        row.shape, row.dtype = tuple(value.shape), str(value.dtype).replace("torch.", "")
        mismatch = shape_mismatch(spec, row.name, row.shape, env)
        if mismatch:
            row.problems.append(str(mismatch))
    if backward:
        _trace_backward(program, args, saved, values, rows, result)
    return result


def _trace_backward(program: Program, args, saved, values, rows: list[Row], result: Trace) -> None:
    grad_outputs = [torch.ones_like(values[s]) for s in program.output_slots]
    try:
        _, grads = executor.backward(program, args, saved, saved.tensors, grad_outputs,
                                     (True,) * len(program.input_slots), keep=True)
    except SpecError as error:
        result.failure = error
        return
    for row, grad in zip(rows, grads):
        row.grad_shape = tuple(grad.shape) if grad is not None else None
        if grad is not None and row.grad_shape != row.shape:
            row.problems.append(f"{row.name}: gradient has shape {row.grad_shape}, tensor has {row.shape}")


def _random(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    return torch.randn(shape, dtype=dtype, device=device)


def _row(spec: Spec, name: str) -> Row:
    tensor = spec.tensor(spec.tensor_id(name))
    op = spec.op(tensor.producer).label if tensor.producer else "input"
    declared = spec.meta.shapes.get(name) or (spec.meta.inputs or {}).get(name)
    symbolic = "[" + ", ".join(to_source(e) for e in declared) + "]" if declared is not None else None
    return Row(name, op, tensor.line, symbolic, None, None)
