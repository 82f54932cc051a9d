"""YAML specs: the metadata keys at the top level and the graph as a list of op applications.

    title: conv2d
    inputs: {input_batch: [b, in_channels, i_h, i_w], kernel: [out_channels, in_channels, kernel_h, kernel_w]}
    graph:
      - {id: L, op: unfold, inputs: [input_batch], output: U}
      - {id: P, op: compute_output_2D, inputs: {a: U_reshaped, b: kernel_permuted}, output: output_2D}

Each application becomes a circle node and each tensor name a node, so a YAML spec and a Mermaid spec of the
same computation give the same Diagram to the op-graph builder. Read with ``yaml.safe_load`` semantics only.
"""
from __future__ import annotations

from typing import Any

from graphconv.errors import SpecError
from graphconv.syntax.diagram import Diagram, Edge, Node
from graphconv.syntax.expr import show_value
from graphconv.syntax.metadata import KEYS, Metadata, read_metadata
from graphconv.syntax.yaml_source import YamlDoc, load_yaml

APPLICATION_KEYS = ("id", "op", "inputs", "output", "outputs")


def parse_yaml_spec(text: str, path: str | None = None) -> tuple[Diagram, Metadata]:
    """Read a YAML spec into the Diagram a Mermaid drawing of it would give, and its metadata."""
    doc = load_yaml(text, path=path, source=text)
    if not isinstance(doc.data, dict):
        raise SpecError("a YAML spec must be a mapping with a 'graph:' list", path=path, line=1, column=1, source=text)
    reader = _ApplicationReader(doc, path, text)
    for key in doc.data:
        if key not in KEYS + ("graph", "title", "name"):
            raise reader.error(f"unknown key {key!r} in a YAML spec", key)
    block = {k: v for k, v in doc.data.items() if k in KEYS}
    meta = read_metadata(block, doc, (), path=path, source=text, title=doc.data.get("title", doc.data.get("name")))
    diagram = Diagram(direction="TB", source=text, path=path)
    graph = doc.data.get("graph")
    if not isinstance(graph, list) or not graph:
        raise reader.error("'graph:' must be a non-empty list of op applications", "graph")
    for index, application in enumerate(graph):
        reader.add(diagram, application, index)
    return diagram, meta


class _ApplicationReader:
    def __init__(self, doc: YamlDoc, path: str | None, source: str) -> None:
        self.doc, self.path, self.source = doc, path, source

    def error(self, message: str, *key: Any) -> SpecError:
        line, column = self.doc.where(*key)
        return SpecError(message, path=self.path, line=line, column=column, source=self.source)

    def add(self, diagram: Diagram, application: Any, index: int) -> None:
        at = ("graph", index)
        if not isinstance(application, dict) or "op" not in application:
            raise self.error("an op application is a mapping with at least 'op:' (and 'inputs:', 'output:')", *at)
        for key in application:
            if key not in APPLICATION_KEYS:
                raise self.error(f"unknown key {key!r} in an op application", *at, key)
        label = application["op"]
        if not isinstance(label, str):
            raise self.error(f"op: expected an op name or call, got {show_value(label)}", *at, "op")
        op_id = str(application.get("id", f"op{index + 1}"))
        line, column = self.doc.where(*at)
        if op_id in diagram.nodes:
            raise self.error(f"id {op_id!r} is used twice", *at, "id")
        diagram.nodes[op_id] = Node(op_id, label, "circle", line, column)
        for parameter, tensor, key in self.inputs(application.get("inputs"), at):
            line, column = self.doc.where(*key)
            self.add_tensor(diagram, tensor, line, column)
            diagram.edges.append(Edge(tensor, op_id, parameter, "arrow", line, column))
        for tensor, key in self.outputs(application, at):
            line, column = self.doc.where(*key)
            self.add_tensor(diagram, tensor, line, column)
            diagram.edges.append(Edge(op_id, tensor, None, "arrow", line, column))

    def add_tensor(self, diagram: Diagram, name: str, line: int, column: int) -> None:
        node = diagram.nodes.get(name)
        if node is None:
            diagram.nodes[name] = Node(name, name, "rect", line, column)
        elif node.shape == "circle":
            raise self.error(f"{name!r} is both an op id and a tensor name", *self.find(name))

    def find(self, name: str) -> tuple:
        return next((k for k, v in self.doc.positions.items() if k and k[-1] == name), ())

    def inputs(self, value: Any, at: tuple) -> list[tuple[str | None, str, tuple]]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [(None, v, at + ("inputs", i)) for i, v in enumerate(value)]
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return [(str(k), v, at + ("inputs", k)) for k, v in value.items()]
        raise self.error("inputs: expected a tensor name, a list of names, or a mapping parameter: name", *at, "inputs")

    def outputs(self, application: dict, at: tuple) -> list[tuple[str, tuple]]:
        if "output" in application and "outputs" in application:
            raise self.error("give either output: or outputs:, not both", *at, "outputs")
        key = "outputs" if "outputs" in application else "output"
        value = application.get(key)
        if value is None:
            raise self.error("an op application needs 'output:' (a tensor name) or 'outputs:' (a list)", *at)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise self.error(f"{key}: expected a tensor name or a list of names", *at, key)
        return [(v, at + (key, i) if isinstance(value, list) else at + (key,)) for i, v in enumerate(items)]
