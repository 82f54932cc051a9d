"""The lowered program: the op graph flattened into numbered value slots and one :class:`Step` per op, in
topological order — with every analysis the backends need, computed once here.

A :class:`Program` owns step order, liveness (when each value dies in forward and in backward), which values need
a gradient, what backward keeps (the memory plan for the ``save=`` policy), how each VJP's context is laid out,
and the map back to spec lines (each step's node). The backends — the generated code (in-process and exported)
and the interpreter — only read it, so they cannot disagree. Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphconv.compiler.memory import MemoryPlan, plan
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
    defaults: dict[str, Any]  # the op's attribute defaults that the graph does not bind

    def op_attr_names(self) -> list[str]:
        """The attributes this application passes: bound by the graph or defaulted, in the op's order."""
        return [a.name for a in self.op.attrs if a.name in self.node.args or a.name in self.defaults]

    def input_names(self) -> list[str]:
        """A name per input position (``tensors[0]``, ``tensors[1]``… for an op taking ``*tensors``)."""
        if self.op.variadic_inputs:
            return [f"{self.op.inputs[0]}[{i}]" for i in range(len(self.inputs))]
        return list(self.op.inputs)

    def read_slots(self) -> list[int]:
        """The slots this step reads (each once, in input order)."""
        return [s for s in dict.fromkeys(self.inputs) if s is not None]


@dataclass(frozen=True)
class SavedField:
    """One tensor entry of a VJP's ``ctx.saved``: ``name`` → the value in ``slots`` (a tuple of them when
    ``packed``: ``*tensors`` inputs, several outputs)."""

    name: str
    slots: tuple[int, ...]
    packed: bool


class Program:
    def __init__(self, spec: Spec, save: str = "all") -> None:
        self.spec = spec
        ids = list(spec.inputs) + [t for op in spec.ops() for t in op.outputs]
        self.slot = {tensor_id: index for index, tensor_id in enumerate(ids)}
        self.names = [spec.tensor(t).name for t in ids]
        self.input_slots = tuple(self.slot[t] for t in spec.inputs)
        self.output_slots = tuple(self.slot[t] for t in spec.outputs)
        self.steps = [self._make_step(node, save) for node in spec.ops()]
        self.producer = {slot: index for index, step in enumerate(self.steps) for slot in step.outputs}
        self.plan: MemoryPlan = plan(self, save)
        self.kept = tuple(s for s in self.plan.saved if s not in self.input_slots)  # saved beyond the inputs
        self.saved_fields = [self._saved_fields(step) for step in self.steps]
        self.described = tuple(sorted({s for step in self.steps for s in step.inputs if s is not None}))
        self.need_sources = self._need_sources()
        self.shared = self._shared_slots()
        self._forward_deaths = {saving: self._deaths_in_forward(saving) for saving in (True, False)}
        self.backward_deaths = self._deaths_in_backward()

    # --- steps ----------------------------------------------------------------------------------------------

    def _make_step(self, node: OpNode, save: str) -> Step:
        op = node.op
        if op.backward is None:
            raise SpecError(f"op {op.name} (from {op.source}) has no VJP; attach one with @{op.name}.vjp",
                            path=self.spec.path, line=node.line, column=node.column, source=self.spec.source)
        inputs = tuple(self.slot[t] if t is not None else None for t in node.inputs)
        if op.variadic_inputs:
            saved = tuple(range(len(inputs))) if op.inputs[0] in op.save else ()
        else:
            wanted = set(op.saved_inputs)
            saved = tuple(i for i, name in enumerate(op.inputs) if name in wanted and inputs[i] is not None)
        defaults = {a.name: a.default for a in op.attrs if not a.required and a.name not in node.args}
        if save == "minimal" and op.lean_attr is not None and op.lean_attr in defaults:
            defaults[op.lean_attr] = True  # no kernel that holds more than torch's would
        return Step(node, op, inputs, tuple(self.slot[t] for t in node.outputs), saved, op.saves_output, defaults)

    def _saved_fields(self, step: Step) -> tuple[SavedField, ...]:
        """The VJP context's saved tensors: its saved inputs by parameter name, ``out`` for its outputs."""
        op, fields = step.op, []
        if op.variadic_inputs:
            if step.saved_inputs:
                fields.append(SavedField(op.inputs[0], tuple(step.inputs[i] for i in step.saved_inputs), True))
        else:
            fields += [SavedField(op.inputs[i], (step.inputs[i],), False) for i in step.saved_inputs]
        if step.saves_output:
            fields.append(SavedField("out", step.outputs, len(step.outputs) > 1))
        return tuple(fields)

    # --- gradients --------------------------------------------------------------------------------------------

    def _need_sources(self) -> dict[int, tuple[int, ...]]:
        """Per op output: the slots whose need of a gradient it inherits (a value wants a gradient when some
        input of the op that makes it does)."""
        return {slot: tuple(step.read_slots()) for step in self.steps for slot in step.outputs}

    def needs(self, input_needs: tuple[bool, ...]) -> list[bool]:
        """Per slot: whether its gradient is wanted, given which graph inputs want one."""
        wanted = [False] * len(self.names)
        for slot, need in zip(self.input_slots, input_needs):
            wanted[slot] = need
        for step in self.steps:
            for slot in step.outputs:
                wanted[slot] = any(wanted[s] for s in self.need_sources[slot])
        return wanted

    def _shared_slots(self) -> frozenset[int]:
        """Values read more than once (by two ops, or twice by one) or that are also graph outputs: their gradient
        is a sum."""
        reads: dict[int, int] = {}
        for step in self.steps:
            for slot in step.inputs:
                if slot is not None:
                    reads[slot] = reads.get(slot, 0) + 1
        return frozenset({slot for slot, count in reads.items() if count > 1} | set(self.output_slots))

    # --- liveness -------------------------------------------------------------------------------------------

    def forward_deaths(self, saving: bool) -> list[list[int]]:
        """Per step, the slots that die after it in forward: read for the last time there, not returned, and
        (when ``saving`` for backward) not kept."""
        return self._forward_deaths[saving]

    def _deaths_in_forward(self, saving: bool) -> list[list[int]]:
        last: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for slot in step.read_slots():
                last[slot] = index
            for slot in step.outputs:
                last.setdefault(slot, index)  # a value nothing reads dies at once
        alive = set(self.output_slots) | (set(self.plan.saved) if saving else set())
        dead: list[list[int]] = [[] for _ in self.steps]
        for slot, index in sorted(last.items()):
            if slot not in alive:
                dead[index].append(slot)
        return dead

    def _deaths_in_backward(self) -> list[list[int]]:
        """Per step, the kept or recomputed values backward reads for the last time there (backward runs in
        reverse, so that is the lowest step that reads one)."""
        last: dict[int, int] = {}
        for index in range(len(self.steps) - 1, -1, -1):
            used = list(self.plan.reads[index])
            for producer in self.plan.recompute[index]:
                used += self.steps[producer].read_slots() + list(self.steps[producer].outputs)
            for slot in used:
                last[slot] = index
        for slot in self.plan.saved:
            last.setdefault(slot, len(self.steps) - 1)
        deaths: list[list[int]] = [[] for _ in self.steps]
        for slot, index in sorted(last.items()):
            deaths[index].append(slot)
        return deaths

    # --- attribute values -----------------------------------------------------------------------------------

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

    # --- errors ---------------------------------------------------------------------------------------------

    def op_error(self, index: int, message: str) -> SpecError:
        """``while executing op <node> (<label>): message``, placed at the op's spec line."""
        node, spec = self.steps[index].node, self.spec
        return SpecError(f"while executing op {node.id} ({node.label}): {message}", path=spec.path, line=node.line,
                         column=node.column, source=spec.source)


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value
