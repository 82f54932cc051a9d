"""Shape tracing on torch for ``graphconv run --device``: run a spec on the meta device (no memory, no compute) — or
on real random data — and report every tensor's concrete shape and dtype, and its gradient's with ``backward``: the
cross-check of what the shape rules say without torch (``graphconv.check.proof``).

Input shapes come from the input patterns evaluated with the spec's ``example`` dims and the caller's dims (or
are given whole, for inputs without a pattern). The forward runs op by op so that when an op fails, the shapes up
to it are still reported. Each declared shape is compared with the actual one; so is each gradient's shape with
its tensor's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from graphconv.check.sizes import Outcome, Row, check_dims, check_shapes, row_of
from graphconv.compiler import interpreter
from graphconv.compiler.binding import Binder, shape_mismatch
from graphconv.compiler.examples import input_shapes
from graphconv.errors import ShapeError, SpecError
from graphconv.compiler.program import Program, Step
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import evaluate


@dataclass
class Trace(Outcome):
    rows: list[Row]
    dims: dict[str, Any]  # input dims, then derived dims
    attrs: dict[str, Any]
    device: str
    failure: SpecError | None = None  # an op (or its VJP) that could not run on these shapes


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
    result = Trace([row_of(spec, name) for name in program.names],
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


def check_device(device: str) -> str:
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise SpecError(f"--device {device}: {error}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {device}: CUDA is not available here; the meta device checks shapes anywhere")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise SpecError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices here")
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
