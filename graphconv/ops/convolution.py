"""Fused convolution ops lowered to torch's convolution kernels, and the kernels' wrapper they share.

Team policy: a fused op may lower a pattern it has proved to be a convolution to torch's native kernel (as inductor
lowers convolution to an extern kernel). The forward is ``torch.convolution``; the VJP, still ours and next to the
forward, is ``aten.convolution_backward`` asked for just the gradients the caller needs. That kernel is itself
differentiable (double backward), has a vmap batching rule, and traces under torch.compile, so the ops built on it
keep every transform the literal compositions have.

Each op is the chain of library ops a pass found (graphconv.compiler.passes: grouped_conv, depthwise_conv,
transposed_conv), with that chain's attributes. Per call, from the shapes, it decides whether the chain is the
convolution: if so it runs the kernel; if not (a reshape that does not split whole channels, a padding torch cannot
take…) it runs the chain as written — the literal path, which is also the reference the native path is tested
against.

- ``grouped_conv``: ``[pad →] unfold → reshape(b, groups, c/groups·kh·kw, patches) → matmul(weight.reshape(groups,
  o/groups, c/groups·kh·kw), ·) → reshape(b, o, o_h, o_w)`` — conv2d_full's drawing, any number of groups.
- ``depthwise_conv``: ``unfold → reshape(b, c, 1, kh·kw, patches) → mul(weight.reshape(c, m, kh·kw, 1)) →
  sum(dim=3) → reshape(b, c·m, o_h, o_w)`` — depthwise_conv2d's drawing (groups = channels).
- ``transposed_conv``: ``matmul(weight.reshape(groups, c/groups, o/groups·kh·kw).transpose(1, 2),
  input.reshape(b, groups, c/groups, h·w)) → reshape(b, o·kh·kw, h·w) → fold [→ pad]`` — conv_transpose2d's drawing.
"""
from __future__ import annotations

from graphconv.ops.helpers import as_pair, attrs_of, col2im, kept_shape, planned, randn, resolved_shape, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import (ShapeRuleError, broadcast_shapes, divides, equal, matmul_shape, ntuple, reduced,
                                  require, reshaped, window_counts)


SMALL_CONV_MACS = 1 << 20  # below this many multiply-adds, torch's im2col kernel beats its oneDNN one on CPU …
SMALL_CONV_COLUMNS = 1 << 14  # … and it is taken when its patch matrix (what it allocates beyond torch) is this small


class Convolution:
    """One call's convolution, as torch.convolution takes it: stride, padding, dilation (int pairs), groups, and,
    for a transposed convolution, its output padding.

    ``columns`` and ``out_channels``, where the plan knows them (the entries of the call's patch matrix,
    b·c·kh·kw·o_h·o_w, and o), pick the kernel: a small ungrouped, undilated CPU convolution runs torch's im2col
    kernel (``_slow_conv2d_forward``/``_backward``, differentiable like the other). At the seed's 4×3×8×8 it takes
    half the time of the oneDNN kernel ``torch.convolution`` picks, whose fixed cost (about 90 µs a call here)
    dominates below about a million multiply-adds (``benchmarks/small_calls.py``). It allocates the patch matrix
    for the call, so it is taken only where that matrix is at most ``SMALL_CONV_COLUMNS`` entries (64 KiB in
    float32), and never for a ``lean`` call (``save="minimal"``): a forward+backward may then peak above torch's by
    up to that matrix (the seed's is 27 KiB: 1.19× torch's peak with 2 threads, 1.48× with one, whose oneDNN
    buffers are smaller); above it, and when lean, the kernel is torch's and so is the memory."""

    __slots__ = ("stride", "padding", "dilation", "groups", "transposed", "output_padding", "small")

    def __init__(self, stride, padding, dilation, groups: int = 1, transposed: bool = False,
                 output_padding=(0, 0), columns: int | None = None, out_channels: int = 0, lean: bool = False) -> None:
        self.stride, self.padding, self.dilation = as_pair(stride), as_pair(padding), as_pair(dilation)
        self.groups, self.transposed, self.output_padding = groups, transposed, as_pair(output_padding)
        self.small = (not lean and columns is not None and columns <= SMALL_CONV_COLUMNS
                      and columns * out_channels <= SMALL_CONV_MACS and groups == 1 and not transposed
                      and self.dilation == (1, 1))

    def im2col_kernel(self, input) -> bool:
        """Whether this call runs torch's im2col kernel: small, on the CPU, and not traced or transformed (that
        kernel has no vmap rule, and inductor knows convolution)."""
        return (self.small and input.is_cpu and not torch._C._are_functorch_transforms_active()
                and not torch.compiler.is_compiling())

    def one_row(self, input, kernel) -> bool:
        """Whether the call convolves one-row images with one-row kernels, with no padding across rows: a 1-d
        convolution (conv1d drawn as conv2d). Run as one, it is the same kernel eagerly, and under torch.compile
        inductor keeps its layout: for a 2-d convolution it may copy the input, the kernel and the output to
        channels-last and back around the kernel (1.6× the time of torch's conv1d, measured)."""
        return (input.shape[2] == 1 and kernel.shape[2] == 1 and self.padding[0] == 0
                and self.output_padding[0] == 0)

    def params(self, first: int) -> tuple:
        """stride, padding, dilation, transposed, output padding, groups, as torch.convolution takes them: for the
        dims from ``first`` on (0: both, 1: the width only)."""
        return (self.stride[first:], self.padding[first:], self.dilation[first:], self.transposed,
                self.output_padding[first:], self.groups)

    def forward(self, input, kernel, bias=None):
        """``torch.convolution``: (b, c, h, w) input, (o, c/groups, kh, kw) kernel — or (c, o/groups, kh, kw) for a
        transposed convolution — and an (o,) ``bias`` or none."""
        if self.im2col_kernel(input):
            return torch.ops.aten._slow_conv2d_forward(input, kernel.contiguous(), kernel.shape[2:], bias,
                                                       self.stride, self.padding)
        if self.one_row(input, kernel):
            return torch.convolution(input.squeeze(2), kernel.squeeze(2), bias, *self.params(1)).unsqueeze(2)
        return torch.convolution(input, kernel, bias, *self.params(0))

    def vjp(self, input, kernel, grad, needs) -> tuple:
        """The input's, the kernel's and the bias's gradients (None where ``needs``, of two or three entries,
        says no) from ``aten.convolution_backward``, which computes only those asked for."""
        mask = [bool(needs[0]), bool(needs[1]), len(needs) > 2 and bool(needs[2])]
        if not any(mask):
            return None, None, None
        bias_sizes = [grad.shape[1]] if mask[2] else None
        if self.im2col_kernel(input):
            return tuple(torch.ops.aten._slow_conv2d_backward(  # it takes contiguous tensors only
                grad.contiguous(), input.contiguous(), kernel.contiguous(), kernel.shape[2:], self.stride,
                self.padding, mask))
        if self.one_row(input, kernel):
            grads = torch.ops.aten.convolution_backward(grad.squeeze(2), input.squeeze(2), kernel.squeeze(2),
                                                        bias_sizes, *self.params(1), mask)
            return tuple(g.unsqueeze(2) if g is not None else None for g in grads[:2]) + (grads[2],)
        return tuple(torch.ops.aten.convolution_backward(grad, input, kernel, bias_sizes, *self.params(0), mask))


def lowered_forward(plan, literal_forward, input, weight, bias, attrs):
    """A fused convolution's forward: ``plan(input shape, weight shape, attrs)`` gives the call lowered to torch's
    kernel (a :class:`NativeConv`), or None where the shapes (or an integer input) are not that convolution's —
    then the chain as written. A ``bias``, reshaped to ``attrs.bias_shape`` and added, goes into the kernel where
    it is one value per output channel (:meth:`NativeConv.takes_bias`)."""
    native = planned(plan, input.shape, weight.shape, attrs) if input.is_floating_point() else None
    if native is not None and bias is not None and native.takes_bias(bias.shape, bias.dtype, input.dtype, attrs):
        return native.forward(input, weight, bias if bias.dim() == 1 else bias.reshape(-1))
    out = literal_forward(input, weight, attrs) if native is None else native.forward(input, weight)
    return out if bias is None else out + _bias_addend(bias, attrs)


def lowered_vjp(plan, literal_vjp, ctx, grad, attrs) -> tuple:
    """The VJP of :func:`lowered_forward`: the same plan for the saved shapes, so backward takes the forward's path."""
    native = planned(plan, ctx.shapes[0], ctx.shapes[1], attrs)
    bias_shape = ctx.shapes[2] if len(ctx.shapes) > 2 else None
    if native is not None and bias_shape is not None and native.takes_bias(bias_shape, ctx.dtypes[2],
                                                                             ctx.dtypes[0], attrs):
        grad_input, grad_weight, grad_bias = native.vjp(ctx.input, ctx.weight, grad, ctx.needs)
        return grad_input, grad_weight, (grad_bias.reshape(bias_shape) if grad_bias is not None else None)
    if native is None:
        grad_input, grad_weight = literal_vjp(ctx.input, ctx.weight, grad, attrs, ctx.needs)
    else:
        grad_input, grad_weight, _ = native.vjp(ctx.input, ctx.weight, grad, ctx.needs[:2])
    if len(ctx.shapes) == 2:  # an op with no bias input
        return grad_input, grad_weight
    grad_bias = None
    if bias_shape is not None and ctx.needs[2]:
        summed = sum_to(grad, _addend_shape(bias_shape, attrs))
        grad_bias = (summed.clone() if summed is grad else summed).reshape(bias_shape)  # fresh, as the op promises
    return grad_input, grad_weight, grad_bias


def _bias_addend(bias, attrs):
    """The bias as the chain adds it: reshaped to ``attrs.bias_shape`` (as it is, where that is None)."""
    return bias if attrs.bias_shape is None else bias.reshape(attrs.bias_shape)


def _addend_shape(bias_shape, attrs) -> tuple:
    """The shape of the bias as the chain adds it (None where ``attrs.bias_shape`` does not fit the bias)."""
    numel = 1
    for size in bias_shape:
        numel *= size
    return tuple(bias_shape) if attrs.bias_shape is None else resolved_shape(attrs.bias_shape, numel)


def _out_size(size: int, kernel: int, dilation: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _product_shape(a, b) -> tuple:
    """The shape of ``torch.matmul(a, b)`` for operands of 2 dims or more (the literal chains' matmuls)."""
    return tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])) + (a.shape[-2], b.shape[-1])


def _is_symmetric(pad) -> bool:
    """A (left, right, top, bottom) padding torch's convolution can take as its own: the same, ≥ 0, on both sides."""
    return len(pad) == 4 and pad[0] == pad[1] >= 0 and pad[2] == pad[3] >= 0


class NativeConv:
    """A call as torch's convolution of the input with ``weight.reshape(kernel_shape)``; with ``pad``, of the input
    padded first by that (left, right, top, bottom) (and the input's gradient padded back by its opposite)."""

    def __init__(self, conv: Convolution, kernel_shape, pad=None) -> None:
        self.conv, self.kernel_shape, self.pad = conv, kernel_shape, pad
        self.out_channels = kernel_shape[1] * conv.groups if conv.transposed else kernel_shape[0]

    def padded(self, input):
        return input if self.pad is None else torch.nn.functional.pad(input, self.pad)

    def takes_bias(self, bias_shape, bias_dtype, input_dtype, attrs) -> bool:
        """Whether the bias, as the chain adds it, is one value per output channel of the input's dtype: then the
        kernel adds it (and its backward sums its gradient), with no output beside the kernel's."""
        channel = (self.out_channels, 1, 1)
        return bias_dtype == input_dtype and _addend_shape(bias_shape, attrs) in (channel, (1, *channel))

    def kernel(self, weight):
        """The weight as the kernel (itself where it is already that shape: a reshape costs microseconds a call)."""
        return weight if weight.shape == self.kernel_shape else weight.reshape(self.kernel_shape)

    def forward(self, input, weight, bias=None):
        return self.conv.forward(self.padded(input), self.kernel(weight), bias)

    def vjp(self, input, weight, grad, needs) -> tuple:
        """The input's, the weight's and (with a third ``needs``) the bias's gradients."""
        grad_input, grad_kernel, grad_bias = self.conv.vjp(self.padded(input), self.kernel(weight), grad, needs)
        if grad_input is not None and self.pad is not None:
            grad_input = torch.nn.functional.pad(grad_input, tuple(-p for p in self.pad))
        if grad_kernel is not None and grad_kernel.shape != weight.shape:
            grad_kernel = grad_kernel.reshape(weight.shape)
        return grad_input, grad_kernel, grad_bias


# --- grouped_conv -------------------------------------------------------------------------------------------------


class GroupedConvAttrs:
    """grouped_conv's attributes, by name (a plain class: ``graphconv export`` copies it)."""

    __slots__ = ("kernel_size", "dilation", "padding", "stride", "pad", "columns_shape", "weight_shape", "out_shape",
                 "bias_shape", "lean")
    plans: dict = {}  # this op's call plans (helpers.planned)

    def __init__(self, *, kernel_size, dilation=1, padding=0, stride=1, pad=None, columns_shape, weight_shape,
                 out_shape, bias_shape=None, lean=False) -> None:
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride
        self.pad, self.columns_shape, self.weight_shape, self.out_shape = pad, columns_shape, weight_shape, out_shape
        self.bias_shape, self.lean = bias_shape, lean

    def unfold_args(self) -> tuple:
        return self.kernel_size, self.dilation, self.padding, self.stride


def native_grouped_conv(input_shape, weight_shape, attrs: GroupedConvAttrs) -> NativeConv | None:
    """The native plan when the call is a grouped convolution: the columns reshape splits the (b, c·kh·kw, patches)
    patch columns into ``groups`` groups of whole channels, the weight reshape makes (groups, o/groups,
    c/groups·kh·kw) kernels, and the output reshape makes the (b, o, o_h, o_w) image; None otherwise."""
    if len(input_shape) != 4 or 0 in input_shape or 0 in weight_shape:
        return None
    b, c, h, w = input_shape
    pad = tuple(attrs.pad) if attrs.pad is not None else (0, 0, 0, 0)
    if len(pad) != 4:
        return None
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (as_pair(v) for v in attrs.unfold_args())
    oh = _out_size(h + pad[2] + pad[3], kh, dh, ph, sh)
    ow = _out_size(w + pad[0] + pad[1], kw, dw, pw, sw)
    if oh < 1 or ow < 1:
        return None
    patches, numel = oh * ow, 1
    for size in weight_shape:
        numel *= size
    columns = resolved_shape(attrs.columns_shape, b * c * kh * kw * patches)
    if columns is None or len(columns) != 4 or columns[0] != b or columns[3] != patches or columns[1] < 1:
        return None
    groups = columns[1]
    if c % groups or columns[2] != c // groups * kh * kw:
        return None
    kernels = resolved_shape(attrs.weight_shape, numel)
    if kernels is None or len(kernels) != 3 or kernels[0] != groups or kernels[2] != columns[2]:
        return None
    out_channels = groups * kernels[1]
    if resolved_shape(attrs.out_shape, b * out_channels * patches) != (b, out_channels, oh, ow):
        return None
    kernel, size = (out_channels, c // groups, kh, kw), {"columns": b * patches * columns[2],
                                                         "out_channels": out_channels, "lean": attrs.lean}
    if _is_symmetric(pad):  # the kernel's own padding
        return NativeConv(Convolution((sh, sw), (ph + pad[2], pw + pad[0]), (dh, dw), groups, **size), kernel)
    return NativeConv(Convolution((sh, sw), (ph, pw), (dh, dw), groups, **size), kernel, pad)


def _grouped_literal_parts(input, weight, attrs: GroupedConvAttrs) -> tuple:
    """The chain as written up to the matmul: the padded input, the split patch columns, the group kernels."""
    padded = input if attrs.pad is None else torch.nn.functional.pad(input, attrs.pad)
    columns = torch.nn.functional.unfold(padded, *attrs.unfold_args())
    return padded, columns, columns.reshape(attrs.columns_shape), weight.reshape(attrs.weight_shape)


def grouped_literal_forward(input, weight, attrs: GroupedConvAttrs):
    """``pad → unfold → reshape → matmul → reshape`` as the spec wrote them."""
    _, _, split, kernels = _grouped_literal_parts(input, weight, attrs)
    return torch.matmul(kernels, split).reshape(attrs.out_shape)


def grouped_literal_vjp(input, weight, grad, attrs: GroupedConvAttrs, needs) -> tuple:
    """The chain's VJPs in reverse: the matmul's two products (summed over broadcast dims), fold (unfold's
    adjoint), the opposite pad."""
    padded, columns, split, kernels = _grouped_literal_parts(input, weight, attrs)
    grad = grad.reshape(_product_shape(kernels, split))
    grad_weight = sum_to(torch.matmul(grad, split.mT), kernels.shape).reshape(weight.shape) if needs[1] else None
    grad_input = None
    if needs[0]:
        grad_columns = sum_to(torch.matmul(kernels.mT, grad), split.shape).reshape(columns.shape)
        grad_input = col2im(grad_columns, tuple(padded.shape[-2:]), *attrs.unfold_args())
        if attrs.pad is not None:
            grad_input = torch.nn.functional.pad(grad_input, tuple(-p for p in attrs.pad))
    return grad_input, grad_weight


@library_op(save=("input", "weight"), lower_precision=True, lean_attr="lean", fresh_grads=True)
def grouped_conv(input, weight, bias=None, *, kernel_size, dilation=1, padding=0, stride=1, pad=None, columns_shape,
                 weight_shape, out_shape, bias_shape=None, lean=False):
    """``[pad(input, pad) →] unfold → reshape(columns_shape) → matmul(weight.reshape(weight_shape), ·) →
    reshape(out_shape) [→ add(·, bias.reshape(bias_shape))]``: a grouped im2col convolution. Lowered to torch's
    convolution kernel (``torch.convolution`` with ``groups``, and the bias where it is one per channel; VJP
    ``aten.convolution_backward``) when each call's shapes make the chain a grouped convolution (the pad zero,
    folded into the kernel's padding where symmetric); else computed as written. ``lean``: never torch's im2col
    kernel, which small calls take (see :class:`Convolution`)."""
    attrs = GroupedConvAttrs(kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride, pad=pad,
                             columns_shape=columns_shape, weight_shape=weight_shape, out_shape=out_shape,
                             bias_shape=bias_shape, lean=lean)
    return lowered_forward(native_grouped_conv, grouped_literal_forward, input, weight, bias, attrs)


@grouped_conv.vjp
def _(ctx, grad):
    return lowered_vjp(native_grouped_conv, grouped_literal_vjp, ctx, grad, attrs_of(GroupedConvAttrs, ctx))


@grouped_conv.shape_rule
def _(input, weight, bias=None, *, kernel_size, dilation=1, padding=0, stride=1, pad=None, columns_shape, weight_shape,
      out_shape, bias_shape=None, lean=False):
    """The literal chain's shapes (the native path computes the same result)."""
    if len(input) != 4:
        raise ShapeRuleError(f"grouped_conv takes a (b, c, h, w) input, got {len(input)} dims")
    b, c, h, w = input
    if pad is not None:
        left, right, top, bottom = ntuple(pad, 4, "pad")
        h, w = h + top + bottom, w + left + right
    rows, columns = window_counts((h, w), kernel_size, dilation, padding, stride, "grouped_conv")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    split = reshaped((b, c * kh * kw, rows * columns), columns_shape)
    return _biased(reshaped(matmul_shape(reshaped(weight, weight_shape), split), out_shape), bias, bias_shape)


def _biased(out, bias, bias_shape) -> tuple:
    """A fused convolution's output shape, after the bias (reshaped to ``bias_shape``) is added, if any."""
    if bias is None:
        return out
    return broadcast_shapes(out, bias if bias_shape is None else reshaped(bias, bias_shape))


@grouped_conv.samples
def _():
    def attrs(b, c, o, groups, k, patches, out, **extra):
        return {"kernel_size": k, "columns_shape": (b, groups, c // groups * k * k, patches),
                "weight_shape": (groups, o // groups, c // groups * k * k), "out_shape": out, **extra}

    yield (randn(2, 4, 5, 5), randn(6, 2, 3, 3)), attrs(2, 4, 6, 2, 3, 25, (2, 6, 5, 5), pad=(1, 1, 1, 1))
    yield (randn(2, 4, 5, 5), randn(6, 2, 3, 3), randn(6)), attrs(2, 4, 6, 2, 3, 25, (2, 6, 5, 5), pad=(1, 1, 1, 1),
                                                                 bias_shape=(6, 1, 1))  # into the kernel
    yield (randn(2, 4, 5, 5), randn(6, 2, 3, 3), randn(3)), attrs(2, 4, 6, 2, 3, 9, (2, 6, 3, 3),
                                                                 bias_shape=(1, 3))  # one per column: added after
    yield (randn(2, 3, 6, 5), randn(4, 3, 2, 2)), attrs(2, 3, 4, 1, 2, 12, (2, 4, 4, 3), stride=(2, 1), dilation=(1, 2),
                                                        padding=(1, 0))
    yield (randn(1, 4, 5, 6), randn(4, 1, 2, 2)), attrs(1, 4, 4, 4, 2, 30, (1, 4, 5, 6), pad=(0, 1, 1, 0))  # 'same'
    split_channel = {"kernel_size": 2, "columns_shape": (1, 2, 6, 9), "weight_shape": (2, 1, 6),
                     "out_shape": (1, 2, 3, 3)}
    yield (randn(1, 3, 4, 4), randn(2, 6)), split_channel  # 2 groups of 3 channels' patches split one: literal


# --- depthwise_conv -----------------------------------------------------------------------------------------------


class DepthwiseConvAttrs:
    """depthwise_conv's attributes, by name (a plain class: ``graphconv export`` copies it)."""

    __slots__ = ("kernel_size", "dilation", "padding", "stride", "windows_shape", "kernels_shape", "dim", "out_shape")
    plans: dict = {}  # this op's call plans (helpers.planned)

    def __init__(self, *, kernel_size, dilation=1, padding=0, stride=1, windows_shape, kernels_shape, dim,
                 out_shape) -> None:
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride
        self.windows_shape, self.kernels_shape, self.dim, self.out_shape = windows_shape, kernels_shape, dim, out_shape

    def unfold_args(self) -> tuple:
        return self.kernel_size, self.dilation, self.padding, self.stride


def native_depthwise_conv(input_shape, weight_shape, attrs: DepthwiseConvAttrs) -> NativeConv | None:
    """The native plan when the call is a depthwise convolution (groups = channels, ``multiplier`` kernels per
    channel): the windows reshape makes (b, c, 1, kh·kw, patches), the kernels reshape (c, multiplier, kh·kw, 1),
    the sum is over the taps (dim 3) and the output reshape makes the (b, c·multiplier, o_h, o_w) image."""
    if len(input_shape) != 4 or 0 in input_shape or 0 in weight_shape or attrs.dim not in (3, -2):
        return None
    b, c, h, w = input_shape
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (as_pair(v) for v in attrs.unfold_args())
    oh, ow = _out_size(h, kh, dh, ph, sh), _out_size(w, kw, dw, pw, sw)
    if oh < 1 or ow < 1:
        return None
    taps, patches, numel = kh * kw, oh * ow, 1
    for size in weight_shape:
        numel *= size
    if resolved_shape(attrs.windows_shape, b * c * taps * patches) != (b, c, 1, taps, patches):
        return None
    kernels = resolved_shape(attrs.kernels_shape, numel)
    if kernels is None or len(kernels) != 4 or kernels[0] != c or tuple(kernels[2:]) != (taps, 1):
        return None
    out_channels = c * kernels[1]
    if resolved_shape(attrs.out_shape, b * out_channels * patches) != (b, out_channels, oh, ow):
        return None
    return NativeConv(Convolution((sh, sw), (ph, pw), (dh, dw), c), (out_channels, 1, kh, kw))


def _depthwise_literal_parts(input, weight, attrs: DepthwiseConvAttrs) -> tuple:
    columns = torch.nn.functional.unfold(input, *attrs.unfold_args())
    return columns, columns.reshape(attrs.windows_shape), weight.reshape(attrs.kernels_shape)


def depthwise_literal_forward(input, weight, attrs: DepthwiseConvAttrs):
    """``unfold → reshape → mul(reshaped kernels) → sum(dim) → reshape`` as the spec wrote them."""
    _, windows, kernels = _depthwise_literal_parts(input, weight, attrs)
    return (windows * kernels).sum(dim=attrs.dim).reshape(attrs.out_shape)


def depthwise_literal_vjp(input, weight, grad, attrs: DepthwiseConvAttrs, needs) -> tuple:
    """The chain's VJPs in reverse: the sum's broadcast back over the taps, the product's two factors (summed over
    broadcast dims), fold (unfold's adjoint)."""
    columns, windows, kernels = _depthwise_literal_parts(input, weight, attrs)
    products = torch.broadcast_shapes(windows.shape, kernels.shape)
    grad = grad.reshape(kept_shape(products, attrs.dim)).expand(products)
    grad_weight = sum_to(grad * windows, kernels.shape).reshape(weight.shape) if needs[1] else None
    grad_input = None
    if needs[0]:
        grad_columns = sum_to(grad * kernels, windows.shape).reshape(columns.shape)
        grad_input = col2im(grad_columns, tuple(input.shape[-2:]), *attrs.unfold_args())
    return grad_input, grad_weight


@library_op(save=("input", "weight"), lower_precision=True, fresh_grads=True)
def depthwise_conv(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, windows_shape, kernels_shape, dim,
                   out_shape):
    """``unfold → reshape(windows_shape) → mul(weight.reshape(kernels_shape)) → sum(dim) → reshape(out_shape)``: a
    depthwise convolution drawn as per-channel windows times kernels. Lowered to torch's convolution kernel
    (``torch.convolution`` with groups = channels; VJP ``aten.convolution_backward``) when each call's shapes make
    the chain a depthwise convolution; else computed as written."""
    attrs = DepthwiseConvAttrs(kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride,
                               windows_shape=windows_shape, kernels_shape=kernels_shape, dim=dim, out_shape=out_shape)
    return lowered_forward(native_depthwise_conv, depthwise_literal_forward, input, weight, None, attrs)


@depthwise_conv.vjp
def _(ctx, grad):
    return lowered_vjp(native_depthwise_conv, depthwise_literal_vjp, ctx, grad, attrs_of(DepthwiseConvAttrs, ctx))


@depthwise_conv.shape_rule
def _(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, windows_shape, kernels_shape, dim, out_shape):
    """The literal chain's shapes (the native path computes the same result)."""
    if len(input) != 4:
        raise ShapeRuleError(f"depthwise_conv takes a (b, c, h, w) input, got {len(input)} dims")
    b, c, h, w = input
    rows, columns = window_counts((h, w), kernel_size, dilation, padding, stride, "depthwise_conv")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    windows = reshaped((b, c * kh * kw, rows * columns), windows_shape)
    products = broadcast_shapes(windows, reshaped(weight, kernels_shape))
    return reshaped(reduced(products, dim, False), out_shape)


@depthwise_conv.samples
def _():
    def attrs(b, c, m, k, oh, ow, **extra):
        return {"kernel_size": k, "windows_shape": (b, c, 1, k * k, oh * ow), "kernels_shape": (c, m, k * k, 1),
                "dim": 3, "out_shape": (b, c * m, oh, ow), **extra}

    yield (randn(2, 3, 5, 5), randn(6, 1, 3, 3)), attrs(2, 3, 2, 3, 5, 5, padding=1)
    yield (randn(1, 2, 7, 6), randn(2, 1, 2, 2)), attrs(1, 2, 1, 2, 3, 5, stride=(2, 1), dilation=(2, 1))
    per_tap = {"kernel_size": 2, "windows_shape": (1, 2, 4, 9), "kernels_shape": (2, 4, 1), "dim": 2,
               "out_shape": (1, 2, 3, 3)}
    yield (randn(1, 2, 4, 4), randn(2, 4)), per_tap  # not the depthwise layout: literal


# --- transposed_conv ----------------------------------------------------------------------------------------------


class TransposedConvAttrs:
    """transposed_conv's attributes, by name (a plain class: ``graphconv export`` copies it)."""

    __slots__ = ("input_shape", "weight_shape", "columns_shape", "output_size", "kernel_size", "dilation", "padding",
                 "stride", "pad", "bias_shape")
    plans: dict = {}  # this op's call plans (helpers.planned)

    def __init__(self, *, input_shape, weight_shape, columns_shape, output_size, kernel_size, dilation=1, padding=0,
                 stride=1, pad=None, bias_shape=None) -> None:
        self.input_shape, self.weight_shape, self.columns_shape = input_shape, weight_shape, columns_shape
        self.output_size, self.kernel_size, self.dilation = output_size, kernel_size, dilation
        self.padding, self.stride, self.pad, self.bias_shape = padding, stride, pad, bias_shape

    def fold_args(self) -> tuple:
        return self.kernel_size, self.dilation, self.padding, self.stride


def _transposed_padding(size: int, out: int, kernel: int, dilation: int, padding: int, stride: int, before: int,
                        after: int) -> tuple[int, int] | None:
    """(padding, output padding) of torch's transposed convolution that gives, along one dim of ``size`` inputs,
    fold's ``out`` outputs at ``padding`` then the pad's ``before`` and ``after``; None when none does."""
    full = (size - 1) * stride + dilation * (kernel - 1) + 1  # the transposed convolution with no padding
    start, stop = padding - before, padding + out + after  # the rows of that the result holds
    extra = stop - (full - start)
    if start < 0 or not 0 <= extra < max(stride, dilation):
        return None
    return start, extra


def native_transposed_conv(input_shape, weight_shape, attrs: TransposedConvAttrs) -> NativeConv | None:
    """The native plan when the call is a transposed convolution: the input reshape splits whole channels into
    (b, groups, c/groups, h·w), the weight reshape makes (groups, c/groups, o/groups·kh·kw) kernels, the columns
    reshape merges the groups, fold's windows are the input's pixels, and fold then the pad keep a range of
    torch's transposed convolution's output."""
    if len(input_shape) != 4 or 0 in input_shape or 0 in weight_shape:
        return None
    b, c, h, w = input_shape
    pad = tuple(attrs.pad) if attrs.pad is not None else (0, 0, 0, 0)
    split = resolved_shape(attrs.input_shape, b * c * h * w)
    if len(pad) != 4 or split is None or len(split) != 4 or split[:1] + split[3:] != (b, h * w) or split[1] < 1:
        return None
    groups = split[1]
    numel = 1
    for size in weight_shape:
        numel *= size
    kernels = resolved_shape(attrs.weight_shape, numel)
    if c % groups or split[2] != c // groups or kernels is None or kernels[:2] != (groups, c // groups):
        return None
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (as_pair(v) for v in attrs.fold_args())
    (fh, fw), taps = as_pair(attrs.output_size), kh * kw
    if len(kernels) != 3 or kernels[2] % taps:
        return None
    out_channels = groups * kernels[2] // taps
    if resolved_shape(attrs.columns_shape, b * groups * kernels[2] * h * w) != (b, out_channels * taps, h * w):
        return None
    if (_out_size(fh, kh, dh, ph, sh), _out_size(fw, kw, dw, pw, sw)) != (h, w):
        return None  # fold's windows are not the input's pixels
    rows = _transposed_padding(h, fh, kh, dh, ph, sh, pad[2], pad[3])
    columns = _transposed_padding(w, fw, kw, dw, pw, sw, pad[0], pad[1])
    if rows is None or columns is None:
        return None
    conv = Convolution((sh, sw), (rows[0], columns[0]), (dh, dw), groups, True, (rows[1], columns[1]))
    return NativeConv(conv, (c, out_channels // groups, kh, kw))


def _transposed_literal_parts(input, weight, attrs: TransposedConvAttrs) -> tuple:
    return input.reshape(attrs.input_shape), weight.reshape(attrs.weight_shape).transpose(1, 2)


def transposed_literal_forward(input, weight, attrs: TransposedConvAttrs):
    """``reshape → matmul(transposed reshaped kernels, ·) → reshape → fold [→ pad]`` as the spec wrote them."""
    split, kernels = _transposed_literal_parts(input, weight, attrs)
    columns = torch.matmul(kernels, split).reshape(attrs.columns_shape)
    out = col2im(columns, attrs.output_size, *attrs.fold_args())
    return out if attrs.pad is None else torch.nn.functional.pad(out, attrs.pad)


def transposed_literal_vjp(input, weight, grad, attrs: TransposedConvAttrs, needs) -> tuple:
    """The chain's VJPs in reverse: the opposite pad, unfold (fold's adjoint), the matmul's two products."""
    split, kernels = _transposed_literal_parts(input, weight, attrs)
    if attrs.pad is not None:
        grad = torch.nn.functional.pad(grad, tuple(-p for p in attrs.pad))
    grad = torch.nn.functional.unfold(grad, *attrs.fold_args())
    grad = grad.reshape(_product_shape(kernels, split))
    grad_input = sum_to(torch.matmul(kernels.mT, grad), split.shape).reshape(input.shape) if needs[0] else None
    grad_weight = None
    if needs[1]:
        grad_weight = sum_to(torch.matmul(grad, split.mT), kernels.shape).transpose(1, 2).reshape(weight.shape)
    return grad_input, grad_weight


@library_op(save=("input", "weight"), lower_precision=True, fresh_grads=True)
def transposed_conv(input, weight, bias=None, *, input_shape, weight_shape, columns_shape, output_size, kernel_size,
                    dilation=1, padding=0, stride=1, pad=None, bias_shape=None):
    """``matmul(weight.reshape(weight_shape).transpose(1, 2), input.reshape(input_shape)) → reshape(columns_shape) →
    fold(output_size, kernel_size, …) [→ pad(pad)] [→ add(·, bias.reshape(bias_shape))]``: a transposed convolution
    drawn as kernels times pixels summed into place by col2im. Lowered to torch's transposed convolution kernel
    (``torch.convolution`` with ``transposed=True``, and the bias where it is one per channel; VJP
    ``aten.convolution_backward``) when each call's shapes make the chain one (fold and the pad becoming its padding
    and output padding); else computed as written."""
    attrs = TransposedConvAttrs(input_shape=input_shape, weight_shape=weight_shape, columns_shape=columns_shape,
                                output_size=output_size, kernel_size=kernel_size, dilation=dilation, padding=padding,
                                stride=stride, pad=pad, bias_shape=bias_shape)
    return lowered_forward(native_transposed_conv, transposed_literal_forward, input, weight, bias, attrs)


@transposed_conv.vjp
def _(ctx, grad):
    return lowered_vjp(native_transposed_conv, transposed_literal_vjp, ctx, grad, attrs_of(TransposedConvAttrs, ctx))


@transposed_conv.shape_rule
def _(input, weight, bias=None, *, input_shape, weight_shape, columns_shape, output_size, kernel_size, dilation=1,
      padding=0, stride=1, pad=None, bias_shape=None):
    """The literal chain's shapes (the native path computes the same result)."""
    return _biased(_transposed_shape(input, weight, input_shape, weight_shape, columns_shape, output_size,
                                     kernel_size, dilation, padding, stride, pad), bias, bias_shape)


def _transposed_shape(input, weight, input_shape, weight_shape, columns_shape, output_size, kernel_size, dilation,
                      padding, stride, pad) -> tuple:
    kernels = reshaped(weight, weight_shape)
    if len(kernels) != 3:
        raise ShapeRuleError(f"transposed_conv: the kernels must have 3 dims, got {len(kernels)}")
    columns = reshaped(matmul_shape((kernels[0], kernels[2], kernels[1]), reshaped(input, input_shape)),
                       columns_shape)
    if len(columns) != 3:
        raise ShapeRuleError(f"transposed_conv: the columns must be (b, c·kh·kw, blocks), got {len(columns)} dims")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    height, width = ntuple(output_size, 2, "output_size")
    rows, cols = window_counts((height, width), kernel_size, dilation, padding, stride, "transposed_conv")
    require(divides(kh * kw, columns[1]), "transposed_conv: the columns must hold whole kernels")
    require(equal(columns[2], rows * cols), "transposed_conv: the columns must be one per window of the output")
    out = (columns[0], columns[1] // (kh * kw), height, width)
    if pad is None:
        return out
    left, right, top, bottom = ntuple(pad, 4, "pad")
    return out[:2] + (height + top + bottom, width + left + right)


@transposed_conv.samples
def _():
    def attrs(b, c, h, w, groups, o, k, fold, **extra):
        return {"input_shape": (b, groups, c // groups, h * w),
                "weight_shape": (groups, c // groups, o // groups * k * k), "columns_shape": (b, o * k * k, h * w), "output_size": fold, "kernel_size": k, **extra}

    yield (randn(2, 4, 3, 3), randn(4, 3, 2, 2)), attrs(2, 4, 3, 3, 1, 3, 2, (6, 6), stride=2)
    yield (randn(2, 4, 3, 3), randn(4, 3, 2, 2), randn(3)), attrs(2, 4, 3, 3, 1, 3, 2, (6, 6), stride=2,
                                                                 bias_shape=(3, 1, 1))
    yield (randn(1, 4, 3, 2), randn(4, 1, 3, 3)), attrs(1, 4, 3, 2, 2, 2, 3, (5, 3), stride=2, padding=(1, 1))
    yield (randn(1, 2, 3, 3), randn(2, 2, 2, 2)), attrs(1, 2, 3, 3, 1, 2, 2, (7, 7), stride=2, dilation=2,
                                                        pad=(-1, 0, -1, 0))  # the crop is torch's padding
    yield (randn(1, 2, 2, 2), randn(2, 2, 2, 2)), attrs(1, 2, 2, 2, 1, 2, 2, (4, 4), stride=2,
                                                        pad=(1, 1, 1, 1))  # zeros around: literal
