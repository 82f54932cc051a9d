"""Padding by copying the input's own entries: reflect, replicate, circular (``torch.nn.functional.pad``'s modes).

Each padded dim is an ``index_select`` with an index that says which input entry every output entry copies, so
the VJP adds each output gradient back to the entry it copied (``index_add``), dim by dim in reverse. ``pad`` is
read as torch reads it: ``(left, right)`` for the last dim, then ``(top, bottom)`` for the one before, and so on.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, at_least, require


def source_index(size, before, after, mode, device):
    """For each position of a dim padded by ``before`` and ``after``: the input position it copies."""
    if before < 0 or after < 0:
        raise ValueError(f"{mode} padding must not be negative, got ({before}, {after})")
    position = torch.arange(-before, size + after, device=device)
    if mode == "replicate":
        return position.clamp(0, size - 1)
    if mode == "circular":
        return position.remainder(size)
    if before >= size or after >= size:
        raise ValueError(f"reflect padding ({before}, {after}) must be smaller than the dim's size {size}")
    period = 2 * (size - 1)
    folded = position.remainder(max(period, 1))
    return torch.where(folded < size, folded, period - folded)


def _padded_dims(rank, pad):
    """(dim, before, after) for each dim ``pad`` names, last dim first."""
    if len(pad) % 2 or len(pad) // 2 > rank:
        raise ValueError(f"pad {tuple(pad)} must have two sizes per padded dim, for at most {rank} dims")
    return [(rank - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]


def _pad(x, pad, mode):
    for dim, before, after in _padded_dims(x.dim(), pad):
        x = x.index_select(dim, source_index(x.shape[dim], before, after, mode, x.device))
    return x


def _unpad(grad, shape, pad, mode):
    """The VJP: the dims in reverse order, each gradient entry added back to the input entry it copies."""
    for dim, before, after in reversed(_padded_dims(len(shape), pad)):
        index = source_index(shape[dim], before, after, mode, grad.device)
        grad = grad.new_zeros(grad.shape[:dim] + (shape[dim],) + grad.shape[dim + 1:]).index_add(dim, index, grad)
    return grad


def _padding_samples():
    yield (randn(2, 3, 5),), {"pad": (2, 1)}
    yield (randn(1, 2, 4, 5),), {"pad": (1, 2, 3, 0)}


@library_op
def reflect_pad(x, *, pad):
    """Pad the last dims by mirroring the entries next to the edge: ``pad=(left, right, top, bottom)`` as
    torch.nn.functional.pad(mode='reflect')."""
    return _pad(x, pad, "reflect")


@reflect_pad.vjp
def _(ctx, grad):
    return (_unpad(grad, ctx.shapes[0], ctx.pad, "reflect"),)


@library_op
def replicate_pad(x, *, pad):
    """Pad the last dims by repeating the edge entry: ``pad=(left, right, top, bottom)`` as
    torch.nn.functional.pad(mode='replicate')."""
    return _pad(x, pad, "replicate")


@replicate_pad.vjp
def _(ctx, grad):
    return (_unpad(grad, ctx.shapes[0], ctx.pad, "replicate"),)


@library_op
def circular_pad(x, *, pad):
    """Pad the last dims by wrapping around: ``pad=(left, right, top, bottom)`` as
    torch.nn.functional.pad(mode='circular')."""
    return _pad(x, pad, "circular")


@circular_pad.vjp
def _(ctx, grad):
    return (_unpad(grad, ctx.shapes[0], ctx.pad, "circular"),)


def _padded_shape(x, pad, mode):
    """The input's shape with each padded dim grown by its two pads (reflect: each pad below the dim's size)."""
    if len(pad) % 2 or len(pad) // 2 > len(x):
        raise ShapeRuleError(f"{mode}_pad: {len(pad)} sizes for a tensor of {len(x)} dims (two per padded dim)")
    shape = list(x)
    for dim, before, after in _padded_dims(len(x), pad):
        for side in (before, after):
            require(at_least(side, 0), f"{mode} padding must not be negative")
            if mode == "reflect":
                require(at_least(x[dim] - 1, side), "reflect padding must be smaller than the dim it pads")
        shape[dim] = x[dim] + before + after
    return tuple(shape)


@reflect_pad.shape_rule
def _(x, *, pad):
    return _padded_shape(x, tuple(pad), "reflect")


@replicate_pad.shape_rule
def _(x, *, pad):
    return _padded_shape(x, tuple(pad), "replicate")


@circular_pad.shape_rule
def _(x, *, pad):
    return _padded_shape(x, tuple(pad), "circular")


for _padding in (reflect_pad, replicate_pad, circular_pad):
    _padding.samples(_padding_samples)
