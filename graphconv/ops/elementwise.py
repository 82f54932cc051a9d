"""Elementwise ops. Binary ops broadcast like torch; their VJPs sum the gradient back to each input's shape.

Scalar constants enter a graph as attributes: ``add_scalar(value=eps)``, ``mul_scalar(value=scale)``,
``full_like(value=0.0)``.
"""
from __future__ import annotations

from graphconv.ops.helpers import positive, randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import broadcast_shapes


def _grads(ctx, grad_a, grad_b):
    """Each wanted gradient summed back to its input's shape; None for an input that needs none."""
    return tuple(sum_to(g(), shape) if need else None for g, shape, need in zip((grad_a, grad_b), ctx.shapes, ctx.needs))


def _broadcast_samples(make=randn):
    yield (make(3, 4), make(3, 4)), {}
    yield (make(2, 3, 4), make(4)), {}
    yield (make(3, 1), make(2, 1, 5)), {}


@library_op
def add(a, b):
    """``a + b``."""
    return a + b


@add.vjp
def _(ctx, grad):
    return _grads(ctx, lambda: grad, lambda: grad)


add.samples(_broadcast_samples)
add.shape_rule(broadcast_shapes)


@library_op
def sub(a, b):
    """``a - b``."""
    return a - b


@sub.vjp
def _(ctx, grad):
    return _grads(ctx, lambda: grad, lambda: -grad)


sub.samples(_broadcast_samples)
sub.shape_rule(broadcast_shapes)


@library_op(save=("a", "b"), fresh_grads=True)
def mul(a, b):
    """``a * b``."""
    return a * b


@mul.vjp
def _(ctx, grad):
    return _grads(ctx, lambda: grad * ctx.b, lambda: grad * ctx.a)


mul.samples(_broadcast_samples)
mul.shape_rule(broadcast_shapes)


@library_op(save=("a", "b"), fresh_grads=True)
def div(a, b):
    """``a / b``."""
    return a / b


@div.vjp
def _(ctx, grad):
    return _grads(ctx, lambda: grad / ctx.b, lambda: -grad * ctx.a / (ctx.b * ctx.b))


div.shape_rule(broadcast_shapes)


@div.samples
def _():
    yield from _broadcast_samples(positive)


@library_op(fresh_grads=True)
def neg(x):
    """``-x``."""
    return -x


@neg.vjp
def _(ctx, grad):
    return (-grad,)


@neg.shape_rule
def _(x):
    return x


@neg.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("out",), fresh_grads=True)
def exp(x):
    """``e ** x``."""
    return torch.exp(x)


@exp.vjp
def _(ctx, grad):
    return (grad * ctx.out,)


@exp.shape_rule
def _(x):
    return x


@exp.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("x",), fresh_grads=True)
def log(x):
    """Natural logarithm."""
    return torch.log(x)


@log.vjp
def _(ctx, grad):
    return (grad / ctx.x,)


@log.shape_rule
def _(x):
    return x


@log.samples
def _():
    yield (positive(3, 4),), {}


@library_op(save=("out",), fresh_grads=True)
def sqrt(x):
    """Square root."""
    return torch.sqrt(x)


@sqrt.vjp
def _(ctx, grad):
    return (grad / (2 * ctx.out),)


@sqrt.shape_rule
def _(x):
    return x


@sqrt.samples
def _():
    yield (positive(3, 4),), {}


@library_op(name="pow", save=("x",), fresh_grads=True)
def pow_(x, *, exponent):
    """``x ** exponent`` for a number ``exponent``: ``pow(exponent=2)``."""
    return x**exponent


@pow_.vjp
def _(ctx, grad):
    if ctx.exponent == 0:  # x ** 0 is constant: a zero gradient, not 0 * x ** -1 (NaN at x = 0)
        return (torch.zeros_like(grad),)
    return (grad * ctx.exponent * ctx.x ** (ctx.exponent - 1),)


@pow_.shape_rule
def _(x, *, exponent):
    return x


@pow_.samples
def _():
    yield (randn(3, 4),), {"exponent": 2}
    yield (randn(3, 4),), {"exponent": 3}
    yield (positive(3, 4),), {"exponent": -0.5}
    yield (randn(3, 4),), {"exponent": 0}


@library_op
def add_scalar(x, *, value):
    """``x + value`` for a number ``value`` (an attr or a literal): ``add_scalar(value=eps)``."""
    return x + value


@add_scalar.vjp
def _(ctx, grad):
    return (grad,)


@add_scalar.shape_rule
def _(x, *, value):
    return x


@add_scalar.samples
def _():
    yield (randn(3, 4),), {"value": 0.5}


@library_op(fresh_grads=True)
def mul_scalar(x, *, value):
    """``x * value`` for a number ``value``: ``mul_scalar(value=scale)``."""
    return x * value


@mul_scalar.vjp
def _(ctx, grad):
    return (grad * ctx.value,)


@mul_scalar.shape_rule
def _(x, *, value):
    return x


@mul_scalar.samples
def _():
    yield (randn(3, 4),), {"value": -2.5}


@library_op
def full_like(x, *, value):
    """A tensor of ``x``'s shape, dtype and device filled with the constant ``value`` (no gradient flows to x)."""
    return torch.full_like(x, value)


@full_like.vjp
def _(ctx, grad):
    return (None,)


@full_like.shape_rule
def _(x, *, value):
    return x


@full_like.samples
def _():
    yield (randn(3, 4),), {"value": 1.5}


@library_op(save=("condition",), index_inputs=("condition",))
def where(condition, x, y):
    """``x`` where the boolean ``condition`` holds, else ``y`` (all three broadcast)."""
    return torch.where(condition, x, y)


@where.vjp
def _(ctx, grad):
    zero = grad.new_zeros(())
    grad_x = sum_to(torch.where(ctx.condition, grad, zero), ctx.shapes[1]) if ctx.needs[1] else None
    grad_y = sum_to(torch.where(ctx.condition, zero, grad), ctx.shapes[2]) if ctx.needs[2] else None
    return None, grad_x, grad_y


where.shape_rule(broadcast_shapes)


@where.samples
def _():
    yield (randn(3, 4) > 0, randn(3, 4), randn(3, 4)), {}
    yield (randn(3, 1) > 0, randn(4), randn(2, 1, 1)), {}
