"""Reductions: each VJP reshapes the output gradient to the kept shape and broadcasts it over the reduced dims.

``dim`` is an int, a tuple of ints, or None (every dim). ``max`` sends the gradient to the first arg-max, like
``torch.max(x, dim)``; ``amax`` splits it evenly between tied maxima, like ``torch.amax``.
"""
from __future__ import annotations

import math

from graphconv.ops.helpers import kept_shape, randn
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, at_least, reduced, reduced_dims, require


@library_op(name="sum")
def sum_(x, *, dim=None, keepdim=False):
    """Sum over ``dim`` (default: every dim)."""
    return x.sum(dim=dim, keepdim=keepdim)


@sum_.vjp
def _(ctx, grad):
    shape = ctx.shapes[0]
    return (grad.reshape(kept_shape(shape, ctx.dim)).expand(shape),)


@sum_.shape_rule
def _(x, *, dim=None, keepdim=False):
    return reduced(x, dim, keepdim)


@sum_.samples
def _():
    yield (randn(3, 4),), {}
    yield (randn(2, 3, 4),), {"dim": 1}
    yield (randn(2, 3, 4),), {"dim": (0, -1), "keepdim": True}


@library_op
def mean(x, *, dim=None, keepdim=False):
    """Mean over ``dim`` (default: every dim)."""
    return x.mean(dim=dim, keepdim=keepdim)


@mean.vjp
def _(ctx, grad):
    shape = ctx.shapes[0]
    kept = kept_shape(shape, ctx.dim)
    count = math.prod(shape) // max(math.prod(kept), 1)
    return (grad.reshape(kept).expand(shape) / count,)


@mean.shape_rule
def _(x, *, dim=None, keepdim=False):
    return reduced(x, dim, keepdim)


@mean.samples
def _():
    yield (randn(3, 4),), {"keepdim": True}
    yield (randn(2, 3, 4),), {"dim": -1, "keepdim": True}
    yield (randn(2, 3, 4),), {"dim": (0, 2)}


@library_op(save=("x", "out"))
def amax(x, *, dim=None, keepdim=False):
    """Maximum over ``dim`` (default: every dim); the gradient is split evenly between tied maxima."""
    return x.amax(() if dim is None else dim, keepdim=keepdim)


@amax.vjp
def _(ctx, grad):
    kept = kept_shape(ctx.shapes[0], ctx.dim)
    hits = (ctx.x == ctx.out.reshape(kept)).to(grad.dtype)
    return (hits * (grad.reshape(kept) / hits.sum(_all_or(ctx.dim, len(kept)), keepdim=True)),)


def _all_or(dim, rank):
    return tuple(range(rank)) if dim is None else dim


@amax.shape_rule
def _(x, *, dim=None, keepdim=False):
    return _nonempty_reduction(x, dim, keepdim, "amax")


def _nonempty_reduction(x, dim, keepdim, name):
    """A maximum has no identity: the dims it reduces must not be empty."""
    for axis in reduced_dims(len(x), dim):
        require(at_least(x[axis], 1), f"{name}: a maximum over an empty dim has no value")
    return reduced(x, dim, keepdim)


@amax.samples
def _():
    yield (randn(3, 4),), {}
    yield (randn(2, 3, 4),), {"dim": 1}
    yield (randn(2, 3, 4),), {"dim": (0, 2), "keepdim": True}


@library_op(name="max", save=("x",))
def max_(x, *, dim, keepdim=False):
    """Maximum along one ``dim`` (values only); the gradient goes to the first arg-max, like torch.max(x, dim)."""
    return x.amax(dim, keepdim=keepdim)


@max_.vjp
def _(ctx, grad):
    kept = kept_shape(ctx.shapes[0], ctx.dim)
    first = ctx.x.argmax(ctx.dim, keepdim=True)
    return (grad.new_zeros(ctx.shapes[0]).scatter(ctx.dim, first, grad.reshape(kept)),)


@max_.shape_rule
def _(x, *, dim, keepdim=False):
    if isinstance(dim, (tuple, list)):
        raise ShapeRuleError(f"max: dim must be one dim, got {tuple(dim)}")
    return _nonempty_reduction(x, dim, keepdim, "max")


@max_.samples
def _():
    yield (randn(3, 4),), {"dim": 0}
    yield (randn(2, 3, 4),), {"dim": -1, "keepdim": True}
