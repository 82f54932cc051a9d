"""Fused ops that the optimizer (graphconv.compiler.passes) rewrites op chains into; specs may use them directly.

- ``im2col``: ``unfold → permute(0, 2, 1) → reshape`` as one strided copy of the padded input.
- ``patch_matmul``: ``[kernel → reshape → transpose →] im2col → matmul [→ reshape → permute]``, the im2col
  convolution, computed without its patch matrix.

The math of patch_matmul, first. With ``cols = im2col(X)`` — (b·patches, c·kh·kw), one row per output position —
and ``W`` the (c·kh·kw, o) weight matrix::

    Y  = cols · W
    dX = col2im(dY · Wᵀ)      (col2im, the adjoint of im2col, sums each patch's gradient back where it was read)
    dW = colsᵀ · dY

In unfold's layout — per image, the patch columns (c·kh·kw, patches) and the output image (o, patches) — the same
three lines read ``Y = Wᵀ·cols``, ``dX = col2im(W·dY)``, ``dWᵀ = dY·colsᵀ``, where ``Wᵀ`` is the (o, c·kh·kw)
kernel as it is: no transposing copy of anything. Every path below computes exactly these three lines, and the
VJPs recompute ``cols`` from the saved input instead of keeping the patch matrix (kh·kw times the input).

The execution paths, each a small unit with its forward and VJP:

- **literal** — im2col, matmul, then the reshape and permute, as the spec wrote them. Any layout; the reference the
  fast paths are tested against, and what runs when a call's shapes are not the ones they assume (a reshape that
  does not merge batch and patches), so the rewrite never changes a result.
- **whole** — unfold's layout for the whole batch: unfold, one batched matmul, fold. Small calls; out-of-place, so
  it is what a differentiable backward (double backward) and functorch transforms run.
- **grouped** — the whole path a group of images at a time, written in place: small calls with ``low_memory``.
- **chunked** — bands of output rows (whole images, or rows of a big one), each gathered by one strided copy into a
  reused buffer (no page faults on fresh memory), its gradient scattered back by one strided add per kernel
  position: big calls, and ``low_memory`` calls.

``low_memory`` (what ``save="minimal"`` compiles ask for) keeps every call's patch columns within a budget.
"""
from __future__ import annotations

from typing import Any

from graphconv.ops.helpers import col2im, may_write_in_place, randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, matmul_shape, ntuple, permuted, reshaped, window_counts

WHOLE_BYTES = 256 * 1024  # patch_matmul goes in chunks when the patch matrix is bigger than this
CHUNK_BYTES_MIN = 1024 * 1024  # a chunk's patch columns: several small images together (a good GEMM) …
CHUNK_BYTES_MAX = 8 * 1024 * 1024  # … but a band of rows of a big one (memory)
LOW_MEMORY_BYTES = 16 * 1024  # low_memory: the smallest budget for patch columns (about a conv kernel's workspace)
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


def _unfold(input, g: Windows):
    return torch.nn.functional.unfold(input, *g.unfold_args())


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
                 "low_memory")

    def __init__(self, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, weight_shape=None,
                 out_shape=None, out_dims=None, low_memory=False) -> None:
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride
        self.shape, self.weight_shape, self.out_shape, self.out_dims = shape, weight_shape, out_shape, out_dims
        self.low_memory = low_memory

    @staticmethod
    def of(ctx) -> "PatchMatmulAttrs":
        """The attributes a VJP context holds."""
        return PatchMatmulAttrs(**{name: ctx.attrs[name] for name in PatchMatmulAttrs.__slots__ if name in ctx.attrs})

    def windows(self, input_shape) -> Windows:
        return Windows(input_shape, self.kernel_size, self.dilation, self.padding, self.stride)


@library_op(save=("input", "weight"), lower_precision=True)
def patch_matmul(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, weight_shape=None,
                 out_shape=None, out_dims=None, low_memory=False):
    """``im2col(input, shape=shape) @ W``, then ``.reshape(out_shape).permute(out_dims)`` if given — an im2col
    convolution computed without the whole patch matrix (in chunks of output rows, or in unfold's layout).
    ``W`` is ``weight``, or ``weight.reshape(weight_shape).t()`` when ``weight_shape`` is given (a kernel).
    ``low_memory``: memory before speed — small calls too go a few images, or rows, at a time (``save="minimal"``
    compiles set it)."""
    attrs = PatchMatmulAttrs(kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride, shape=shape,
                             weight_shape=weight_shape, out_shape=out_shape, out_dims=out_dims, low_memory=low_memory)
    path = choose_path(input.shape, weight.shape, input.element_size(), attrs)
    if path is None:
        return literal_forward(input, weight, attrs)
    return path.forward(input, _kernel(weight, path.g))


@patch_matmul.vjp
def _(ctx, grad):
    attrs = PatchMatmulAttrs.of(ctx)
    path = choose_path(ctx.shapes[0], ctx.shapes[1], ctx.input.element_size(), attrs)
    if path is None:
        return literal_vjp(ctx.input, ctx.weight, grad, attrs, ctx.needs)
    grad_input, grad_kernel = path.vjp(ctx.input, _kernel(ctx.weight, path.g), grad, ctx.needs)
    return grad_input, (_as_weight_grad(grad_kernel, ctx.weight) if grad_kernel is not None else None)


@patch_matmul.shape_rule
def _(input, weight, *, kernel_size, dilation=1, padding=0, stride=1, shape=None, weight_shape=None, out_shape=None,
      out_dims=None, low_memory=False):
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
    yield (randn(2, 3, 5, 5), randn(4, 3, 3, 3)), {**conv, **image, "weight_shape": (4, 27), "low_memory": True}
    yield (randn(2, 2, 7, 6), randn(2 * 3 * 2, 3)), {"kernel_size": (3, 2), "dilation": (1, 2), "padding": (2, 1),
                                                     "stride": (2, 3)}
    yield (randn(1, 2, 4, 4), randn(8, 2)), {"kernel_size": 2, "shape": (-1, 8), "out_shape": (1, 3, 3, 2),
                                             "out_dims": (0, 3, 1, 2)}
    yield (randn(1, 2, 4, 4), randn(4, 3)), {"kernel_size": 2, "shape": (18, 4)}  # not the usual layout: literal
    yield (randn(2, 2, 4, 4), randn(8, 3)), {"kernel_size": 2, "shape": (18, 8), "out_shape": (2, 9, 3),
                                             "out_dims": (0, 2, 1)}  # literal through the tail
    yield (randn(2, 2, 4, 4), randn(2, 3, 2, 2)), {"kernel_size": 2, "shape": (18, 8), "weight_shape": (3, 8)}


# --- choosing a path ----------------------------------------------------------------------------------------------


def choose_path(input_shape, weight_shape, itemsize: int, attrs: PatchMatmulAttrs) -> Any:
    """The path a call takes, when it is an im2col convolution in the usual layout: a :class:`WholePath`,
    :class:`GroupedPath` or :class:`ChunkedPath`; None for the literal composition (other layouts, and small calls
    that return rows). A big call goes in chunks, a small one whole. With ``low_memory``, every call keeps its patch
    columns within the low-memory budget: in groups of whole images, or in chunks. Where those paths cannot write in
    place (a differentiable backward, a functorch transform), only the whole path will do."""
    if len(input_shape) != 4 or attrs.shape is None or 0 in input_shape or 0 in weight_shape:
        return None  # (empty tensors too: the literal composition handles them)
    g = attrs.windows(input_shape)
    o = _out_channels(weight_shape, attrs.weight_shape, g)
    rows = g.b * g.patches
    if o is None or _resolve(attrs.shape, rows * g.patch_size) != (rows, g.patch_size):
        return None
    channels_first = attrs.out_shape is not None
    if channels_first and not _is_channels_first_image(attrs, g, o):
        return None
    whole = WholePath(g, o) if channels_first else None
    if not may_write_in_place():
        return whole
    image = g.patches * g.patch_size * itemsize
    if attrs.low_memory:
        budget = _low_memory_budget(g, o, itemsize)
        if channels_first and image <= budget:
            return GroupedPath(g, o, min(g.b, budget // image))
        return ChunkedPath(g, o, channels_first, budget)
    if g.b * image > WHOLE_BYTES:
        return ChunkedPath(g, o, channels_first, min(CHUNK_BYTES_MAX, max(CHUNK_BYTES_MIN, image)))
    return whole


def _is_channels_first_image(attrs: PatchMatmulAttrs, g: Windows, out_channels: int) -> bool:
    """Whether the tail's reshape and permute turn the output rows into the (b, o, o_h, o_w) image."""
    out_dims = attrs.out_dims
    dims = tuple(d % 4 for d in out_dims) if out_dims is not None and len(out_dims) == 4 else None
    rows = g.b * g.patches
    return _resolve(attrs.out_shape, rows * out_channels) == (g.b, g.oh, g.ow, out_channels) and dims == CHANNELS_FIRST


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


def _low_memory_budget(g: Windows, out_channels: int, itemsize: int) -> int:
    """The most bytes of patch columns a low-memory call holds at once: an eighth of what any convolution holds
    at the end of its backward (the output, the input's and the weight's gradients) — so its buffers, with the
    output tile and the input band, add at most about a fifth to that — but at least LOW_MEMORY_BYTES (smaller
    steps cost more time than they save memory)."""
    tensors = (g.b * g.c * g.h * g.w + g.b * out_channels * g.patches + out_channels * g.patch_size) * itemsize
    return min(CHUNK_BYTES_MAX, max(LOW_MEMORY_BYTES, tensors // 8))


def _out_channels(weight_shape, weight_shape_attr, g: Windows):
    """The output channels when the weight is the (c·kh·kw, o) matrix of an (o, c, kh, kw) kernel — given as the
    matrix, or as the kernel that ``reshape(weight_shape)`` then a transpose makes it; None otherwise."""
    if weight_shape_attr is None:
        return weight_shape[1] if len(weight_shape) == 2 and weight_shape[0] == g.patch_size else None
    if len(weight_shape) != 4 or tuple(weight_shape[1:]) != (g.c, g.kh, g.kw):
        return None
    o = weight_shape[0]
    return o if _resolve(weight_shape_attr, o * g.patch_size) == (o, g.patch_size) else None


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


# --- the whole path: unfold's layout, the whole batch at once -------------------------------------------------------


class WholePath:
    """``Y = Wᵀ·cols`` per image as one bmm of the expanded kernel matrix (torch.matmul's broadcasting costs more
    than these small products), the (b, o, patches) result already the image; the VJP in differentiable
    out-of-place ops (double backward, vmap)."""

    def __init__(self, g: Windows, out_channels: int) -> None:
        self.g, self.out_channels = g, out_channels

    def forward(self, input, kernel):
        g = self.g
        matrix = kernel.reshape(self.out_channels, -1)
        return matrix.expand(g.b, -1, -1).bmm(_unfold(input, g)).view(g.b, -1, g.oh, g.ow)

    def vjp(self, input, kernel, grad, needs) -> tuple:
        g = self.g
        matrix = kernel.reshape(self.out_channels, -1)
        columns = grad.reshape(g.b, -1, g.patches)
        grad_kernel = _kernel_grad(columns, _unfold(input, g)).view(kernel.shape) if needs[1] else None
        grad_input = (torch.nn.functional.fold(_patch_grads(matrix, columns), (g.h, g.w), *g.unfold_args())
                      if needs[0] else None)  # F.fold: 10 µs faster than col2im here (its storage is small)
        return grad_input, grad_kernel


def _kernel_grad(columns, patches):
    """``dWᵀ = Σ over images of dY·colsᵀ``, (o, patches) @ (patches, c·kh·kw). bmm then sum is fastest for small
    products but makes a kernel-sized product per image: where those would outgrow the patches (o > patches),
    addbmm sums as it goes."""
    if columns.shape[1] <= columns.shape[2]:
        return columns.bmm(patches.transpose(1, 2)).sum(0)
    zero = columns.new_zeros(()).expand(columns.shape[1], patches.shape[1])
    return torch.addbmm(zero, columns, patches.transpose(1, 2), beta=0)


def _patch_grads(matrix, columns):
    """``W·dY``: the (n, c·kh·kw, patches) patch gradients of (n, o, patches) output-gradient columns."""
    return matrix.t().expand(columns.shape[0], -1, -1).bmm(columns)


# --- the grouped path: the whole path a group of images at a time, in place ---------------------------------------


class GroupedPath:
    """The whole path over ``images`` images at a time, each group's output written into its place, the kernel's
    gradient summed as it goes and each group's input gradient folded into its place (low memory)."""

    def __init__(self, g: Windows, out_channels: int, images: int) -> None:
        self.g, self.out_channels, self.images = g, out_channels, images

    def groups(self) -> list:
        """Slices of the batch, ``images`` images each."""
        return [slice(b0, b0 + self.images) for b0 in range(0, self.g.b, self.images)]

    def forward(self, input, kernel):
        g, o = self.g, self.out_channels
        matrix = kernel.reshape(o, -1)
        out = input.new_empty(g.b, o, g.oh, g.ow)
        for group in self.groups():
            image = out[group].view(-1, o, g.patches)
            torch.bmm(matrix.expand(image.shape[0], -1, -1), _unfold(input[group], g), out=image)
        return out

    def vjp(self, input, kernel, grad, needs) -> tuple:
        g, o = self.g, self.out_channels
        matrix = kernel.reshape(o, -1)
        grad_input = input.new_empty(input.shape) if needs[0] else None
        grad_matrix = input.new_zeros(matrix.shape) if needs[1] else None
        for group in self.groups():
            columns = grad[group].reshape(-1, o, g.patches)
            if grad_matrix is not None:
                grad_matrix.addbmm_(columns, _unfold(input[group], g).transpose(1, 2))
            if grad_input is not None:
                col2im(_patch_grads(matrix, columns), (g.h, g.w), *g.unfold_args(), out=grad_input[group])
        return grad_input, (grad_matrix.view(kernel.shape) if grad_matrix is not None else None)


# --- the chunked path: bands of output rows, in unfold's layout -----------------------------------------------------


class ChunkedPath:
    """Per chunk of output rows, ``(o, c·kh·kw) @ (c·kh·kw, rows)`` — the kernel as it is — its patch columns
    gathered into a reused buffer; output (b, o, o_h, o_w) when ``channels_first``, else the (b·patches, o) rows."""

    def __init__(self, g: Windows, out_channels: int, channels_first: bool, chunk_bytes: int) -> None:
        self.g, self.out_channels, self.channels_first = g, out_channels, channels_first
        self.chunk_bytes = chunk_bytes

    def chunks(self, itemsize: int) -> list:
        return _chunks(self.g, itemsize, self.chunk_bytes)

    def forward(self, input, kernel):
        g, o = self.g, self.out_channels
        chunks = self.chunks(input.element_size())
        space = _Workspace(g, o, chunks, input)
        matrix = kernel.reshape(o, g.patch_size)
        out = input.new_empty(g.b, o, g.oh, g.ow) if self.channels_first else input.new_empty(g.b * g.patches, o)
        for chunk in chunks:
            cols = space.gather(input, chunk)
            image = space.image(out, chunk) if self.channels_first else None
            if image is not None:  # one whole image: straight into the output
                torch.mm(matrix, cols, out=image)
            else:
                space.write(torch.mm(matrix, cols, out=space.tile(chunk)), out, chunk, self.channels_first)
        return out

    def vjp(self, input, kernel, grad, needs) -> tuple:
        """The kernel's gradient is summed transposed, (c·kh·kw, o), when a chunk has at least o columns: MKL runs
        that product 10–35% faster, and the turned copy made at the end fits in the chunk buffers freed by then."""
        g, o = self.g, self.out_channels
        chunks = self.chunks(input.element_size())
        transposed = max(_columns(chunk) for chunk in chunks) * g.ow >= o
        grad_input, grad_matrix = self._gradients(input, kernel, grad, chunks, needs, transposed)
        if grad_matrix is None:
            return grad_input, None
        return grad_input, (grad_matrix.t().contiguous() if transposed else grad_matrix).view(kernel.shape)

    def _gradients(self, input, kernel, grad, chunks, needs, transposed: bool) -> tuple:
        """Chunk by chunk: the output gradient's columns, the recomputed patch columns, their products."""
        g, o = self.g, self.out_channels
        space = _Workspace(g, o, chunks, input)
        matrix = kernel.reshape(o, g.patch_size)
        grad_input = input.new_zeros(input.shape) if needs[0] else None
        grad_matrix = input.new_zeros((g.patch_size, o) if transposed else (o, g.patch_size)) if needs[1] else None
        for chunk in chunks:
            columns = space.read(grad, chunk, self.channels_first)
            if grad_matrix is not None:
                cols = space.gather(input, chunk)
                if transposed:
                    grad_matrix.addmm_(cols, columns.t())
                else:
                    grad_matrix.addmm_(columns, cols.t())
            if grad_input is not None:
                space.scatter_add(torch.mm(matrix.t(), columns, out=space.patch_grads(chunk)), grad_input, chunk)
        return grad_input, grad_matrix


def _chunks(g: Windows, itemsize: int, budget: int):
    """(b0, b1, y0, y1) blocks of output rows whose patch columns take at most ``budget`` bytes (at least one output
    row): whole images — as many as fit — else bands of rows of one image."""
    rows = max(g.ow, budget // (g.patch_size * itemsize))
    if rows >= g.patches:
        images = rows // g.patches
        return [(b0, min(g.b, b0 + images), 0, g.oh) for b0 in range(0, g.b, images)]
    band = rows // g.ow
    return [(b, b + 1, y0, min(g.oh, y0 + band)) for b in range(g.b) for y0 in range(0, g.oh, band)]


def _columns(chunk) -> int:
    b0, b1, y0, y1 = chunk
    return (b1 - b0) * (y1 - y0)


class _Workspace:
    """Buffers every chunk of one call reuses: the zero-padded band of input rows it reads, its patch columns (then
    their gradients) (c·kh·kw, rows), and a tile of output (or output gradient) columns (o, rows)."""

    def __init__(self, g: Windows, out_channels: int, chunks, like) -> None:
        self.g, self.out_channels = g, out_channels
        columns = max(_columns(c) for c in chunks) * g.ow
        images = max(b1 - b0 for b0, b1, _, _ in chunks)
        rows = max(self.band_rows(y0, y1) for _, _, y0, y1 in chunks)
        self.band = like.new_zeros(images, g.c, rows, g.w + 2 * g.pw)  # its padding columns stay zero
        self.cols = like.new_empty(g.patch_size * columns)
        self.tiles = like.new_empty(out_channels * columns)
        self._scatter_plans: dict[tuple[int, int, int], list] = {}  # (images, y0, y1) → _scatter_views

    def band_rows(self, y0: int, y1: int) -> int:
        return (y1 - 1 - y0) * self.g.sh + (self.g.kh - 1) * self.g.dh + 1

    def tile(self, chunk):
        return self.tiles[: self.out_channels * _columns(chunk) * self.g.ow].view(self.out_channels, -1)

    def patch_grads(self, chunk):
        """Room for the chunk's patch-column gradients: the patch columns' own buffer, which the weight's gradient
        has read by then."""
        return self.cols[: self.g.patch_size * _columns(chunk) * self.g.ow].view(self.g.patch_size, -1)

    def gather(self, input, chunk):
        """The chunk's patch columns, (c·kh·kw, rows): its input rows copied into the padded band, then one strided
        copy whose inner loop runs along an output row."""
        g, (b0, b1, y0, y1) = self.g, chunk
        band = self.band[: b1 - b0, :, : self.band_rows(y0, y1)]
        top = y0 * g.sh - g.ph  # the input row at band row 0
        r0, r1 = max(0, top), min(g.h, top + band.shape[2])
        band[:, :, : max(0, r0 - top)].zero_()  # padding rows above and below the input
        band[:, :, max(0, r1 - top):].zero_()
        if r1 > r0:
            band[:, :, r0 - top: r1 - top, g.pw: g.pw + g.w].copy_(input[b0:b1, :, r0:r1])
        sn, sc, sy, sx = band.stride()
        view = band.as_strided((g.c, g.kh, g.kw, b1 - b0, y1 - y0, g.ow),
                               (sc, sy * g.dh, sx * g.dw, sn, sy * g.sh, sx * g.sw))
        cols = self.cols[: view.numel()].view(view.shape)
        cols.copy_(view)
        return cols.view(g.patch_size, -1)

    def image(self, tensor, chunk):
        """The (o, patches) view of one image of a (b, o, o_h, o_w) tensor, when the chunk is that whole image."""
        g, (b0, b1, y0, y1) = self.g, chunk
        if b1 - b0 == 1 and y0 == 0 and y1 == g.oh and tensor[b0].is_contiguous():
            return tensor[b0].view(-1, g.patches)
        return None

    def write(self, tile, out, chunk, channels_first: bool) -> None:
        """Put a chunk's (o, rows) output tile in place: in the (b, o, o_h, o_w) image, or the (b·patches, o) rows."""
        g, (b0, b1, y0, y1) = self.g, chunk
        if channels_first:
            out[b0:b1, :, y0:y1].copy_(tile.view(-1, b1 - b0, y1 - y0, g.ow).transpose(0, 1))
        else:
            start = b0 * g.patches + y0 * g.ow
            out[start: start + tile.shape[1]].copy_(tile.t())

    def read(self, grad, chunk, channels_first: bool):
        """A chunk's (o, rows) output-gradient tile (the gradient itself when it can)."""
        g, (b0, b1, y0, y1) = self.g, chunk
        image = self.image(grad, chunk) if channels_first else None
        if image is not None:
            return image
        tile = self.tile(chunk)
        if channels_first:
            tile.view(-1, b1 - b0, y1 - y0, g.ow).copy_(grad[b0:b1, :, y0:y1].transpose(0, 1))
        else:
            start = b0 * g.patches + y0 * g.ow
            tile.copy_(grad[start: start + tile.shape[1]].t())
        return tile

    def scatter_add(self, patch_grads, grad_input, chunk) -> None:
        """Add the chunk's patch-column gradients into ``grad_input`` (col2im): per kernel position, the outputs
        whose input position is inside the input, in one strided add between strided views of the two (both
        contiguous) — views worked out once per chunk shape. (Faster than torch's col2im into a band.)"""
        b0, b1, y0, y1 = chunk
        into_base = grad_input.storage_offset() + b0 * grad_input.stride(0)
        for size, into, into_at, read, read_at in self._scatter_views(b1 - b0, y0, y1):
            target = grad_input.as_strided(size, into, into_base + into_at)
            target.add_(patch_grads.as_strided(size, read, patch_grads.storage_offset() + read_at))

    def _scatter_views(self, images: int, y0: int, y1: int) -> list[tuple]:
        """Per kernel position that reaches inside the input: the (images, c, rows, columns) size, and the strides
        and offset of that block in the input gradient (from its first image) and in the (c, kh, kw, images,
        rows, o_w) patch gradients."""
        if (images, y0, y1) in self._scatter_plans:
            return self._scatter_plans[images, y0, y1]
        g = self.g
        sy, sn = g.ow, (y1 - y0) * g.ow  # the patch gradients' strides
        sj = images * sn
        si, sc = g.kw * sj, g.kh * g.kw * sj
        into = (g.c * g.h * g.w, g.h * g.w, g.w * g.sh, g.sw)
        views = []
        for i in range(g.kh):
            first, last = _inside(y0, y1, g.sh, i * g.dh - g.ph, g.h)
            for j in range(g.kw):
                left, right = _inside(0, g.ow, g.sw, j * g.dw - g.pw, g.w)
                if first >= last or left >= right:
                    continue
                into_at = (first * g.sh + i * g.dh - g.ph) * g.w + left * g.sw + j * g.dw - g.pw
                read_at = i * si + j * sj + (first - y0) * sy + left
                views.append(((images, g.c, last - first, right - left), into, into_at, (sn, sc, sy, 1), read_at))
        self._scatter_plans[images, y0, y1] = views
        return views


def _inside(start: int, stop: int, stride: int, offset: int, size: int) -> tuple[int, int]:
    """The outputs ``start <= y < stop`` whose input position ``y * stride + offset`` is in ``[0, size)``."""
    first = max(start, (-offset + stride - 1) // stride)
    last = min(stop, (size - 1 - offset) // stride + 1)
    return first, last
