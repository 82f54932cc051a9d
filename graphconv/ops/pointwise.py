"""More elementwise math: rsqrt, erf, abs, sin, cos, clamp, maximum, minimum, type_as — each VJP the derivative
torch's autograd uses (at a kink or a tie too: ``abs``'s gradient at 0 is 0, ``maximum`` splits a tie evenly).

With ``exp``, ``tanh``, ``pow`` and friends these are enough to write GELU (exact through ``erf``, or its tanh
form), RMSNorm (``rsqrt``), rotary embeddings (``sin``, ``cos``) and SwiGLU (``sigmoid``, ``mul``) as specs.
"""
from __future__ import annotations

import math

from graphconv.ops.helpers import positive, randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op, op
from graphconv.ops.shapes import broadcast_shapes


@library_op(save=("out",), fresh_grads=True)
def rsqrt(x):
    """``1 / sqrt(x)``."""
    return torch.rsqrt(x)


@rsqrt.vjp
def _(ctx, grad):
    return (-0.5 * grad * ctx.out ** 3,)


@rsqrt.shape_rule
def _(x):
    return x


@rsqrt.samples
def _():
    yield (positive(3, 4),), {}


@library_op(save=("x",), fresh_grads=True)
def erf(x):
    """The error function, ``2/√π ∫₀ˣ e^(-t²) dt`` (exact GELU is ``x/2 · (1 + erf(x/√2))``)."""
    return torch.erf(x)


@erf.vjp
def _(ctx, grad):
    return (grad * (2 / math.sqrt(math.pi)) * torch.exp(-ctx.x * ctx.x),)


@erf.shape_rule
def _(x):
    return x


@erf.samples
def _():
    yield (randn(3, 4),), {}


@library_op(name="abs", save=("x",), fresh_grads=True)
def abs_(x):
    """``|x|``; the gradient at 0 is 0, as in torch."""
    return torch.abs(x)


@abs_.vjp
def _(ctx, grad):
    return (grad * torch.sign(ctx.x),)


@abs_.shape_rule
def _(x):
    return x


@abs_.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("x",), fresh_grads=True)
def sin(x):
    """Sine."""
    return torch.sin(x)


@sin.vjp
def _(ctx, grad):
    return (grad * torch.cos(ctx.x),)


@sin.shape_rule
def _(x):
    return x


@sin.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("x",), fresh_grads=True)
def cos(x):
    """Cosine."""
    return torch.cos(x)


@cos.vjp
def _(ctx, grad):
    return (-grad * torch.sin(ctx.x),)


@cos.shape_rule
def _(x):
    return x


@cos.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("x",))
def clamp(x, *, min=None, max=None):
    """``x`` limited to ``[min, max]`` (either may be None); the gradient passes where ``min <= x <= max``."""
    return torch.clamp(x, min, max)


@clamp.vjp
def _(ctx, grad):
    inside = torch.ones_like(ctx.x, dtype=torch.bool)
    if ctx.min is not None:
        inside = inside & (ctx.x >= ctx.min)
    if ctx.max is not None:
        inside = inside & (ctx.x <= ctx.max)
    return (grad * inside,)


@clamp.shape_rule
def _(x, *, min=None, max=None):
    return x


@clamp.samples
def _():
    yield (randn(3, 4),), {"min": -0.5, "max": 0.5}
    yield (randn(3, 4),), {"min": 0.0}
    yield (randn(3, 4),), {"max": 0.25}


def _tie_split(grad, mine, theirs, wins):
    """The gradient of maximum/minimum for one input: all of it where it wins, half at a tie, none elsewhere."""
    return torch.where(mine == theirs, grad / 2, grad * wins(mine, theirs))


@library_op(save=("a", "b"))
def maximum(a, b):
    """The elementwise larger of ``a`` and ``b`` (broadcasting); a tie splits the gradient evenly, as in torch."""
    return torch.maximum(a, b)


@maximum.vjp
def _(ctx, grad):
    a, b = ctx.a, ctx.b
    grad_a = sum_to(_tie_split(grad, a, b, torch.gt), ctx.shapes[0]) if ctx.needs[0] else None
    grad_b = sum_to(_tie_split(grad, b, a, torch.gt), ctx.shapes[1]) if ctx.needs[1] else None
    return grad_a, grad_b


@library_op(save=("a", "b"))
def minimum(a, b):
    """The elementwise smaller of ``a`` and ``b`` (broadcasting); a tie splits the gradient evenly, as in torch."""
    return torch.minimum(a, b)


@minimum.vjp
def _(ctx, grad):
    a, b = ctx.a, ctx.b
    grad_a = sum_to(_tie_split(grad, a, b, torch.lt), ctx.shapes[0]) if ctx.needs[0] else None
    grad_b = sum_to(_tie_split(grad, b, a, torch.lt), ctx.shapes[1]) if ctx.needs[1] else None
    return grad_a, grad_b


def _pair_samples():
    yield (randn(3, 4), randn(3, 4)), {}
    yield (randn(2, 3, 4), randn(4)), {}


maximum.samples(_pair_samples)
minimum.samples(_pair_samples)
maximum.shape_rule(broadcast_shapes)
minimum.shape_rule(broadcast_shapes)


@op(index_inputs=("like",))
def type_as(x, like):
    """``x`` converted to ``like``'s dtype (an int or bool tensor to the float dtype it is computed with); only
    ``like``'s dtype is read. The gradient goes back in ``x``'s dtype, when ``x`` is floating-point."""
    return x.to(like.dtype)


@type_as.vjp
def _(ctx, grad):
    return (grad.to(ctx.dtypes[0]) if ctx.dtypes[0].is_floating_point else None, None)


@type_as.shape_rule
def _(x, like):
    return x


@type_as.samples
def _():
    yield (randn(3, 4), randn(1)), {}
    yield (torch.tensor([[0, 1], [2, 3]]), randn(1)), {}
