"""Fused ops that the optimizer (graphconv.compiler.passes) rewrites op chains into; specs may use them directly.

- ``im2col``: ``unfold → permute(0, 2, 1) → reshape`` as one strided copy of the padded input.
- ``patch_matmul``: ``im2col → matmul [→ reshape → permute]``, the im2col convolution. It runs in chunks of output
  rows, so the patch matrix never exists whole (no 9×-the-input buffer, no page faults on fresh memory), with the
  patches in channels-last order (i, j, c) — the copy reads whole channel vectors — and the weight reordered to
  match. Its VJP recomputes each chunk's patches from the saved input instead of saving them.

Both fall back to the literal composition when the call's shapes are not the ones the fast path assumes (say, a
reshape that does not merge batch and patches), so the rewrite never changes a result; patch_matmul also takes
it when the patch matrix is small (one chunk), where a few big torch calls beat the chunk bookkeeping.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import op

LITERAL_BYTES = 256 * 1024  # patch_matmul runs the literal composition when the patch matrix is this small
CHUNK_BYTES_MIN = 256 * 1024  # a chunk's patch rows: small enough to stay in cache, big enough for a good GEMM
CHUNK_BYTES_MAX = 4 * 1024 * 1024
CHANNELS_FIRST = (0, 3, 1, 2)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _argsort(order):
    return tuple(sorted(range(len(order)), key=lambda i: order[i]))


class Windows:
    """The sliding-window geometry of one call: input (b, c, h, w), kernel, dilation, padding, stride, output."""

    def __init__(self, shape, kernel_size, dilation, padding, stride) -> None:
        if len(shape) != 4:
            raise ValueError(f"expected a (b, c, h, w) input, got shape {tuple(shape)}")
        self.b, self.c, self.h, self.w = shape
        (self.kh, self.kw), (self.dh, self.dw) = _pair(kernel_size), _pair(dilation)
        (self.ph, self.pw), (self.sh, self.sw) = _pair(padding), _pair(stride)
        self.oh = (self.h + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1
        self.ow = (self.w + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1
        if self.oh < 1 or self.ow < 1:
            raise ValueError(f"kernel {(self.kh, self.kw)} with dilation {(self.dh, self.dw)} does not fit the "
                             f"padded input {(self.h + 2 * self.ph, self.w + 2 * self.pw)}")
        self.patches = self.oh * self.ow
        self.patch_size = self.c * self.kh * self.kw


def _patch_view(input, g: Windows):
    """A (b, o_h, o_w, c, kh, kw) strided view of the zero-padded input: unfold's patches, not yet copied."""
    padded = torch.nn.functional.pad(input, (g.pw, g.pw, g.ph, g.ph)) if g.ph or g.pw else input
    sb, sc, sy, sx = padded.stride()
    return padded.as_strided((g.b, g.oh, g.ow, g.c, g.kh, g.kw),
                             (sb, sy * g.sh, sx * g.sw, sc, sy * g.dh, sx * g.dw), padded.storage_offset())


def _col2im(grad_cols, g: Windows):
    """The adjoint of im2col: sum (b, patches, c·kh·kw) patch gradients back into a (b, c, h, w) gradient."""
    columns = grad_cols.reshape(g.b, g.patches, g.patch_size).transpose(1, 2)
    return torch.nn.functional.fold(columns, (g.h, g.w), (g.kh, g.kw), (g.dh, g.dw), (g.ph, g.pw), (g.sh, g.sw))


# --- im2col ---------------------------------------------------------------------------------------------------


def _im2col(input, kernel_size, dilation, padding, stride, shape):
    g = Windows(input.shape, kernel_size, dilation, padding, stride)
    cols = _patch_view(input, g).reshape(g.b, g.patches, g.patch_size)
    return cols if shape is None else cols.reshape(shape)


@op
def im2col(input, *, kernel_size, dilation=1, padding=0, stride=1, shape=None):
    """``unfold(input).permute(0, 2, 1)`` — (b, patches, c·kh·kw) — reshaped to ``shape`` if given, as one copy."""
    return _im2col(input, kernel_size, dilation, padding, stride, shape)


@im2col.vjp
def _(ctx, grad):
    g = Windows(ctx.shapes[0], ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride)
    return (_col2im(grad, g),)


@im2col.samples
def _():
    yield (randn(2, 3, 5, 4),), {"kernel_size": (3, 2)}
    yield (randn(2, 2, 6, 7),), {"kernel_size": 3, "dilation": 2, "padding": 1, "stride": 2, "shape": (12, 18)}
    yield (randn(1, 3, 6, 6),), {"kernel_size": 2, "padding": (1, 0), "stride": (2, 1), "shape": (-1, 12)}


# --- patch_matmul ---------------------------------------------------------------------------------------------


class _Plan:
    """How one patch_matmul call runs the chunked path: its windows, and rows (b·patches, o) or (b, o, o_h, o_w)
    out."""

    def __init__(self, g: Windows, out_channels: int, channels_first: bool) -> None:
        self.g, self.out_channels, self.channels_first = g, out_channels, channels_first


def _resolve(shape, numel):
    """A reshape target with its -1 filled in (None when it cannot be)."""
    shape = tuple(shape)
    if shape.count(-1) == 1:
        known = 1
        for size in shape:
            known *= size if size != -1 else 1
        if known == 0 or numel % known:
            return None
        shape = tuple(numel // known if size == -1 else size for size in shape)
    return shape


def _fast_plan(input_shape, weight_shape, itemsize, attrs) -> _Plan | None:
    """The chunked path's plan when the call is an im2col convolution in the usual layout and its patch matrix
    is bigger than one chunk; None for the literal composition (small problems, other layouts)."""
    kernel_size, dilation, padding, stride, shape, out_shape, out_dims = attrs
    if torch.is_grad_enabled():  # autograd is recording (a differentiable backward): only the literal path is
        return None  # made of differentiable ops (the chunked one writes into buffers)
    if len(input_shape) != 4 or len(weight_shape) != 2 or shape is None:
        return None
    g = Windows(input_shape, kernel_size, dilation, padding, stride)
    rows, (k, o) = g.b * g.patches, weight_shape
    if rows * k * itemsize <= LITERAL_BYTES:
        return None
    if k != g.patch_size or _resolve(shape, rows * k) != (rows, k):
        return None
    if out_shape is None:
        return _Plan(g, o, False)
    dims = tuple(d % 4 for d in out_dims) if out_dims is not None and len(out_dims) == 4 else None
    if _resolve(out_shape, rows * o) != (g.b, g.oh, g.ow, o) or dims != CHANNELS_FIRST:
        return None
    return _Plan(g, o, True)


def _chunks(g: Windows, itemsize: int):
    """(b0, b1, y0, y1) blocks of output rows: whole images when one fits the chunk budget, else bands of rows."""
    input_bytes = g.b * g.c * g.h * g.w * itemsize
    budget = min(CHUNK_BYTES_MAX, max(CHUNK_BYTES_MIN, input_bytes // 4))
    rows = max(g.ow, budget // (g.patch_size * itemsize))
    if rows >= g.patches:
        images = rows // g.patches
        return [(b0, min(g.b, b0 + images), 0, g.oh) for b0 in range(0, g.b, images)]
    band = rows // g.ow
    return [(b, b + 1, y0, min(g.oh, y0 + band)) for b in range(g.b) for y0 in range(0, g.oh, band)]


class _Workspace:
    """Buffers reused by every chunk of one call: the padded input band, the patch rows, the output-row tile."""

    def __init__(self, g: Windows, chunks, like) -> None:
        rows = max((b1 - b0) * (y1 - y0) * g.ow for b0, b1, y0, y1 in chunks)
        images = max(b1 - b0 for b0, b1, _, _ in chunks)
        band = max(self.band_rows(g, y0, y1) for _, _, y0, y1 in chunks)
        self.g = g
        self.band = like.new_empty(images, band, g.w + 2 * g.pw, g.c)
        self.cols = like.new_empty(rows, g.patch_size)

    @staticmethod
    def band_rows(g: Windows, y0: int, y1: int) -> int:
        return (y1 - 1 - y0) * g.sh + (g.kh - 1) * g.dh + 1

    def band_for(self, b0: int, b1: int, y0: int, y1: int):
        """The zeroed channels-last band of padded input rows that output rows y0…y1 read, and the input rows it
        holds: (band, top, r0, r1) with input row r at band row r - top."""
        g = self.g
        band = self.band[: b1 - b0, : self.band_rows(g, y0, y1)].zero_()
        top = y0 * g.sh - g.ph
        r0, r1 = max(0, top), min(g.h, top + band.shape[1])
        return band, top, r0, r1

    def gather(self, input, b0: int, b1: int, y0: int, y1: int):
        """The chunk's patch rows, (rows, kh·kw·c) in (i, j, c) order: one strided copy out of the band."""
        g = self.g
        band, top, r0, r1 = self.band_for(b0, b1, y0, y1)
        if r1 > r0:
            band[:, r0 - top: r1 - top, g.pw: g.pw + g.w].copy_(input[b0:b1, :, r0:r1].permute(0, 2, 3, 1))
        n, sy, sx, sc = band.stride()
        windows_view = band.as_strided((b1 - b0, y1 - y0, g.ow, g.kh, g.kw, g.c),
                                       (n, sy * g.sh, sx * g.sw, sy * g.dh, sx * g.dw, sc))
        cols = self.cols[: (b1 - b0) * (y1 - y0) * g.ow]
        cols.view(windows_view.shape).copy_(windows_view)
        return cols

    def scatter_add(self, grad_cols, grad_input, b0: int, b1: int, y0: int, y1: int) -> None:
        """Add the chunk's patch-row gradients into ``grad_input`` (col2im), through a zeroed band."""
        g = self.g
        band, top, r0, r1 = self.band_for(b0, b1, y0, y1)
        patches = grad_cols.view(b1 - b0, y1 - y0, g.ow, g.kh, g.kw, g.c)
        for i in range(g.kh):
            rows = slice(i * g.dh, i * g.dh + (y1 - y0 - 1) * g.sh + 1, g.sh)
            for j in range(g.kw):
                columns = slice(j * g.dw, j * g.dw + (g.ow - 1) * g.sw + 1, g.sw)
                band[:, rows, columns] += patches[:, :, :, i, j]
        if r1 > r0:
            grad_input[b0:b1, :, r0:r1] += band[:, r0 - top: r1 - top, g.pw: g.pw + g.w].permute(0, 3, 1, 2)


def _channels_last_weight(weight, g: Windows):
    """The (c·kh·kw, o) weight in the patch rows' (i, j, c) order: (kh·kw·c, o)."""
    return weight.reshape(g.c, g.kh, g.kw, -1).permute(1, 2, 0, 3).reshape(g.patch_size, -1)


def _patch_matmul_fast(input, weight, plan: _Plan):
    g, o = plan.g, plan.out_channels
    chunks = _chunks(g, input.element_size())
    space = _Workspace(g, chunks, input)
    w = _channels_last_weight(weight, g)
    if plan.channels_first:
        out = input.new_empty(g.b, o, g.oh, g.ow)
        tile = input.new_empty(space.cols.shape[0], o)
    else:
        out = input.new_empty(g.b * g.patches, o)
    for b0, b1, y0, y1 in chunks:
        cols = space.gather(input, b0, b1, y0, y1)
        if plan.channels_first:
            rows = torch.mm(cols, w, out=tile[: cols.shape[0]])
            out[b0:b1, :, y0:y1].copy_(rows.view(b1 - b0, y1 - y0, g.ow, o).permute(0, 3, 1, 2))
        else:
            start = b0 * g.patches + y0 * g.ow
            torch.mm(cols, w, out=out[start: start + cols.shape[0]])
    return out


def _patch_matmul_reference(input, weight, attrs):
    """The literal composition: im2col, matmul, then the reshape and permute if any."""
    kernel_size, dilation, padding, stride, shape, out_shape, out_dims = attrs
    cols = _im2col(input, kernel_size, dilation, padding, stride, shape)
    out = torch.matmul(cols, weight)
    return out if out_shape is None else out.reshape(out_shape).permute(out_dims)


@op(save=("input", "weight"))
def patch_matmul(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, out_shape=None,
                 out_dims=None):
    """``im2col(input, shape=shape) @ weight``, then ``.reshape(out_shape).permute(out_dims)`` if given — an im2col
    convolution computed in chunks of output rows, without the whole patch matrix."""
    attrs = (kernel_size, dilation, padding, stride, shape, out_shape, out_dims)
    plan = _fast_plan(input.shape, weight.shape, input.element_size(), attrs)
    if plan is None:
        return _patch_matmul_reference(input, weight, attrs)
    return _patch_matmul_fast(input, weight, plan)


@patch_matmul.vjp
def _(ctx, grad):
    attrs = (ctx.kernel_size, ctx.dilation, ctx.padding, ctx.stride, ctx.shape, ctx.out_shape, ctx.out_dims)
    plan = _fast_plan(ctx.shapes[0], ctx.shapes[1], ctx.input.element_size(), attrs)
    if plan is None:
        return _patch_matmul_reference_vjp(ctx, grad, attrs)
    grad_input, grad_w = _patch_matmul_fast_vjp(ctx.input, ctx.weight, grad, plan, ctx.needs)
    return grad_input, (_weight_grad(grad_w, ctx.weight, plan.g) if grad_w is not None else None)


def _patch_matmul_fast_vjp(input, weight, grad, plan: _Plan, needs):
    """Chunk by chunk: the output-gradient rows, the recomputed patch rows, their products. Returns the input's
    gradient and the weight's as (o, kh·kw·c); the buffers die on return, before the weight's is reordered."""
    g, o = plan.g, plan.out_channels
    chunks = _chunks(g, input.element_size())
    space = _Workspace(g, chunks, input)
    w = _channels_last_weight(weight, g) if needs[0] else None
    grad_input = input.new_zeros(input.shape) if needs[0] else None
    grad_w = input.new_empty(o, g.patch_size) if needs[1] else None  # (o, kh·kw·c): (i, j, c) order
    tile = input.new_empty(space.cols.shape[0], o) if plan.channels_first else None
    grad_cols = input.new_empty(space.cols.shape) if needs[0] else None
    for index, (b0, b1, y0, y1) in enumerate(chunks):
        count = (b1 - b0) * (y1 - y0) * g.ow
        if plan.channels_first:
            rows = tile[:count]
            rows.view(b1 - b0, y1 - y0, g.ow, o).copy_(grad[b0:b1, :, y0:y1].permute(0, 2, 3, 1))
        else:
            start = b0 * g.patches + y0 * g.ow
            rows = grad[start: start + count]
        if grad_w is not None:
            cols = space.gather(input, b0, b1, y0, y1)
            if index == 0:
                torch.mm(rows.t(), cols, out=grad_w)
            else:
                grad_w.addmm_(rows.t(), cols)
        if grad_input is not None:
            space.scatter_add(torch.mm(rows, w.t(), out=grad_cols[:count]), grad_input, b0, b1, y0, y1)
    return grad_input, grad_w


def _weight_grad(grad_w, weight, g: Windows):
    """The (o, kh·kw·c) gradient as weight's (c·kh·kw, o) gradient, laid out like weight (often a transposed view
    of an (o, c, kh, kw) kernel, so that the kernel's own gradient needs no copy)."""
    by_channel = grad_w.view(-1, g.kh, g.kw, g.c).permute(0, 3, 1, 2).reshape(-1, g.patch_size)
    if weight.dim() == 2 and weight.stride(0) == 1 and weight.shape[1] > 1:
        return by_channel.t()
    return by_channel.t().contiguous()


def _patch_matmul_reference_vjp(ctx, grad, attrs):
    kernel_size, dilation, padding, stride, shape, out_shape, out_dims = attrs
    input, weight = ctx.input, ctx.weight
    cols = _im2col(input, kernel_size, dilation, padding, stride, shape)
    cols = cols.reshape(-1, cols.shape[-1])
    if out_shape is not None:
        grad = grad.permute(_argsort([d % len(out_dims) for d in out_dims]))
    grad = grad.reshape(cols.shape[0], -1)
    grad_input = grad_weight = None
    if ctx.needs[0]:
        g = Windows(ctx.shapes[0], kernel_size, dilation, padding, stride)
        grad_input = _col2im(torch.mm(grad, weight.t()), g)
    if ctx.needs[1]:
        grad_weight = torch.mm(cols.t(), grad)
    return grad_input, grad_weight


@patch_matmul.samples
def _():
    conv = {"kernel_size": 3, "padding": 1, "shape": (2 * 25, 27)}
    yield (randn(2, 3, 5, 5), randn(27, 4)), conv
    yield (randn(2, 3, 5, 5), randn(27, 4)), {**conv, "out_shape": (2, 5, 5, 4), "out_dims": (0, 3, 1, 2)}
    yield (randn(2, 2, 7, 6), randn(2 * 3 * 2, 3)), {"kernel_size": (3, 2), "dilation": (1, 2), "padding": (2, 1),
                                                     "stride": (2, 3)}
    yield (randn(1, 2, 4, 4), randn(8, 2)), {"kernel_size": 2, "shape": (-1, 8), "out_shape": (1, 3, 3, 2),
                                             "out_dims": (0, 3, 1, 2)}
    yield (randn(1, 2, 4, 4), randn(4, 3)), {"kernel_size": 2, "shape": (18, 4)}  # not the usual layout: fallback
    yield (randn(2, 2, 4, 4), randn(8, 3)), {"kernel_size": 2, "shape": (18, 8), "out_shape": (2, 9, 3),
                                             "out_dims": (0, 2, 1)}  # fallback through the tail
