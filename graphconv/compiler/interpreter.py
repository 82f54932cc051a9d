"""Runs a :class:`Program` op by op — the same program the generated code runs, read the same way: forward in
topological order keeping what the memory plan keeps and freeing what dies, backward in reverse re-running what
the plan recomputes, summing the gradients of values read more than once and skipping ops whose inputs need no
gradient; every VJP gets the same :class:`~graphconv.ops.registry.Context` and its result the same checks.

It is what ``graphconv run`` traces with (keeping every value), and a second backend the property tests hold
against the generated code. Errors name the op node and its spec line.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from graphconv.compiler.codegen.generated import Errors
from graphconv.compiler.program import Program
from graphconv.errors import SpecError
from graphconv.ops.registry import Context


class Saved:
    """What forward keeps for backward: the plan's saved values (by slot) and the shapes and dtypes of the values
    the VJPs describe."""

    def __init__(self, values: dict[int, Any], meta: dict[int, tuple]) -> None:
        self.values, self.meta = values, meta

    @property
    def tensors(self) -> list[Any]:
        return list(self.values.values())


def forward(program: Program, args: list[dict[str, Any]], inputs: Sequence[torch.Tensor], *,
            save: bool = True, keep: bool = False) -> tuple[list[torch.Tensor], Saved | None, list | None]:
    """Run every op. Returns the outputs, what backward needs (``save``), and every value (``keep``)."""
    values: list[Any] = [None] * len(program.names)
    for slot, tensor in zip(program.input_slots, inputs):
        values[slot] = tensor
    meta: dict[int, tuple] = {}
    described = set(program.described)
    _describe(values, program.input_slots, described, meta)
    for index, (step, dead) in enumerate(zip(program.steps, program.forward_deaths(save))):
        run_step(program, index, values, args[index])
        _describe(values, step.outputs, described, meta)
        if not keep:
            for slot in dead:
                values[slot] = None
    saved = Saved({slot: values[slot] for slot in program.plan.saved}, meta) if save else None
    return [values[s] for s in program.output_slots], saved, values if keep else None


def run_step(program: Program, index: int, values: list, args: dict[str, Any]) -> None:
    """One op's forward on ``values`` (by slot), its outputs written back."""
    step = program.steps[index]
    result = run_op(program, index, [values[s] if s is not None else None for s in step.inputs], args)
    for slot, value in zip(step.outputs, result if len(step.outputs) > 1 else (result,)):
        values[slot] = value


def run_op(program: Program, index: int, inputs: list, args: dict[str, Any]) -> Any:
    """Step ``index``'s op forward; a torch error is re-raised naming the op node and its spec line."""
    step = program.steps[index]
    try:
        result = step.op.forward(*inputs, **args)
    except SpecError:
        raise
    except Exception as error:
        raise program.op_error(index, f"{type(error).__name__}: {error}") from error
    expected = len(step.outputs)
    if expected > 1 and (not isinstance(result, (tuple, list)) or len(result) != expected):
        raise program.op_error(index, f"forward returned {type(result).__name__}, expected {expected} tensors")
    return result


def backward(program: Program, args: list[dict[str, Any]], saved: Saved,
             grad_outputs: Sequence[torch.Tensor | None], input_needs: tuple[bool, ...], *,
             keep: bool = False) -> tuple[list[torch.Tensor | None], list | None]:
    """Gradients of the graph inputs (and of every value, with ``keep``) from the outputs' gradients."""
    values: list[Any] = [None] * len(program.names)
    for slot, value in saved.values.items():
        values[slot] = value
    grads: list[Any] = [None] * len(program.names)
    for slot, grad in zip(program.output_slots, grad_outputs):
        _accumulate(grads, slot, grad)
    wanted, errors = program.needs(input_needs), Errors(program)
    for index in range(len(program.steps) - 1, -1, -1):
        step = program.steps[index]
        for producer in program.plan.recompute[index]:
            run_step(program, producer, values, args[producer])
        out_grads = [grads[s] for s in step.outputs]
        if not keep:
            for slot in step.outputs:
                grads[slot] = None
        needs = tuple(slot is not None and wanted[slot] for slot in step.inputs)
        if any(needs) and any(g is not None for g in out_grads):
            for slot, grad in zip(step.inputs, run_vjp(program, errors, index, args[index], values, saved.meta,
                                                       needs, out_grads)):
                if slot is not None and grad is not None:
                    _accumulate(grads, slot, grad)
        for slot in program.backward_deaths[index]:
            values[slot] = None
    return [grads[s] if wanted[s] else None for s in program.input_slots], grads if keep else None


def context(program: Program, index: int, args: dict[str, Any], values: list, meta: dict[int, tuple],
            needs: tuple[bool, ...]) -> Context:
    """Step ``index``'s VJP context, laid out as the program says (as the generated code builds it)."""
    step = program.steps[index]
    saved = {field.name: tuple(values[s] for s in field.slots) if field.packed else values[field.slots[0]]
             for field in program.saved_fields[index]}
    shapes = tuple(meta[s][0] if s is not None else None for s in step.inputs)
    dtypes = tuple(meta[s][1] if s is not None else None for s in step.inputs)
    return Context({name: args[name] for name in step.op_attr_names()}, saved, shapes, dtypes, needs)


def run_vjp(program: Program, errors: Errors, index: int, args: dict[str, Any], values: list,
            meta: dict[int, tuple], needs: tuple[bool, ...], out_grads: list) -> Sequence[Any]:
    """One op's VJP; its gradients checked (count and shapes) like the generated code's."""
    step = program.steps[index]
    ctx = context(program, index, args, values, meta, needs)
    grad = out_grads[0] if len(step.outputs) == 1 else tuple(out_grads)  # None: an output with no gradient
    try:
        input_grads = step.op.backward(ctx, grad)
    except SpecError:
        raise
    except Exception as error:
        raise errors.op_error(index, f"in its VJP: {type(error).__name__}: {error}") from error
    return errors.grads(index, input_grads, ctx.shapes, needs)


def _describe(values: list, slots: Sequence[int], described: set[int], meta: dict[int, tuple]) -> None:
    for slot in slots:
        if slot in described and isinstance(values[slot], torch.Tensor):
            meta[slot] = (values[slot].shape, values[slot].dtype)


def _accumulate(grads: list, slot: int, grad: torch.Tensor | None) -> None:
    if grad is None:
        return
    grads[slot] = grad if grads[slot] is None else grads[slot] + grad
