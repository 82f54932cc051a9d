"""Read a Mermaid flowchart (bare, or the first ```mermaid block of a Markdown file) into a ``Diagram``.

Mermaid 11 is the reference: what it accepts in a flowchart parses here with the same nodes, edges and subgraphs,
and what it rejects is a ``SpecError`` pointing at the spot. Three steps:

1. The text lark sees: the Markdown block (preceded by empty lines, so line numbers stay the file's), without a
   leading byte-order mark, the YAML front matter, ``%%{init}%%`` directives and whole-line ``%%`` comments (Mermaid
   removes them with regexes before lexing too; here they are blanked, keeping their line breaks), and with the
   ``="…"`` of HTML tags written ``='…'`` (Mermaid's preprocessing does the same).
2. ``mermaid.lark`` (LALR, contextual lexer) with ``MermaidTransformer`` running inside the parser: each rule
   becomes a small record (``_Vertex``, ``_Link``, ``_Chain``, ``_Block`` ...).
3. ``_Builder`` replays those records in source order, with the rules of Mermaid's FlowDB: the last declared shape
   wins, an edge id is not a node, a node belongs to the first subgraph that closes around it.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, UnexpectedToken

from graphconv.errors import SpecError
from graphconv.syntax.diagram import Diagram, Edge, Node, Subgraph
from graphconv.syntax.grammar import open_grammar
from graphconv.syntax.markdown import find_mermaid_block, is_markdown
from graphconv.syntax.yaml_source import safe_load

_LINE_BREAK = re.compile(r"\r\n?")
_BYTE_ORDER_MARK = "\ufeff"
# Mermaid's cleanupText (preprocess.ts): in `<tag …>`, `x="y"` becomes `x='y'`, so that a quote inside an HTML tag
# of an unquoted label does not open a string. Its regex is /<(\w+)([^>]*)>/ with JavaScript's ASCII \w.
_HTML_TAG_NAME = re.compile(r"<[A-Za-z0-9_]+")
_DOUBLE_QUOTED_VALUE = re.compile(r'="([^"]*)"')
# Mermaid's own front matter regex (diagram-api/regexes.ts), anchored where the diagram starts.
_FRONT_MATTER = re.compile(r"-{3}\s*\n(.*?)\n-{3}\s*\n+", re.S)
_COMMENT = re.compile(r"^[ \t]*%%(?!\{)[^\n]+", re.M)
_ENTITY = re.compile(r"#(\w+);")
# Words Mermaid's lexer reads as keywords (its rules are `style\b`, `end\b` ..., so `end-x` is `end` too).
_KEYWORDS = ("end|style|linkStyle|interpolate|classDef|class|graph|flowchart|subgraph|swimlane-beta"
             "|_self|_blank|_parent|_top")
# In an id, `click`, `call` and `href` are keywords too when whitespace follows them.
_KEYWORD_ID = re.compile(rf"({_KEYWORDS})(?![A-Za-z0-9_])|(click|call|href)$")
# A property of `B[|field:value|text]` is one NODE_STRING: no keyword, nor the `default` and `v` tokens.
_PROPERTY_KEYWORD = re.compile(rf"(?:{_KEYWORDS}|default|v)(?![A-Za-z0-9_])")
# The tokens Mermaid's lexer cuts an id into, in the order of its rules (the first that matches wins): a keyword
# is read at the start of each, so `a:end` and `1end` are refused while `a-end` and `a#end` are ids.
_ID_TOKEN = re.compile(r"default(?![A-Za-z0-9_])|[0-9]+|[#:&,*]|v(?![A-Za-z0-9_])"
                       r"|(?:[A-Za-z0-9!#$%&'*+.`?\\_/]|-(?=[^>\-.]))+|.", re.S)

_SHAPES = {
    ("[", "]"): "rect", ("(", ")"): "round", ("((", "))"): "circle", ("(((", ")))"): "double_circle",
    ("([", "])"): "stadium", ("[[", "]]"): "subroutine", ("[(", ")]"): "cylinder", ("{", "}"): "diamond",
    ("{{", "}}"): "hexagon", (">", "]"): "odd", ("[/", "/]"): "lean_right", ("[\\", "\\]"): "lean_left",
    ("[/", "\\]"): "trapezoid", ("[\\", "/]"): "inv_trapezoid", ("[|", "]"): "rect",
}
_CLOSERS = {opener: closer for opener, closer in _SHAPES}
_CLOSERS |= {"[/": "/]` or `\\]", "[\\": "\\]` or `/]", "(-": "-)", "|": "|"}
_DIRECTION_ALIASES = {"<": "RL", ">": "LR", "^": "BT", "v": "TB"}
_STROKE_PREFIX = {"normal": "", "dotted": "dotted_", "thick": "thick_"}
_START_HEADS = {"<": "point", "x": "cross", "o": "circle"}
_END_HEADS = {">": "point", "x": "cross", "o": "circle"}
_HEAD_CHAR_AT_START = {head: char for char, head in _START_HEADS.items()}
_MAX_LINK_LENGTH = 10  # Mermaid clips longer links
_MAX_SUBGRAPH_DEPTH = 100  # deeper nesting is refused: the builder recurses once per level

# Shape names Mermaid 11 accepts in `A@{ shape: ... }` (lowercase, no `_`: its flowDb rejects the others).
_DATA_SHAPES = frozenset("""
    anchor bang bolt bow-rect bow-tie-rectangle brace brace-l brace-r braces browser bucket card choice circ circle
    cloud collate com-link comment composite console cross-circ crossed-circle curv-trap curved-trapezoid cyl
    cylinder das data-store database datastore db dbl-circ decision delay diam diamond directory disk display
    div-proc div-rect divided-process divided-rectangle doc docs document documents double-circle doublecircle
    event extract f-circ filled-circle flag flip-tri flipped-triangle folder fork fr-circ fr-rect framed-circle
    framed-rectangle h-cyl half-rounded-rectangle hex hexagon horizontal-cylinder hourglass icon in-out
    internal-storage inv-trapezoid join junction lean-l lean-left lean-r lean-right lightning-bolt lin-cyl lin-doc
    lin-proc lin-rect lined-cylinder lined-document lined-process lined-rectangle loop-limit manual manual-file
    manual-input notch-pent notch-rect notched-pentagon notched-rectangle note odd out-in paper-tape person pill
    prepare priority proc process processes procs question rect rectangle rounded shaded-process sl-rect
    sloped-rectangle sm-circ small-circle st-doc st-rect stacked-document stacked-rectangle stadium start state stop
    stored-data subproc subprocess subroutine summary tag-doc tag-proc tag-rect tagged-document tagged-process
    tagged-rectangle terminal text trap-b trap-t trapezoid trapezoid-bottom trapezoid-top tri triangle win-pane
    window-pane
""".split())


def parse_diagram(text: str, path: str | None = None) -> Diagram:
    """Parse a Mermaid flowchart, optionally with YAML front matter, or the first ```mermaid block of Markdown.

    Positions (1-based) are in ``text`` as a whole; ``Diagram.source`` is ``text``. Raises ``SpecError``.
    """
    code, first_line = _diagram_code(text, path)
    try:
        code = _quote_tag_attributes(code)
        front_matter, front_matter_line, code = _front_matter(code, first_line)
        code = _blank_comments(code)
        diagram = _PARSER.parse(code)
    except UnexpectedInput as error:
        raise _syntax_error(error, code).located(path=path, source=text) from None
    except SpecError as error:
        raise error.located(path=path, source=text) from None
    diagram.front_matter, diagram.front_matter_line = front_matter, front_matter_line
    diagram.source, diagram.path = text, path
    return diagram


# ---------------------------------------------------------------- step 1: the text lark sees


def _diagram_code(text: str, path: str | None) -> tuple[str, int]:
    """The diagram's text with ``\\n`` line breaks, preceded by empty lines up to where it starts in the file.

    A leading byte-order mark is dropped: it marks the file's encoding, it is no text (columns on the first line
    are counted after it, as editors do).
    """
    code = _LINE_BREAK.sub("\n", text.removeprefix(_BYTE_ORDER_MARK))
    if not is_markdown(code, path):
        return code, 1
    block = find_mermaid_block(code, path)
    return "\n" * (block.line - 1) + code[block.start:block.end], block.line


def _quote_tag_attributes(code: str) -> str:
    """``code`` with ``="…"`` written ``='…'`` inside each HTML tag, as Mermaid's cleanupText does before parsing
    (over the whole text, front matter included). Same length, so every position stays the same.

    Each tag's end is found with ``str.find``: the regex ``<(\\w+)([^>]*)>`` would scan to the end of the text again
    from every ``<word`` that no ``>`` follows (quadratic). Once one has no ``>`` after it, no later one has.
    """
    pieces, at = [], 0
    while (tag := _HTML_TAG_NAME.search(code, at)) and (end := code.find(">", tag.end())) != -1:
        pieces += [code[at:tag.end()], _DOUBLE_QUOTED_VALUE.sub(r"='\1'", code[tag.end():end])]
        at = end
    return "".join(pieces) + code[at:]


def _front_matter(code: str, first_line: int) -> tuple[dict[str, Any], int | None, str]:
    """The YAML front matter starting right at ``first_line`` (as Mermaid: nothing before it), its first line,
    and ``code`` with it blanked out."""
    start = first_line - 1
    match = _FRONT_MATTER.match(code, start)
    if match is None:
        if code.startswith("---", start):
            raise SpecError("the front matter opened by `---` is never closed by a `---` line",
                            line=first_line, column=1)
        return {}, None, code
    yaml_line = first_line + code.count("\n", start, match.start(1))
    data = _load_yaml(match.group(1), yaml_line)
    return data, yaml_line, code[:match.start()] + "\n" * match.group().count("\n") + code[match.end():]


def _load_yaml(text: str, line: int) -> dict[str, Any]:
    try:
        data = safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        raise SpecError(
            f"invalid YAML in the front matter: {error.problem}",
            line=line + mark.line if mark else line, column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML in the front matter: {error}", line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"the front matter must be a YAML mapping (`key: value` lines), not a {type(data).__name__}",
                        line=line, column=1)
    return data


def _blank_comments(code: str) -> str:
    """Blank ``%%{...}%%`` directives (kept: their line breaks, so positions hold) and whole-line ``%%`` comments.

    Mermaid drops only comment *lines*; a ``%%`` after a statement is a syntax error there, and here too.
    Directives are found with ``str.find``, not a lazy regex from ``%%{`` to ``}%%``: that one scans the rest of
    the text again from every ``%%{`` that is never closed (quadratic: 20 000 of them took seconds).
    """
    pieces, at = [], 0
    while (start := code.find("%%{", at)) != -1 and (end := code.find("}%%", start + 3)) != -1:
        pieces += [code[at:start], re.sub(r"[^\n]", " ", code[start:end + 3])]
        at = end + 3
    return _COMMENT.sub("", "".join(pieces) + code[at:])


# ---------------------------------------------------------------- step 2: grammar rules -> records


@dataclass
class _Vertex:
    token: Token
    shape: str | None = None
    label: str | None = None
    data: dict[str, Any] | None = None


@dataclass
class _Link:
    token: Token
    kind: str
    length: int
    label: str | None
    id: str | None


@dataclass
class _Chain:
    groups: list[list[_Vertex]]
    links: list[_Link]


@dataclass
class _Block:
    token: Token
    id: str | None
    title: str
    body: list[Any]


@dataclass
class _Direction:
    value: str


@dataclass
class _LinkStyle:
    token: Token
    indexes: list[int]


def _ignore(self: Transformer, *children: Any) -> None:
    """Statements that only style the drawing: read, checked by the grammar, and dropped."""
    return None


@v_args(inline=True)
class MermaidTransformer(Transformer):
    """One method per rule of ``mermaid.lark``; ``start`` hands the records to ``_Builder``.

    Positions come from the tokens (``Token.line``/``column``), as the tree-less LALR mode has no ``meta``.
    """

    def start(self, direction: str, *statements: Any) -> Diagram:
        return _Builder(direction).build(statements)

    def header(self, graph: Token, direction: Token | None = None) -> str:
        return _DIRECTION_ALIASES.get(direction, str(direction)) if direction else "TB"

    def chain(self, *parts: Any) -> _Chain:
        groups = [group if isinstance(group, list) else [group] for group in parts[0::2]]
        return _Chain(groups=groups, links=list(parts[1::2]))

    def vertex_group(self, *vertices: _Vertex) -> list[_Vertex]:
        return list(vertices)

    def vertex(self, token: Token, *parts: Any) -> _Vertex:
        _check_node_id(token, followed_by_space=not parts)
        vertex = _Vertex(token)
        for part in parts:
            if isinstance(part, dict):
                vertex.data = part
            else:
                vertex.shape, vertex.label = part
        return vertex

    def shape(self, opener: Token, label: str, closer: Token) -> tuple[str, str]:
        if opener == "(-":
            raise SpecError("Mermaid parses the ellipse `(-…-)` but cannot draw it: pick another shape",
                            line=opener.line, column=opener.column)
        if opener.type == "RECT_PROPS_OPEN":
            _check_properties(opener)
        opening = _opening(opener)
        shape = _SHAPES.get((opening, closer.value))
        if shape is None:
            raise SpecError(f"`{opener}` is closed by `{closer}`: expected `{_CLOSERS[opening]}`",
                            line=closer.line, column=closer.column)
        return shape, label

    def shape_data(self, token: Token) -> dict[str, Any]:
        data = _shape_data(token)
        shape = data.get("shape")
        if shape:
            data["shape"] = _data_shape(shape, token)
        return data

    def label(self, *tokens: Token) -> str:
        return _decode_entities("".join(_unquote(token) for token in tokens).strip())

    trap_label = ellipse_label = normal_label = thick_label = dotted_label = subgraph_title = label

    def link(self, *parts: Any) -> _Link:
        link_id = None
        if parts[0].type == "LINK_ID":
            link_id, parts = parts[0][:-1], parts[1:]
        if parts[0].type == "LINK":
            start, end, label = "", parts[0], (parts[1] if len(parts) > 1 else None)
        else:
            start, label, end = parts
        kind, length = _link_kind(start.strip(), end.strip(), parts[0])
        return _Link(token=parts[0], kind=kind, length=length, label=label, id=link_id)

    def subgraph(self, keyword: Token, head: tuple[str | None, str], *body: Any) -> _Block:
        return _Block(token=keyword, id=head[0], title=head[1], body=list(body))

    def subgraph_head(self, raw: str, title: str | None = None) -> tuple[str | None, str]:
        if title is not None:
            return raw.strip() or None, title
        # Mermaid: a heading with any whitespace in it (`subgraph My Title`) is a title only, the id is made up.
        return (None if re.search(r"\s", raw) else raw), _decode_entities(raw.strip())

    def subgraph_name(self, *tokens: Token) -> str:
        """The heading as written after ``subgraph``: its words, or a string and the words after it."""
        return "".join(token[1:] if token.type == "SUBGRAPH_TEXT" else _unquote(token) for token in tokens)

    def direction(self, token: Token) -> _Direction:
        return _Direction(token.split()[1][:2])

    def linkstyle_stmt(self, indexes: Token) -> _LinkStyle:
        numbers = [] if indexes == "default" else [int(index) for index in indexes.split(",")]
        return _LinkStyle(token=indexes, indexes=numbers)

    style_stmt = classdef_stmt = class_stmt = click_stmt = acc_stmt = _ignore


def _arrow_only(token: Token) -> Token:
    """An arrow token without the whitespace mermaid.lark lets it take (line breaks included, as Mermaid's LINK
    token does), placed where the arrow itself starts."""
    lead = token.value[:len(token.value) - len(token.value.lstrip())]
    breaks = lead.count("\n")
    line = token.line + breaks
    column = len(lead) - lead.rfind("\n") if breaks else token.column + len(lead)
    return Token(token.type, token.value.strip(), token.start_pos + len(lead), line, column)


_ARROWS = ("LINK", "START_NORMAL", "START_THICK", "START_DOTTED", "NORMAL_END", "THICK_END", "DOTTED_END")

# The transformer runs inside the LALR parser (no parse tree is built): twice as fast on big diagrams, and a
# SpecError raised by a rule method reaches the caller as it is, never wrapped in lark's VisitError.
_PARSER = open_grammar("mermaid.lark", transformer=MermaidTransformer(),
                       lexer_callbacks=dict.fromkeys(_ARROWS, _arrow_only))


def _check_node_id(token: Token, followed_by_space: bool) -> None:
    """Refuses an id with a keyword at the start of one of the tokens Mermaid's lexer cuts it into.

    ``click``, ``call`` and ``href`` are keywords only before whitespace: not in ``click[label]``.
    """
    for piece in _ID_TOKEN.finditer(token):
        keyword = _KEYWORD_ID.match(token, piece.start())
        if keyword and (keyword.group(1) or followed_by_space):
            word = keyword.group(1) or keyword.group(2)
            raise SpecError(f"`{token}` cannot be a node id: Mermaid reads `{word}` as a keyword "
                            f"(a capitalised `{word.capitalize()}` is fine)",
                            line=token.line, column=token.column + piece.start())


def _opening(opener: Token) -> str:
    """The bracket that opens a shape: ``[|`` for the whole ``[|field:value|``."""
    return "[|" if opener.type == "RECT_PROPS_OPEN" else opener.value


def _check_properties(opener: Token) -> None:
    """The field and the value of ``[|field:value|`` are words Mermaid's lexer reads as one NODE_STRING each."""
    at = 2
    for word in opener[2:-1].split(":"):
        keyword = _PROPERTY_KEYWORD.match(word)
        if keyword:
            raise SpecError(f"`{keyword.group()}` cannot be a property of `{opener}`: Mermaid reads it as a keyword",
                            line=opener.line, column=opener.column + at)
        at += len(word) + 1


def _unquote(token: Token) -> str:
    if token.type == "MD_STR":
        return token[2:-2]
    if token.type == "STR":
        return token[1:-1]
    return token.value


def _decode_entities(text: str) -> str:
    """Mermaid's entity codes: ``#quot;`` and ``#35;`` are ``&quot;`` and ``&#35;``; unknown names stay as written."""
    def decode(match: re.Match[str]) -> str:
        name = match.group(1)
        entity = f"&#{name};" if name.isdigit() else f"&{name};"
        decoded = html.unescape(entity)
        return match.group() if decoded == entity else decoded

    return _ENTITY.sub(decode, text)


def _shape_data(token: Token) -> dict[str, Any]:
    """``@{ shape: circle, label: "x" }``: YAML, braced like Mermaid does when it is written on one line."""
    body = token[2:-1]
    text = body + "\n" if "\n" in body else "{\n" + body + "\n}"
    try:
        data = safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"invalid node data `@{{…}}`: {getattr(error, 'problem', error)}",
                        line=token.line, column=token.column) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError("node data `@{…}` must be `key: value` pairs", line=token.line, column=token.column)
    if data.get("label") is not None:
        data["label"] = _decode_entities(str(data["label"]))
    return data


def _data_shape(shape: Any, token: Token) -> str:
    name = str(shape)
    if name not in _DATA_SHAPES:
        raise SpecError(f"no such Mermaid shape: `{name}`", line=token.line, column=token.column)
    return "circle" if name == "circ" else name


def _link_kind(start: str, end: str, token: Token) -> tuple[str, int]:
    """``Edge.kind`` and ``length`` of an arrow, by Mermaid's ``destructLink`` (``start`` opens a text link)."""
    head, double, stroke, length = _arrow_end(end)
    if start:
        start_head = _START_HEADS.get(start[0], "open")
        start_stroke = "dotted" if "." in start else "thick" if "=" in start else "normal"
        if start_stroke != stroke or (start_head != "open" and (double or start_head != head)):
            raise SpecError(f"the arrow `{start} … {end}` mixes heads or strokes",
                            line=token.line, column=token.column)
        double = double or start_head != "open"
    if stroke == "invisible":
        return "invisible", length
    base = {"point": "arrow", "open": "open", "circle": "circle", "cross": "cross"}[head]
    if double:
        base = "bidirectional" if head == "point" else f"bidirectional_{base}"
    return _STROKE_PREFIX[stroke] + base, length


def _arrow_end(arrow: str) -> tuple[str, bool, str, int]:
    """Head, double-headedness, stroke and length of a complete arrow such as ``-->``, ``<-.->`` or ``===``."""
    head = _END_HEADS.get(arrow[-1], "open")
    line = arrow[:-1]
    double = head != "open" and arrow[0] == _HEAD_CHAR_AT_START[head]
    if double:
        line = line[1:]
    stroke = "thick" if line.startswith("=") else "invisible" if line.startswith("~") else "normal"
    length = len(line) - 1
    if "." in line:
        stroke, length = "dotted", line.count(".")
    return head, double, stroke, min(length, _MAX_LINK_LENGTH)


# ---------------------------------------------------------------- step 3: records -> Diagram


@dataclass
class _Scope:
    """What the statements of one subgraph (or of the whole diagram) mention, close and set."""

    members: list[str] = field(default_factory=list)
    children: list[Subgraph] = field(default_factory=list)
    direction: str | None = None


class _Builder:
    """Replays the records in source order, as Mermaid's FlowDB does while its parser reduces them."""

    def __init__(self, direction: str) -> None:
        self.diagram = Diagram(direction=direction)
        self._edge_ids: set[str] = set()
        self._claimed: set[str] = set()  # ids already a member of a closed subgraph
        self._closed: set[str] = set()  # subgraph ids closed so far

    def build(self, statements: tuple[Any, ...]) -> Diagram:
        self._run(statements, _Scope())
        self.diagram.subgraphs.sort(key=lambda subgraph: (subgraph.line, subgraph.column))
        return self.diagram

    def _run(self, statements: Any, scope: _Scope, depth: int = 0) -> None:
        for statement in statements:
            match statement:
                case _Chain():
                    scope.members += self._chain(statement)
                case _Block():
                    subgraph = self._subgraph(statement, depth + 1)
                    scope.members.append(subgraph.id)
                    scope.children.append(subgraph)
                case _Direction():
                    scope.direction = statement.value
                case _LinkStyle():
                    self._check_link_style(statement)

    def _chain(self, chain: _Chain) -> list[str]:
        """Adds the chain's nodes and its edges (every source to every target of each link); returns the ids."""
        sources = [self._vertex(vertex) for vertex in chain.groups[0]]
        mentioned = list(sources)
        for link, group in zip(chain.links, chain.groups[1:]):
            targets = [self._vertex(vertex) for vertex in group]
            for source in sources:
                for target in targets:
                    self._edge(source, target, link)
            mentioned += targets
            sources = targets
        return mentioned

    def _vertex(self, vertex: _Vertex) -> str:
        node_id = vertex.token.value
        if node_id in self._edge_ids:  # Mermaid: `e1@{ animate: true }` styles edge e1, it makes no node
            return node_id
        node = self.diagram.nodes.get(node_id)
        if node is None:
            node = self.diagram.nodes[node_id] = Node(node_id, node_id, "rect", vertex.token.line, vertex.token.column)
        if vertex.shape:
            node.shape, node.label = vertex.shape, vertex.label
            node.line, node.column = vertex.token.line, vertex.token.column
        data = vertex.data if vertex.data is not None and node_id not in self._closed else {}
        if data.get("shape") or data.get("label"):  # Mermaid ignores empty values here
            node.shape, node.label = data.get("shape") or node.shape, data.get("label") or node.label
            node.line, node.column = vertex.token.line, vertex.token.column
        return node_id

    def _edge(self, source: str, target: str, link: _Link) -> None:
        edge_id = link.id if link.id and link.id not in self._edge_ids else None  # Mermaid ignores a reused id
        if edge_id:
            self._edge_ids.add(edge_id)
        self.diagram.edges.append(
            Edge(source, target, link.label, link.kind, link.token.line, link.token.column, edge_id, link.length)
        )

    def _subgraph(self, block: _Block, depth: int) -> Subgraph:
        if depth > _MAX_SUBGRAPH_DEPTH:
            raise SpecError(f"subgraphs nested more than {_MAX_SUBGRAPH_DEPTH} levels deep",
                            line=block.token.line, column=block.token.column)
        scope = _Scope()
        self._run(block.body, scope, depth)
        subgraph_id = block.id or f"subGraph{len(self.diagram.subgraphs)}"
        members = [member for member in dict.fromkeys(scope.members) if member not in self._claimed]
        self._claimed.update(members)
        for child in scope.children:
            child.parent = subgraph_id
        subgraph = Subgraph(subgraph_id, block.title, members, block.token.line, block.token.column, scope.direction)
        self.diagram.subgraphs.append(subgraph)
        self._closed.add(subgraph_id)
        return subgraph

    def _check_link_style(self, statement: _LinkStyle) -> None:
        count = len(self.diagram.edges)
        for index in statement.indexes:
            if index >= count:
                raise SpecError(f"linkStyle {index}: only {count} link(s) come before it, numbered from 0",
                                line=statement.token.line, column=statement.token.column)


# ---------------------------------------------------------------- syntax errors in plain words

_WORDS = {
    "GRAPH": "`graph` or `flowchart`", "DIR": "a direction (TB, TD, BT, RL or LR)",
    "ID": "a node id",
    "LINK": "an arrow", "START_NORMAL": "an arrow", "START_THICK": "an arrow", "START_DOTTED": "an arrow",
    "LINK_ID": "an arrow", "_AMP": "`&`",
    "SHAPE_OPEN": "a node shape", "TRAP_OPEN": "a node shape", "ELLIPSE_OPEN": "a node shape",
    "RECT_PROPS_OPEN": "a node shape",
    "SHAPE_DATA": "`@{…}`", "_CLASS_SUFFIX": "`:::class`",
    "TEXT": "a label", "TRAP_TEXT": "a label", "ELLIPSE_TEXT": "a label", "NORMAL_TEXT": "a label",
    "THICK_TEXT": "a label", "DOTTED_TEXT": "a label", "STR": "a label", "MD_STR": "a label",
    "SHAPE_CLOSE": "a closing bracket", "TRAP_CLOSE": "`/]` or `\\]`", "ELLIPSE_CLOSE": "`-)`",
    "NORMAL_END": "an arrow such as `-->`", "THICK_END": "an arrow such as `==>`",
    "DOTTED_END": "an arrow such as `.->`", "VBAR": "`|`", "LSQB": "`[`", "_SUBGRAPH_TITLE_END": "`]`",
    "SUBGRAPH_TEXT": "a subgraph id or title", "SUBGRAPH_MORE": "a subgraph id or title", "END": "`end`",
    "SUBGRAPH": "a statement", "STYLE": "a statement", "CLASSDEF": "a statement", "CLASS": "a statement",
    "LINKSTYLE": "a statement", "CLICK": "a statement", "DIRECTION": "a statement", "ACC_TITLE": "a statement",
    "ACC_DESCR": "a statement", "ACC_DESCR_BLOCK": "a statement",
    "_STYLE_REST": "style properties", "LINK_INDEXES": "link numbers or `default`",
    "_CLICK_REST": "a callback or a link", "_SEP": "the end of the line", "_NL": "the end of the line",
    "$END": "the end of the line",
}
_OPENERS = {"SHAPE_OPEN", "TRAP_OPEN", "ELLIPSE_OPEN", "RECT_PROPS_OPEN", "LSQB", "START_NORMAL", "START_THICK",
            "START_DOTTED"}
_CLOSING = {"SHAPE_CLOSE", "TRAP_CLOSE", "ELLIPSE_CLOSE", "_SUBGRAPH_TITLE_END", "NORMAL_END", "THICK_END",
            "DOTTED_END"}
_LABEL_TERMINALS = {"TEXT", "TRAP_TEXT", "ELLIPSE_TEXT", "NORMAL_TEXT", "THICK_TEXT", "DOTTED_TEXT", "STR"}


def _syntax_error(error: UnexpectedInput, code: str) -> SpecError:
    """A SpecError that says in plain words what is wrong where lark stopped."""
    expected = set(error.expected if isinstance(error, UnexpectedToken) else error.allowed)
    stack = getattr(error.state, "value_stack", None) or []
    at_end = isinstance(error, UnexpectedToken) and error.token.type == "$END"
    line, column = _end_of(code) if at_end else (error.line, error.column)
    position = len(code) if at_end else error.pos_in_stream
    subgraph = _innermost(stack, "SUBGRAPH")
    if subgraph is None:
        expected.discard("END")  # LALR shares states between the top level and subgraph bodies
    if "GRAPH" in expected:
        return SpecError(_not_a_flowchart(code), line=line, column=column)
    if at_end and subgraph is not None:
        return SpecError("this subgraph is never closed by `end`", line=subgraph.line, column=subgraph.column)
    if isinstance(error, UnexpectedToken) and error.token.type == "END" and subgraph is None:
        return SpecError("`end` without a `subgraph` to close", line=line, column=column)
    message = _misplaced(code, position, expected, stack) or (
        f"unexpected {_found(error, code)}: expected {_expected_words(expected)}")
    return SpecError(message, line=line, column=column)


def _misplaced(code: str, position: int, expected: set[str], stack: list[Any]) -> str | None:
    """The messages for mistakes that have a better name than 'unexpected X: expected Y'."""
    char = code[position:position + 1]
    opener = _open_bracket(stack)
    before = code[code.rfind("\n", 0, position) + 1:position].rstrip()
    if code.startswith("%%", position) or before.endswith("%%"):
        return "a `%%` comment must be on a line of its own (Mermaid rejects comments after a statement)"
    if "SUBGRAPH_TEXT" in expected:
        return "`subgraph` needs an id or a title"
    if char == '"':
        return _quote_problem(code, position, opener)
    if code.startswith("@{", position) and "}" not in code[position:]:
        return "this `@{` is never closed by `}`"
    if char in "([{>@:" and position and code[position - 1] in " \t" and {"SHAPE_OPEN", "_AMP"} & expected:
        return "no space is allowed between a node id and its shape, `:::class` or `@{…}`"
    if opener is not None and opener.value == "[" and char == "|" and position == opener.start_pos + 1:
        return ("a rect with properties is written `B[|field:value|label]`, field and value each one word "
                "(not a keyword, not starting with a digit)")
    if opener is not None:
        return _bracket_problem(code, position, expected, opener)
    return None


def _quote_problem(code: str, position: int, opener: Token | None) -> str:
    if code.startswith('""', position):
        return 'empty string `""`: Mermaid needs text between the quotes'
    if code.startswith('"`', position):
        return ("a label that opens with a quote and a backtick is Markdown: Mermaid wants it to end with a "
                "backtick and a quote, with no backtick between")
    if code.find('"', position + 1) == -1:
        return "this `\"` is never closed"
    if opener is not None:
        return (f"a quote can only open a label, right after `{opener.strip()}` with no space before it "
                "(write `#quot;` for a quote inside a label)")
    return "unexpected `\"`: quotes belong inside a label, like `A[\"text\"]`"


def _bracket_problem(code: str, position: int, expected: set[str], opener: Token) -> str | None:
    char = code[position:position + 1]
    where = f"`{opener.strip()}` at line {opener.line}, column {opener.column}"
    if expected & _LABEL_TERMINALS and char and char in ")]}|":
        return f"empty label `{opener.strip()}{char}`: write some text between them"
    if opener.type == "LSQB" and char == "]":
        return "Mermaid allows nothing after a subgraph's `[title]`, not even a space"
    if char and char in "[](){}|":
        return (f"`{char}` cannot be part of an unquoted label (opened by {where}): "
                f"put the label in quotes, like `A[\"f(x)\"]`")
    if position >= len(code.rstrip()):
        closer = _CLOSERS.get(_opening(opener))
        return f"{where} is never closed: expected {f'`{closer}`' if closer else _expected_words(expected)}"
    return None


def _innermost(stack: list[Any], token_type: str) -> Token | None:
    return next((item for item in reversed(stack) if isinstance(item, Token) and item.type == token_type), None)


def _open_bracket(stack: list[Any]) -> Token | None:
    """The bracket, pipe or text-link opener still waiting for its closer on the parser's stack."""
    opener = None
    for item in stack:
        if not isinstance(item, Token):
            continue
        if item.type in _OPENERS:
            opener = item
        elif item.type == "VBAR":
            opener = None if opener is not None and opener.type == "VBAR" else item
        elif item.type in _CLOSING:
            opener = None
    return opener


def _not_a_flowchart(code: str) -> str:
    words = code.split()
    if not words:
        return "empty diagram: expected `graph` or `flowchart` and a direction"
    if words[0] == "---":
        return "front matter must start on the very first line, before anything else"
    return f"expected `graph` or `flowchart` and a direction, found `{words[0][:30]}`: this is not a Mermaid flowchart"


def _found(error: UnexpectedInput, code: str) -> str:
    if isinstance(error, UnexpectedToken) and error.token.type in ("_SEP", "_NL", "$END"):
        return "end of line"
    text = error.token.value if isinstance(error, UnexpectedToken) else code[error.pos_in_stream:]
    words = text.split(None, 1)
    if not words or not text[:1].strip():
        return "end of line"
    return f"`{words[0][:30]}`"


def _expected_words(expected: set[str]) -> str:
    words = list(dict.fromkeys(_WORDS[name] for name in _WORDS if name in expected))
    words += sorted(f"`{name}`" for name in expected if name not in _WORDS)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _end_of(code: str) -> tuple[int, int]:
    """Line and column just after the last character that is not whitespace."""
    text = code.rstrip()
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1
