"""Patch-matmul fusion: ``im2col → matmul(·, weight) [→ reshape(b, o_h, o_w, o) → permute(0, 3, 1, 2)]`` becomes one
``patch_matmul`` op — the convolution without the patch matrix (kh·kw times the input): lowered to torch's
convolution kernel (``torch.convolution``, its VJP ``aten.convolution_backward``) when a call's shapes make it a
convolution in the usual layout, the VJP reading the saved input and weight. With the reshape and permute folded in
it writes the (b, o, o_h, o_w) image directly; with the kernel's ``reshape(o, c·kh·kw) → permute(1, 0)`` folded in
it reads the kernel as it is and gives the kernel's gradient in its own layout.

Fires when the patch rows are 2-D (an ``im2col`` with a 2-item ``shape``), the weight is 2-D (made by that
kernel branch, or known to be), and each intermediate has that one reader and is not a graph output.
``patch_matmul`` (graphconv.ops.fused) checks the shapes of each call and takes the literal composition when they
are not the usual convolution layout.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.fused import CHANNELS_FIRST, patch_matmul
from graphconv.syntax.expr import Tuple as TupleExpr

NAME = "patch_matmul"
SUMMARY = "[kernel reshape → transpose →] im2col → matmul [→ reshape → permute] as one patch_matmul"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("im2col", fuse)


def fuse(graph: Rewriter, cols: OpNode) -> str | None:
    shape = cols.args.get("shape")
    (rows,) = cols.outputs
    matmul = graph.sole_consumer(rows)
    if not (isinstance(shape, TupleExpr) and len(shape.items) == 2 and matmul is not None
            and matmul.op.name == "matmul" and matmul.inputs[0] == rows and matmul.inputs[1] != rows):
        return None
    chain, args, weight = [cols, matmul], dict(cols.args), matmul.inputs[1]
    kernel = _kernel_branch(graph, weight)
    if kernel is not None:
        reshape, transpose = kernel
        chain = [reshape, transpose] + chain
        args["weight_shape"], weight = reshape.args["shape"], reshape.inputs[0]
    elif graph.rank(weight) != 2:
        return None
    (last,) = matmul.outputs
    tail = _channels_first_tail(graph, last)
    if tail is not None:
        reshape, permute = tail
        chain += [reshape, permute]
        args["out_shape"], args["out_dims"] = reshape.args["shape"], permute.args["dims"]
        (last,) = permute.outputs
    fused = graph.fuse(sorted(chain, key=lambda n: (n.line, n.column)), patch_matmul, (cols.inputs[0], weight), args,
                       (last,))
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (patch_matmul): no patch matrix; "
            "lowered to torch.convolution per call where the shapes are a convolution's")


def _kernel_branch(graph: Rewriter, weight: str) -> tuple[OpNode, OpNode] | None:
    """The ``reshape(o, c·kh·kw) → permute(1, 0)`` that turns a kernel into the matmul's weight, if any: fused in,
    the kernel's gradient comes out in the kernel's own layout, with no view ops around it."""
    transpose = graph.producer(weight)
    if transpose is None or graph.sole_consumer(weight) is None or not _swaps_two_dims(transpose):
        return None
    reshape = graph.producer(transpose.inputs[0])
    if reshape is None or reshape.op.name != "reshape" or graph.sole_consumer(transpose.inputs[0]) is None:
        return None
    shape = reshape.args.get("shape")
    return (reshape, transpose) if isinstance(shape, TupleExpr) and len(shape.items) == 2 else None


def _swaps_two_dims(node: OpNode) -> bool:
    if node.op.name == "permute":
        dims = constant(node.args.get("dims"))
        return isinstance(dims, tuple) and len(dims) == 2 and tuple(d % 2 for d in dims) == (1, 0)
    if node.op.name == "transpose":
        dims = (constant(node.args.get("dim0")), constant(node.args.get("dim1")))
        return all(isinstance(d, int) for d in dims) and sorted(d % 2 for d in dims) == [0, 1] and dims[0] != dims[1]
    return False


def _channels_first_tail(graph: Rewriter, rows: str) -> tuple[OpNode, OpNode] | None:
    """The ``reshape(b, o_h, o_w, o) → permute(0, 3, 1, 2)`` that turns the output rows into an image, if any."""
    reshape = graph.sole_consumer(rows)
    if reshape is None or reshape.op.name != "reshape":
        return None
    shape = reshape.args.get("shape")
    permute = graph.sole_consumer(reshape.outputs[0])
    if not (isinstance(shape, TupleExpr) and len(shape.items) == 4 and permute is not None
            and permute.op.name == "permute"):
        return None
    dims = constant(permute.args.get("dims"))
    if not isinstance(dims, tuple) or len(dims) != 4 or tuple(d % 4 for d in dims) != CHANNELS_FIRST:
        return None
    return reshape, permute
