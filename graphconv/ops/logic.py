"""Comparisons, masks and triangles: what a causal or padding mask is made of.

A comparison gives a bool tensor (no gradient flows through it); ``masked_fill`` and ``where`` take such a mask
as an index input. ``triu``/``tril`` keep the upper/lower triangle of the last two dims, so a causal mask is
``full_like(scores, value=1.0) → tril → eq(value=0)`` and then ``masked_fill(value=-inf)``.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op, op
from graphconv.ops.shapes import ShapeRuleError, broadcast_shapes


def _other(b, value):
    return value if b is None else b


def _no_gradient(ctx, grad):
    return (None,) * len(ctx.shapes)


def _comparison_samples():
    yield (randn(3, 4), randn(3, 4)), {}
    yield (randn(2, 3), randn(3)), {}
    yield (randn(3, 4), None), {"value": 0.25}


@op
def eq(a, b=None, *, value=0.0):
    """``a == b`` elementwise (broadcasting), or ``a == value`` without b: a bool tensor (no gradient flows)."""
    return torch.eq(a, _other(b, value))


@op
def ne(a, b=None, *, value=0.0):
    """``a != b`` elementwise (broadcasting), or ``a != value`` without b: a bool tensor (no gradient flows)."""
    return torch.ne(a, _other(b, value))


@op
def lt(a, b=None, *, value=0.0):
    """``a < b`` elementwise (broadcasting), or ``a < value`` without b: a bool tensor (no gradient flows)."""
    return torch.lt(a, _other(b, value))


@op
def le(a, b=None, *, value=0.0):
    """``a <= b`` elementwise (broadcasting), or ``a <= value`` without b: a bool tensor (no gradient flows)."""
    return torch.le(a, _other(b, value))


@op
def gt(a, b=None, *, value=0.0):
    """``a > b`` elementwise (broadcasting), or ``a > value`` without b: a bool tensor (no gradient flows)."""
    return torch.gt(a, _other(b, value))


@op
def ge(a, b=None, *, value=0.0):
    """``a >= b`` elementwise (broadcasting), or ``a >= value`` without b: a bool tensor (no gradient flows)."""
    return torch.ge(a, _other(b, value))


def _comparison_shape(a, b=None, *, value=0.0):
    return a if b is None else broadcast_shapes(a, b)


for _comparison in (eq, ne, lt, le, gt, ge):
    _comparison.vjp(_no_gradient)
    _comparison.shape_rule(_comparison_shape)
    _comparison.samples(_comparison_samples)


@op
def logical_not(x):
    """``not x`` for a bool tensor (a mask that says which entries to keep, turned into one that says which to
    drop); for a number tensor, ``x == 0``."""
    return torch.logical_not(x)


@logical_not.vjp
def _(ctx, grad):
    return (None,)


@logical_not.shape_rule
def _(x):
    return x


@logical_not.samples
def _():
    yield (randn(3, 4),), {}  # gradcheck needs a floating-point input; bool ones take the same path


@library_op(save=("mask",), index_inputs=("mask",))
def masked_fill(x, mask, *, value):
    """``x`` with ``value`` where the bool ``mask`` is True (the two broadcast): ``masked_fill(value=-inf)``."""
    return torch.masked_fill(x, mask, value)


@masked_fill.vjp
def _(ctx, grad):
    return (sum_to(grad.masked_fill(ctx.mask, 0), ctx.shapes[0]), None)


@masked_fill.shape_rule
def _(x, mask, *, value):
    return broadcast_shapes(x, mask)


@masked_fill.samples
def _():
    yield (randn(3, 4), randn(3, 4) > 0), {"value": -1.5}
    yield (randn(2, 3, 4), randn(3, 4) > 0), {"value": 0.0}
    yield (randn(3, 1), randn(3, 4) > 0), {"value": 2.0}


@library_op
def triu(x, *, diagonal=0):
    """The upper triangle of the last two dims (from ``diagonal`` up), the rest zero."""
    return torch.triu(x, diagonal)


@triu.vjp
def _(ctx, grad):
    return (torch.triu(grad, ctx.diagonal),)


@library_op
def tril(x, *, diagonal=0):
    """The lower triangle of the last two dims (up to ``diagonal``), the rest zero."""
    return torch.tril(x, diagonal)


@tril.vjp
def _(ctx, grad):
    return (torch.tril(grad, ctx.diagonal),)


def _triangle_samples():
    yield (randn(4, 5),), {}
    yield (randn(2, 4, 3),), {"diagonal": 1}
    yield (randn(3, 3),), {"diagonal": -1}


def _triangle_shape(x, *, diagonal=0):
    if len(x) < 2:
        raise ShapeRuleError(f"a triangle needs at least 2 dims, got {len(x)}")
    return x


triu.samples(_triangle_samples)
tril.samples(_triangle_samples)
triu.shape_rule(_triangle_shape)
tril.shape_rule(_triangle_shape)
