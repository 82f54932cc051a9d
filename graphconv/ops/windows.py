"""Sliding windows: unfold (im2col) and fold (col2im), each the other's adjoint — so each one's VJP is the other."""
from __future__ import annotations

from graphconv.ops.helpers import col2im, randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op


@library_op(cheap=True)
def unfold(input, *, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding ``kernel_size`` patches of a (b, c, h, w) batch as columns: (b, c·kh·kw, patches) — im2col."""
    return torch.nn.functional.unfold(input, kernel_size, dilation=dilation, padding=padding, stride=stride)


@unfold.vjp
def _(ctx, grad):
    size = tuple(ctx.shapes[0][-2:])
    return (col2im(grad, size, ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride),)


@unfold.samples
def _():
    yield (randn(2, 3, 5, 4),), {"kernel_size": (3, 2)}
    yield (randn(1, 2, 6, 7),), {"kernel_size": 3, "dilation": 2, "padding": 1, "stride": 2}
    yield (randn(2, 6, 6),), {"kernel_size": (2, 2), "stride": (2, 1)}


@library_op
def fold(input, *, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Sum columns of patches back into a (b, c, h, w) batch — the adjoint of unfold (col2im)."""
    return col2im(input, output_size, kernel_size, dilation, padding, stride)


@fold.vjp
def _(ctx, grad):
    return (torch.nn.functional.unfold(grad, ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride),)


@fold.samples
def _():
    yield (randn(2, 3 * 2 * 2, 9),), {"output_size": (4, 4), "kernel_size": 2}
    yield (randn(1, 2 * 9, 9),), {"output_size": (5, 6), "kernel_size": 3, "padding": 1, "stride": 2}
