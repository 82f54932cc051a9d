"""What a Mermaid flowchart says, and nothing more: nodes, edges, subgraphs, front matter, source positions.

The Diagram knows nothing about ops or tensors; the op graph builder (``graphconv.graph.build``) gives it meaning.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Node:
    """A node: ``id`` as written, ``label`` as displayed (the id when none is given), ``shape`` by Mermaid's name.

    Shapes: ``rect`` ``[ ]``, ``round`` ``( )``, ``circle`` ``(( ))``, ``stadium`` ``([ ])``, ``subroutine``
    ``[[ ]]``, ``cylinder`` ``[( )]``, ``diamond`` ``{ }``, ``hexagon`` ``{{ }}``, ``odd`` ``>]``, ``lean_right``
    ``[/ /]``, ``lean_left`` ``[\\ \\]``, ``trapezoid`` ``[/ \\]``, ``inv_trapezoid`` ``[\\ /]``, ``double_circle``
    ``((( )))``; the ``A@{ shape: … }`` form keeps Mermaid's shape name, with ``circ`` read as ``circle``.
    """

    id: str
    label: str
    shape: str
    line: int
    column: int


@dataclass
class Edge:
    """A link from ``source`` to ``target`` (node or subgraph ids).

    ``kind`` is the stroke and heads in one word: ``arrow`` (-->), ``open`` (---), ``dotted_arrow`` (-.->),
    ``dotted_open`` (-.-), ``thick_arrow`` (==>), ``thick_open`` (===), ``invisible`` (~~~), and for the other
    heads ``circle`` / ``cross`` (--o, --x, with ``dotted_``/``thick_`` prefixes), ``bidirectional`` (<-->, with
    ``dotted_``/``thick_`` prefixes, and ``bidirectional_circle`` / ``bidirectional_cross`` for o--o / x--x).
    ``length`` is 1 for the shortest arrow, more for longer ones (``--->`` is 2).
    """

    source: str
    target: str
    label: str | None
    kind: str
    line: int
    column: int = 0
    id: str | None = None
    length: int = 1


@dataclass
class Subgraph:
    """A ``subgraph id [title]`` … ``end`` block; ``members`` are the node and subgraph ids declared inside it."""

    id: str
    title: str
    members: list[str]
    line: int
    column: int = 0
    direction: str | None = None
    parent: str | None = None


@dataclass
class Diagram:
    """A parsed flowchart. ``front_matter`` is the YAML block (``{}`` when there is none), ``source`` the text it
    came from (the whole file, also for a ```mermaid block inside Markdown), lines and columns 1-based in it."""

    direction: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    subgraphs: list[Subgraph] = field(default_factory=list)
    front_matter: dict[str, Any] = field(default_factory=dict)
    front_matter_line: int | None = None
    source: str = ""
    path: str | None = None
