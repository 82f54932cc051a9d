"""Sliding windows: unfold (im2col) and fold (col2im), each the other's adjoint — so each one's VJP is the other."""
from __future__ import annotations

from graphconv.ops.helpers import col2im, randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, at_least, divides, equal, ntuple, require, window_count


@library_op(cheap=True)
def unfold(input, *, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding ``kernel_size`` patches of a (b, c, h, w) batch as columns: (b, c·kh·kw, patches) — im2col."""
    return torch.nn.functional.unfold(input, kernel_size, dilation=dilation, padding=padding, stride=stride)


@unfold.vjp
def _(ctx, grad):
    size = tuple(ctx.shapes[0][-2:])
    return (col2im(grad, size, ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride),)


@unfold.shape_rule
def _(input, *, kernel_size, dilation=1, padding=0, stride=1):
    if len(input) not in (3, 4):
        raise ShapeRuleError(f"unfold takes a (c, h, w) or (b, c, h, w) tensor, got {len(input)} dims")
    *batch, channels, height, width = input
    for size in (channels, height, width):
        require(at_least(size, 1), "unfold: the channels, height and width must not be empty")
    rows, columns = windows((height, width), kernel_size, dilation, padding, stride, "unfold")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    return tuple(batch) + (channels * kh * kw, rows * columns)


def windows(size, kernel_size, dilation, padding, stride, what):
    """How many windows fit along each of the last two dims: (rows, columns)."""
    geometry = zip(*(ntuple(v, 2, name) for v, name in ((kernel_size, "kernel_size"), (dilation, "dilation"),
                                                      (padding, "padding"), (stride, "stride"))))
    return tuple(window_count(n, *g, what) for n, g in zip(size, geometry))


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


@fold.shape_rule
def _(input, *, output_size, kernel_size, dilation=1, padding=0, stride=1):
    if len(input) not in (2, 3):
        raise ShapeRuleError(f"fold takes a (c·kh·kw, blocks) or (b, c·kh·kw, blocks) tensor, got {len(input)} dims")
    *batch, patch, blocks = input
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    height, width = ntuple(output_size, 2, "output_size")
    rows, columns = windows((height, width), kernel_size, dilation, padding, stride, "fold")
    require(at_least(patch, 1), "fold: the columns must not be empty")
    require(divides(kh * kw, patch), "fold: dim -2 must be a multiple of the kernel's size")
    require(equal(blocks, rows * columns), "fold: dim -1 must be the number of windows in the output")
    return tuple(batch) + (patch // (kh * kw), height, width)


@fold.samples
def _():
    yield (randn(2, 3 * 2 * 2, 9),), {"output_size": (4, 4), "kernel_size": 2}
    yield (randn(1, 2 * 9, 9),), {"output_size": (5, 6), "kernel_size": 3, "padding": 1, "stride": 2}
