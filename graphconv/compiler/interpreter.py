"""Runs a :class:`Program`: forward in topological order, backward in reverse through each op's hand-written VJP.

Forward frees each intermediate after its last use and keeps only what the VJPs declared. Backward sums the
gradients of a tensor used more than once, skips ops whose inputs need no gradient, and checks that every VJP
returns one gradient of the right shape per input (the error names the op and the input).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from graphconv.compiler.codegen.generated import Errors
from graphconv.compiler.program import Program, Step
from graphconv.errors import SpecError


class OpContext:
    """What a VJP sees: the op's attribute values and saved tensors by name, ``shapes``, ``dtypes``, ``needs``."""

    def __init__(self, args: dict[str, Any], saved: dict[str, Any], shapes: tuple, dtypes: tuple,
                 needs: tuple[bool, ...]) -> None:
        self.__dict__.update(args)
        self.__dict__.update(saved)
        self.shapes, self.dtypes, self.needs = shapes, dtypes, needs


class Saved:
    """What forward keeps for backward: per step its saved tensors, input shapes and dtypes."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.layout: list[tuple[int, int]] = []  # per step: (start, count) in tensors
        self.meta: list[tuple[tuple, tuple]] = []

    def add(self, tensors: Sequence[torch.Tensor], shapes: tuple, dtypes: tuple) -> None:
        self.layout.append((len(self.tensors), len(tensors)))
        self.tensors.extend(tensors)
        self.meta.append((shapes, dtypes))


def forward(program: Program, args: list[dict[str, Any]], inputs: Sequence[torch.Tensor], *,
            save: bool = True, keep: bool = False) -> tuple[list[torch.Tensor], Saved | None, list | None]:
    """Run every op. Returns the outputs, what backward needs (``save``), and every value (``keep``)."""
    values: list[Any] = [None] * len(program.slot)
    for slot, tensor in zip(program.input_slots, inputs):
        values[slot] = tensor
    saved = Saved() if save else None
    for step, step_args in zip(program.steps, args):
        step_inputs = [values[s] if s is not None else None for s in step.inputs]
        result = run_op(program, step, step_inputs, step_args)
        outputs = result if len(step.outputs) > 1 else (result,)
        for slot, value in zip(step.outputs, outputs):
            values[slot] = value
        if saved is not None:
            kept = [step_inputs[i] for i in step.saved_inputs] + (list(outputs) if step.saves_output else [])
            saved.add(kept, tuple(_shape(t) for t in step_inputs), tuple(_dtype(t) for t in step_inputs))
        if not keep:
            for slot in step.release:
                values[slot] = None
    return [values[s] for s in program.output_slots], saved, values if keep else None


def run_op(program: Program, step: Step, inputs: list, args: dict[str, Any]) -> Any:
    """One op's forward; a torch error is re-raised naming the op node and its spec line."""
    try:
        result = step.op.forward(*inputs, **args)
    except SpecError:
        raise
    except Exception as error:
        raise op_error(program, step, f"{type(error).__name__}: {error}") from error
    expected = len(step.outputs)
    if expected > 1 and (not isinstance(result, (tuple, list)) or len(result) != expected):
        raise op_error(program, step, f"forward returned {type(result).__name__}, expected {expected} tensors")
    return result


def op_error(program: Program, step: Step, message: str) -> SpecError:
    return Errors(program).op_error(program.steps.index(step), message)


def backward(program: Program, args: list[dict[str, Any]], saved: Saved, saved_tensors: Sequence[torch.Tensor],
             grad_outputs: Sequence[torch.Tensor | None], input_needs: tuple[bool, ...], *,
             keep: bool = False) -> tuple[list[torch.Tensor | None], list | None]:
    """Gradients of the graph inputs (and of every value, with ``keep``) from the outputs' gradients."""
    grads: list[Any] = [None] * len(program.slot)
    for slot, grad in zip(program.output_slots, grad_outputs):
        _accumulate(grads, slot, grad)
    needs_per_step, errors = program.needs(input_needs), Errors(program)
    for index in range(len(program.steps) - 1, -1, -1):
        step, needs = program.steps[index], needs_per_step[index]
        out_grads = [grads[s] for s in step.outputs]
        if not keep:
            for slot in step.outputs:
                grads[slot] = None
        if not any(needs) or all(g is None for g in out_grads):
            continue
        start, count = saved.layout[index]
        input_grads = run_vjp(errors, index, args[index], saved_tensors[start:start + count], saved.meta[index],
                              needs, out_grads)
        for slot, grad, need in zip(step.inputs, input_grads, needs):
            if need and grad is not None:
                _accumulate(grads, slot, grad)
    return [grads[s] for s in program.input_slots], grads if keep else None


def run_vjp(errors: Errors, index: int, args: dict[str, Any], tensors: Sequence[torch.Tensor],
            meta: tuple[tuple, tuple], needs: tuple[bool, ...], out_grads: list) -> Sequence[Any]:
    """One op's VJP; its gradients checked (count and shapes) like the generated code's."""
    step, shapes, dtypes = errors.program.steps[index], *meta
    ctx = OpContext(args, _saved_by_name(step, tensors), shapes, dtypes, needs)
    grad = out_grads[0] if len(step.outputs) == 1 else tuple(out_grads)  # None: an output with no gradient
    try:
        input_grads = step.op.backward(ctx, grad)
    except SpecError:
        raise
    except Exception as error:
        raise errors.op_error(index, f"in its VJP: {type(error).__name__}: {error}") from error
    return errors.grads(index, input_grads, shapes, needs)


def _saved_by_name(step: Step, tensors: Sequence[torch.Tensor]) -> dict[str, Any]:
    op, count = step.op, len(step.saved_inputs)
    if op.variadic_inputs:
        named = {op.inputs[0]: tuple(tensors[:count])} if count else {}
    else:
        named = {op.inputs[i]: tensors[k] for k, i in enumerate(step.saved_inputs)}
    if step.saves_output:
        outputs = tuple(tensors[count:])
        named["out"] = outputs if len(outputs) > 1 else outputs[0]
    return named


def _accumulate(grads: list, slot: int, grad: torch.Tensor | None) -> None:
    if grad is None:
        return
    grads[slot] = grad if grads[slot] is None else grads[slot] + grad


def _shape(value: Any) -> Any:
    return value.shape if isinstance(value, torch.Tensor) else None


def _dtype(value: Any) -> Any:
    return value.dtype if isinstance(value, torch.Tensor) else None
