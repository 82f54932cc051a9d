"""The op graph flattened for execution: numbered value slots and one :class:`Step` per op, in topological order.

Built once per compiled spec. ``Program.arguments(env)`` evaluates every op's attribute expressions for one
binding of the spec's names (cached by the caller per input shapes and attrs). Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphconv.errors import SpecError
from graphconv.graph.opgraph import OpNode, Spec
from graphconv.ops.registry import Op
from graphconv.syntax.expr import evaluate


@dataclass
class Step:
    """One op application. Slots index the program's value list; ``None`` is an optional input left out."""

    node: OpNode
    op: Op
    inputs: tuple[int | None, ...]
    outputs: tuple[int, ...]
    saved_inputs: tuple[int, ...]  # positions in ``inputs`` the VJP reads
    saves_output: bool
    release: tuple[int, ...]  # slots no later step reads (freed after this one in forward)
    defaults: dict[str, Any]  # the op's attribute defaults that the graph does not bind

    def op_attr_names(self) -> list[str]:
        """The attributes this application passes: bound by the graph or defaulted, in the op's order."""
        return [a.name for a in self.op.attrs if a.name in self.node.args or a.name in self.defaults]

    def input_names(self) -> list[str]:
        """A name per input position (``tensors[0]``, ``tensors[1]``… for an op taking ``*tensors``)."""
        if self.op.variadic_inputs:
            return [f"{self.op.inputs[0]}[{i}]" for i in range(len(self.inputs))]
        return list(self.op.inputs)


class Program:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        ids = list(spec.inputs) + [t for op in spec.ops() for t in op.outputs]
        self.slot = {tensor_id: index for index, tensor_id in enumerate(ids)}
        self.names = [spec.tensor(t).name for t in ids]
        self.input_slots = tuple(self.slot[t] for t in spec.inputs)
        self.output_slots = tuple(self.slot[t] for t in spec.outputs)
        self.steps = [self.make_step(node) for node in spec.ops()]
        self.set_releases()

    def make_step(self, node: OpNode) -> Step:
        op = node.op
        if op.backward is None:
            raise SpecError(f"op {op.name} (from {op.source}) has no VJP; attach one with @{op.name}.vjp",
                            path=self.spec.path, line=node.line, column=node.column, source=self.spec.source)
        inputs = tuple(self.slot[t] if t is not None else None for t in node.inputs)
        if op.variadic_inputs:
            saved = tuple(range(len(inputs))) if op.inputs[0] in op.save else ()
        else:
            saved = tuple(i for i, name in enumerate(op.inputs) if name in op.save and inputs[i] is not None)
        defaults = {a.name: a.default for a in op.attrs if not a.required and a.name not in node.args}
        return Step(node, op, inputs, tuple(self.slot[t] for t in node.outputs), saved, "out" in op.save, (), defaults)

    def set_releases(self) -> None:
        last_use: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for slot in step.inputs:
                if slot is not None:
                    last_use[slot] = index
        keep = set(self.output_slots) | set(self.input_slots)
        for index, step in enumerate(self.steps):
            step.release = tuple(s for s in dict.fromkeys(step.inputs) if s is not None and s not in keep
                                 and last_use.get(s) == index)

    def arguments(self, env: dict[str, Any]) -> list[dict[str, Any]]:
        """Each step's attribute values (the op's defaults where unbound) for one binding of the spec's names."""
        return [step.defaults | {name: _plain(self.evaluate(step, expr, env)) for name, expr in step.node.args.items()}
                for step in self.steps]

    def argument(self, step: Step, name: str, env: dict[str, Any]) -> Any:
        """One attribute's value for a binding (the op's default when the graph does not bind it)."""
        expr = step.node.args.get(name)
        return step.defaults[name] if expr is None else _plain(self.evaluate(step, expr, env))

    def evaluate(self, step: Step, expr, env: dict[str, Any]) -> Any:
        try:
            return evaluate(expr, env)
        except SpecError as error:
            node = step.node
            raise SpecError(f"op {node.id} ({node.label}): {error.message}", path=self.spec.path, line=node.line,
                            column=node.column, source=self.spec.source) from None

    def needs(self, input_needs: tuple[bool, ...]) -> list[tuple[bool, ...]]:
        """For each step, which of its inputs need a gradient, given which graph inputs do."""
        requires = [False] * len(self.slot)
        for slot, need in zip(self.input_slots, input_needs):
            requires[slot] = need
        result = []
        for step in self.steps:
            needs = tuple(slot is not None and requires[slot] for slot in step.inputs)
            for slot in step.outputs:
                requires[slot] = any(needs)
            result.append(needs)
        return result


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value
