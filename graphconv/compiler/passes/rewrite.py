"""A working copy of a spec's op graph that passes edit, and the small questions passes ask of it.

Passes never touch the loaded spec: the first edit makes :class:`Rewriter` copy the graph and every node, passes
replace, add and remove op nodes on the copy, and ``spec()`` returns a new :class:`~graphconv.graph.opgraph.Spec`
(or the spec itself when no pass changed anything). Imports no torch.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import networkx as nx

from graphconv.graph.opgraph import OpNode, Spec, TensorNode
from graphconv.syntax.expr import Const, Expr, evaluate, names, to_source
from graphconv.syntax.expr import Tuple as TupleExpr
from graphconv.syntax.metadata import WILDCARD

class Rewriter:
    def __init__(self, spec: Spec) -> None:
        self.base = spec
        self.graph = spec.graph  # read-only until the first edit copies it
        self.inputs, self.outputs = list(spec.inputs), list(spec.outputs)
        self.order: list[str] | None = list(spec.order)  # op ids in a topological order; None after an edit
        self.changed = False

    # --- reading ----------------------------------------------------------------------------------------------

    def ops(self) -> list[OpNode]:
        """Op nodes in a topological order (``spec()`` orders them by file position at the end)."""
        nodes = self.graph.nodes
        if self.order is None:
            self.order = [n for n in nx.topological_sort(self.graph) if nodes[n]["kind"] == "op"]
        return [nodes[n]["node"] for n in self.order]

    def _position(self, node_id: str) -> str:
        node = self.graph.nodes[node_id]["node"]
        return f"{node.line:09d}:{node.column:06d}:{node_id}"

    def has(self, node_id: str) -> bool:
        return node_id in self.graph

    def op(self, node_id: str) -> OpNode:
        return self.graph.nodes[node_id]["node"]

    def op_ids(self) -> list[str]:
        """Op ids in topological order: passes walk these and look each op up again (an edit replaces nodes)."""
        return [node.id for node in self.ops()]

    def fuse_each(self, op_name: str, fuse: Callable[["Rewriter", OpNode], str | None]) -> list[str]:
        """Offer every op named ``op_name`` still in the graph to ``fuse``; the changes it reports."""
        changes = []
        for node_id in self.op_ids():
            if self.has(node_id) and self.op(node_id).op.name == op_name:
                change = fuse(self, self.op(node_id))
                if change:
                    changes.append(change)
        return changes

    def tensor(self, tensor_id: str) -> TensorNode:
        return self.graph.nodes[tensor_id]["node"]

    def producer(self, tensor_id: str) -> OpNode | None:
        producer = self.tensor(tensor_id).producer
        return self.graph.nodes[producer]["node"] if producer is not None else None

    def consumers(self, tensor_id: str) -> list[OpNode]:
        return [self.graph.nodes[n]["node"] for n in self.graph.successors(tensor_id)]

    def is_output(self, tensor_id: str) -> bool:
        return tensor_id in self.outputs

    def sole_consumer(self, tensor_id: str) -> OpNode | None:
        """The one op that reads ``tensor_id``, if exactly one does and it is not a graph output (so the tensor
        may disappear into a fused op)."""
        readers = self.consumers(tensor_id)
        if len(readers) != 1 or self.is_output(tensor_id):
            return None
        return readers[0]

    def producer_of(self, node: OpNode, position: int, *op_names: str) -> OpNode | None:
        """The producer of ``node``'s input at ``position``, if it is one of ``op_names``."""
        tensor = node.inputs[position]
        producer = self.producer(tensor) if tensor is not None else None
        return producer if producer is not None and producer.op.name in op_names else None

    # --- editing ----------------------------------------------------------------------------------------------

    def edited(self) -> None:
        """Called before every edit: the first one copies the graph and its nodes (the spec stays as it was)."""
        if not self.changed:
            self.graph = self.graph.copy()
            for _, data in self.graph.nodes(data=True):
                data["node"] = copy.copy(data["node"])
                if data["kind"] == "op":
                    data["node"].meta = dict(data["node"].meta)
        self.order, self.changed = None, True

    def add_op(self, node: OpNode) -> OpNode:
        self.edited()
        self.graph.add_node(node.id, kind="op", node=node)
        for tensor in node.inputs:
            if tensor is not None:
                self.graph.add_edge(tensor, node.id)
        for tensor in node.outputs:
            self.graph.add_edge(node.id, tensor)
            self.tensor(tensor).producer = node.id
        return node

    def add_tensor(self, name: str, like: str) -> str:
        """A new tensor for an extra output of a fused op, named ``name`` (``name_2``… where taken) and placed at
        tensor ``like``'s spec position; its id."""
        self.edited()
        taken = {data["node"].name for _, data in self.graph.nodes(data=True) if data["kind"] == "tensor"}
        taken |= set(self.graph)  # ids too
        fresh, count = name, 1
        while fresh in taken:
            count += 1
            fresh = f"{name}_{count}"
        place = self.tensor(like)
        self.graph.add_node(fresh, kind="tensor", node=TensorNode(fresh, fresh, place.line, place.column))
        return fresh

    def replace_op(self, node_id: str, **changes: Any) -> OpNode:
        """Swap an op node for a changed copy (new inputs, op, args…), keeping its id and place."""
        self.edited()
        old = self.graph.nodes[node_id]["node"]
        self.graph.remove_node(node_id)
        return self.add_op(dataclasses.replace(old, **changes))

    def remove_op(self, node_id: str) -> None:
        """Remove an op and the tensors it produced (which nothing may read any more)."""
        self.edited()
        node = self.graph.nodes[node_id]["node"]
        self.graph.remove_node(node_id)
        for tensor in node.outputs:
            self.graph.remove_node(tensor)

    def redirect(self, old: str, new: str) -> None:
        """Every op that reads tensor ``old`` reads ``new`` instead."""
        for reader in self.consumers(old):
            self.replace_op(reader.id, inputs=tuple(new if t == old else t for t in reader.inputs))

    def is_dead(self, node: OpNode) -> bool:
        return not any(self.graph.out_degree(t) or self.is_output(t) for t in node.outputs)

    def remove_if_dead(self, node_id: str) -> list[str]:
        """Remove ``node_id`` if nothing reads its outputs, then its producers that died with it; their ids."""
        removed: list[str] = []
        pending = [node_id]
        while pending:
            current = pending.pop()
            if not self.has(current):
                continue
            node = self.graph.nodes[current]["node"]
            if not self.is_dead(node):
                continue
            producers = [self.tensor(t).producer for t in node.inputs if t is not None]
            self.remove_op(current)
            removed.append(current)
            pending.extend(p for p in producers if p is not None)
        return removed

    def fuse(self, chain: list[OpNode], op: Any, inputs: tuple[str | None, ...], args: dict[str, Expr],
             outputs: tuple[str, ...]) -> OpNode:
        """Replace the ops of ``chain`` with one ``op`` node that reads ``inputs`` and makes ``outputs``."""
        self.edited()
        first = chain[0]
        for node in reversed(chain):
            self.graph.remove_node(node.id)
        for node in chain:
            for tensor in node.outputs:
                if tensor not in outputs and self.has(tensor):
                    self.graph.remove_node(tensor)
        fused = OpNode("+".join(n.id for n in chain), op.name, op, args, inputs, outputs, first.line, first.column,
                       {"fused": [f"{n.id} ({n.label})" for n in chain]})
        return self.add_op(fused)

    def spec(self) -> Spec:
        """The rewritten spec (it takes over this rewriter's graph), its ops in topological order with file position
        breaking ties, so that a fused node sits where its chain began; the spec itself when nothing changed."""
        if not self.changed:
            return self.base
        nodes = self.graph.nodes
        order = [n for n in nx.lexicographical_topological_sort(self.graph, key=self._position)
                 if nodes[n]["kind"] == "op"]
        return dataclasses.replace(self.base, nodes={n: data["node"] for n, data in nodes(data=True)},
                                   inputs=list(self.inputs), outputs=list(self.outputs), order=order)

    # --- what passes ask --------------------------------------------------------------------------------------

    def declared_shape(self, tensor_id: str) -> list[Expr] | None:
        """The spec's declared shape of a tensor (under ``shapes:``, or an input's pattern), if any."""
        meta, name = self.base.meta, self.tensor(tensor_id).name
        return meta.shapes.get(name) or (meta.inputs or {}).get(name)

    def rank(self, tensor_id: str) -> int | None:
        """The tensor's number of dims when the spec says it: a declared shape, or a reshape or permute making it."""
        declared = self.declared_shape(tensor_id)
        if declared is not None:
            return len(declared)
        producer = self.producer(tensor_id)
        if producer is None:
            return None
        if producer.op.shape_attr is not None:  # the output's rank is the shape tuple's length
            shape = producer.args.get(producer.op.shape_attr)
            return len(shape.items) if isinstance(shape, TupleExpr) else None
        if producer.op.name == "permute":
            dims = constant(producer.args.get("dims"))
            return len(dims) if isinstance(dims, tuple) else None
        if producer.op.name == "transpose":
            return self.rank(producer.inputs[0])
        return None


def constant(expr: Expr | None) -> Any:
    """The value of an expression that reads no names; None when it reads any (or is None)."""
    if expr is None or names(expr):
        return None
    return evaluate(expr, {})


def same_expr(a: Expr, b: Expr) -> bool:
    """The same expression, positions ignored (a wildcard ``_`` equals nothing)."""
    return WILDCARD not in names(a) | names(b) and to_source(a) == to_source(b)


def const_tuple(values: tuple, line: int, column: int) -> TupleExpr:
    """A tuple-of-constants expression (for args a pass computes, like a composed permutation)."""
    return TupleExpr(line, column, tuple(Const(line, column, v) for v in values))
