"""Shape tracing for ``graphconv run``: run a spec on the meta device (no memory, no compute) — or on real random
data — and report every tensor's symbolic and concrete shape, and its gradient's with ``backward``.

Input shapes come from the input patterns evaluated with the spec's ``example`` dims and the caller's dims (or
are given whole, for inputs without a pattern). The forward runs op by op so that when an op fails, the shapes up
to it are still reported. Each declared shape is compared with the actual one; so is each gradient's shape with
its tensor's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from graphconv.compiler import interpreter
from graphconv.compiler.binding import Binder, shape_mismatch, show_pattern
from graphconv.compiler.examples import input_shapes
from graphconv.errors import ShapeError, SpecError
from graphconv.compiler.program import Program, Step
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import evaluate, suggest, to_source


@dataclass
class Row:
    """One tensor: the op that produced it (its label; ``input`` for a graph input), its declared (symbolic)
    shape, and what it turned out to be."""

    name: str
    op: str
    op_id: str | None
    line: int
    symbolic: str | None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    grad_shape: tuple[int, ...] | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Trace:
    rows: list[Row]
    dims: dict[str, Any]  # input dims, then derived dims
    attrs: dict[str, Any]
    device: str
    failure: SpecError | None = None  # an op (or its VJP) that could not run on these shapes

    @property
    def ok(self) -> bool:
        return self.failure is None and not any(row.problems for row in self.rows)

    def problems(self) -> list[str]:
        found = [p for row in self.rows for p in row.problems]
        return found + ([str(self.failure)] if self.failure else [])


def trace(spec: Spec, dims: dict[str, Any] | None = None, attrs: dict[str, Any] | None = None, *,
          shapes: dict[str, Any] | None = None, device: str = "meta", backward: bool = False,
          dtype: torch.dtype = torch.float32) -> Trace:
    """Run ``spec`` with ``dims`` (over the spec's ``example``), ``attrs`` and whole input ``shapes`` by name.

    Bad dims, attrs or shapes raise SpecError; an input that does not fit its pattern raises ShapeError. Shapes
    that do not fit further on are reported in the returned Trace (``ok``, ``problems()``), not raised.
    """
    device = check_device(device)
    binder = Binder(spec)
    attr_values = binder.attrs({**{k: v for k, v in spec.meta.example.items() if k in spec.meta.attrs},
                                **(attrs or {})})
    input_dims = {**spec.example_dims, **check_dims(spec, dims or {})}
    given = {**spec.example_shapes, **check_shapes(spec, shapes or {})}
    concrete = input_shapes(spec, {**attr_values, **input_dims}, given)
    env = binder.bind(concrete, attr_values)
    program = Program(spec)
    args = program.arguments(env)
    inputs = [_input(spec, name, shape, dtype, device, env) for name, shape in zip(spec.input_names, concrete)]
    result = Trace([_row(spec, name) for name in program.names],
                   {k: v for k, v in env.items() if k not in attr_values}, attr_values, device)
    values = _forward(program, args, inputs, result)
    for row, value in zip(result.rows, values):
        if value is not None:
            row.shape, row.dtype = tuple(value.shape), str(value.dtype).replace("torch.", "")
            mismatch = shape_mismatch(spec, row.name, row.shape, env)
            if mismatch:
                row.problems.append(str(mismatch))
    if backward and result.failure is None:
        _backward(program, args, inputs, values, result)
    return result


def check_dims(spec: Spec, dims: dict[str, Any]) -> dict[str, int]:
    """The caller's dims: each an input dim (not an attr, not a derived dim) with a size ≥ 0 (a group of dims,
    ``...batch`` in a pattern, a tuple of them)."""
    symbols, groups = spec.meta.symbols(), spec.meta.groups()
    for name, size in dims.items():
        if name in spec.meta.attrs:
            raise SpecError(f"--dims {name}: {name!r} is an attr of {spec.name}; set it with --attr {name}=…",
                            path=spec.path)
        if name in spec.meta.dims:
            raise SpecError(f"--dims {name}: {name!r} is derived ({name}: {to_source(spec.meta.dims[name])}); "
                            "set the dims it is computed from", path=spec.path)
        if name not in symbols:
            known = f"; its input dims are: {', '.join(symbols)}" if symbols else " (it declares no input patterns)"
            raise SpecError(f"--dims {name}: not an input dim of {spec.name}{suggest(name, symbols)}{known}",
                            path=spec.path)
        if name in groups:
            dims[name] = size = size if isinstance(size, tuple) else (size,)
            if not all(_is_size(s) for s in size):
                raise SpecError(f"--dims {name}={size!r}: {name} is a group of dims (...{name}), a tuple of sizes "
                                f"such as {name}=(2,3) or {name}=()", path=spec.path)
        elif not _is_size(size):
            raise SpecError(f"--dims {name}={size!r}: a dim is a size, an integer ≥ 0", path=spec.path)
    return dims


def _is_size(size: Any) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and size >= 0


def check_shapes(spec: Spec, shapes: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Whole input shapes by input name, as tuples of sizes ≥ 0."""
    checked, inputs = {}, set(spec.input_names)
    for name, shape in shapes.items():
        if name not in inputs:
            raise SpecError(f"--shapes {name}: not an input of {spec.name}{suggest(name, spec.input_names)}; its "
                            f"inputs are: {', '.join(spec.input_names)}", path=spec.path)
        shape = shape if isinstance(shape, tuple) else (shape,)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise SpecError(f"--shapes {name}={shape!r}: a shape is a tuple of integers ≥ 0, e.g. {name}=(2,3)",
                            path=spec.path)
        checked[name] = shape
    return checked


def check_device(device: str) -> str:
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise SpecError(f"--device {device}: {error}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {device}: CUDA is not available here; the meta device checks shapes anywhere")
    return device


def _forward(program: Program, args: list[dict[str, Any]], inputs: Sequence[torch.Tensor], result: Trace) -> list:
    """Every value of the program, op by op; after a failing op (recorded in ``result``) the rest stay None."""
    values: list[Any] = [None] * len(program.slot)
    for slot, tensor in zip(program.input_slots, inputs):
        values[slot] = tensor
    for index, (step, step_args) in enumerate(zip(program.steps, args)):
        step_inputs = [values[s] if s is not None else None for s in step.inputs]
        try:
            output = interpreter.run_op(program, index, step_inputs, step_args)
        except SpecError as error:
            result.failure = _with_input_shapes(error, program, step, step_inputs)
            break
        for slot, value in zip(step.outputs, output if len(step.outputs) > 1 else (output,)):
            values[slot] = value
    return values


def _with_input_shapes(error: SpecError, program: Program, step: Step, inputs: list) -> SpecError:
    """The op's error, with the shapes it was given (torch's own message often leaves them out)."""
    given = ", ".join(f"{program.names[slot]} {tuple(value.shape)}" for slot, value in zip(step.inputs, inputs)
                      if slot is not None)
    return ShapeError(f"{error.message} (inputs: {given})", path=error.path, line=error.line, column=error.column,
                      source=program.spec.source)


def _backward(program: Program, args: list[dict[str, Any]], inputs: Sequence[torch.Tensor], values: list,
              result: Trace) -> None:
    """Run the hand-written VJPs from all-ones output gradients; every gradient must have its tensor's shape."""
    try:
        _, saved, _ = interpreter.forward(program, args, inputs, save=True)
        grad_outputs = [torch.ones_like(values[slot]) for slot in program.output_slots]
        _, grads = interpreter.backward(program, args, saved, grad_outputs, (True,) * len(program.input_slots),
                                        keep=True)
    except SpecError as error:
        result.failure = error
        return
    for row, grad in zip(result.rows, grads):
        if grad is None:
            continue
        row.grad_shape = tuple(grad.shape)
        if row.grad_shape != row.shape:
            row.problems.append(f"tensor {row.name!r}: its gradient has shape {row.grad_shape} but the tensor has "
                                f"{row.shape}")


def _input(spec: Spec, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: str,
           env: dict[str, Any]) -> torch.Tensor:
    """An input of the dtype class it declares: floating-point ``dtype``, int64 (from its range) or bool."""
    declared = spec.meta.input_types.get(name)
    if declared is None or declared.dtype == "float":
        return _tensor(shape, dtype, device)
    kind = torch.bool if declared.dtype == "bool" else torch.int64
    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=kind, device="meta")
    if declared.dtype == "bool":
        return torch.rand(shape, device=device) < 0.5
    low, high = (evaluate(bound, env) for bound in declared.range) if declared.range else (0, 1)
    return torch.randint(low, high, shape, device=device)


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    return torch.randn(shape, dtype=dtype, device=device)


def _row(spec: Spec, name: str) -> Row:
    tensor = spec.tensor(spec.tensor_id(name))
    op = spec.op(tensor.producer) if tensor.producer else None
    declared = spec.meta.shapes.get(name) or (spec.meta.inputs or {}).get(name)
    symbolic = show_pattern(declared) if declared is not None else None
    return Row(name, op.label if op else "input", op.id if op else None, op.line if op else tensor.line, symbolic)
