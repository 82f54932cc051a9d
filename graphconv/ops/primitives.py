"""Primitive ops, each a forward with its hand-written VJP right below it.

Movement ops' VJPs are the inverse movement (permute back, reshape back, fold ↔ unfold); matmul's are two
matmuls. Every op carries sample inputs for the registry-wide gradcheck (tests/test_ops_gradcheck.py).
"""
from __future__ import annotations

from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import op


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def _argsort(order):
    return tuple(sorted(range(len(order)), key=lambda i: order[i]))


# --- movement ---------------------------------------------------------------------------------------------


@op(variadic="dims")
def permute(x, *, dims):
    """Reorder dimensions: ``permute(0, 2, 1)``."""
    return x.permute(dims)


@permute.vjp
def _(ctx, grad):
    return (grad.permute(_argsort([d % len(ctx.dims) for d in ctx.dims])),)


@permute.samples
def _():
    yield (_randn(2, 3, 4),), {"dims": (0, 2, 1)}
    yield (_randn(2, 3, 4, 5),), {"dims": (3, 0, 2, 1)}
    yield (_randn(3, 4),), {"dims": (-1, 0)}


@op
def transpose(x, *, dim0, dim1):
    """Swap two dimensions: ``transpose(0, 1)``."""
    return x.transpose(dim0, dim1)


@transpose.vjp
def _(ctx, grad):
    return (grad.transpose(ctx.dim0, ctx.dim1),)


@transpose.samples
def _():
    yield (_randn(3, 4),), {"dim0": 0, "dim1": 1}
    yield (_randn(2, 3, 4),), {"dim0": -1, "dim1": 0}


@op(variadic="shape")
def reshape(x, *, shape):
    """Same elements, another shape (one size may be -1): ``reshape(b * patches, patch_size)``."""
    return x.reshape(shape)


@reshape.vjp
def _(ctx, grad):
    return (grad.reshape(ctx.shapes[0]),)


@reshape.samples
def _():
    yield (_randn(2, 3, 4),), {"shape": (6, 4)}
    yield (_randn(6, 4),), {"shape": (2, -1, 2)}


# --- linear algebra ---------------------------------------------------------------------------------------


def _sum_to(grad, shape):
    """Sum a broadcast gradient back down to ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(dims, keepdim=True).reshape(shape)


@op(save=("a", "b"))
def matmul(a, b):
    """Matrix product ``a @ b`` (batched and broadcasting like torch.matmul)."""
    return torch.matmul(a, b)


@matmul.vjp
def _(ctx, grad):
    a, b = ctx.a, ctx.b
    if a.dim() == 1 and b.dim() == 1:
        return (grad * b if ctx.needs[0] else None, grad * a if ctx.needs[1] else None)
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    g2 = grad
    if a.dim() == 1:
        g2 = g2.unsqueeze(-2)
    if b.dim() == 1:
        g2 = g2.unsqueeze(-1)
    grad_a = _sum_to(torch.matmul(g2, b2.mT), a2.shape).reshape(a.shape) if ctx.needs[0] else None
    grad_b = _sum_to(torch.matmul(a2.mT, g2), b2.shape).reshape(b.shape) if ctx.needs[1] else None
    return grad_a, grad_b


@matmul.samples
def _():
    yield (_randn(3, 4), _randn(4, 5)), {}
    yield (_randn(2, 3, 4), _randn(4, 5)), {}
    yield (_randn(2, 1, 3, 4), _randn(5, 4, 2)), {}
    yield (_randn(4), _randn(4, 3)), {}
    yield (_randn(3, 4), _randn(4)), {}
    yield (_randn(4), _randn(4)), {}


# --- sliding windows --------------------------------------------------------------------------------------


@op
def unfold(input, *, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding ``kernel_size`` patches of a (b, c, h, w) batch as columns: (b, c·kh·kw, patches) — im2col."""
    return torch.nn.functional.unfold(input, kernel_size, dilation=dilation, padding=padding, stride=stride)


@unfold.vjp
def _(ctx, grad):
    size = tuple(ctx.shapes[0][-2:])
    return (torch.nn.functional.fold(grad, size, ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride),)


@unfold.samples
def _():
    yield (_randn(2, 3, 5, 4),), {"kernel_size": (3, 2)}
    yield (_randn(1, 2, 6, 7),), {"kernel_size": 3, "dilation": 2, "padding": 1, "stride": 2}
    yield (_randn(2, 6, 6),), {"kernel_size": (2, 2), "stride": (2, 1)}


@op
def fold(input, *, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Sum columns of patches back into a (b, c, h, w) batch — the adjoint of unfold (col2im)."""
    return torch.nn.functional.fold(
        input, output_size, kernel_size, dilation=dilation, padding=padding, stride=stride
    )


@fold.vjp
def _(ctx, grad):
    return (torch.nn.functional.unfold(grad, ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride),)


@fold.samples
def _():
    yield (_randn(2, 3 * 2 * 2, 9),), {"output_size": (4, 4), "kernel_size": 2}
    yield (_randn(1, 2 * 9, 9),), {"output_size": (5, 6), "kernel_size": 3, "padding": 1, "stride": 2}
