"""Picking by integer index, and running sums: gather, take_along_dim, one_hot, cumsum.

The VJP of picking is scattering back: each picked entry's gradient is added where it came from (``scatter_add``),
so an entry picked twice gets both. ``cumsum``'s VJP is a cumulative sum from the other end.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op, op
from graphconv.ops.shapes import ShapeRuleError, at_least, broadcast_shapes, dim_index, require


@library_op(save=("index",), index_inputs=("index",))
def gather(x, index, *, dim):
    """``out[i][j] = x[i][index[i][j]]`` for ``dim=1`` (torch.gather: index has x's rank, no broadcasting)."""
    return torch.gather(x, dim, index)


@gather.vjp
def _(ctx, grad):
    return (grad.new_zeros(ctx.shapes[0]).scatter_add(ctx.dim, ctx.index, grad), None)


@gather.shape_rule
def _(x, index, *, dim):
    if len(index) != len(x):
        raise ShapeRuleError(f"gather: the index has {len(index)} dims, the input {len(x)}")
    axis = dim_index(dim, len(x))
    if any(size == 0 for size in index if isinstance(size, int)):  # torch takes an empty index of any size
        return index
    for d, (size, picked) in enumerate(zip(x, index)):
        if d != axis:
            require(at_least(size, picked), f"gather: the index may not be larger than the input at dim {d}")
    return index


@gather.samples
def _():
    yield (randn(3, 5), torch.tensor([[0, 4], [1, 1], [3, 2]])), {"dim": 1}
    yield (randn(4, 2, 3), torch.tensor([[[3, 0, 1]], [[2, 2, 0]]])), {"dim": 0}


def _with_size(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return shape


@library_op(save=("indices",), index_inputs=("indices",))
def take_along_dim(x, indices, *, dim):
    """The entries of ``x`` at ``indices`` along ``dim``, the other dims broadcasting (torch.take_along_dim):
    a class's log-probability per row is ``take_along_dim(log_probs, target[:, None], dim=1)``."""
    return torch.take_along_dim(x, indices, dim)


@take_along_dim.vjp
def _(ctx, grad):
    shape, indices = ctx.shapes[0], ctx.indices
    dim = ctx.dim % len(shape)
    broadcast = torch.broadcast_shapes(_with_size(shape, dim, 1), _with_size(indices.shape, dim, 1))
    index = indices.expand(_with_size(broadcast, dim, indices.shape[dim]))
    full = grad.new_zeros(_with_size(broadcast, dim, shape[dim])).scatter_add(dim, index, grad)
    return (sum_to(full, shape), None)


@take_along_dim.shape_rule
def _(x, indices, *, dim):
    if len(indices) != len(x):
        raise ShapeRuleError(f"take_along_dim: the indices have {len(indices)} dims, the input {len(x)}")
    axis = dim_index(dim, len(x))
    broadcast = broadcast_shapes(_with_size(x, axis, 1), _with_size(indices, axis, 1))
    return tuple(_with_size(broadcast, axis, indices[axis]))


@take_along_dim.samples
def _():
    yield (randn(3, 5), torch.tensor([[0], [4], [4]])), {"dim": 1}
    yield (randn(4, 3), torch.tensor([[1, 0, 3]])), {"dim": 0}
    yield (randn(1, 5), torch.tensor([[0, 2], [4, 4], [1, 3]])), {"dim": -1}


@op(index_inputs=("index", "like"))
def one_hot(index, like, *, num_classes):
    """A one-hot encoding of the integer tensor ``index`` (a new last dim of ``num_classes``) in ``like``'s dtype
    and device — the float dtype it is computed with; only ``like``'s dtype is read."""
    return torch.nn.functional.one_hot(index, num_classes).to(like.dtype)


@one_hot.vjp
def _(ctx, grad):
    return (None, None)


@one_hot.shape_rule
def _(index, like, *, num_classes):
    return tuple(index) + (num_classes,)


@one_hot.samples
def _():
    yield (torch.tensor([0, 2, 1, 2]), randn(1)), {"num_classes": 3}


@library_op
def cumsum(x, *, dim):
    """Running sum along ``dim``."""
    return torch.cumsum(x, dim)


@cumsum.vjp
def _(ctx, grad):
    return (grad.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim),)


@cumsum.shape_rule
def _(x, *, dim):
    dim_index(dim, len(x))
    return x


@cumsum.samples
def _():
    yield (randn(3, 4),), {"dim": 1}
    yield (randn(2, 3, 4),), {"dim": 0}
