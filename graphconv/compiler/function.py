"""The torch.autograd.Function every compiled spec runs through (new style: forward + setup_context).

``forward`` receives a :class:`Call` (the program, this call's op arguments) ahead of the tensors; it runs
the program and leaves what the VJPs declared on the Call, which ``setup_context`` hands to
``ctx.save_for_backward``. Double backward is refused (``once_differentiable``) rather than answered with
silently wrong numbers: the hand-written VJPs read values saved without a graph.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from graphconv.compiler import executor
from graphconv.compiler.program import Program


class Call:
    """One call of a compiled op: what it runs with, and (between forward and setup_context) what it saved."""

    __slots__ = ("program", "args", "saved")

    def __init__(self, program: Program, args: list[dict[str, Any]]) -> None:
        self.program, self.args, self.saved = program, args, None


class GraphFunction(torch.autograd.Function):
    @staticmethod
    def forward(call: Call, *inputs: torch.Tensor) -> Any:
        outputs, call.saved, _ = executor.forward(call.program, call.args, inputs)
        return tuple(outputs) if len(outputs) > 1 else outputs[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        call = inputs[0]
        ctx.call, ctx.saved = call, call.saved
        ctx.save_for_backward(*call.saved.tensors)
        call.saved.tensors = []  # ctx owns them now
        call.saved = None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple:
        call = ctx.call
        grads, _ = executor.backward(call.program, call.args, ctx.saved, ctx.saved_tensors, grad_outputs,
                                     tuple(ctx.needs_input_grad[1:]))
        return (None, *grads)
