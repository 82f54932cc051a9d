"""What several op modules share: reducing a broadcast gradient, normalizing dims, col2im, making sample tensors."""
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


def plain_eager_call() -> bool:
    """Whether this is a plain eager call: autograd does not record (a differentiable backward), no functorch
    transform is active, and torch.compile or torch.export does not trace. Only then may an op write into buffers it
    made (out=, copy_: vmap has no batching rule for out= ops, a traced graph would keep out= ops that fail when run
    with grad; out of place, inductor plans the buffers itself), or call a kernel with no derivative or batching
    rule of its own."""
    return (not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()
            and not torch.compiler.is_compiling())


def col2im(columns: Any, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1,
           *, out: Any = None) -> Any:
    """``torch.nn.functional.fold`` (into ``out`` if given, a contiguous (b, c, h, w) tensor) with a result that
    owns no more memory than it needs: F.fold allocates its result as big as its input (kh·kw times the result)
    and only shrinks the view, so a gradient it makes would keep kh·kw times its size. Where it may not write in
    place (and for unbatched columns), plain F.fold."""
    sizes = [tuple(v) if isinstance(v, (tuple, list)) else (v, v)
             for v in (output_size, kernel_size, dilation, padding, stride)]
    if out is None:
        if not plain_eager_call() or columns.dim() != 3:
            return torch.nn.functional.fold(columns, *sizes)
        kh, kw = sizes[1]
        out = columns.new_empty(columns.shape[0], columns.shape[1] // (kh * kw), *sizes[0])
    return torch.ops.aten.col2im.out(columns, *sizes, out=out)


def attrs_of(cls: type, ctx: Any) -> Any:
    """A fused op's attributes class (its names in ``__slots__``) filled from what a VJP context holds."""
    return cls(**{name: ctx.attrs[name] for name in cls.__slots__ if name in ctx.attrs})


PLAN_LIMIT = 256  # plans kept per fused op before its memo starts over


def planned(choose: Any, input_shape: Any, weight_shape: Any, attrs: Any) -> Any:
    """``choose(input_shape, weight_shape, attrs)`` — how a fused op runs a call (torch's kernel, or its chain as
    written) — memoised in ``type(attrs).plans`` by the shapes and the attribute values (``attrs.__slots__``).
    Choosing checks that the shapes are the kernel's in tens of µs of Python, which a small call would pay in its
    forward and again in its VJP. While torch.compile or torch.export traces (shapes may be symbolic, and the choice
    becomes part of the trace), and for unhashable attribute values, it chooses afresh."""
    if torch.compiler.is_compiling():
        return choose(input_shape, weight_shape, attrs)
    plans = type(attrs).plans
    key = (input_shape, weight_shape, *[getattr(attrs, name) for name in attrs.__slots__])
    try:
        return plans[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: a list attribute, a symbolic size
        return choose(input_shape, weight_shape, attrs)
    if len(plans) >= PLAN_LIMIT:
        plans.clear()
    plan = plans[key] = choose(input_shape, weight_shape, attrs)
    return plan


def as_pair(value: Any) -> tuple:
    """A 2-d size as a pair: a number twice, a sequence as a tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def resolved_shape(shape: Sequence[int], numel: int) -> tuple[int, ...] | None:
    """A reshape target with its -1 filled in for a tensor of ``numel`` entries (None when it cannot be)."""
    shape = tuple(shape)
    if shape.count(-1) == 1:
        known = 1
        for size in shape:
            known *= size if size != -1 else 1
        if known == 0 or numel % known:
            return None
        shape = tuple(numel // known if size == -1 else size for size in shape)
    return shape


def randn(*shape: int) -> Any:
    """A float64 sample tensor (gradcheck needs double precision)."""
    return torch.randn(*shape, dtype=torch.float64)


def positive(*shape: int) -> Any:
    """A float64 sample tensor in [0.5, 1.5): safe for log, sqrt, division."""
    return torch.rand(*shape, dtype=torch.float64) + 0.5
