"""Fused activations: erf-GELU and SiLU (``x · sigmoid(x)``, the optimizer's graphconv.compiler.passes.silu).

Erf-GELU, ``half · x · (shift + erf(scale · x))``, as one op (the optimizer's
graphconv.compiler.passes.gelu rewrites the spec chain ``mul_scalar(scale) → erf → add_scalar(shift) → mul(x, ·) →
mul_scalar(half)`` into it)::

    y  = h · x · (s + erf(c·x))
    dx = dy · h · (s + erf(c·x) + x · c · 2/√π · exp(-(c·x)²))

Where the constants are GELU's (``c = 1/√2``, ``s = 1``, ``h = 1/2``: checked per call, the spec may compute
them) the forward is lowered to ``torch.nn.functional.gelu`` and the VJP to ``torch.ops.aten.gelu_backward``,
one pass over memory each (torch differentiates gelu_backward again, and vmap batches both); other constants take
the lines above as torch ops.
"""
from __future__ import annotations

import math

from graphconv.ops.helpers import randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op

GELU_SCALE = 1 / 2**0.5


@library_op(save=("x",), fresh_grads=True)
def erf_gelu(x, *, scale, shift, half):
    """``half · x · (shift + erf(scale · x))``: torch's exact GELU for its constants (1/√2, 1, 1/2)."""
    if is_gelu(scale, shift, half):
        return torch.nn.functional.gelu(x)
    return half * x * (shift + torch.erf(scale * x))


@erf_gelu.vjp
def _(ctx, grad):
    x, scale = ctx.x, ctx.scale
    if is_gelu(scale, ctx.shift, ctx.half):
        return (torch.ops.aten.gelu_backward(grad, x),)
    slope = ctx.shift + torch.erf(scale * x) + x * scale * (2 / math.sqrt(math.pi)) * torch.exp(-(scale * x) ** 2)
    return (grad * ctx.half * slope,)


@erf_gelu.shape_rule
def _(x, *, scale, shift, half):
    return x


@erf_gelu.samples
def _():
    yield (randn(3, 4),), {"scale": GELU_SCALE, "shift": 1.0, "half": 0.5}
    yield (randn(2, 3, 2),), {"scale": 0.3, "shift": 2.0, "half": -1.5}


def is_gelu(scale, shift, half) -> bool:
    """The constants are exact GELU's (the scale to within rounding of 1/√2, however the spec computes it)."""
    return shift == 1 and half == 0.5 and isinstance(scale, float) and math.isclose(scale, GELU_SCALE, rel_tol=1e-12)


@library_op(save=("x",), fresh_grads=True)
def silu(x):
    """``x · sigmoid(x)``, lowered to ``torch.nn.functional.silu``. Its VJP ``dx = dy · σ · (1 + x · (1 - σ))`` is
    lowered to ``torch.ops.aten.silu_backward`` where autograd does not record (torch cannot differentiate that
    kernel again: a double backward takes the formula as torch ops)."""
    return torch.nn.functional.silu(x)


@silu.vjp
def _(ctx, grad):
    x = ctx.x
    if not torch.is_grad_enabled():
        return (torch.ops.aten.silu_backward(grad, x),)
    gate = torch.sigmoid(x)
    return (grad * gate * (1 + x * (1 - gate)),)


@silu.shape_rule
def _(x):
    return x


@silu.samples
def _():
    yield (randn(3, 4),), {}
