"""Window-reduction fusion: a reduction over sliding windows becomes one op lowered to torch's pooling kernel
(graphconv.ops.pooling), where the windows' view — or its products — would be reduced op by op:

- ``windows → max(dim=5) → max(dim=4)`` (the row maxima, then their maximum) becomes ``window_max``, whose second
  output — the indices its VJP routes the gradient by — is a new tensor that nothing else reads;
- ``windows → mean`` / ``sum`` over the two window dims (4 and 5) becomes ``window_mean`` / ``window_sum``;
- ``unfold → reshape(b, c, kh·kw, patches) → mean(dim=2) [→ reshape(b, c, o_h, o_w)]`` becomes ``unfold_mean``;
- ``reshape(b, c, h/kh, kh, w/kw, kw) → mean(dim=(3, 5))`` becomes ``block_mean``.

Fires when the reductions' dims and ``keepdim`` are constants and each intermediate tensor has that one reader and
is not a graph output. Every attr passes through as the spec wrote it, so what the pass cannot know — a dilation
(the average kernel has none), a pad value other than the kernel's, a reshape that does not cut the image into
blocks — the fused op checks per call, padding explicitly or running the literal composition. Not fused:
``max(dim=4) → max(dim=5)`` (its gradient goes to the first maximum in column-major order, the kernel's in
row-major) and ``amax`` (it splits the gradient between tied maxima, the kernel picks one).
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode, TensorNode
from graphconv.ops.pooling import block_mean, unfold_mean, window_max, window_mean, window_sum
from graphconv.syntax.expr import Const, Expr
from graphconv.syntax.expr import Tuple as TupleExpr

NAME = "window_reduce"
SUMMARY = "windows → max → max, windows or unfold → mean/sum, reshape into blocks → mean as one pooling op"
WINDOW_DIMS = {4, 5}  # windows' (b, c, o_h, o_w, kh, kw): the window's own dims
BLOCK_DIMS = {3, 5}  # (b, c, h/kh, kh, w/kw, kw): a block's dims
AVERAGES = {"mean": window_mean, "sum": window_sum}


def run(graph: Rewriter) -> list[str]:
    return (graph.fuse_each("windows", fuse_windows) + graph.fuse_each("unfold", fuse_unfold)
            + graph.fuse_each("reshape", fuse_blocks))


def fuse_windows(graph: Rewriter, node: OpNode) -> str | None:
    (view,) = node.outputs
    reduce = graph.sole_consumer(view)
    if reduce is None or not _drops_dims(reduce):
        return None
    args = _window_args(node)
    if reduce.op.name in AVERAGES and _reduced(reduce, 6) == WINDOW_DIMS:
        fused = graph.fuse([node, reduce], AVERAGES[reduce.op.name], node.inputs, args, reduce.outputs)
        return _report([node, reduce], fused, "no window copy")
    if reduce.op.name != "max" or _reduced(reduce, 6) != {5}:
        return None
    (rows,) = reduce.outputs
    outer = graph.sole_consumer(rows)
    if outer is None or outer.op.name != "max" or not _drops_dims(outer) or _reduced(outer, 5) != {4}:
        return None
    chain = [node, reduce, outer]
    indices = _new_tensor(graph, f"{'+'.join(n.id for n in chain)}_indices", outer)
    fused = graph.fuse(chain, window_max, node.inputs, args, (outer.outputs[0], indices))
    return _report(chain, fused, f"no window view; backward keeps the indices ({indices})")


def fuse_unfold(graph: Rewriter, node: OpNode) -> str | None:
    (columns,) = node.outputs
    reshape = graph.sole_consumer(columns)
    if reshape is None or reshape.op.name != "reshape" or _tuple_length(reshape.args.get("shape")) != 4:
        return None
    mean = graph.sole_consumer(reshape.outputs[0])
    if mean is None or mean.op.name != "mean" or not _drops_dims(mean) or _reduced(mean, 4) != {2}:
        return None
    chain, args, last = [node, reshape, mean], {**node.args, "shape": reshape.args["shape"]}, mean.outputs
    image = graph.sole_consumer(last[0])
    if image is not None and image.op.name == "reshape" and _tuple_length(image.args.get("shape")) == 4:
        chain.append(image)
        args["out_shape"], last = image.args["shape"], image.outputs
    fused = graph.fuse(chain, unfold_mean, node.inputs, args, last)
    return _report(chain, fused, "avg_pool2d where the reshapes make per-channel windows; no patch matrix")


def fuse_blocks(graph: Rewriter, node: OpNode) -> str | None:
    (blocks,) = node.outputs
    mean = graph.sole_consumer(blocks)
    if (_tuple_length(node.args.get("shape")) != 6 or mean is None or mean.op.name != "mean" or not _drops_dims(mean)
            or _reduced(mean, 6) != BLOCK_DIMS):
        return None
    fused = graph.fuse([node, mean], block_mean, node.inputs, {"shape": node.args["shape"]}, mean.outputs)
    return _report([node, mean], fused, "avg_pool2d where the reshape cuts the image into blocks")


def _tuple_length(expr: Expr | None) -> int | None:
    """The number of items of an attr written as a tuple (None for anything else)."""
    return len(expr.items) if isinstance(expr, TupleExpr) else None


def _window_args(node: OpNode) -> dict[str, Expr]:
    """The windows' attrs, its pad value written out (the fused ops' defaults are their kernels' pad values)."""
    args = dict(node.args)
    args.setdefault("value", Const(node.line, node.column, node.op.attr("value").default))
    return args


def _drops_dims(node: OpNode) -> bool:
    keepdim = node.args.get("keepdim")
    return keepdim is None or constant(keepdim) is False


def _reduced(node: OpNode, rank: int) -> set[int] | None:
    """The dims a reduction of a ``rank``-dim tensor reduces, when its ``dim`` is a constant (None otherwise)."""
    dim = constant(node.args.get("dim"))
    dims = dim if isinstance(dim, tuple) else (dim,)
    if not dims or not all(isinstance(d, int) and -rank <= d < rank for d in dims):
        return None
    return {d % rank for d in dims}


def _new_tensor(graph: Rewriter, name: str, near: OpNode) -> str:
    """Add a tensor no spec name or id uses (the fused op's extra output) and return its id."""
    taken = set(graph.graph.nodes) | {data["node"].name for _, data in graph.graph.nodes(data=True)
                                      if data["kind"] == "tensor"}
    tensor_id, suffix = name, 2
    while tensor_id in taken:
        tensor_id, suffix = f"{name}_{suffix}", suffix + 1
    graph.edited()
    graph.graph.add_node(tensor_id, kind="tensor", node=TensorNode(tensor_id, tensor_id, near.line, near.column))
    return tensor_id


def _report(chain: list[OpNode], fused: OpNode, what: str) -> str:
    return f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} ({fused.op.name}): {what}"
