"""Diagram + metadata → validated op graph (:class:`~graphconv.graph.opgraph.Spec`).

Circle nodes are ops, every other node is a tensor. Checks, each a SpecError at the spot: ops resolve
(unknown names suggest the nearest), no tensor is produced twice, no cycles (the error names the nodes on it),
every op input and attribute is bound, every name an expression reads is declared.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from graphconv.errors import SpecError
from graphconv.graph.dag import CycleError, topological_order
from graphconv.graph.opgraph import OpNode, Spec, TensorNode
from graphconv.ops.registry import Op, Registry
from graphconv.syntax.diagram import Diagram, Edge, Node
from graphconv.syntax.expr import Call, Expr, Name, names, parse_call, suggest
from graphconv.syntax.expr import Tuple as TupleExpr
from graphconv.syntax.metadata import WILDCARD, Metadata

OP_SHAPES = ("circle",)
LAYOUT_ONLY_EDGES = ("invisible",)


@dataclass
class _Link:
    """A data edge after classification: from a tensor or op to an op or tensor."""

    source: str
    target: str
    parameter: str | None  # the parameter an input edge names, if any
    line: int
    column: int


class _Builder:
    def __init__(self, diagram: Diagram, meta: Metadata, registry: Registry, name: str) -> None:
        self.diagram, self.meta, self.registry, self.name = diagram, meta, registry, name
        self.nodes: dict[str, TensorNode | OpNode] = {}  # every tensor and op, in the order they are made
        self.implicit: dict[str, str] = {}  # op id → the id (and name) of its unnamed output, for an op → op edge
        self.implicit_producer: dict[str, str] = {}  # and back
        self.successors: dict[str, list[str]] = {}  # data edges: a tensor's readers, an op's outputs
        # Where each node first appears in the file (a node keeps the line of its labelled declaration for error
        # carets, which may come later): input, output and topological order follow first appearance.
        self.appearance = {node_id: index for index, node_id in enumerate(diagram.nodes)}

    def error(self, message: str, line: int | None, column: int | None = None) -> SpecError:
        return SpecError(message, path=self.diagram.path, line=line, column=column, source=self.diagram.source)

    def error_at_meta(self, message: str, *key) -> SpecError:
        return self.error(message, *self.meta.where(*key))

    # --- nodes and edges ------------------------------------------------------------------------------------

    def build(self) -> Spec:
        if not self.diagram.nodes:
            raise self.error("the diagram has no nodes", 1, 1)
        known = self.known_names()
        dim_order = self.check_dims(known)
        links = self.classify_edges()
        self.add_tensors(links)
        self.add_ops(links, known)
        order = self.topological_order()
        op_order = [n for n in order if isinstance(self.nodes[n], OpNode)]
        inputs, outputs = self.graph_inputs(), self.graph_outputs()
        self.check_input_names(inputs)
        self.check_patterns(known)
        self.check_example(inputs)
        return Spec(self.name, self.diagram.path, self.diagram.source, self.nodes, inputs, outputs, op_order,
                    self.meta, dim_order)

    def position_key(self, node_id: str) -> str:
        return f"{self.first_appearance(node_id):09d}:{node_id}"

    def first_appearance(self, node_id: str) -> int:
        """The node's place in the file; an op's unnamed output takes its op's."""
        if node_id not in self.appearance:
            return self.appearance[self.implicit_producer[node_id]]
        return self.appearance[node_id]

    def classify_edges(self) -> list[_Link]:
        nodes, links = self.diagram.nodes, []
        subgraph_ids = {s.id for s in self.diagram.subgraphs}
        for edge in self.diagram.edges:
            if edge.kind in LAYOUT_ONLY_EDGES:
                continue
            for end in (edge.source, edge.target):
                if end not in nodes:
                    what = "subgraph" if end in subgraph_ids else "node"
                    raise self.error(f"edge {edge.source} → {edge.target} connects to {what} {end!r}; "
                                     "data edges must connect tensors and ops", edge.line, edge.column)
            if edge.kind.startswith("bidirectional"):
                raise self.error(f"edge {edge.source} ↔ {edge.target} points both ways; data flows one way",
                                 edge.line, edge.column)
            source_is_op, target_is_op = (self.is_op(nodes[edge.source]), self.is_op(nodes[edge.target]))
            if not source_is_op and not target_is_op:
                raise self.error(f"edge {edge.source} → {edge.target} joins two tensors; put an op (a circle "
                                 "node) between them", edge.line, edge.column)
            links.append(_Link(edge.source, edge.target, self.named_parameter(edge), edge.line, edge.column))
        return links

    def named_parameter(self, edge: Edge) -> str | None:
        """The parameter an edge label names — the name it starts with, before a space, a colon or its end:
        ``|other|``, ``|other: [b, c]|``, ``|b 3x4|``; a label that does not start with a name (``|"[b, c]"|``,
        ``|(4, 3)|``) only annotates the edge."""
        if edge.label is None:
            return None
        head = re.match(r"\s*([^\W\d]\w*)(?:\s|:|$)", edge.label)
        return head.group(1) if head else None

    @staticmethod
    def is_op(node: Node) -> bool:
        return node.shape in OP_SHAPES

    def add_tensors(self, links: list[_Link]) -> None:
        seen: dict[str, Node] = {}
        for node in self.diagram.nodes.values():
            if self.is_op(node):
                continue
            name = node.label.strip()
            if name in seen:
                first = seen[name]
                raise self.error(f"two tensors are named {name!r}: node {first.id} (line {first.line}) and node "
                                 f"{node.id}", node.line, node.column)
            seen[name] = node
            self.nodes[node.id] = TensorNode(node.id, name, node.line, node.column)
        for link in links:  # an op feeding an op directly: the value between them is an unnamed tensor
            if self.is_op(self.diagram.nodes[link.source]) and self.is_op(self.diagram.nodes[link.target]):
                self.add_implicit_tensor(link.source)

    def add_implicit_tensor(self, op_id: str) -> str:
        """The unnamed output of an op that feeds another op directly: called ``<op>_out`` (``_out_2``… where a
        node or a tensor already has that id or name)."""
        if op_id not in self.implicit:
            taken = set(self.diagram.nodes) | {n.name for n in self.nodes.values() if isinstance(n, TensorNode)}
            tensor_id, suffix = f"{op_id}_out", 2
            while tensor_id in taken:
                tensor_id, suffix = f"{op_id}_out_{suffix}", suffix + 1
            op = self.diagram.nodes[op_id]
            self.nodes[tensor_id] = TensorNode(tensor_id, tensor_id, op.line, op.column)
            self.implicit[op_id], self.implicit_producer[tensor_id] = tensor_id, op_id
        return self.implicit[op_id]

    # --- ops ------------------------------------------------------------------------------------------------

    def add_ops(self, links: list[_Link], known: set[str]) -> None:
        incoming: dict[str, list[_Link]] = {}
        outgoing: dict[str, list[_Link]] = {}
        for link in links:
            incoming.setdefault(link.target, []).append(self.as_tensor_link(link))
            outgoing.setdefault(link.source, []).append(link)
        for node in self.diagram.nodes.values():
            if not self.is_op(node):
                continue
            op, args = self.resolve(node, known)
            outputs = self.op_outputs(node, op, outgoing.get(node.id, []))
            inputs = self.match_inputs(node, op, incoming.get(node.id, []))
            self.nodes[node.id] = OpNode(node.id, node.label, op, args, inputs, outputs, node.line, node.column)
            for tensor in dict.fromkeys(inputs):
                if tensor is not None:
                    self.successors.setdefault(tensor, []).append(node.id)
            self.successors[node.id] = list(outputs)

    def as_tensor_link(self, link: _Link) -> _Link:
        """An op → op edge as an edge from the first op's unnamed output (other edges as they are)."""
        if link.source in self.implicit and self.is_op(self.diagram.nodes[link.target]):
            return _Link(self.implicit[link.source], link.target, link.parameter, link.line, link.column)
        return link

    def op_outputs(self, node: Node, op: Op, outgoing: list[_Link]) -> tuple[str, ...]:
        to_ops = [link for link in outgoing if self.is_op(self.diagram.nodes[link.target])]
        to_tensors = [link.target for link in outgoing if not self.is_op(self.diagram.nodes[link.target])]
        if to_ops and to_tensors:
            raise self.error(f"op {node.id} ({node.label}) feeds both ops and tensors; name its output tensor and "
                             "draw every edge from it", node.line, node.column)
        outputs = tuple(dict.fromkeys(to_tensors)) or (self.add_implicit_tensor(node.id),)
        for tensor in outputs:
            producer = self.nodes[tensor].producer
            if producer is not None:
                raise self.error(f"tensor {self.nodes[tensor].name!r} is produced twice: by op "
                                 f"{producer} and by op {node.id}", node.line, node.column)
            self.nodes[tensor].producer = node.id
        if op.outputs is not None and len(outputs) != op.outputs:
            raise self.error(f"op {node.id} ({op.name}) has {op.outputs} output(s) but the diagram draws "
                             f"{len(outputs)}: {', '.join(outputs)}", node.line, node.column)
        return outputs

    def resolve(self, node: Node, known: set[str]) -> tuple[Op, dict[str, Expr]]:
        """The registered op a label names, through spec-local definitions, and its bound attributes."""
        try:
            call = parse_call(node.label)
        except SpecError as error:
            raise self.error(f"op label {node.label!r}: {error.message}", node.line, node.column) from None
        calls = self.expand_local(node, call)
        op = self.registry.get(calls[-1].name)
        if op is None:
            local = " (defined under graphconv.ops)" if call.name in self.meta.ops else ""
            hint = suggest(calls[-1].name, self.registry.names() + list(self.meta.ops))
            raise self.error(f"unknown op {calls[-1].name!r}{local} in node {node.id}{hint}", node.line, node.column)
        args = self.match_attrs(node, op, list(reversed(calls)), known)
        return op, args

    def expand_local(self, node: Node, call: Call) -> list[Call]:
        """The label's call, then each spec-local definition it goes through, ending at a registered op's name.
        A definition may refine the registered op of its own name (``unfold: "unfold(kernel_size=k)"``)."""
        calls, seen = [call], set()
        while calls[-1].name in self.meta.ops and calls[-1].name not in seen:
            seen.add(calls[-1].name)
            calls.append(self.meta.ops[calls[-1].name])
        last = calls[-1]
        if last.name in self.meta.ops and last.name != calls[-2].name:
            raise self.error(f"op {node.id}: spec-local ops define each other in a cycle: "
                             f"{' → '.join(c.name for c in calls)}", last.line, last.column)
        return calls

    def match_attrs(self, node: Node, op: Op, calls: list[Call], known: set[str]) -> dict[str, Expr]:
        """Attribute values: from the label and local definitions (innermost first), else a spec attr/dim of the
        same name, else the op's default. Unbound → SpecError."""
        bound: dict[str, Expr] = {}
        for call in calls:
            self.match_call(node, op, call, bound)
        for attr in op.attrs:
            if attr.name in bound:
                continue
            if attr.name in known:
                bound[attr.name] = Name(node.line, node.column, attr.name)
            elif attr.required:
                raise self.error(f"op {node.id} ({op.signature()}): parameter {attr.name!r} is not bound; give it in "
                                 f"the label ({op.name}({attr.name}=…)) or declare {attr.name!r} under "
                                 "graphconv.attrs or graphconv.dims", node.line, node.column)
        for name, expr in bound.items():
            unknown = sorted(names(expr) - known)
            if unknown:
                raise self.error(f"op {node.id} ({node.label}): {name}={unknown[0]!r} is not declared"
                                 f"{suggest(unknown[0], known)}; declare it under graphconv.attrs or graphconv.dims "
                                 "(or as a dim of an input pattern)", node.line, node.column)
        return bound

    def match_call(self, node: Node, op: Op, call: Call, bound: dict[str, Expr]) -> None:
        where = f"op {node.id} ({op.signature()})"
        if op.variadic is not None and call.args:
            single = len(call.args) == 1 and isinstance(call.args[0], TupleExpr)
            bound[op.variadic] = call.args[0] if single else TupleExpr(call.line, call.column, call.args)
            positional = []
        else:
            positional = list(call.args)
        free = [a for a in op.attrs if a.name != op.variadic]
        if len(positional) > len(free):
            raise self.error(f"{where} takes {len(free)} attribute(s) but the label gives {len(positional)}",
                             node.line, node.column)
        for attr, expr in zip(free, positional):
            bound[attr.name] = expr
        for key, expr in call.kwargs:
            if op.attr(key) is None:
                hint = suggest(key, [a.name for a in op.attrs])
                raise self.error(f"{where} has no parameter {key!r}{hint}", node.line, node.column)
            bound[key] = expr

    def match_inputs(self, node: Node, op: Op, incoming: list[_Link]) -> tuple[str | None, ...]:
        """Tensor inputs: by edge label, else by the tensor's name, else in order of appearance."""
        incoming = sorted(incoming, key=lambda link: (link.line, link.column))
        where = f"op {node.id} ({op.signature()})"
        if op.variadic_inputs:
            if not incoming:
                raise self.error(f"{where} needs at least one input edge", node.line, node.column)
            return tuple(link.source for link in incoming)
        slots: dict[str, str] = {}
        rest = []
        for link in incoming:
            if link.parameter is not None and link.parameter not in ("_",):
                if link.parameter not in op.inputs:
                    hint = suggest(link.parameter, op.inputs) or f"; its inputs are {', '.join(op.inputs)}"
                    raise self.error(f"edge label {link.parameter!r} into {where} names no input{hint}", link.line,
                                     link.column)
                if link.parameter in slots:
                    raise self.error(f"{where}: input {link.parameter!r} is given twice", link.line, link.column)
                slots[link.parameter] = link.source
            else:
                rest.append(link)
        for link in list(rest):
            name = self.nodes[link.source].name
            if name in op.inputs and name not in slots:
                slots[name] = link.source
                rest.remove(link)
        for param in op.inputs:
            if param not in slots and rest:
                slots[param] = rest.pop(0).source
        if rest:
            raise self.error(f"{where} takes {len(op.inputs)} input(s) but has {len(incoming)} input edges",
                             rest[0].line, rest[0].column)
        missing = [p for p in op.inputs if p not in slots and p not in op.optional_inputs]
        if missing:
            raise self.error(f"{where}: input {missing[0]!r} has no edge (it has {len(incoming)} of "
                             f"{len(op.inputs)})", node.line, node.column)
        return tuple(slots.get(p) for p in op.inputs)

    # --- whole-graph checks ---------------------------------------------------------------------------------

    def topological_order(self) -> list[str]:
        """Every node after the ones it reads, file position breaking ties; a cycle is an error naming its nodes."""
        try:
            return topological_order(self.nodes, self.successors, key=self.position_key)
        except CycleError as error:
            first = self.nodes[min(error.cycle, key=self.position_key)]
            raise self.error(f"the graph has a cycle: {error}", first.line, first.column) from None

    def tensor_nodes(self) -> list[TensorNode]:
        nodes = [node for node in self.nodes.values() if isinstance(node, TensorNode)]
        return sorted(nodes, key=lambda t: (self.first_appearance(t.id), t.id))

    def graph_inputs(self) -> list[str]:
        free = [t for t in self.tensor_nodes() if t.producer is None]
        for tensor in free:
            if not self.successors.get(tensor.id):
                raise self.error(f"tensor {tensor.name!r} is connected to nothing", tensor.line, tensor.column)
        if self.meta.inputs is None:
            return [t.id for t in free]
        by_name = {t.name: t for t in self.tensor_nodes()}
        for name in self.meta.inputs:
            tensor = by_name.get(name)
            if tensor is None:
                raise self.error_at_meta(f"inputs: no tensor is named {name!r}{suggest(name, by_name)}", "inputs", name)
            if tensor.producer is not None:
                raise self.error_at_meta(f"inputs: {name!r} is produced by op {tensor.producer}", "inputs", name)
        undeclared = [t for t in free if t.name not in self.meta.inputs]
        if undeclared:
            t = undeclared[0]
            raise self.error(f"tensor {t.name!r} has no producer but is not listed under graphconv.inputs",
                             t.line, t.column)
        return [by_name[name].id for name in self.meta.inputs]

    def check_input_names(self, inputs: list[str]) -> None:
        """The inputs are the compiled op's positional parameters and the attrs its keywords: no attr may have an
        input's name."""
        for tensor_id in inputs:
            tensor = self.nodes[tensor_id]
            if tensor.name in self.meta.attrs:
                raise self.error_at_meta(f"attrs: {tensor.name!r} is also the name of an input tensor; rename one "
                                         "(both are parameters of the compiled op)", "attrs", tensor.name)

    def graph_outputs(self) -> list[str]:
        if self.meta.outputs is None:
            return [t.id for t in self.tensor_nodes() if t.producer is not None and not self.successors.get(t.id)]
        by_name = {t.name: t for t in self.tensor_nodes()}
        for name in self.meta.outputs:
            if name not in by_name:
                raise self.error_at_meta(f"outputs: no tensor is named {name!r}{suggest(name, by_name)}", "outputs")
        return [by_name[name].id for name in self.meta.outputs]

    # --- names ----------------------------------------------------------------------------------------------

    def known_names(self) -> set[str]:
        """Names an expression may read: attrs, input-pattern dims and derived dims."""
        return set(self.meta.attrs) | set(self.meta.symbols()) | set(self.meta.dims)

    def check_dims(self, known: set[str]) -> list[str]:
        """Derived dims in an order they can be computed; unknown names and cycles are errors."""
        for name in self.meta.dims:
            if name in self.meta.attrs or name in self.meta.symbols():
                raise self.error_at_meta(f"dims.{name} is also declared as an attr or an input dim", "dims", name)
        readers: dict[str, list[str]] = {}  # dim → the dims computed from it
        for name, expr in self.meta.dims.items():
            for used in sorted(names(expr)):
                if used not in known:
                    raise self.error(f"dims.{name}: unknown name {used!r}{suggest(used, known)}", expr.line,
                                     expr.column)
                if used in self.meta.dims:
                    readers.setdefault(used, []).append(name)
        try:
            return topological_order(self.meta.dims, readers, key=list(self.meta.dims).index)
        except CycleError as error:
            raise self.error_at_meta(f"dims depend on each other in a cycle: {error}", "dims",
                                     error.cycle[0]) from None

    def check_patterns(self, known: set[str]) -> None:
        tensors = {t.name for t in self.tensor_nodes()}
        for name, pattern in self.meta.shapes.items():
            if name not in tensors:
                raise self.error_at_meta(f"shapes: no tensor is named {name!r}{suggest(name, tensors)}", "shapes", name)
            self.check_pattern_names(f"shapes.{name}", pattern, known)
        for name, pattern in (self.meta.inputs or {}).items():
            self.check_pattern_names(f"inputs.{name}", pattern, known)
        for name, declared in self.meta.input_types.items():
            self.check_pattern_names(f"inputs.{name}.range", declared.range, known)

    def check_pattern_names(self, where: str, pattern: list[Expr] | None, known: set[str]) -> None:
        for expr in pattern or ():
            for used in sorted(names(expr) - known - {WILDCARD}):
                raise self.error(f"{where}: unknown name {used!r}{suggest(used, known)}", expr.line, expr.column)

    def check_example(self, inputs: list[str]) -> None:
        """Each example entry sets an input dim (an integer; a group of dims: a list), an attr, or the whole shape
        of an input (a list of sizes)."""
        dims, groups = set(self.meta.symbols()), self.meta.groups()
        names = {self.nodes[t].name for t in inputs}
        settable = dims | set(self.meta.attrs) | names
        for name, value in self.meta.example.items():
            if name not in settable:
                raise self.error_at_meta(f"example: {name!r} is not an input dim, an attr or an input"
                                         f"{suggest(name, settable)}", "example", name)
            if name in dims:
                wants_list = name in groups
                what = "a list of sizes (a group of dims)" if wants_list else "an integer (a dim)"
            elif name not in self.meta.attrs:
                wants_list, what = True, "a list of sizes (the input's shape)"
            else:
                continue
            if isinstance(value, list) != wants_list or (wants_list and not all(_is_size(v) for v in value)):
                raise self.error_at_meta(f"example.{name}: expected {what}, got {value!r}", "example", name)


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def build_spec(diagram: Diagram, meta: Metadata, registry: Registry, name: str) -> Spec:
    """Validate ``diagram`` with ``meta`` against ``registry`` and return the op graph."""
    return _Builder(diagram, meta, registry, name).build()
