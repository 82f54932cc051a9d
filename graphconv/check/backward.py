"""The backward of a spec drawn as a Mermaid flowchart (``graphconv show --backward``): each op's VJP a circle,
each gradient a node, the gradient edges labelled with their shapes (a gradient has its tensor's shape), and what
the memory plan gives each VJP to read — the tensors forward keeps for backward, and under ``save="minimal"`` the
ones backward recomputes, drawn with the op that remakes them. The plan is the compiler's own
(``Program.plan``, made by ``graphconv.compiler.memory``), not worked out again here. Imports no torch.

The drawing renders in Mermaid and parses back with ``graphconv.parse_diagram``; it is a picture of the backward,
not a spec to load (a VJP is not an op a spec can name).
"""
from __future__ import annotations

from graphconv.compiler.infer import infer_symbolic
from graphconv.compiler.program import Program
from graphconv.graph.opgraph import OpNode, Spec
from graphconv.graph.render import mermaid_text

STYLES = ("  classDef kept fill:#e6f4ea,stroke:#188038", "  classDef recomputed fill:#fef7e0,stroke:#e37400",
          "  classDef seed fill:#e8f0fe,stroke:#1967d2")


def gradient_tensors(spec: Spec) -> set[str]:
    """The tensors backward gives a gradient: those made from an input's values (not only its indices) that an
    output is made from."""
    from_inputs = set(spec.inputs)
    for node in spec.ops():
        if any(t in from_inputs for t in _value_inputs(node)):
            from_inputs.update(node.outputs)
    to_outputs = set(spec.outputs)
    for node in reversed(spec.ops()):
        if any(t in to_outputs for t in node.outputs):
            to_outputs.update(_value_inputs(node))
    return from_inputs & to_outputs


def _value_inputs(node: OpNode) -> list[str]:
    """The op's inputs whose values flow into its result (not an index, not a condition)."""
    names = [node.op.inputs[0]] * len(node.inputs) if node.op.variadic_inputs else node.op.inputs
    return [t for t, name in zip(node.inputs, names) if t is not None and name not in node.op.index_inputs]


def backward_mermaid(spec: Spec, policy: str = "all") -> str:
    """The backward of ``spec`` under the memory policy ``policy`` as Mermaid text (front matter and flowchart)."""
    program = Program(spec, policy)
    plan = program.plan
    drawing = _Drawing(spec, program, _shape_labels(spec))
    wanted = gradient_tensors(spec)
    for index in range(len(program.steps) - 1, -1, -1):
        step = program.steps[index]
        if not any(t in wanted for t in step.node.inputs):
            continue
        vjp = drawing.vjp(step.node)
        for tensor in step.node.outputs:
            if tensor in wanted:
                drawing.edge(drawing.gradient(tensor), vjp, drawing.labels.get(tensor))
        for tensor in dict.fromkeys(_value_inputs(step.node)):
            if tensor in wanted:
                drawing.edge(vjp, drawing.gradient(tensor), drawing.labels.get(tensor))
        for position in plan.recompute[index]:
            drawing.recompute(program.steps[position].node, set(plan.saved))
        for slot in plan.reads[index]:
            drawing.edge(drawing.read(drawing.tensor_at[slot], slot in plan.saved), vjp, None, dotted=True)
    return f"---\ntitle: {spec.name} backward, save={policy}\n---\n" + "\n".join(drawing.lines()) + "\n"


def _shape_labels(spec: Spec) -> dict[str, str]:
    """Tensor id → its shape as the shape rules infer it for every size (where they can)."""
    attrs = {**spec.meta.attrs, **{k: v for k, v in spec.meta.example.items() if k in spec.meta.attrs}}
    attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
    inference = infer_symbolic(spec, attrs)
    return {t: inference.namer.show(shape) for t, shape in inference.shapes.items() if shape is not None}


class _Drawing:
    """Nodes (with ids of their own: spec ids may not be Mermaid ids) and edges, in the order they are made."""

    def __init__(self, spec: Spec, program: Program, labels: dict[str, str]) -> None:
        self.spec, self.program, self.labels = spec, program, labels
        self.tensor_at = {slot: tensor for tensor, slot in program.slot.items()}
        self.nodes: list[str] = []
        self.edges: list[str] = []
        self.ids: dict[tuple[str, str], str] = {}
        self.classes: dict[str, list[str]] = {"kept": [], "recomputed": [], "seed": []}

    def node(self, kind: str, key: str, text: str, shape: tuple[str, str], style: str | None = None) -> str:
        if (kind, key) not in self.ids:
            node_id = f"{kind}{len(self.ids) + 1}"
            self.ids[kind, key] = node_id
            self.nodes.append(f"  {node_id}{shape[0]}{mermaid_text(text)}{shape[1]}")
            if style:
                self.classes[style].append(node_id)
        return self.ids[kind, key]

    def gradient(self, tensor: str) -> str:
        name = self.spec.tensor(tensor).name
        seed = tensor in self.spec.outputs
        return self.node("g", tensor, f"∂{name}", ("([", "])") if seed else ("(", ")"), "seed" if seed else None)

    def vjp(self, node: OpNode) -> str:
        return self.node("v", node.id, f"VJP {node.id}: {node.label}", ("((", "))"))

    def read(self, tensor: str, kept: bool) -> str:
        """A forward tensor a VJP reads: kept by forward, or recomputed in backward (drawn by ``recompute``)."""
        name = self.spec.tensor(tensor).name
        if kept:
            return self.node("k", tensor, f"kept: {name}", ("[(", ")]"), "kept")
        return self.node("r", tensor, f"recomputed: {name}", ("{{", "}}"), "recomputed")

    def recompute(self, node: OpNode, saved: set[int]) -> None:
        """Backward re-runs ``node``: its outputs from its inputs (kept, or recomputed before it)."""
        for output in node.outputs:
            target = self.read(output, False)
            for source in dict.fromkeys(t for t in node.inputs if t is not None):
                kept = self.program.slot[source] in saved
                self.edge(self.read(source, kept), target, node.label, dotted=True)

    def edge(self, source: str, target: str, label: str | None, *, dotted: bool = False) -> None:
        arrow = "-.->" if dotted else "-->"
        text = f"  {source} {arrow}|{mermaid_text(label)}| {target}" if label else f"  {source} {arrow} {target}"
        if text not in self.edges:
            self.edges.append(text)

    def lines(self) -> list[str]:
        styled = [f"  class {','.join(ids)} {style}" for style, ids in self.classes.items() if ids]
        return ["flowchart RL", *self.nodes, "", *self.edges, "", *STYLES, *styled]
