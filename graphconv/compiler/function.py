"""The torch.autograd.Functions a compiled spec runs through, both driving the generated code.

- :class:`EagerFunction`, the old ``forward(ctx, …)`` style: a few µs per call. Used in plain eager mode.
- :class:`GraphFunction`, the new style (``forward`` + ``setup_context``): tens of µs more per call (torch binds
  its arguments), but what functorch transforms (vmap, grad, jacrev) and torch.compile require. Used when one
  of those is active. torch.compile traces it whole (no graph break): the generated forward and the hand-written
  VJPs of the generated backward become part of the model's graph, so inductor fuses across layers.

Both keep the inputs and what the memory plan saves beyond them (each tensor once). A plain backward takes the
saved values out of the node (:func:`take_saved`) and runs the generated backward on them, which frees each after
its last use — a single node otherwise holds every saved value until its whole backward returns, where torch's
graph of one node per op frees each as soon as its node has run. A backward that must itself be differentiable
(``create_graph=True``: double backward, gradgradcheck, Hessians) cannot use them — they were computed without a
graph, and VJPs on them give silently wrong (zero) second derivatives — so it recomputes the forward from the
inputs with autograd recording and runs the VJPs on that: every VJP is made of torch ops, so its result is
differentiable.
"""
from __future__ import annotations

import sys
from typing import Any

import torch

from graphconv.compiler.codegen.generated import GeneratedCode


def apply(code: GeneratedCode, args: tuple, inputs: tuple) -> Any:
    """Run the compiled op with autograd: the cheap eager Function unless a transform needs the new style."""
    if _transformed():
        return _graph_apply(code, args, inputs)
    return EagerFunction.apply(code, args, *inputs)


def _graph_apply(code: GeneratedCode, args: tuple, inputs: tuple) -> Any:
    return GraphFunction.apply(Call(code, args), *inputs)


def casts_down(program: Any) -> bool:
    """A compiled op with an op that torch's autocast runs in lower precision (its conv and matmul family) acts
    like one of them under autocast: floating inputs cast to the autocast dtype, the op's own ops run with autocast
    off (so its dtypes stay consistent between forward and backward)."""
    return any(step.op.lower_precision for step in program.steps)


def autocast_inputs(inputs: tuple, device_type: str, lower_precision: bool) -> tuple:
    if not lower_precision:
        return inputs
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs)


def any_autocast() -> bool:
    """Whether autocast may be on for some device: one C call, before the per-device check (which reads an
    input's device)."""
    return _ANY_AUTOCAST()


_ANY_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)  # an older torch: check per device


def any_requires_grad(inputs: tuple) -> bool:
    for t in inputs:
        if t.requires_grad:
            return True
    return False


def _transformed() -> bool:
    """A functorch transform is active, or torch.compile is tracing."""
    return torch._C._are_functorch_transforms_active() or tracing()


def tracing() -> bool:
    """torch.compile is tracing (only possible once dynamo is imported)."""
    return "torch._dynamo" in sys.modules and torch.compiler.is_compiling()


def run_forward(code: GeneratedCode, args: tuple, inputs: tuple) -> tuple:
    try:
        return code.forward(args, *inputs)
    except Exception as error:
        raise code.errors.wrap(error) from error


def distinct_outputs(outputs: Any, inputs: tuple) -> Any:
    """The outputs, with any that *is* an input (a no-op view such as ``flatten(start_dim=1, end_dim=1)``, or an
    input passed straight through) replaced by a view of it: functorch refuses a Function that returns an input
    as-is, and a fresh view is what torch's own ops return."""
    if isinstance(outputs, tuple):
        return tuple(o.view_as(o) if any(o is t for t in inputs) else o for o in outputs)
    for t in inputs:
        if outputs is t:
            return outputs.view_as(outputs)
    return outputs


def unaliased(saved: list, inputs: tuple) -> list:
    """What forward keeps, as dynamo can trace it: a view of an input (a reshaped kernel) is cloned, since dynamo
    refuses an autograd.Function whose forward saves an intermediate that aliases an input or output."""
    return [t.clone() if t._base is not None and not any(t is i for i in inputs) else t for t in saved]


def run_backward(code: GeneratedCode, args: tuple, inputs: list, kept: list, meta: tuple, needs: tuple,
                 grads: tuple) -> tuple:
    try:
        return code.backward(args, inputs, kept, meta, needs, *grads)
    except Exception as error:
        raise code.errors.wrap(error) from error


def save(ctx: Any, code: GeneratedCode, args: tuple, kept: list, meta: tuple, inputs: tuple) -> None:
    """Keep the inputs (for a differentiable backward, and the VJPs that read them) and what the memory plan keeps
    beyond them, each tensor once."""
    ctx.save_for_backward(*inputs, *kept)
    ctx.call = (code, args, meta, len(inputs))


def take_saved(ctx: Any, count: int) -> tuple[list, list]:
    """The saved (inputs, kept values), as lists for the generated backward to empty, with ctx's own references
    to them released first unless the graph is retained (``retain_graph=True``; ``create_graph=True``): then
    each value dies at its last use in backward, as in torch's graph of one node per op, not when the whole
    backward returns. (torch.compile's traced backward keeps them: its compiled graph plans their lifetimes; so
    does a backward under a functorch transform, whose ``ctx`` is functorch's wrapper of the node's.)"""
    stored = ctx.saved_tensors
    if not tracing() and isinstance(ctx, torch._C._FunctionBase):
        _RELEASE_SAVED(ctx)
    return list(stored[:count]), list(stored[count:])


# Frees a node's saved tensors unless its graph task keeps the graph (what torch.compile's backward calls);
# an older torch without it keeps them until backward returns
_RELEASE_SAVED = getattr(torch._C._FunctionBase, "maybe_clear_saved_tensors", lambda ctx: None)


def backward(ctx: Any, needs: tuple, grads: tuple) -> tuple:
    """The input gradients: from the saved values, or differentiably from the inputs when grad mode is on."""
    code, args, meta, count = ctx.call
    inputs, kept = take_saved(ctx, count)
    if torch.is_grad_enabled():
        _, kept, meta = run_forward(code, args, inputs)
    return run_backward(code, args, inputs, kept, meta, needs, grads)


class EagerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, code: GeneratedCode, args: tuple, *inputs: torch.Tensor) -> Any:
        try:
            outputs, kept, meta = code.forward(args, *inputs)
        except Exception as error:
            raise code.errors.wrap(error) from error
        save(ctx, code, args, kept, meta, inputs)
        return distinct_outputs(outputs, inputs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple:
        return (None, None, *backward(ctx, ctx.needs_input_grad[2:], grads))


class Call:
    """One call for :class:`GraphFunction`: what it runs with, and what forward hands to setup_context."""

    __slots__ = ("code", "args", "kept", "meta")

    def __init__(self, code: GeneratedCode, args: tuple) -> None:
        self.code, self.args, self.kept, self.meta = code, args, (), ()


class GraphFunction(torch.autograd.Function):
    generate_vmap_rule = True  # forward and backward are plain torch ops: vmap can batch them

    @staticmethod
    def forward(call: Call, *inputs: torch.Tensor) -> Any:
        outputs, kept, call.meta = run_forward(call.code, call.args, inputs)
        call.kept = unaliased(kept, inputs) if tracing() else kept
        return distinct_outputs(outputs, inputs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        call = inputs[0]  # functorch may call this once per level
        save(ctx, call.code, call.args, call.kept, call.meta, inputs[1:])

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple:
        return (None, *backward(ctx, ctx.needs_input_grad[1:], grads))
