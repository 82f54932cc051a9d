"""Movement ops: same elements, another layout — each VJP is the inverse movement.

reshape ↔ reshape back, permute ↔ permute by the inverse order, expand ↔ sum, pad ↔ pad by minus the padding
(which crops), slice/select/index_select ↔ scatter into zeros, cat ↔ split, stack ↔ unbind.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import check_output_count, library_op
from graphconv.ops.shapes import (ShapeRuleError, at_least, dim_index, equal, expandable, numel, permuted, require,
                                  reshaped)
from graphconv.syntax import symbolic


def _argsort(order):
    return tuple(sorted(range(len(order)), key=lambda i: order[i]))


@library_op(variadic="shape", shape_attr="shape", cheap=True)
def reshape(x, *, shape):
    """Same elements, another shape (one size may be -1): ``reshape(b * patches, patch_size)``."""
    return x.reshape(shape)


@reshape.vjp
def _(ctx, grad):
    return (grad.reshape(ctx.shapes[0]),)


@reshape.shape_rule
def _(x, *, shape):
    return reshaped(x, shape)


@reshape.samples
def _():
    yield (randn(2, 3, 4),), {"shape": (6, 4)}
    yield (randn(6, 4),), {"shape": (2, -1, 2)}


@library_op(variadic="shape", shape_attr="shape", cheap=True)
def view(x, *, shape):
    """Like reshape, but the input must be laid out so that no copy is needed (torch's ``view``)."""
    return x.view(shape)


@view.vjp
def _(ctx, grad):
    return (grad.reshape(ctx.shapes[0]),)


@view.shape_rule
def _(x, *, shape):
    return reshaped(x, shape)


@view.samples
def _():
    yield (randn(2, 3, 4),), {"shape": (3, 8)}
    yield (randn(12),), {"shape": (-1, 3)}


@library_op(cheap=True)
def flatten(x, *, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim`` … ``end_dim`` into one: ``flatten(start_dim=1)``."""
    return x.flatten(start_dim, end_dim)


@flatten.vjp
def _(ctx, grad):
    return (grad.reshape(ctx.shapes[0]),)


@flatten.shape_rule
def _(x, *, start_dim=0, end_dim=-1):
    start, end = dim_index(start_dim, len(x), "start_dim"), dim_index(end_dim, len(x), "end_dim")
    if not x:
        return (1,)
    if start > end:
        raise ShapeRuleError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return x[:start] + (numel(x[start:end + 1]),) + x[end + 1:]


@flatten.samples
def _():
    yield (randn(2, 3, 4),), {}
    yield (randn(2, 3, 4, 5),), {"start_dim": 1, "end_dim": 2}


@library_op(cheap=True)
def squeeze(x, *, dim=None):
    """Drop size-1 dims (all of them, or ``dim``: an int or a tuple)."""
    return x.squeeze() if dim is None else x.squeeze(dim)


@squeeze.vjp
def _(ctx, grad):
    return (grad.reshape(ctx.shapes[0]),)


@squeeze.shape_rule
def _(x, *, dim=None):
    if dim is None:
        dims = set(range(len(x)))
    else:
        dims = {dim_index(d, len(x)) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    return tuple(size for axis, size in enumerate(x) if axis not in dims or size != 1)


@squeeze.samples
def _():
    yield (randn(2, 1, 3, 1),), {}
    yield (randn(2, 1, 3, 1),), {"dim": -1}
    yield (randn(1, 3, 1),), {"dim": (0, 2)}


@library_op(cheap=True)
def unsqueeze(x, *, dim):
    """Insert a size-1 dim at ``dim``."""
    return x.unsqueeze(dim)


@unsqueeze.vjp
def _(ctx, grad):
    return (grad.reshape(ctx.shapes[0]),)


@unsqueeze.shape_rule
def _(x, *, dim):
    axis = dim_index(dim, len(x) + 1)
    return x[:axis] + (1,) + x[axis:]


@unsqueeze.samples
def _():
    yield (randn(2, 3),), {"dim": 1}
    yield (randn(2, 3),), {"dim": -1}


@library_op(variadic="dims", cheap=True)
def permute(x, *, dims):
    """Reorder dimensions: ``permute(0, 2, 1)``."""
    return x.permute(dims)


@permute.vjp
def _(ctx, grad):
    return (grad.permute(_argsort([d % len(ctx.dims) for d in ctx.dims])),)


@permute.shape_rule
def _(x, *, dims):
    return permuted(x, dims)


@permute.samples
def _():
    yield (randn(2, 3, 4),), {"dims": (0, 2, 1)}
    yield (randn(2, 3, 4, 5),), {"dims": (3, 0, 2, 1)}
    yield (randn(3, 4),), {"dims": (-1, 0)}


@library_op(cheap=True)
def transpose(x, *, dim0, dim1):
    """Swap two dimensions: ``transpose(0, 1)``."""
    return x.transpose(dim0, dim1)


@transpose.vjp
def _(ctx, grad):
    return (grad.transpose(ctx.dim0, ctx.dim1),)


@transpose.shape_rule
def _(x, *, dim0, dim1):
    a, b = dim_index(dim0, len(x)), dim_index(dim1, len(x))
    shape = list(x)
    shape[a], shape[b] = shape[b], shape[a]
    return tuple(shape)


@transpose.samples
def _():
    yield (randn(3, 4),), {"dim0": 0, "dim1": 1}
    yield (randn(2, 3, 4),), {"dim0": -1, "dim1": 0}


@library_op(variadic="shape", cheap=True)
def expand(x, *, shape):
    """Broadcast size-1 dims (and new leading dims) to ``shape``; -1 keeps a size: ``expand(b, -1, n)``."""
    return x.expand(shape)


@expand.vjp
def _(ctx, grad):
    return (sum_to(grad, ctx.shapes[0]),)


@expand.shape_rule
def _(x, *, shape):
    shape = tuple(shape)
    new = len(shape) - len(x)
    if new < 0:
        raise ShapeRuleError(f"expand: {len(shape)} sizes for a tensor of {len(x)} dims")
    result = []
    for axis, target in enumerate(shape):
        if axis < new:
            require(at_least(target, 0), f"expand: the new leading size {target} must be >= 0")
            result.append(target)
        elif symbolic.is_constant(target, -1):
            result.append(x[axis - new])
        else:
            require(expandable(x[axis - new], target), f"expand: size {x[axis - new]} cannot expand to {target}")
            result.append(target)
    return tuple(result)


@expand.samples
def _():
    yield (randn(3, 1),), {"shape": (3, 4)}
    yield (randn(1, 4),), {"shape": (2, 5, -1)}


@library_op(cheap=True)
def pad(x, *, pad, value=0.0):
    """Pad the last dims with ``value``: ``pad=(left, right, top, bottom)`` as torch.nn.functional.pad (constant
    mode); negative sizes crop."""
    return torch.nn.functional.pad(x, pad, value=value)


@pad.vjp
def _(ctx, grad):
    return (torch.nn.functional.pad(grad, tuple(-p for p in ctx.pad)),)


@pad.shape_rule
def _(x, *, pad, value=0.0):
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) > 2 * len(x):
        raise ShapeRuleError(f"pad: {len(pad)} sizes for a tensor of {len(x)} dims (two per padded dim, last first)")
    shape = list(x)
    for k in range(len(pad) // 2):
        axis, before, after = len(x) - 1 - k, pad[2 * k], pad[2 * k + 1]
        cropped = x[axis] + symbolic.call("min", before, 0) + symbolic.call("min", after, 0)
        require(at_least(cropped, 0), f"pad: negative padding crops more than dim {axis} holds")
        shape[axis] = x[axis] + before + after
    return tuple(shape)


@pad.samples
def _():
    yield (randn(2, 3, 4),), {"pad": (1, 2)}
    yield (randn(2, 3, 4, 5),), {"pad": (0, 1, 2, 1), "value": -1.5}
    yield (randn(2, 5, 6),), {"pad": (-1, 2, 1, -2)}


def _slices(rank, dim, chosen):
    return (slice(None),) * (dim % rank) + (chosen,)


@library_op(name="slice", cheap=True)
def slice_(x, *, dim, start=None, end=None, step=1):
    """Elements ``start:end:step`` along ``dim`` (Python slice semantics, ``step`` positive)."""
    return x[_slices(x.dim(), dim, slice(start, end, step))]


@slice_.vjp
def _(ctx, grad):
    full = grad.new_zeros(ctx.shapes[0])
    full[_slices(len(ctx.shapes[0]), ctx.dim, slice(ctx.start, ctx.end, ctx.step))] = grad
    return (full,)


@slice_.shape_rule
def _(x, *, dim, start=None, end=None, step=1):
    axis = dim_index(dim, len(x))
    if not x:
        raise ShapeRuleError("slice: a 0-dim tensor cannot be sliced")
    require(at_least(step, 1), "slice: the step must be positive")
    size = x[axis]
    first = _clamp(0 if start is None else start, size)
    last = _clamp(size if end is None else end, size)
    count = symbolic.call("max", last - first, 0)
    return x[:axis] + ((count + step - 1) // step,) + x[axis + 1:]


def _clamp(index, size):
    """A Python slice bound within ``[0, size]`` (negative ones count from the end)."""
    if isinstance(index, int) and index < 0:
        return symbolic.call("max", size + index, 0)
    return symbolic.call("min", index, size)


@slice_.samples
def _():
    yield (randn(5, 4),), {"dim": 0, "start": 1, "end": 4}
    yield (randn(2, 3, 7),), {"dim": -1, "start": 1, "step": 2}
    yield (randn(2, 6),), {"dim": 1, "end": -2}


@library_op(cheap=True)
def select(x, *, dim, index):
    """The slice at ``index`` along ``dim``, with that dim removed (``x[:, index]`` for dim 1)."""
    return x.select(dim, index)


@select.vjp
def _(ctx, grad):
    full = grad.new_zeros(ctx.shapes[0])
    full.select(ctx.dim, ctx.index).copy_(grad)
    return (full,)


@select.shape_rule
def _(x, *, dim, index):
    if not x:
        raise ShapeRuleError("select: a 0-dim tensor has no dim to select from")
    axis = dim_index(dim, len(x))
    require(at_least(x[axis], index + 1), f"select: index {index} is past the end of dim {dim}")
    require(at_least(index, -x[axis]), f"select: index {index} is before the start of dim {dim}")
    return x[:axis] + x[axis + 1:]


@select.samples
def _():
    yield (randn(3, 4),), {"dim": 0, "index": 1}
    yield (randn(2, 3, 4),), {"dim": -1, "index": -1}


@library_op(save=("index",), index_inputs=("index",))
def index_select(x, index, *, dim):
    """The entries at the integer tensor ``index`` along ``dim`` (repeats allowed)."""
    return x.index_select(dim, index)


@index_select.vjp
def _(ctx, grad):
    return (grad.new_zeros(ctx.shapes[0]).index_add(ctx.dim, ctx.index, grad), None)


@index_select.shape_rule
def _(x, index, *, dim):
    if len(index) > 1:
        raise ShapeRuleError(f"index_select: the index must be a vector, got {len(index)} dims")
    axis = dim_index(dim, len(x))
    count = numel(index)
    if not x:
        return ()
    return x[:axis] + (count,) + x[axis + 1:]


@index_select.samples
def _():
    yield (randn(5, 3), torch.tensor([4, 0, 0, 2])), {"dim": 0}
    yield (randn(2, 3, 4), torch.tensor([3, 1])), {"dim": -1}


@library_op
def cat(*tensors, dim=0):
    """Join tensors along an existing ``dim``."""
    return torch.cat(tensors, dim)


@cat.vjp
def _(ctx, grad):
    return grad.split([shape[ctx.dim] for shape in ctx.shapes], ctx.dim)


@cat.shape_rule
def _(*tensors, dim=0):
    joined = [t for t in tensors if not (len(t) == 1 and t[0] == 0)]  # torch skips 1-dim empty tensors
    if not joined:
        return tensors[0]
    rank = len(joined[0])
    if rank == 0 or any(len(t) != rank for t in joined):
        raise ShapeRuleError(f"cat: the tensors must have the same number of dims (at least 1), got "
                             f"{[len(t) for t in tensors]}")
    axis = dim_index(dim, rank)
    for t in joined[1:]:
        for k in range(rank):
            if k != axis:
                require(equal(t[k], joined[0][k]), f"cat: the tensors differ in size at dim {k}")
    return joined[0][:axis] + (sum(t[axis] for t in joined),) + joined[0][axis + 1:]


@cat.samples
def _():
    yield (randn(2, 3), randn(4, 3)), {}
    yield (randn(2, 1, 4), randn(2, 3, 4), randn(2, 2, 4)), {"dim": 1}


@library_op
def stack(*tensors, dim=0):
    """Join same-shaped tensors along a new ``dim``."""
    return torch.stack(tensors, dim)


@stack.vjp
def _(ctx, grad):
    return grad.unbind(ctx.dim)


@stack.shape_rule
def _(*tensors, dim=0):
    first = tensors[0]
    for t in tensors[1:]:
        if len(t) != len(first):
            raise ShapeRuleError(f"stack: the tensors must have the same shape, got {len(t)} and {len(first)} dims")
        for k in range(len(first)):
            require(equal(t[k], first[k]), f"stack: the tensors differ in size at dim {k}")
    axis = dim_index(dim, len(first) + 1)
    return first[:axis] + (len(tensors),) + first[axis:]


@stack.samples
def _():
    yield (randn(2, 3), randn(2, 3)), {}
    yield (randn(2, 3), randn(2, 3), randn(2, 3)), {"dim": -1}


def _split_sizes(length, sizes):
    if isinstance(sizes, int):
        return [sizes] * (length // sizes) + ([length % sizes] if length % sizes else [])
    return list(sizes)


@library_op(outputs=None)
def split(x, *, sizes, dim=0):
    """Cut ``x`` along ``dim`` into pieces of ``sizes`` (an int: equal pieces, the last may be smaller; a tuple:
    one size per piece). Draw one output per piece."""
    if isinstance(sizes, int) and sizes > 0:
        check_output_count("split", -(-x.size(dim) // sizes))
    return torch.split(x, sizes, dim)


@split.vjp
def _(ctx, grad):
    shape = ctx.shapes[0]
    grads = grad if isinstance(grad, tuple) else (grad,)
    pieces = []
    for size, piece in zip(_split_sizes(shape[ctx.dim], ctx.sizes), grads):
        if piece is None:
            piece_shape = list(shape)
            piece_shape[ctx.dim] = size
            piece = torch.zeros(piece_shape, dtype=ctx.dtypes[0], device=_device(grads))
        pieces.append(piece)
    return (torch.cat(pieces, ctx.dim),)


def _device(grads):
    return next(g.device for g in grads if g is not None)


@split.shape_rule
def _(x, *, sizes, dim=0):
    if not x:
        raise ShapeRuleError("split: a 0-dim tensor cannot be split")
    axis = dim_index(dim, len(x))
    if isinstance(sizes, (tuple, list)):
        require(equal(sum(sizes), x[axis]), f"split: the sizes {tuple(sizes)} do not add up to dim {dim}")
        pieces = list(sizes)
    else:
        require(at_least(sizes, 1), "split: the piece size must be positive")
        pieces = _split_sizes(x[axis], sizes) if x[axis] else [0]
    return [x[:axis] + (size,) + x[axis + 1:] for size in pieces]


@split.samples
def _():
    yield (randn(5, 3),), {"sizes": 2}
    yield (randn(2, 6, 3),), {"sizes": (1, 4, 1), "dim": 1}
