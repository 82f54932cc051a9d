"""Sliding windows: unfold (im2col) and fold (col2im), each the other's adjoint — so each one's VJP is the other;
and ``windows``, the same patches as a strided view (no copy), whose VJP is the scatter-add that fold does."""
from __future__ import annotations

from graphconv.ops.fused import Windows
from graphconv.ops.helpers import col2im, plain_eager_call, randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, at_least, divides, equal, ntuple, require, window_counts


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
    rows, columns = window_counts((height, width), kernel_size, dilation, padding, stride, "unfold")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    return tuple(batch) + (channels * kh * kw, rows * columns)


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
    rows, columns = window_counts((height, width), kernel_size, dilation, padding, stride, "fold")
    require(at_least(patch, 1), "fold: the columns must not be empty")
    require(divides(kh * kw, patch), "fold: dim -2 must be a multiple of the kernel's size")
    require(equal(blocks, rows * columns), "fold: dim -1 must be the number of windows in the output")
    return tuple(batch) + (patch // (kh * kw), height, width)


@fold.samples
def _():
    yield (randn(2, 3 * 2 * 2, 9),), {"output_size": (4, 4), "kernel_size": 2}
    yield (randn(1, 2 * 9, 9),), {"output_size": (5, 6), "kernel_size": 3, "padding": 1, "stride": 2}


@library_op(cheap=True)
def windows(input, *, kernel_size, dilation=1, padding=0, stride=1, value=0.0):
    """The sliding ``kernel_size`` windows of a (b, c, h, w) batch padded with ``value``, as a (b, c, o_h, o_w, kh,
    kw) view — unfold's patches without the copy: a window reduction (pooling, a depthwise conv) reads them in
    place. Without padding it is a view of the input itself."""
    g = Windows(input.shape, kernel_size, dilation, padding, stride)
    padded = _pad(input, g, value)
    sb, sc, sy, sx = padded.stride()
    return padded.as_strided((g.b, g.c, g.oh, g.ow, g.kh, g.kw),
                             (sb, sc, sy * g.sh, sx * g.sw, sy * g.dh, sx * g.dw), padded.storage_offset())


@windows.vjp
def _(ctx, grad):
    """A scatter-add: each window's gradient summed back where the window read — per kernel position, one strided
    add into the padded gradient (in place where that is allowed; else F.fold, out of place)."""
    g = Windows(ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride)
    if not plain_eager_call():
        columns = grad.permute(0, 1, 4, 5, 2, 3).reshape(g.b, g.c * g.kh * g.kw, g.oh * g.ow)
        return (col2im(columns, (g.h, g.w), *g.unfold_args()),)
    padded = grad.new_zeros(g.b, g.c, g.h + 2 * g.ph, g.w + 2 * g.pw)
    for i in range(g.kh):
        for j in range(g.kw):
            rows = slice(i * g.dh, i * g.dh + g.sh * (g.oh - 1) + 1, g.sh)
            columns = slice(j * g.dw, j * g.dw + g.sw * (g.ow - 1) + 1, g.sw)
            padded[:, :, rows, columns] += grad[:, :, :, :, i, j]
    return (padded[:, :, g.ph: g.ph + g.h, g.pw: g.pw + g.w],)


@windows.shape_rule
def _(input, *, kernel_size, dilation=1, padding=0, stride=1, value=0.0):
    if len(input) != 4:
        raise ShapeRuleError(f"windows takes a (b, c, h, w) tensor, got {len(input)} dims")
    b, c, h, w = input
    rows, columns = window_counts((h, w), kernel_size, dilation, padding, stride, "windows")
    return (b, c, rows, columns, *ntuple(kernel_size, 2, "kernel_size"))


@windows.samples
def _():
    yield (randn(2, 3, 5, 4),), {"kernel_size": (3, 2)}
    yield (randn(1, 2, 7, 6),), {"kernel_size": 3, "dilation": 2, "padding": 1, "stride": 2}
    yield (randn(2, 1, 6, 6),), {"kernel_size": (2, 3), "padding": (1, 0), "stride": (2, 1), "value": -1.0}


def _pad(input, g: Windows, value):
    if not (g.ph or g.pw):
        return input
    return torch.nn.functional.pad(input, (g.pw, g.pw, g.ph, g.ph), value=value)
