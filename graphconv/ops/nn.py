"""Activations and normalized exponentials: each VJP reads the saved output, not the input."""
from __future__ import annotations

from graphconv.ops.helpers import randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import dim_index


@library_op(save=("out",), fresh_grads=True)
def relu(x):
    """``max(x, 0)``; the gradient at 0 is 0, as in torch."""
    return torch.relu(x)


@relu.vjp
def _(ctx, grad):
    return (grad * (ctx.out > 0),)


@relu.shape_rule
def _(x):
    return x


@relu.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("out",), fresh_grads=True)
def sigmoid(x):
    """``1 / (1 + e ** -x)``."""
    return torch.sigmoid(x)


@sigmoid.vjp
def _(ctx, grad):
    return (grad * ctx.out * (1 - ctx.out),)


@sigmoid.shape_rule
def _(x):
    return x


@sigmoid.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("out",), fresh_grads=True)
def tanh(x):
    """Hyperbolic tangent."""
    return torch.tanh(x)


@tanh.vjp
def _(ctx, grad):
    return (grad * (1 - ctx.out * ctx.out),)


@tanh.shape_rule
def _(x):
    return x


@tanh.samples
def _():
    yield (randn(3, 4),), {}


@library_op(save=("out",), fresh_grads=True)
def softmax(x, *, dim):
    """``exp(x) / sum(exp(x))`` along ``dim``."""
    return torch.softmax(x, dim)


@softmax.vjp
def _(ctx, grad):
    out = ctx.out
    return (out * (grad - (grad * out).sum(ctx.dim, keepdim=True)),)


@softmax.shape_rule
def _(x, *, dim):
    dim_index(dim, len(x))
    return x


@softmax.samples
def _():
    yield (randn(3, 4),), {"dim": -1}
    yield (randn(2, 3, 4),), {"dim": 1}


@library_op(save=("out",), fresh_grads=True)
def log_softmax(x, *, dim):
    """``log(softmax(x))`` along ``dim``, computed stably."""
    return torch.log_softmax(x, dim)


@log_softmax.vjp
def _(ctx, grad):
    return (grad - torch.exp(ctx.out) * grad.sum(ctx.dim, keepdim=True),)


@log_softmax.shape_rule
def _(x, *, dim):
    dim_index(dim, len(x))
    return x


@log_softmax.samples
def _():
    yield (randn(3, 4),), {"dim": -1}
    yield (randn(2, 3, 4),), {"dim": 0}
