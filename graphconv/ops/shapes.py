"""What shape rules are written with: the helpers the library's rules share, and ``require``.

A shape rule is an op's abstract evaluation (JAX's ``abstract_eval``): ``rule(*input_shapes, **attrs)`` returns the
output shape (a tuple of sizes), or one shape per output for an op with several. It is declared next to the op's
forward and VJP::

    @reshape.shape_rule
    def _(x, *, shape):
        return reshaped(x, shape)

The same rule runs on plain ints — the first call of a compiled op, a few microseconds — and on symbolic integers
(:class:`~graphconv.syntax.symbolic.Dim`), which is how ``graphconv run`` proves declared shapes for every size.
So a rule uses ordinary arithmetic on sizes, and states what the op needs of them with ``require(claim, why)``
instead of ``if``/``raise``: ``require(at_least(h + 2 * p, k), "the kernel must fit the padded input")``. On ints
a claim that fails raises :class:`ShapeRuleError` at once; on symbols it is decided where the normal form can, and
otherwise recorded as a precondition of the spec (``requires: i_h + 2 * padding >= kernel_h``). A rule may still
branch on a size (``if size == 1``): where a symbolic size cannot settle the branch, the checker gives the op
concrete sizes instead (its outputs are then checked, not proved). Imports no torch.
"""
from __future__ import annotations

import math
import operator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Sequence

from graphconv.syntax import symbolic
from graphconv.syntax.claims import Claim, at_least, broadcastable, divides, equal, expandable

__all__ = ["ShapeRuleError", "require", "collecting", "equal", "at_least", "divides", "broadcastable", "expandable",
           "dim_index", "ntuple", "numel", "broadcast_shapes", "reduced_dims", "reduced", "reshaped", "permuted",
           "matmul_shape", "window_count", "window_counts"]

Shape = tuple  # of int | Dim


class ShapeRuleError(Exception):
    """The inputs' shapes do not fit the op: the message says which condition fails."""


_requirements: ContextVar[list | None] = ContextVar("graphconv_shape_requirements", default=None)


def require(claim: Claim | bool, why: str) -> None:
    """The op needs ``claim``. Fails (ShapeRuleError) when it is false; when it depends on symbols' values, it is
    recorded with ``why`` for the caller of :func:`collecting`."""
    decided = claim if isinstance(claim, bool) else claim.decide()
    if decided is False:
        raise ShapeRuleError(why if isinstance(claim, bool) else f"{why} ({claim.show()})")
    if decided is None:
        found = _requirements.get()
        if found is None:
            raise symbolic.Undecided(f"{why}: {claim.show()}", symbolic.symbols_of((claim.left, claim.right)))
        found.append((claim, why))
        claim.assume()


@contextmanager
def collecting() -> Iterator[list[tuple[Claim, str]]]:
    """Collect the ``(claim, why)`` pairs that rules run inside the block could not decide."""
    found: list[tuple[Claim, str]] = []
    token = _requirements.set(found)
    try:
        yield found
    finally:
        _requirements.reset(token)


def dim_index(dim: Any, rank: int, what: str = "dim") -> int:
    """``dim`` (negative counts from the end) as an index into ``rank`` dims; a 0-dim tensor takes -1 and 0."""
    dim = operator.index(dim)  # a symbolic dim cannot be an index: Undecided
    size = max(rank, 1)
    if not -size <= dim < size:
        raise ShapeRuleError(f"{what} {dim} is out of range for a tensor of {rank} dims")
    return dim % size


def ntuple(value: Any, n: int, what: str) -> tuple:
    """``value`` as ``n`` items: a number repeated, a sequence of ``n`` as it is."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ShapeRuleError(f"{what} must be one number or {n}, got {tuple(value)}")
        return tuple(value)
    return (value,) * n


def numel(shape: Shape) -> Any:
    return math.prod(shape)


def broadcast_shapes(*shapes: Shape) -> Shape:
    """torch's broadcasting: shapes aligned at the right, each pair of sizes equal or one of them 1."""
    rank = max(len(s) for s in shapes)
    result = []
    for axis in range(rank):
        sizes = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        size = sizes[0]
        for other in sizes[1:]:
            require(broadcastable(size, other), f"the sizes at dim {axis} must broadcast")
            size = symbolic.call("broadcast", size, other)
        result.append(size)
    return tuple(result)


def reduced_dims(rank: int, dim: Any) -> set[int]:
    """The axes a reduction over ``dim`` reduces (None or ``()``: every dim; an int; a sequence)."""
    if dim is None or dim == ():
        return set(range(rank))
    listed = [dim_index(d, rank) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
    if len(set(listed)) != len(listed):
        raise ShapeRuleError(f"dim {dim} names a dim twice")
    return set(listed) if rank else set()


def reduced(shape: Shape, dim: Any, keepdim: bool) -> Shape:
    """The shape after reducing ``dim``."""
    dims = reduced_dims(len(shape), dim)
    if keepdim:
        return tuple(1 if axis in dims else size for axis, size in enumerate(shape))
    return tuple(size for axis, size in enumerate(shape) if axis not in dims)


def reshaped(shape: Shape, target: Sequence[Any]) -> Shape:
    """``target`` with its one ``-1`` filled in; the element counts must agree."""
    target = tuple(target)
    free = [axis for axis, size in enumerate(target) if symbolic.is_constant(size, -1)]
    if len(free) > 1:
        raise ShapeRuleError(f"only one size may be -1, got {target}")
    for size in target:
        if not symbolic.is_constant(size, -1):
            require(at_least(size, 0), "reshape: a size must not be negative")
    count = numel(shape)
    known = numel(size for axis, size in enumerate(target) if axis not in free)
    if not free:
        require(equal(count, known), "reshape: the number of elements must stay the same")
        return target
    require(divides(known, count), "reshape: the number of elements must be a multiple of the sizes given")
    return tuple(symbolic.floor_divide(count, known) if axis in free else size for axis, size in enumerate(target))


def permuted(shape: Shape, dims: Sequence[Any]) -> Shape:
    """``shape`` reordered by ``dims`` (a permutation of its axes; negative ones count from the end)."""
    if len(dims) != len(shape):
        raise ShapeRuleError(f"permute takes {len(shape)} dims for a tensor of {len(shape)} dims, got {tuple(dims)}")
    order = [dim_index(d, len(shape)) for d in dims]
    if sorted(order) != list(range(len(shape))):
        raise ShapeRuleError(f"dims {tuple(dims)} are not a permutation of {len(shape)} dims")
    return tuple(shape[axis] for axis in order)


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """torch.matmul's result: vectors, matrices, and batches of matrices broadcast against each other."""
    if not a or not b:
        raise ShapeRuleError("both operands of a matrix product need at least 1 dim")
    rows = a if len(a) > 1 else (1,) + tuple(a)
    columns = b if len(b) > 1 else tuple(b) + (1,)
    require(equal(rows[-1], columns[-2]), "matmul: the inner sizes must be equal")
    batch = broadcast_shapes(rows[:-2], columns[:-2])
    return batch + (rows[-2],) * (len(a) > 1) + (columns[-1],) * (len(b) > 1)


def window_counts(size: Any, kernel_size: Any, dilation: Any, padding: Any, stride: Any, what: str) -> tuple:
    """How many windows fit along each of the last two dims: (rows, columns)."""
    geometry = zip(*(ntuple(v, 2, name) for v, name in ((kernel_size, "kernel_size"), (dilation, "dilation"),
                                                      (padding, "padding"), (stride, "stride"))))
    return tuple(window_count(n, *g, what) for n, g in zip(size, geometry))


def window_count(size: Any, kernel: Any, dilation: Any, padding: Any, stride: Any, what: str) -> Any:
    """How many windows of ``kernel`` (dilated) fit along ``size`` padded on both sides, every ``stride``."""
    require(at_least(kernel, 1), f"{what}: the kernel size must be at least 1")
    require(at_least(dilation, 1), f"{what}: the dilation must be at least 1")
    require(at_least(stride, 1), f"{what}: the stride must be at least 1")
    require(at_least(padding, 0), f"{what}: the padding must not be negative")
    span = dilation * (kernel - 1) + 1
    require(at_least(size + 2 * padding, span), f"{what}: the kernel must fit the padded input")
    count = (size + 2 * padding - span) // stride + 1
    symbolic.assume_at_least(count, 1)  # what the conditions above make sure of
    return count
