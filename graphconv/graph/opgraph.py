"""The op graph: a DAG of tensor and op nodes, ops resolved and arguments bound — the IR that the compiler, the
shape checker and ``graphconv show`` read. Built by ``graphconv.graph.build``; imports no torch, nor networkx until
``spec.graph`` is read.

``spec.nodes`` maps each id to its :class:`TensorNode` or :class:`OpNode` (an op node lists its input and output
tensor ids). ``spec.graph`` is the same as a networkx DiGraph, made on first use: ``spec.graph.nodes[id]`` has
``kind`` (``"tensor"`` or ``"op"``) and ``node``; an edge runs from each op input to the op and from the op to each
output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from graphconv.ops.registry import Op
from graphconv.syntax.expr import Expr
from graphconv.syntax.metadata import Metadata

if TYPE_CHECKING:
    import networkx as nx


@dataclass
class TensorNode:
    id: str
    name: str
    line: int
    column: int
    producer: str | None = None


@dataclass
class OpNode:
    """One op application: ``op`` with attribute ``args`` (expressions over spec names) on ``inputs``."""

    id: str
    label: str
    op: Op
    args: dict[str, Expr]
    inputs: tuple[str | None, ...]  # tensor ids in parameter order (None: an optional input left out)
    outputs: tuple[str, ...]
    line: int
    column: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Spec:
    """A loaded, validated spec. ``inputs``/``outputs`` are tensor ids in call/return order; ``order`` is the
    op ids in a deterministic topological order (file order breaks ties); ``dim_order`` the derived dims in
    the order they can be computed."""

    name: str
    path: str | None
    source: str
    nodes: dict[str, TensorNode | OpNode]
    inputs: list[str]
    outputs: list[str]
    order: list[str]
    meta: Metadata
    dim_order: list[str]
    _tensor_ids: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)
    _consumers: dict[str, list[str]] | None = field(default=None, init=False, repr=False, compare=False)

    def tensor(self, id: str) -> TensorNode:
        return self.nodes[id]

    def op(self, id: str) -> OpNode:
        return self.nodes[id]

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The op graph as a networkx DiGraph (networkx is imported here, on first use)."""
        import networkx as nx

        graph = nx.DiGraph()
        for node_id, node in self.nodes.items():
            graph.add_node(node_id, kind="op" if isinstance(node, OpNode) else "tensor", node=node)
        for node in self.nodes.values():
            if isinstance(node, OpNode):
                graph.add_edges_from((tensor, node.id) for tensor in node.inputs if tensor is not None)
                graph.add_edges_from((node.id, tensor) for tensor in node.outputs)
        return graph

    def consumers(self, tensor_id: str) -> list[str]:
        """The ids of the ops that read a tensor, in op order."""
        if self._consumers is None:
            self._consumers = {}
            for op in self.ops():
                for tensor in dict.fromkeys(op.inputs):
                    if tensor is not None:
                        self._consumers.setdefault(tensor, []).append(op.id)
        return self._consumers.get(tensor_id, [])

    def ops(self) -> list[OpNode]:
        return [self.op(i) for i in self.order]

    def tensors(self) -> list[TensorNode]:
        """Tensors in execution order: inputs, then each op's outputs."""
        ids = list(self.inputs) + [t for i in self.order for t in self.op(i).outputs]
        return [self.tensor(i) for i in ids]

    def tensor_id(self, name: str) -> str | None:
        if self._tensor_ids is None:  # indexed once: run and show look up every tensor by name
            self._tensor_ids = {}
            for node_id, node in self.nodes.items():
                if isinstance(node, TensorNode):
                    self._tensor_ids.setdefault(node.name, node_id)
        return self._tensor_ids.get(name)

    @property
    def input_names(self) -> list[str]:
        return [self.tensor(i).name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [self.tensor(i).name for i in self.outputs]

    @property
    def attrs(self) -> dict[str, Any]:
        return self.meta.attrs

    def __repr__(self) -> str:
        return (f"<Spec {self.name}: {len(self.order)} ops, inputs {self.input_names}, outputs {self.output_names}>")
