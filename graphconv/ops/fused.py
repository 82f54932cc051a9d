"""Fused ops that the optimizer (graphconv.compiler.passes) rewrites op chains into; specs may use them directly.

- ``im2col``: ``unfold → permute(0, 2, 1) → reshape`` as one strided copy of the padded input.
- ``patch_matmul``: ``[kernel → reshape → transpose →] im2col → matmul [→ reshape → permute]``, the im2col
  convolution, computed without its patch matrix.

The math of patch_matmul, first. With ``cols = im2col(X)`` — (b·patches, c·kh·kw), one row per output position —
and ``W`` the (c·kh·kw, o) weight matrix::

    Y  = cols · W
    dX = col2im(dY · Wᵀ)      (col2im, the adjoint of im2col, sums each patch's gradient back where it was read)
    dW = colsᵀ · dY

Both paths save only the input and the weight: the literal VJP recomputes ``cols`` rather than keep the patch
matrix (kh·kw times the input).

The execution paths, each a small unit with its forward and VJP:

- **native** — where the call is a convolution in the usual layout (the patch rows (b·patches, c·kh·kw), the weight
  an (o, c, kh, kw) kernel or its (c·kh·kw, o) matrix), it is lowered to torch's convolution kernel: the forward is
  ``torch.convolution``, the VJP ``aten.convolution_backward`` for just the gradients asked for
  (graphconv.ops.convolution). Its memory is torch's own (no patch columns at all), so ``save="minimal"`` compiles
  need no other path; measured against the in-house unfold/bmm, row-band and image-group paths it replaced, it was
  as fast or faster at every size from the seed's 4×3×8×8 to ResNet layers, and never above torch's peak.
- **literal** — im2col, matmul, then the reshape and permute, as the spec wrote them. Any layout; the reference the
  native path is tested against, and what runs when a call's shapes are not the ones it assumes (a reshape that
  does not merge batch and patches, empty or integer tensors), so the rewrite never changes a result.
"""
from __future__ import annotations

from graphconv.ops.convolution import Convolution
from graphconv.ops.helpers import as_pair, attrs_of, col2im, planned, randn, resolved_shape
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, matmul_shape, ntuple, permuted, reshaped, window_counts

CHANNELS_FIRST = (0, 3, 1, 2)


def _argsort(order):
    return tuple(sorted(range(len(order)), key=lambda i: order[i]))


class Windows:
    """The sliding-window geometry of one call: input (b, c, h, w), kernel, dilation, padding, stride, output."""

    def __init__(self, shape, kernel_size, dilation, padding, stride) -> None:
        if len(shape) != 4:
            raise ValueError(f"expected a (b, c, h, w) input, got shape {tuple(shape)}")
        self.b, self.c, self.h, self.w = shape
        (self.kh, self.kw), (self.dh, self.dw) = as_pair(kernel_size), as_pair(dilation)
        (self.ph, self.pw), (self.sh, self.sw) = as_pair(padding), as_pair(stride)
        self.oh = (self.h + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1
        self.ow = (self.w + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1
        if self.oh < 1 or self.ow < 1:
            raise ValueError(f"kernel {(self.kh, self.kw)} with dilation {(self.dh, self.dw)} does not fit the "
                             f"padded input {(self.h + 2 * self.ph, self.w + 2 * self.pw)}")
        self.patches = self.oh * self.ow
        self.patch_size = self.c * self.kh * self.kw

    def unfold_args(self) -> tuple[tuple[int, int], ...]:
        """kernel_size, dilation, padding, stride: as F.unfold takes them (and F.fold after the output size)."""
        return (self.kh, self.kw), (self.dh, self.dw), (self.ph, self.pw), (self.sh, self.sw)


def _patch_view(input, g: Windows):
    """A (b, o_h, o_w, c, kh, kw) strided view of the zero-padded input: unfold's patches, not yet copied."""
    padded = torch.nn.functional.pad(input, (g.pw, g.pw, g.ph, g.ph)) if g.ph or g.pw else input
    sb, sc, sy, sx = padded.stride()
    return padded.as_strided((g.b, g.oh, g.ow, g.c, g.kh, g.kw),
                             (sb, sy * g.sh, sx * g.sw, sc, sy * g.dh, sx * g.dw), padded.storage_offset())


def _col2im(grad_cols, g: Windows):
    """The adjoint of im2col: sum (b, patches, c·kh·kw) patch gradients back into a (b, c, h, w) gradient."""
    columns = grad_cols.reshape(g.b, g.patches, g.patch_size).transpose(1, 2)
    return col2im(columns, (g.h, g.w), *g.unfold_args())


# --- im2col ---------------------------------------------------------------------------------------------------


def _im2col(input, kernel_size, dilation, padding, stride, shape):
    g = Windows(input.shape, kernel_size, dilation, padding, stride)
    cols = _patch_view(input, g).reshape(g.b, g.patches, g.patch_size)
    return cols if shape is None else cols.reshape(shape)


@library_op(cheap=True)
def im2col(input, *, kernel_size, dilation=1, padding=0, stride=1, shape=None):
    """``unfold(input).permute(0, 2, 1)`` — (b, patches, c·kh·kw) — reshaped to ``shape`` if given, as one copy."""
    return _im2col(input, kernel_size, dilation, padding, stride, shape)


@im2col.vjp
def _(ctx, grad):
    g = Windows(ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride)
    return (_col2im(grad, g),)


@im2col.shape_rule
def _im2col_shape(input, *, kernel_size, dilation=1, padding=0, stride=1, shape=None):
    if len(input) != 4:
        raise ShapeRuleError(f"im2col takes a (b, c, h, w) tensor, got {len(input)} dims")
    b, c, h, w = input
    rows, columns = window_counts((h, w), kernel_size, dilation, padding, stride, "im2col")
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    cols = (b, rows * columns, c * kh * kw)
    return cols if shape is None else reshaped(cols, shape)


@im2col.samples
def _():
    yield (randn(2, 3, 5, 4),), {"kernel_size": (3, 2)}
    yield (randn(2, 2, 6, 7),), {"kernel_size": 3, "dilation": 2, "padding": 1, "stride": 2, "shape": (12, 18)}
    yield (randn(1, 3, 6, 6),), {"kernel_size": 2, "padding": (1, 0), "stride": (2, 1), "shape": (-1, 12)}


# --- patch_matmul: the op ---------------------------------------------------------------------------------------


class PatchMatmulAttrs:
    """patch_matmul's attributes, by name. (A plain class rather than a dataclass: ``graphconv export`` copies it
    into a standalone module, where a dataclass's string annotations need the module registered in sys.modules.)"""

    __slots__ = ("kernel_size", "dilation", "padding", "stride", "shape", "weight_shape", "out_shape", "out_dims",
                 "lean")
    plans: dict = {}  # the op's call plans (helpers.planned)

    def __init__(self, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, weight_shape=None,
                 out_shape=None, out_dims=None, lean=False) -> None:
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride
        self.shape, self.weight_shape, self.out_shape, self.out_dims = shape, weight_shape, out_shape, out_dims
        self.lean = lean

    def windows(self, input_shape) -> Windows:
        return Windows(input_shape, self.kernel_size, self.dilation, self.padding, self.stride)


@library_op(save=("input", "weight"), lower_precision=True, lean_attr="lean", fresh_grads=True)
def patch_matmul(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, weight_shape=None,
                 out_shape=None, out_dims=None, lean=False):
    """``im2col(input, shape=shape) @ W``, then ``.reshape(out_shape).permute(out_dims)`` if given — an im2col
    convolution. ``W`` is ``weight``, or ``weight.reshape(weight_shape).t()`` when ``weight_shape`` is given (a
    kernel). Lowered to torch's convolution kernel (``torch.convolution``; VJP ``aten.convolution_backward``) when
    each call's shapes make it a convolution in the usual layout; else computed as written. ``lean``: never torch's
    im2col kernel, which small calls take (see :class:`~graphconv.ops.convolution.Convolution`)."""
    attrs = PatchMatmulAttrs(kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride, shape=shape,
                             weight_shape=weight_shape, out_shape=out_shape, out_dims=out_dims, lean=lean)
    path = planned(choose_path, input.shape, weight.shape, attrs) if input.is_floating_point() else None
    if path is None:
        return literal_forward(input, weight, attrs)
    return path.forward(input, _kernel(weight, path.g))


@patch_matmul.vjp
def _(ctx, grad):
    attrs = attrs_of(PatchMatmulAttrs, ctx)
    path = planned(choose_path, ctx.shapes[0], ctx.shapes[1], attrs)
    if path is None:
        return literal_vjp(ctx.input, ctx.weight, grad, attrs, ctx.needs)
    grad_input, grad_kernel = path.vjp(ctx.input, _kernel(ctx.weight, path.g), grad, ctx.needs)
    return grad_input, (_as_weight_grad(grad_kernel, ctx.weight) if grad_kernel is not None else None)


@patch_matmul.shape_rule
def _(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, weight_shape=None, out_shape=None,
      out_dims=None, lean=False):
    """The literal composition's shapes (every path computes the same result)."""
    cols = _im2col_shape(input, kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride,
                         shape=shape)
    matrix = weight if weight_shape is None else permuted(reshaped(weight, weight_shape), (1, 0))
    out = matmul_shape(cols, matrix)
    return out if out_shape is None else permuted(reshaped(out, out_shape), out_dims)


@patch_matmul.samples
def _():
    conv = {"kernel_size": 3, "padding": 1, "shape": (2 * 25, 27)}
    image = {"out_shape": (2, 5, 5, 4), "out_dims": (0, 3, 1, 2)}
    yield (randn(2, 3, 5, 5), randn(27, 4)), conv
    yield (randn(2, 3, 5, 5), randn(27, 4)), {**conv, **image}
    yield (randn(2, 3, 5, 5), randn(4, 3, 3, 3)), {**conv, **image, "weight_shape": (4, 27)}
    yield (randn(2, 2, 7, 6), randn(2 * 3 * 2, 3)), {"kernel_size": (3, 2), "dilation": (1, 2), "padding": (2, 1),
                                                     "stride": (2, 3)}
    yield (randn(1, 2, 4, 4), randn(8, 2)), {"kernel_size": 2, "shape": (-1, 8), "out_shape": (1, 3, 3, 2),
                                             "out_dims": (0, 3, 1, 2)}
    yield (randn(1, 2, 4, 4), randn(4, 3)), {"kernel_size": 2, "shape": (18, 4)}  # not the usual layout: literal
    yield (randn(2, 2, 4, 4), randn(8, 3)), {"kernel_size": 2, "shape": (18, 8), "out_shape": (2, 9, 3),
                                             "out_dims": (0, 2, 1)}  # literal through the tail
    yield (randn(2, 2, 4, 4), randn(2, 3, 2, 2)), {"kernel_size": 2, "shape": (18, 8), "weight_shape": (3, 8)}


# --- choosing a path ----------------------------------------------------------------------------------------------


def choose_path(input_shape, weight_shape, attrs: PatchMatmulAttrs) -> "NativePath | None":
    """The :class:`NativePath` when a call is an im2col convolution in the usual layout — the patch rows
    (b·patches, c·kh·kw), the weight an (o, c, kh, kw) kernel or its (c·kh·kw, o) matrix, the output the
    (b·patches, o) rows or, through the tail, the (b, o, o_h, o_w) image; None for the literal composition (other
    layouts, and empty tensors)."""
    if len(input_shape) != 4 or attrs.shape is None or 0 in input_shape or 0 in weight_shape:
        return None
    g = attrs.windows(input_shape)
    o = _out_channels(weight_shape, attrs.weight_shape, g)
    rows = g.b * g.patches
    if o is None or resolved_shape(attrs.shape, rows * g.patch_size) != (rows, g.patch_size):
        return None
    channels_first = attrs.out_shape is not None
    if channels_first and not _is_channels_first_image(attrs, g, o):
        return None
    return NativePath(g, o, channels_first, attrs.lean)


def _is_channels_first_image(attrs: PatchMatmulAttrs, g: Windows, out_channels: int) -> bool:
    """Whether the tail's reshape and permute turn the output rows into the (b, o, o_h, o_w) image."""
    out_dims = attrs.out_dims
    dims = tuple(d % 4 for d in out_dims) if out_dims is not None and len(out_dims) == 4 else None
    rows = g.b * g.patches
    image = (g.b, g.oh, g.ow, out_channels)
    return resolved_shape(attrs.out_shape, rows * out_channels) == image and dims == CHANNELS_FIRST


def _out_channels(weight_shape, weight_shape_attr, g: Windows):
    """The output channels when the weight is the (c·kh·kw, o) matrix of an (o, c, kh, kw) kernel — given as the
    matrix, or as the kernel that ``reshape(weight_shape)`` then a transpose makes it; None otherwise."""
    if weight_shape_attr is None:
        return weight_shape[1] if len(weight_shape) == 2 and weight_shape[0] == g.patch_size else None
    if len(weight_shape) != 4 or tuple(weight_shape[1:]) != (g.c, g.kh, g.kw):
        return None
    o = weight_shape[0]
    return o if resolved_shape(weight_shape_attr, o * g.patch_size) == (o, g.patch_size) else None


def _kernel(weight, g: Windows):
    """The weight as an (o, c, kh, kw) kernel (a view when it is the transpose of a contiguous matrix)."""
    return weight if weight.dim() == 4 else weight.t().reshape(-1, g.c, g.kh, g.kw)


def _as_weight_grad(grad_kernel, weight):
    """An (o, c, kh, kw) kernel gradient as the weight's: the kernel's own, or the matrix's, laid out like the
    weight (often the transpose of a contiguous matrix — whose gradient then needs no copy)."""
    if weight.dim() == 4:
        return grad_kernel
    grad = grad_kernel.reshape(grad_kernel.shape[0], -1).t()
    return grad if weight.stride(0) == 1 and weight.shape[1] > 1 else grad.contiguous()


# --- the literal path: the reference ----------------------------------------------------------------------------


def _weight_matrix(weight, attrs: PatchMatmulAttrs):
    """W, (c·kh·kw, o): the weight, or the transpose of the kernel's reshape."""
    return weight if attrs.weight_shape is None else weight.reshape(attrs.weight_shape).permute(1, 0)


def literal_forward(input, weight, attrs: PatchMatmulAttrs):
    """``Y = cols · W`` as the spec wrote it: im2col, matmul, then the reshape and permute if any."""
    cols = _im2col(input, attrs.kernel_size, attrs.dilation, attrs.padding, attrs.stride, attrs.shape)
    out = cols.matmul(_weight_matrix(weight, attrs))
    return out if attrs.out_shape is None else out.reshape(attrs.out_shape).permute(attrs.out_dims)


def literal_vjp(input, weight, grad, attrs: PatchMatmulAttrs, needs) -> tuple:
    """``dX = col2im(dY · Wᵀ)``, ``dW = colsᵀ · dY``, with dY brought back to the rows' layout first."""
    matrix = _weight_matrix(weight, attrs)
    cols = _im2col(input, attrs.kernel_size, attrs.dilation, attrs.padding, attrs.stride, attrs.shape)
    cols = cols.reshape(-1, cols.shape[-1])
    if attrs.out_shape is not None:
        grad = grad.permute(_argsort([d % len(attrs.out_dims) for d in attrs.out_dims]))
    grad = grad.reshape(cols.shape[0], matrix.shape[1])
    grad_input = _col2im(grad.mm(matrix.t()), attrs.windows(input.shape)) if needs[0] else None
    grad_weight = None
    if needs[1]:
        grad_matrix = cols.t().mm(grad)
        grad_weight = grad_matrix if attrs.weight_shape is None else grad_matrix.permute(1, 0).reshape(weight.shape)
    return grad_input, grad_weight


# --- the native path: torch's convolution ---------------------------------------------------------------------


class NativePath:
    """The call lowered to torch's convolution kernel (graphconv.ops.convolution): ``torch.convolution`` forward,
    ``aten.convolution_backward`` for the needed gradients. Output (b, o, o_h, o_w) when ``channels_first``, else
    the (b·patches, o) rows (the image's channels-last copy)."""

    def __init__(self, g: Windows, out_channels: int, channels_first: bool, lean: bool) -> None:
        self.g, self.out_channels, self.channels_first = g, out_channels, channels_first
        self.conv = Convolution((g.sh, g.sw), (g.ph, g.pw), (g.dh, g.dw), columns=g.b * g.patches * g.patch_size,
                                out_channels=out_channels, lean=lean)

    def forward(self, input, kernel):
        out = self.conv.forward(input, kernel)
        return out if self.channels_first else out.permute(0, 2, 3, 1).reshape(-1, self.out_channels)

    def vjp(self, input, kernel, grad, needs) -> tuple:
        g = self.g
        if not self.channels_first:
            grad = grad.reshape(g.b, g.oh, g.ow, self.out_channels).permute(0, 3, 1, 2)
        return self.conv.vjp(input, kernel, grad, needs)[:2]
