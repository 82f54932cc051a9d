"""Common-subexpression elimination: two applications of the same op to the same inputs with the same
arguments compute the same values, so the later one is dropped and its readers read the earlier one's outputs.

Arguments compare as expressions (``permute(0, 2, 1)`` and ``permute(dims=(0, 2, 1))`` are the same), with the
op's defaults filled in. Ops are pure functions of their inputs and arguments — the registry's contract.
"""
from __future__ import annotations

from typing import Any

from graphconv.compiler.passes.rewrite import Rewriter
from graphconv.graph.opgraph import OpNode
from graphconv.syntax.expr import to_source

NAME = "cse"
SUMMARY = "merge repeated applications of an op to the same inputs"


def run(graph: Rewriter) -> list[str]:
    changes: list[str] = []
    seen: dict[Any, OpNode] = {}
    for node_id in graph.op_ids():
        node = graph.op(node_id)
        key = signature(node)
        earlier = seen.get(key)
        if earlier is None or any(graph.is_output(t) for t in node.outputs):
            seen.setdefault(key, node)
            continue
        for duplicate, kept in zip(node.outputs, earlier.outputs):
            graph.redirect(duplicate, kept)
        graph.remove_op(node.id)
        changes.append(f"{node.id} ({node.label}) repeats {earlier.id} ({earlier.label}): removed, its readers read "
                       f"{', '.join(graph.tensor(t).name for t in earlier.outputs)}")
    return changes


def signature(node: OpNode) -> tuple:
    """What makes two op applications compute the same values: the op, the inputs, every argument's value."""
    args = {a.name: repr(a.default) for a in node.op.attrs if not a.required}
    args.update({name: to_source(expr) for name, expr in node.args.items()})
    return id(node.op), node.inputs, tuple(sorted(args.items()))
