"""A loaded spec drawn again, each data edge labelled with the shape of the tensor it carries: as Mermaid (for
any Mermaid viewer; it loads back through ``graphconv.load`` to the same op graph) or as Graphviz DOT.

The op graph gives the meaning (ops, tensors, which input an edge feeds); the :class:`Diagram` the spec was read
from gives the layout: direction, node shapes and subgraphs. Styling, classes and clicks are not carried over.
Edge labels follow the builder's rule: a label that starts with a name binds an op parameter (``a: [m, k]``), one
that does not (``[m, k]``) only annotates — so an op with several inputs gets ``param: shape`` labels and binds
exactly as before. Imports no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from graphconv.graph.opgraph import Spec
from graphconv.graph.render_yaml import dump, metadata_data
from graphconv.syntax.diagram import Diagram, Node, Subgraph
from graphconv.syntax.expr import to_source

MERMAID_SHAPES = {
    "rect": ("[", "]"), "round": ("(", ")"), "circle": ("((", "))"), "stadium": ("([", "])"),
    "subroutine": ("[[", "]]"), "cylinder": ("[(", ")]"), "diamond": ("{", "}"), "hexagon": ("{{", "}}"),
    "odd": (">", "]"), "lean_right": ("[/", "/]"), "lean_left": ("[\\", "\\]"), "trapezoid": ("[/", "\\]"),
    "inv_trapezoid": ("[\\", "/]"), "double_circle": ("(((", ")))"),
}
DOT_SHAPES = {
    "rect": "box", "round": "box", "circle": "circle", "stadium": "box", "subroutine": "box", "cylinder": "cylinder",
    "diamond": "diamond", "hexagon": "hexagon", "odd": "cds", "lean_right": "parallelogram",
    "lean_left": "parallelogram", "trapezoid": "trapezium", "inv_trapezoid": "invtrapezium",
    "double_circle": "doublecircle",
}
DOT_RANKDIR = {"TB": "TB", "TD": "TB", "BT": "BT", "LR": "LR", "RL": "RL"}
PLAIN_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENTITY_START = re.compile(r"#(?=\w+;)")  # a '#' that Mermaid would read as the start of an entity code (#quot;)
MERMAID_KEYWORDS = {"end", "graph", "flowchart", "subgraph", "direction", "style", "classDef", "class", "click",
                    "linkStyle", "default", "call", "href", "callback"}


@dataclass
class DataEdge:
    """An edge as drawn: from a tensor or op node to an op or tensor node, with its label (or None)."""

    source: str
    target: str
    label: str | None


def symbolic_labels(spec: Spec) -> dict[str, str]:
    """Tensor id → its declared shape as the spec writes it (``[b, patch_size, patches]``), where it has one."""
    labels = {}
    for tensor in spec.tensors():
        declared = spec.meta.shapes.get(tensor.name) or (spec.meta.inputs or {}).get(tensor.name)
        if declared is not None:
            labels[tensor.id] = "[" + ", ".join(to_source(entry) for entry in declared) + "]"
    return labels


def data_edges(spec: Spec, diagram: Diagram, labels: dict[str, str]) -> list[DataEdge]:
    """Every data edge in op order: each op's inputs (in parameter order), then its outputs. A tensor the diagram
    leaves unnamed (an op feeding an op) is drawn as the op → op edge it was."""
    edges = []
    for op in spec.ops():
        named = len(op.op.inputs) > 1 and not op.op.variadic_inputs
        for index, tensor_id in enumerate(op.inputs):
            if tensor_id is None:  # an optional input left out
                continue
            source = tensor_id if tensor_id in diagram.nodes else spec.tensor(tensor_id).producer
            parts = (op.op.inputs[index] if named else None, labels.get(tensor_id))
            edges.append(DataEdge(source, op.id, ": ".join(p for p in parts if p) or None))
        for tensor_id in op.outputs:
            if tensor_id in diagram.nodes:
                edges.append(DataEdge(op.id, tensor_id, labels.get(tensor_id)))
    return edges


def _nodes_in_order(diagram: Diagram) -> list[Node]:
    return sorted(diagram.nodes.values(), key=lambda n: (n.line, n.column))


def _front_matter(spec: Spec, diagram: Diagram) -> str:
    """The diagram's own front matter, as written (comments and all); for a spec that had none (a YAML spec),
    the title and metadata written back — or nothing, when there is none."""
    if diagram.front_matter_line is not None:
        lines = diagram.source.splitlines()[diagram.front_matter_line - 1:]
        end = next((i for i, line in enumerate(lines) if line.strip() == "---"), len(lines))
        return "---\n" + "".join(line + "\n" for line in lines[:end]) + "---\n"
    data: dict[str, Any] = {"title": spec.meta.title} if spec.meta.title is not None else {}
    meta = metadata_data(spec.meta)
    if meta:
        data["graphconv"] = meta
    return "---\n" + dump(data) + "---\n" if data else ""


def mermaid_text(text: str) -> str:
    """A node or edge label: bare when it is a plain name, else quoted, with Mermaid's entity codes for what it
    would misread: ``"`` as ``#quot;`` (it has no other escape), and a ``#`` that starts an entity code as ``#35;``
    (``a#quot;b`` stays those seven characters when read back)."""
    if PLAIN_LABEL.fullmatch(text) and text not in MERMAID_KEYWORDS:
        return text
    return '"' + ENTITY_START.sub("#35;", text).replace('"', "#quot;") + '"'


def mermaid_ids(diagram: Diagram) -> dict[str, str]:
    """Node id → the id to write: itself, unless Mermaid would misread it (``end``, ``my tensor`` from a YAML
    spec), then ``n1``, ``n2``, …"""
    taken = set(diagram.nodes) | {s.id for s in diagram.subgraphs}
    ids, counter = {}, 0
    for node_id in diagram.nodes:
        if PLAIN_LABEL.fullmatch(node_id) and node_id not in MERMAID_KEYWORDS:
            ids[node_id] = node_id
            continue
        counter += 1
        while f"n{counter}" in taken:
            counter += 1
        ids[node_id] = f"n{counter}"
    return ids


def _mermaid_node(node: Node, node_id: str) -> str:
    shape = MERMAID_SHAPES.get(node.shape)
    if shape is None:  # a shape only the @{ shape: … } form names
        return f'{node_id}@{{ shape: {node.shape}, label: {mermaid_text(node.label)} }}'
    if node.shape == "rect" and node.label == node_id:
        return node_id
    return f"{node_id}{shape[0]}{mermaid_text(node.label)}{shape[1]}"


def _mermaid_subgraph(subgraph: Subgraph, children: dict[str | None, list[Subgraph]], ids: dict[str, str],
                      indent: str) -> list[str]:
    title = f"[{mermaid_text(subgraph.title)}]" if subgraph.title and subgraph.title != subgraph.id else ""
    lines = [f"{indent}subgraph {subgraph.id}{title}"]
    if subgraph.direction:
        lines.append(f"{indent}  direction {subgraph.direction}")
    nested = {s.id for s in children.get(subgraph.id, [])}
    members = [ids[member] for member in subgraph.members if member not in nested]
    if members:
        lines.append(f"{indent}  {' & '.join(members)}")
    for child in children.get(subgraph.id, []):
        lines += _mermaid_subgraph(child, children, ids, indent + "  ")
    lines.append(f"{indent}end")
    return lines


def _children(diagram: Diagram) -> dict[str | None, list[Subgraph]]:
    children: dict[str | None, list[Subgraph]] = {}
    for subgraph in diagram.subgraphs:
        children.setdefault(subgraph.parent, []).append(subgraph)
    return children


def to_mermaid(spec: Spec, diagram: Diagram, labels: dict[str, str]) -> str:
    """The spec as a Mermaid flowchart with front matter; ``labels`` maps tensor ids to edge labels."""
    ids = mermaid_ids(diagram)
    lines = [f"graph {diagram.direction}"]
    lines += [f"  {_mermaid_node(node, ids[node.id])}" for node in _nodes_in_order(diagram)]
    children = _children(diagram)
    for subgraph in children.get(None, []):
        lines += [""] + _mermaid_subgraph(subgraph, children, ids, "  ")
    lines.append("")
    for edge in data_edges(spec, diagram, labels):
        arrow = f"-->|{mermaid_text(edge.label)}|" if edge.label else "-->"
        lines.append(f"  {ids[edge.source]} {arrow} {ids[edge.target]}")
    return _front_matter(spec, diagram) + "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_subgraph(subgraph: Subgraph, children: dict[str | None, list[Subgraph]], indent: str) -> list[str]:
    lines = [f"{indent}subgraph {_dot_id('cluster_' + subgraph.id)} {{", f"{indent}  label={_dot_id(subgraph.title)};"]
    nested = {s.id for s in children.get(subgraph.id, [])}
    members = [_dot_id(member) for member in subgraph.members if member not in nested]
    if members:
        lines.append(f"{indent}  {'; '.join(members)};")
    for child in children.get(subgraph.id, []):
        lines += _dot_subgraph(child, children, indent + "  ")
    lines.append(f"{indent}}}")
    return lines


def to_dot(spec: Spec, diagram: Diagram, labels: dict[str, str]) -> str:
    """The spec as a Graphviz digraph: ops as circles, tensors in their diagram shapes, subgraphs as clusters."""
    lines = [f"digraph {_dot_id(spec.name)} {{", f"  rankdir={DOT_RANKDIR.get(diagram.direction, 'TB')};",
             '  graph [fontname="Helvetica"];', '  node [fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];']
    for node in _nodes_in_order(diagram):
        shape = DOT_SHAPES.get(node.shape, "box")
        style = ", style=rounded" if node.shape in ("round", "stadium") else ""
        lines.append(f"  {_dot_id(node.id)} [label={_dot_id(node.label)}, shape={shape}{style}];")
    children = _children(diagram)
    for subgraph in children.get(None, []):
        lines += _dot_subgraph(subgraph, children, "  ")
    for edge in data_edges(spec, diagram, labels):
        label = f" [label={_dot_id(edge.label)}]" if edge.label else ""
        lines.append(f"  {_dot_id(edge.source)} -> {_dot_id(edge.target)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"
