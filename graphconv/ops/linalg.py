"""Matrix products. The VJP of ``a @ b`` is two matmuls: ``grad @ bᵀ`` and ``aᵀ @ grad``."""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, equal, matmul_shape, require


@library_op(save=("a", "b"), lower_precision=True, fresh_grads=True)
def matmul(a, b):
    """Matrix product ``a @ b`` (batched and broadcasting like torch.matmul)."""
    return torch.matmul(a, b)


@matmul.vjp
def _(ctx, grad):
    a, b = ctx.a, ctx.b
    if a.dim() == 1 and b.dim() == 1:
        return (grad * b if ctx.needs[0] else None, grad * a if ctx.needs[1] else None)
    a2 = a.unsqueeze(0) if a.dim() == 1 else a  # a vector operand is a one-row (or one-column) matrix
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    g2 = grad
    if a.dim() == 1:
        g2 = g2.unsqueeze(-2)
    if b.dim() == 1:
        g2 = g2.unsqueeze(-1)
    grad_a = sum_to(torch.matmul(g2, b2.mT), a2.shape).reshape(a.shape) if ctx.needs[0] else None
    grad_b = sum_to(torch.matmul(a2.mT, g2), b2.shape).reshape(b.shape) if ctx.needs[1] else None
    return grad_a, grad_b


matmul.shape_rule(matmul_shape)


@matmul.samples
def _():
    yield (randn(3, 4), randn(4, 5)), {}
    yield (randn(2, 3, 4), randn(4, 5)), {}
    yield (randn(2, 1, 3, 4), randn(5, 4, 2)), {}
    yield (randn(4), randn(4, 3)), {}
    yield (randn(3, 4), randn(4)), {}
    yield (randn(4), randn(4)), {}


@library_op(save=("a", "b"), lower_precision=True, fresh_grads=True)
def bmm(a, b):
    """Batched matrix product of (n, i, k) and (n, k, j) tensors, no broadcasting (torch.bmm)."""
    return torch.bmm(a, b)


@bmm.vjp
def _(ctx, grad):
    grad_a = torch.bmm(grad, ctx.b.mT) if ctx.needs[0] else None
    grad_b = torch.bmm(ctx.a.mT, grad) if ctx.needs[1] else None
    return grad_a, grad_b


@bmm.shape_rule
def _(a, b):
    if len(a) != 3 or len(b) != 3:
        raise ShapeRuleError(f"bmm takes two 3-dim tensors, got {len(a)} and {len(b)} dims")
    require(equal(a[0], b[0]), "bmm: the batch sizes must be equal")
    require(equal(a[2], b[1]), "bmm: the inner sizes of the products must be equal")
    return (a[0], a[1], b[2])


@bmm.samples
def _():
    yield (randn(2, 3, 4), randn(2, 4, 5)), {}
