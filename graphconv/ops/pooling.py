"""Window reductions lowered to torch's pooling kernels: what the window_reduce pass
(graphconv.compiler.passes.window_reduce) rewrites ``windows → max → max``, ``windows → mean`` / ``sum`` and
``reshape into blocks → mean`` into; specs may use them directly.

- ``window_max``: ``windows(value=…) → max(dim=5) → max(dim=4)``. Forward ``aten.max_pool2d_with_indices``; VJP
  ``aten.max_pool2d_with_indices_backward`` on the indices it kept (a second output, int64, as torch keeps them).
- ``window_mean`` / ``window_sum``: ``windows(value=…) → mean`` / ``sum`` over the two window dims. Forward
  ``aten.avg_pool2d`` (``count_include_pad=True``; ``divisor_override=1`` for the sum); VJP
  ``aten.avg_pool2d_backward``. avg_pool2d has no dilation: a dilated call runs the literal composition.
- ``unfold_mean``: ``unfold → reshape(b, c, kh·kw, patches) → mean(dim=2) [→ reshape(b, c, o_h, o_w)]`` (the
  im2col form of an average pool) as ``window_mean``, where the reshapes are those; the literal composition else.
- ``block_mean``: ``reshape(b, c, h/kh, kh, w/kw, kw) → mean(dim=(3, 5))`` — a kh×kw average pool of stride
  kh×kw — as ``aten.avg_pool2d``, when the reshape cuts a (b, c, h, w) input into blocks; literally else.

Each is exactly its spec's math, and where torch's kernel would differ the op corrects it:

- padding: the kernels pad implicitly, with -inf (max) or 0 (mean, sum, counted in the divisor), and take at most
  half a kernel of it. Another pad value, or more padding, is padded explicitly (``F.pad``) before the kernel.
- the max's gradient goes to the first maximum in row-major order, as ``max(dim=5) → max(dim=4)`` sends it
  (ties: torch's kernel agrees). Two cases where it does not: a window holding NaN — the kernel picks the *last* NaN,
  the spec the first — whose index is recomputed from a pooling of ``isnan(input)``; and a window whose maximum is
  -inf with its first cell in the implicit padding — the kernel picks the first cell inside the input, the spec the
  padded cell, whose gradient is dropped — whose gradient the VJP zeroes.
- whether a call needs a correction depends on values: eager mode reads them (one sum of the output for NaN, its
  top and left edges for -inf), torch.compile decides with ``torch.cond`` (no graph break), and under a functorch
  transform every window is corrected.
- the VJPs are torch ops on the output gradient, so they are differentiable (double backward) and batch under vmap;
  they read the input's shape only (a stride-0 stand-in is passed where the kernels ask for the input).
"""
from __future__ import annotations

import math

from graphconv.ops.fused import Windows
from graphconv.ops.helpers import plain_eager_call, randn, resolved_shape
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, ntuple, reduced, reshaped, window_counts

NEG_INF = float("-inf")


def may_branch_on_values(tensor) -> bool:
    """Whether Python may branch on ``tensor``'s values: it has values (not on the meta device), and no functorch
    transform (vmap cannot) nor torch.compile's tracing (a graph break) is active."""
    return (tensor.device.type != "meta" and not torch._C._are_functorch_transforms_active()
            and not torch.compiler.is_compiling())


def _stand_in(like, shape):
    """A stride-0 tensor of ``shape``: what the backward kernels read of the input is its shape alone. Eagerly a
    view of ``like``'s first element, which allocates nothing (a new scalar would be held across the kernel's
    allocation of the gradient: 4 bytes above torch's peak, whose kernel is given the input itself)."""
    if like.numel() and plain_eager_call():
        return like.as_strided(tuple(shape), (0,) * len(shape))
    return like.new_zeros(()).expand(tuple(shape))


class PoolCall:
    """How one call reaches torch's kernel: the window geometry, the implicit padding the kernel takes, and the
    padding to add explicitly first (another pad value than the kernel's, or more than half a kernel)."""

    def __init__(self, shape, kernel_size, dilation, padding, stride, value, kernel_value) -> None:
        self.g = Windows(shape, kernel_size, dilation, padding, stride)
        g = self.g
        fits = 2 * g.ph <= g.kh and 2 * g.pw <= g.kw
        implicit = (g.ph == 0 and g.pw == 0) or (fits and value == kernel_value)
        self.explicit = (0, 0) if implicit else (g.ph, g.pw)  # pad with ``value`` before the kernel
        self.padding = (g.ph, g.pw) if implicit else (0, 0)  # the kernel's own padding
        self.value = value

    def kernel_input(self, input):
        ph, pw = self.explicit
        if not (ph or pw):
            return input
        return torch.nn.functional.pad(input, (pw, pw, ph, ph), value=self.value)

    def kernel_shape(self) -> tuple:
        g, (ph, pw) = self.g, self.explicit
        return g.b, g.c, g.h + 2 * ph, g.w + 2 * pw

    def input_grad(self, grad_padded):
        """The input's part of the gradient of the explicitly padded input."""
        g, (ph, pw) = self.g, self.explicit
        return grad_padded[:, :, ph: ph + g.h, pw: pw + g.w] if ph or pw else grad_padded

    def kernel_args(self) -> tuple:
        g = self.g
        return [g.kh, g.kw], [g.sh, g.sw], list(self.padding)


# --- window_max -------------------------------------------------------------------------------------------------


@library_op(save=("input", "out"), outputs=2)
def window_max(input, *, kernel_size, dilation=1, padding=0, stride=1, value=NEG_INF):
    """Each window's maximum — ``windows(input, …, value=value)``, then ``max(dim=5)``, then ``max(dim=4)`` — and
    the kernel's indices (flat positions in the explicitly padded input, if any), from which the VJP sends the
    gradient to the first maximum in row-major order. Lowered to ``aten.max_pool2d_with_indices``."""
    call = PoolCall(input.shape, kernel_size, dilation, padding, stride, value, NEG_INF)
    if input.numel() == 0:  # every window (if any) is all padding: its maximum is the pad value
        shape = (call.g.b, call.g.c, call.g.oh, call.g.ow)
        return input.new_full(shape, value), torch.zeros(shape, dtype=torch.int64, device=input.device)
    kernel, stride_, pad = call.kernel_args()
    return torch.ops.aten.max_pool2d_with_indices(call.kernel_input(input), kernel, stride_, pad,
                                                  [call.g.dh, call.g.dw], False)


@window_max.vjp
def _(ctx, grad):
    grad_values = grad[0]
    values, indices = ctx.out
    call = PoolCall(ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride, ctx.value, NEG_INF)
    if grad_values is None or values.numel() == 0:
        return (grad_values.new_zeros(ctx.shapes[0]) if grad_values is not None else None,)
    return (call.input_grad(MaxPoolBackward(call, ctx.input, values, indices)(grad_values)),)


class MaxPoolBackward:
    """``aten.max_pool2d_with_indices_backward`` on the kernel's indices, corrected first where the spec's gradient
    goes elsewhere: a window holding NaN points at its first NaN (the kernel picks the last), found by a pooling of
    ``isnan(input)`` — the first 1 of the window; and a window whose maximum is -inf and whose first cell is
    implicit padding has its gradient zeroed — the spec sends it to that padded cell (dropped), the kernel to the
    first cell inside the input. Only windows on the top and left edges can start in the padding. Eager mode reads
    the values to learn whether a call needs the correction, torch.compile decides with ``torch.cond``."""

    def __init__(self, call: PoolCall, input, values, indices) -> None:
        self.call, self.input, self.values, self.indices = call, input, values, indices
        g, (ph, pw) = call.g, call.padding
        self.top, self.left = -(-ph // g.sh), -(-pw // g.sw)  # the rows and columns of windows starting in padding

    def __call__(self, grad):
        if may_branch_on_values(self.values):  # a NaN sums to NaN: one pass over the values, no mask
            needed = bool(self.values.sum().isnan()) or bool(self.edge_holds_neg_inf())
            return self.corrected(grad) if needed else self.plain(grad, self.indices)
        if torch.compiler.is_compiling():
            needed = self.values.isnan().any() | self.edge_holds_neg_inf()
            return torch.cond(needed, self.corrected, self.uncorrected, (grad,))
        return self.corrected(grad)

    def edge_holds_neg_inf(self):
        """Whether a window on the top or left edge has -inf for its maximum (a bool tensor)."""
        found = torch.zeros((), dtype=torch.bool, device=self.values.device)
        for edge in (self.values[:, :, :self.top], self.values[..., :self.left]):
            if edge.numel():
                found = found | (edge == NEG_INF).any()
        return found

    def corrected(self, grad):
        """Also makes valid the indices inductor's own pooling kernel gives windows that hold nothing but -inf
        and padding (it points them at the padded cell: a negative index, or one in the row above): their
        gradient is the one dropped."""
        call, values = self.call, self.values
        kernel, stride, padding = call.kernel_args()
        nan_first = torch.ops.aten.max_pool2d_with_indices(
            call.kernel_input(self.input).isnan().to(values.dtype), kernel, stride, padding,
            [call.g.dh, call.g.dw], False)[1]
        indices = torch.where(values.isnan(), nan_first, self.indices).clamp_min(0)
        if self.top or self.left:
            g = call.g
            rows = torch.arange(g.oh, device=grad.device) < self.top
            columns = torch.arange(g.ow, device=grad.device) < self.left
            grad = grad.masked_fill((rows[:, None] | columns[None, :]) & (values == NEG_INF), 0)
        return self.plain(grad, indices)

    def uncorrected(self, grad):
        return self.plain(grad, self.indices)

    def plain(self, grad, indices):
        call = self.call
        kernel, stride, padding = call.kernel_args()
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, _stand_in(grad, call.kernel_shape()), kernel, stride, padding, [call.g.dh, call.g.dw], False,
            indices)


@window_max.shape_rule
def _(input, *, kernel_size, dilation=1, padding=0, stride=1, value=NEG_INF):
    out = _window_shape(input, kernel_size, dilation, padding, stride, "window_max")
    return out, out


@window_max.samples
def _():
    yield (randn(2, 3, 6, 5),), {"kernel_size": 3, "padding": 1, "stride": 2}
    yield (randn(1, 2, 7, 6),), {"kernel_size": (2, 3), "dilation": (2, 1), "padding": (1, 0), "stride": (1, 2)}
    yield (randn(2, 1, 5, 5),), {"kernel_size": 2, "padding": 2, "value": -1.0}  # padded explicitly


def _window_shape(input, kernel_size, dilation, padding, stride, name):
    if len(input) != 4:
        raise ShapeRuleError(f"{name} takes a (b, c, h, w) tensor, got {len(input)} dims")
    b, c, h, w = input
    rows, columns = window_counts((h, w), kernel_size, dilation, padding, stride, name)
    return b, c, rows, columns


# --- window_mean, window_sum --------------------------------------------------------------------------------------


def _window_average(input, kernel_size, dilation, padding, stride, value, divisor):
    """avg_pool2d over the windows (``divisor``: None for the mean, 1 for the sum); dilated windows literally."""
    call = PoolCall(input.shape, kernel_size, dilation, padding, stride, value, 0)
    g = call.g
    count = g.kh * g.kw if divisor is None else divisor
    if input.numel() == 0:  # every window (if any) is all padding
        return input.new_full((g.b, g.c, g.oh, g.ow), value * g.kh * g.kw / count)
    if (g.dh, g.dw) != (1, 1):
        return _literal_window_sum(input, g, value) / count
    kernel, stride_, pad = call.kernel_args()
    return torch.ops.aten.avg_pool2d(call.kernel_input(input), kernel, stride_, pad, False, True, divisor)


def _literal_window_sum(input, g: Windows, value):
    """The windows' sums as the spec computes them: the input padded with ``value``, its patches summed."""
    padded = torch.nn.functional.pad(input, (g.pw, g.pw, g.ph, g.ph), value=value) if g.ph or g.pw else input
    patches = torch.nn.functional.unfold(padded, (g.kh, g.kw), (g.dh, g.dw), 0, (g.sh, g.sw))
    return patches.reshape(g.b, g.c, g.kh * g.kw, g.oh, g.ow).sum(2)


def _window_average_grad(grad, input_shape, kernel_size, dilation, padding, stride, value, divisor):
    """The input's gradient of :func:`_window_average`: avg_pool2d_backward, or (dilated windows) F.fold."""
    call = PoolCall(input_shape, kernel_size, dilation, padding, stride, value, 0)
    g = call.g
    if math.prod(input_shape) == 0:
        return (grad.new_zeros(input_shape),)
    if (g.dh, g.dw) != (1, 1):
        scaled = grad / (g.kh * g.kw if divisor is None else divisor)
        columns = scaled.reshape(g.b, g.c, 1, g.patches).expand(g.b, g.c, g.kh * g.kw, g.patches)
        return (torch.nn.functional.fold(columns.reshape(g.b, g.c * g.kh * g.kw, g.patches), (g.h, g.w),
                                         *g.unfold_args()),)
    kernel, stride, padding = call.kernel_args()
    grad_padded = torch.ops.aten.avg_pool2d_backward(grad, _stand_in(grad, call.kernel_shape()), kernel, stride,
                                                     padding, False, True, divisor)
    return (call.input_grad(grad_padded),)


@library_op
def window_mean(input, *, kernel_size, dilation=1, padding=0, stride=1, value=0.0):
    """Each window's mean — ``windows(input, …, value=value)`` then ``mean(dim=(4, 5))``, padded cells counted —
    lowered to ``aten.avg_pool2d(count_include_pad=True)``; dilated windows run the literal composition."""
    return _window_average(input, kernel_size, dilation, padding, stride, value, None)


@window_mean.vjp
def _(ctx, grad):
    return _window_average_grad(grad, ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride,
                                ctx.value, None)


@window_mean.shape_rule
def _(input, *, kernel_size, dilation=1, padding=0, stride=1, value=0.0):
    return _window_shape(input, kernel_size, dilation, padding, stride, "window_mean")


@window_mean.samples
def _():
    yield (randn(2, 3, 6, 5),), {"kernel_size": 3, "padding": 1, "stride": 2}
    yield (randn(1, 2, 7, 6),), {"kernel_size": (2, 3), "padding": (1, 0), "stride": (1, 2), "value": 2.0}
    yield (randn(1, 2, 7, 6),), {"kernel_size": 2, "dilation": (2, 1), "padding": 1}  # literal: dilated


@library_op
def window_sum(input, *, kernel_size, dilation=1, padding=0, stride=1, value=0.0):
    """Each window's sum — ``windows(input, …, value=value)`` then ``sum(dim=(4, 5))`` — lowered to
    ``aten.avg_pool2d(divisor_override=1)``; dilated windows run the literal composition."""
    return _window_average(input, kernel_size, dilation, padding, stride, value, 1)


@window_sum.vjp
def _(ctx, grad):
    return _window_average_grad(grad, ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride,
                                ctx.value, 1)


@window_sum.shape_rule
def _(input, *, kernel_size, dilation=1, padding=0, stride=1, value=0.0):
    return _window_shape(input, kernel_size, dilation, padding, stride, "window_sum")


@window_sum.samples
def _():
    yield (randn(2, 3, 6, 5),), {"kernel_size": 3, "padding": 1, "stride": 2}
    yield (randn(1, 2, 5, 6),), {"kernel_size": 2, "padding": 2}  # more than half a kernel: padded explicitly
    yield (randn(1, 2, 7, 6),), {"kernel_size": (3, 2), "dilation": 2, "stride": 2}  # literal: dilated


# --- unfold_mean --------------------------------------------------------------------------------------------------


class UnfoldMean:
    """One call of ``unfold → reshape(shape) → mean(dim=2) [→ reshape(out_shape)]``: whether the reshapes are the
    per-channel windows, (b, c, kh·kw, patches), and the (b, c, o_h, o_w) image (or are left out) — an average
    pool — and the shapes the literal composition goes through otherwise."""

    def __init__(self, input_shape, kernel_size, dilation, padding, stride, shape, out_shape) -> None:
        batch = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
        self.g = g = Windows(batch, kernel_size, dilation, padding, stride)
        self.columns = tuple(input_shape[:-3]) + (g.c * g.kh * g.kw, g.patches)
        self.windows = resolved_shape(shape, math.prod(self.columns))
        self.pooled = (len(input_shape) == 4 and math.prod(input_shape) > 0
                       and self.windows == (g.b, g.c, g.kh * g.kw, g.patches)
                       and (out_shape is None or resolved_shape(out_shape, g.b * g.c * g.patches)
                            == (g.b, g.c, g.oh, g.ow)))


@library_op
def unfold_mean(input, *, kernel_size, dilation=1, padding=0, stride=1, shape, out_shape=None):
    """``unfold(input).reshape(shape).mean(dim=2)``, then ``.reshape(out_shape)`` if given: where the reshapes make
    each channel's (kh·kw, patches) windows and the (b, c, o_h, o_w) image, an average pool counting the zero
    padding, lowered to ``aten.avg_pool2d`` (as window_mean); the literal composition otherwise."""
    call = UnfoldMean(input.shape, kernel_size, dilation, padding, stride, shape, out_shape)
    if call.pooled:
        pooled = _window_average(input, kernel_size, dilation, padding, stride, 0.0, None)
        return pooled.reshape(out_shape if out_shape is not None else (call.g.b, call.g.c, call.g.patches))
    g = call.g
    means = torch.nn.functional.unfold(input, *g.unfold_args()).reshape(shape).mean(2)
    return means if out_shape is None else means.reshape(out_shape)


@unfold_mean.vjp
def _(ctx, grad):
    call = UnfoldMean(ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride, ctx.shape, ctx.out_shape)
    g = call.g
    if call.pooled:
        return _window_average_grad(grad.reshape(g.b, g.c, g.oh, g.ow), ctx.shapes[0], ctx.kernel_size,
                                    ctx.dilation, ctx.padding, ctx.stride, 0.0, None)
    windows_shape = call.windows
    kept = windows_shape[:2] + (1,) + windows_shape[3:]
    columns = (grad.reshape(kept).expand(windows_shape) / windows_shape[2]).reshape(call.columns)
    return (torch.nn.functional.fold(columns, tuple(ctx.shapes[0][-2:]), *g.unfold_args()),)


@unfold_mean.shape_rule
def _(input, *, kernel_size, dilation=1, padding=0, stride=1, shape, out_shape=None):
    if len(input) not in (3, 4):
        raise ShapeRuleError(f"unfold_mean takes a (c, h, w) or (b, c, h, w) tensor, got {len(input)} dims")
    *batch, c, h, w = input
    rows, columns = window_counts((h, w), kernel_size, dilation, padding, stride, "unfold_mean")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    means = reduced(reshaped(tuple(batch) + (c * kh * kw, rows * columns), shape), 2, False)
    return means if out_shape is None else reshaped(means, out_shape)


@unfold_mean.samples
def _():
    yield (randn(2, 3, 6, 5),), {"kernel_size": 3, "padding": 1, "stride": 2, "shape": (2, 3, 9, 9),
                                 "out_shape": (2, 3, 3, 3)}
    yield (randn(1, 2, 7, 6),), {"kernel_size": (2, 3), "dilation": (2, 1), "shape": (1, 2, 6, -1)}
    yield (randn(1, 2, 4, 4),), {"kernel_size": 2, "stride": 2, "shape": (1, 4, 2, 4)}  # not per channel: literal


# --- block_mean ---------------------------------------------------------------------------------------------------


def blocks(input_shape, shape) -> tuple[int, int] | None:
    """(kh, kw) when ``reshape(shape)`` cuts a (b, c, h, w) input into (b, c, h/kh, kh, w/kw, kw) blocks; else None."""
    if len(input_shape) != 4 or len(shape) != 6:
        return None
    b, c, h, w = input_shape
    resolved = resolved_shape(shape, b * c * h * w)
    if resolved is None:
        return None
    kh, kw = resolved[3], resolved[5]
    if kh < 1 or kw < 1 or h % kh or w % kw or resolved != (b, c, h // kh, kh, w // kw, kw):
        return None
    return kh, kw


@library_op
def block_mean(input, *, shape):
    """``input.reshape(shape).mean(dim=(3, 5))``: where the reshape cuts a (b, c, h, w) input into kh×kw blocks, a
    kh×kw average pool of stride kh×kw, lowered to ``aten.avg_pool2d``; the literal composition otherwise."""
    kernel = blocks(input.shape, shape) if input.numel() else None
    if kernel is None:
        return input.reshape(shape).mean((3, 5))
    return torch.ops.aten.avg_pool2d(input, list(kernel), list(kernel), [0, 0], False, True, None)


@block_mean.vjp
def _(ctx, grad):
    in_shape = ctx.shapes[0]
    kernel = blocks(in_shape, ctx.shape) if math.prod(in_shape) else None
    if kernel is None:
        full = resolved_shape(ctx.shape, math.prod(in_shape))
        kept = full[:3] + (1,) + full[4:5] + (1,)
        return ((grad.reshape(kept).expand(full) / (full[3] * full[5])).reshape(in_shape),)
    return (torch.ops.aten.avg_pool2d_backward(grad, _stand_in(grad, in_shape), list(kernel), list(kernel), [0, 0],
                                               False, True, None),)


@block_mean.shape_rule
def _(input, *, shape):
    return reduced(reshaped(input, shape), (3, 5), False)


@block_mean.samples
def _():
    yield (randn(2, 3, 4, 6),), {"shape": (2, 3, 2, 2, 3, 2)}
    yield (randn(1, 2, 6, 6),), {"shape": (1, 2, 2, 3, -1, 3)}
    yield (randn(2, 2, 4, 4),), {"shape": (2, 2, 2, 4, 1, 2)}  # not blocks of the image: literal
