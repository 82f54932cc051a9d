"""The torch.autograd.Functions a compiled spec runs through, both driving the generated code.

- :class:`EagerFunction`, the old ``forward(ctx, …)`` style: a few µs per call. Used in plain eager mode.
- :class:`GraphFunction`, the new style (``forward`` + ``setup_context``): tens of µs more per call (torch binds
  its arguments), but what functorch transforms (vmap, grad, jacrev) and torch.compile require. Used when one
  of those is active.

Both keep only what the memory plan saved and refuse double backward (``once_differentiable``) rather than
answer it with silently wrong numbers: the hand-written VJPs read values saved without a graph.
"""
from __future__ import annotations

import sys
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from graphconv.compiler.codegen import GeneratedCode


def apply(code: GeneratedCode, args: tuple, inputs: tuple) -> Any:
    """Run the compiled op with autograd: the cheap eager Function unless a transform needs the new style."""
    if _transformed():
        return GraphFunction.apply(Call(code, args), *inputs)
    return EagerFunction.apply(code, args, *inputs)


def _transformed() -> bool:
    """A functorch transform is active, or torch.compile is tracing (only possible once dynamo is imported)."""
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    return "torch._dynamo" in sys.modules and torch.compiler.is_compiling()


def run_forward(code: GeneratedCode, args: tuple, inputs: tuple) -> tuple:
    try:
        return code.forward(args, *inputs)
    except Exception as error:
        raise code.errors.wrap(error) from error


def run_backward(code: GeneratedCode, args: tuple, saved: tuple, meta: tuple, needs: tuple, grads: tuple) -> tuple:
    try:
        return code.backward(args, saved, meta, needs, *grads)
    except Exception as error:
        raise code.errors.wrap(error) from error


class EagerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, code: GeneratedCode, args: tuple, *inputs: torch.Tensor) -> Any:
        outputs, saved, ctx.meta = run_forward(code, args, inputs)
        ctx.save_for_backward(*saved)
        ctx.code, ctx.args = code, args
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple:
        needs = ctx.needs_input_grad[2:]
        return (None, None, *run_backward(ctx.code, ctx.args, ctx.saved_tensors, ctx.meta, needs, grads))


class Call:
    """One call for :class:`GraphFunction`: what it runs with, and what forward hands to setup_context."""

    __slots__ = ("code", "args", "saved", "meta")

    def __init__(self, code: GeneratedCode, args: tuple) -> None:
        self.code, self.args, self.saved, self.meta = code, args, (), ()


class GraphFunction(torch.autograd.Function):
    @staticmethod
    def forward(call: Call, *inputs: torch.Tensor) -> Any:
        outputs, call.saved, call.meta = run_forward(call.code, call.args, inputs)
        return outputs

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        call = inputs[0]
        ctx.save_for_backward(*call.saved)
        ctx.code, ctx.args, ctx.meta = call.code, call.args, call.meta
        call.saved = call.meta = ()  # ctx owns them now

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple:
        needs = ctx.needs_input_grad[1:]
        return (None, *run_backward(ctx.code, ctx.args, ctx.saved_tensors, ctx.meta, needs, grads))
