"""The op graph: a networkx DAG of tensor and op nodes, ops resolved and arguments bound — the IR that the
compiler, the shape checker and ``graphconv show`` read. Built by ``graphconv.graph.build``; imports no torch.

``spec.graph.nodes[id]`` has ``kind`` (``"tensor"`` or ``"op"``) and ``node`` (a :class:`TensorNode` or
:class:`OpNode`); an edge runs from each op input to the op and from the op to each output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from graphconv.ops.registry import Op
from graphconv.syntax.expr import Expr
from graphconv.syntax.metadata import Metadata


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
    graph: nx.DiGraph
    inputs: list[str]
    outputs: list[str]
    order: list[str]
    meta: Metadata
    dim_order: list[str]
    _tensor_ids: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def tensor(self, id: str) -> TensorNode:
        return self.graph.nodes[id]["node"]

    def op(self, id: str) -> OpNode:
        return self.graph.nodes[id]["node"]

    def ops(self) -> list[OpNode]:
        return [self.op(i) for i in self.order]

    def tensors(self) -> list[TensorNode]:
        """Tensors in execution order: inputs, then each op's outputs."""
        ids = list(self.inputs) + [t for i in self.order for t in self.op(i).outputs]
        return [self.tensor(i) for i in ids]

    def tensor_id(self, name: str) -> str | None:
        if self._tensor_ids is None:  # indexed once: run and show look up every tensor by name
            self._tensor_ids = {}
            for node_id, data in self.graph.nodes(data=True):
                if data["kind"] == "tensor":
                    self._tensor_ids.setdefault(data["node"].name, node_id)
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

    @property
    def example_shapes(self) -> dict[str, tuple]:
        """Whole input shapes the ``example`` gives (for inputs without a pattern): input name → sizes."""
        dims = set(self.meta.symbols()) | set(self.meta.attrs)
        return {name: tuple(value) for name, value in self.meta.example.items()
                if name not in dims and name in self.input_names}

    @property
    def example_dims(self) -> dict[str, Any]:
        """The ``example``'s input dims (a group of dims as a tuple), without its attrs and whole shapes."""
        return {name: tuple(value) if isinstance(value, list) else value for name, value in self.meta.example.items()
                if name in self.meta.symbols()}

    def __repr__(self) -> str:
        return (f"<Spec {self.name}: {len(self.order)} ops, inputs {self.input_names}, outputs {self.output_names}>")
