"""View-chain folding: reshape and permute sequences that collapse into one op or cancel out.

- ``reshape(r(x))`` → ``reshape(x)`` when ``r`` only regroups dims (reshape, view, flatten, squeeze, unsqueeze):
  the elements stay in the same row-major order, so only the last shape matters;
- ``permute(p(x))`` → one ``permute(x)`` with the composed order (either may be a transpose of known rank);
- an identity permute, or a reshape to the shape its input is declared with, is dropped (its readers read ``x``).

A tensor that is a graph output is never dropped, and ``view`` is never widened (it may fail where reshape copies).
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, const_tuple, constant, same_expr
from graphconv.graph.opgraph import OpNode
from graphconv.ops import REGISTRY
from graphconv.syntax.expr import Tuple as TupleExpr

NAME = "fold_views"
SUMMARY = "collapse reshape/permute/transpose chains; drop identities"
REGROUPS = ("reshape", "view", "flatten", "squeeze", "unsqueeze")
PERMUTES = ("permute", "transpose")


def run(graph: Rewriter) -> list[str]:
    changes: list[str] = []
    changed = True
    while changed:
        changed = False
        for node_id in graph.op_ids():
            if graph.has(node_id):
                change = fold(graph, graph.op(node_id))
                if change:
                    changes.append(change)
                    changed = True
    return changes


def fold(graph: Rewriter, node: OpNode) -> str | None:
    """Apply the first rule that fits ``node``; a description of the change, or None."""
    if node.op.name == "reshape":
        return fold_reshape(graph, node)
    if node.op.name in PERMUTES:
        return fold_permute(graph, node)
    return None


def fold_reshape(graph: Rewriter, node: OpNode) -> str | None:
    inner = graph.producer_of(node, 0, *REGROUPS)
    if inner is not None:
        graph.replace_op(node.id, inputs=(inner.inputs[0],))
        removed = graph.remove_if_dead(inner.id)
        return f"{node.id} ({node.label}) now reads {_name(graph, inner.inputs[0])} directly{_dropped(removed)}"
    declared = graph.declared_shape(node.inputs[0])
    shape = node.args.get("shape")
    if declared is not None and isinstance(shape, TupleExpr) and len(declared) == len(shape.items) and all(
            same_expr(a, b) for a, b in zip(declared, shape.items)):
        return bypass(graph, node, "reshapes to the shape it already has")
    return None


def fold_permute(graph: Rewriter, node: OpNode) -> str | None:
    order = permutation(graph, node)
    if order is None:
        return None
    if order == tuple(range(len(order))):
        return bypass(graph, node, "is an identity permutation")
    inner = graph.producer_of(node, 0, *PERMUTES)
    inner_order = permutation(graph, inner) if inner is not None else None
    if inner_order is not None and len(inner_order) == len(order):
        composed = tuple(inner_order[i] for i in order)
        graph.replace_op(node.id, op=REGISTRY.get("permute"), inputs=(inner.inputs[0],),
                         args={"dims": const_tuple(composed, node.line, node.column)})
        removed = graph.remove_if_dead(inner.id)
        return (f"{node.id} ({node.label}) ∘ {inner.id} ({inner.label}) → permute{composed}"
                f"{_dropped(removed)}")
    return None


def permutation(graph: Rewriter, node: OpNode) -> tuple[int, ...] | None:
    """The dims order a permute or transpose applies, normalized to non-negative dims; None when not known."""
    if node.op.name == "permute":
        dims = constant(node.args.get("dims"))
        if not isinstance(dims, tuple) or not all(isinstance(d, int) for d in dims):
            return None
        order = tuple(d % len(dims) for d in dims) if dims else ()
        return order if sorted(order) == list(range(len(order))) else None
    rank = graph.rank(node.inputs[0])
    dim0, dim1 = constant(node.args.get("dim0")), constant(node.args.get("dim1"))
    if rank is None or not isinstance(dim0, int) or not isinstance(dim1, int) or not -rank <= min(dim0, dim1):
        return None
    if max(dim0, dim1) >= rank:
        return None
    order = list(range(rank))
    order[dim0 % rank], order[dim1 % rank] = order[dim1 % rank], order[dim0 % rank]
    return tuple(order)


def bypass(graph: Rewriter, node: OpNode, why: str) -> str | None:
    """Drop an op that returns its input unchanged: its readers read the input."""
    (output,) = node.outputs
    if graph.is_output(output):
        return None
    graph.redirect(output, node.inputs[0])
    removed = graph.remove_if_dead(node.id)
    return f"{node.id} ({node.label}) {why}: dropped{_dropped(removed[1:])}"


def _name(graph: Rewriter, tensor_id: str) -> str:
    return graph.tensor(tensor_id).name


def _dropped(removed: list[str]) -> str:
    return f"; {', '.join(removed)} dead, removed" if removed else ""
