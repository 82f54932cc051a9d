"""Fused dense layer: ``matmul(input, weight_t) + bias`` as one op (the optimizer's
graphconv.compiler.passes.matmul_bias rewrites the spec chain into it; specs may use it directly).

With ``X`` the input's rows (its batch dims merged), ``W`` the (in, out) ``weight_t`` and ``b`` the bias::

    Y  = b + X·W                 (torch.addmm: the product is written straight into the output)
    dX = dY·Wᵀ      dW = Xᵀ·dY      db = Σ rows of dY

The forward lowers to ``torch.addmm`` when the input has at least 2 dims, ``weight_t`` is a matrix and the bias a
vector of its width (the usual dense layer; no (rows, out) product beside the output); otherwise it is the literal
``torch.matmul(input, weight_t) + bias``, broadcasting included, with the gradients summed back to each input's
shape. The VJP is made of torch ops, so it is differentiable (double backward) and runs under vmap.
"""
from __future__ import annotations

import math

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, broadcast_shapes, matmul_shape


@library_op(save=("input", "weight_t"), lower_precision=True)
def matmul_bias(input, weight_t, bias):
    """``input @ weight_t + bias``: one ``torch.addmm`` over the input's rows for a dense layer's shapes, else the
    literal matmul then add."""
    if not _rows_layout(input.shape, weight_t.shape, bias.shape):
        return torch.matmul(input, weight_t) + bias
    rows = torch.addmm(bias, _rows(input), weight_t)
    return rows.view(*input.shape[:-1], weight_t.shape[1])


@matmul_bias.vjp
def _(ctx, grad):
    input, weight_t = ctx.input, ctx.weight_t
    if not _rows_layout(*ctx.shapes):
        return _literal_vjp(ctx, grad)
    rows = _rows(grad)
    grad_input = rows.mm(weight_t.t()).view(input.shape) if ctx.needs[0] else None
    grad_weight = _weight_grad(_rows(input), rows, weight_t) if ctx.needs[1] else None
    grad_bias = rows.sum(0) if ctx.needs[2] else None
    return grad_input, grad_weight, grad_bias


@matmul_bias.shape_rule
def _(input, weight_t, bias):
    if len(weight_t) < 2:
        raise ShapeRuleError("matmul_bias takes a weight_t of at least 2 dims")
    return broadcast_shapes(matmul_shape(input, weight_t), bias)


@matmul_bias.samples
def _():
    yield (randn(4, 3), randn(3, 5), randn(5)), {}
    yield (randn(2, 3, 4), randn(4, 2), randn(2)), {}
    yield (randn(0, 4), randn(4, 2), randn(2)), {}
    yield (randn(3, 0), randn(0, 2), randn(2)), {}  # no input features: the bias
    yield (randn(2, 3), randn(3, 0), randn(0)), {}  # no output features
    yield (randn(4), randn(4, 3), randn(3)), {}  # a vector input: literal
    yield (randn(2, 3, 4), randn(2, 4, 5), randn(3, 1)), {}  # batched weight, broadcast bias: literal


def _rows_layout(input, weight_t, bias) -> bool:
    """A dense layer's shapes: rows of ``in`` features, an (in, out) matrix, a bias of ``out``."""
    return (len(input) >= 2 and len(weight_t) == 2 and len(bias) == 1 and input[-1] == weight_t[0]
            and bias[0] == weight_t[1])


def _rows(tensor):
    """The tensor's leading dims merged into rows (counted, not ``-1``: with no features, -1 is ambiguous)."""
    return tensor.reshape(math.prod(tensor.shape[:-1]), tensor.shape[-1])


def _weight_grad(rows, grad_rows, weight_t):
    """``Xᵀ·dY``, laid out like ``weight_t``: a transposed view of a contiguous weight (the usual ``transpose``
    of an (out, in) weight) gets ``(dYᵀ·X)ᵀ``, whose gradient through the transpose is then contiguous."""
    if weight_t.stride(0) == 1 and weight_t.shape[1] > 1:
        return grad_rows.t().mm(rows).t()
    return rows.t().mm(grad_rows)


def _literal_vjp(ctx, grad) -> tuple:
    """``matmul`` then ``add``'s VJPs, each gradient summed back to its input's shape."""
    input, weight_t = ctx.input, ctx.weight_t
    a = input.unsqueeze(0) if input.dim() == 1 else input
    g = grad.unsqueeze(-2) if input.dim() == 1 else grad
    grad_input = sum_to(torch.matmul(g, weight_t.mT), a.shape).reshape(input.shape) if ctx.needs[0] else None
    grad_weight = sum_to(torch.matmul(a.mT, g), weight_t.shape) if ctx.needs[1] else None
    grad_bias = sum_to(grad, ctx.shapes[2]) if ctx.needs[2] else None
    return grad_input, grad_weight, grad_bias
