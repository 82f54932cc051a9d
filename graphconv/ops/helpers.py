"""What several op modules share: reducing a broadcast gradient, normalizing dims, making sample tensors."""
from __future__ import annotations

from typing import Any, Sequence

from graphconv.ops.lazy_torch import torch


def sum_to(grad: Any, shape: Sequence[int]) -> Any:
    """Sum a gradient of a broadcast result back down to ``shape``, the input's shape before broadcasting."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    lead = grad.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(dims, keepdim=True).reshape(shape)


def kept_shape(shape: Sequence[int], dim: Any) -> tuple[int, ...]:
    """The shape a reduction over ``dim`` (None: all dims; an int; a tuple) gives with ``keepdim=True``.

    A VJP reshapes the output gradient to it, then broadcasts it back over the reduced dims.
    """
    rank = len(shape)
    if dim is None or dim == ():
        return (1,) * rank
    dims = {d % max(rank, 1) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def randn(*shape: int) -> Any:
    """A float64 sample tensor (gradcheck needs double precision)."""
    return torch.randn(*shape, dtype=torch.float64)


def positive(*shape: int) -> Any:
    """A float64 sample tensor in [0.5, 1.5): safe for log, sqrt, division."""
    return torch.rand(*shape, dtype=torch.float64) + 0.5
