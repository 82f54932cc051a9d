"""Patch-matmul fusion: ``im2col → matmul(·, weight) [→ reshape(b, o_h, o_w, o) → permute(0, 3, 1, 2)]`` becomes one
``patch_matmul`` op — the convolution as chunked GEMMs over bands of output rows. The patch matrix (kh·kw times
the input) is never made whole; its VJP recomputes each chunk from the saved input. With the reshape and permute
folded in it writes the (b, o, o_h, o_w) output directly and reads its gradient without a transposing copy.

Fires when the patch rows are 2-D (an ``im2col`` with a 2-item ``shape``), the weight is known to be 2-D, and
each intermediate has that one reader and is not a graph output. ``patch_matmul`` (graphconv.ops.fused) checks
the shapes of each call and takes the literal composition when they are not the usual convolution layout.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.fused import CHANNELS_FIRST, patch_matmul
from graphconv.spec.expr import Tuple as TupleExpr

NAME = "patch_matmul"
SUMMARY = "im2col → matmul [→ reshape → permute] as one chunked patch_matmul"


def run(graph: Rewriter) -> list[str]:
    changes = []
    for node_id in graph.op_ids():
        if graph.has(node_id) and graph.op(node_id).op.name == "im2col":
            change = fuse(graph, graph.op(node_id))
            if change:
                changes.append(change)
    return changes


def fuse(graph: Rewriter, cols: OpNode) -> str | None:
    shape = cols.args.get("shape")
    (rows,) = cols.outputs
    matmul = graph.sole_consumer(rows)
    if not (isinstance(shape, TupleExpr) and len(shape.items) == 2 and matmul is not None
            and matmul.op.name == "matmul" and matmul.inputs[0] == rows and matmul.inputs[1] != rows
            and graph.rank(matmul.inputs[1]) == 2):
        return None
    chain, args, (last,) = [cols, matmul], dict(cols.args), matmul.outputs
    tail = _channels_first_tail(graph, last)
    if tail is not None:
        reshape, permute = tail
        chain += [reshape, permute]
        args["out_shape"], args["out_dims"] = reshape.args["shape"], permute.args["dims"]
        (last,) = permute.outputs
    fused = graph.fuse(chain, patch_matmul, (cols.inputs[0], matmul.inputs[1]), args, (last,))
    return f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (patch_matmul): chunked, no patch matrix"


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
