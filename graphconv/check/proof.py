"""What ``graphconv run`` reports without torch: every tensor's shape inferred by the ops' shape rules for every
size (symbolic, simplified) and at the sizes asked for (concrete), each declared shape *proved* equal to the
inferred one for all sizes — or *checked* at these sizes where the normal form cannot tell — and the conditions the
ops need of the sizes (``requires: i_h + 2 * padding >= kernel_h``), each checked at these sizes too.

"Proved" means: equal for every value of the input dims, and of the integer attrs kept symbolic (each over the
values its current value stands for: ``stride >= 1``, ``padding >= 0``), wherever the requirements hold — where
they do not, an op refuses its inputs and there is no shape to declare.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphconv.check.backward import gradient_tensors
from graphconv.check.sizes import Outcome, Row, check_dims, check_shapes, row_of
from graphconv.compiler.binding import Binder, is_wildcard, shape_mismatch
from graphconv.compiler.examples import input_shapes
from graphconv.compiler.infer import Inference, Requirement, concrete_shapes, declared_symbolic, infer_symbolic
from graphconv.compiler.infer import op_shape_error, proved
from graphconv.compiler.program import Program
from graphconv.errors import ShapeError, SpecError
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import Splice


@dataclass
class Condition:
    """A requirement as reported: its text with the spec's names, which op needs it (and why), and whether it
    holds at the sizes checked (None: it reads a size that is not known there)."""

    text: str
    why: str
    op_id: str
    op: str
    line: int
    holds: bool | None
    values: str | None


@dataclass
class Report(Outcome):
    rows: list[Row]
    dims: dict[str, Any]  # input dims, then derived dims
    attrs: dict[str, Any]
    device: str | None  # None: the shape rules only, no torch
    inference: Inference
    conditions: list[Condition] = field(default_factory=list)
    failure: SpecError | None = None


def prove(spec: Spec, dims: dict[str, Any] | None = None, attrs: dict[str, Any] | None = None, *,
          shapes: dict[str, Any] | None = None, backward: bool = False) -> Report:
    """Check ``spec`` by its shape rules at ``dims`` (over the spec's ``example``), ``attrs`` and whole input
    ``shapes`` by name, and prove its declared shapes for every size.

    Bad dims, attrs or shapes raise SpecError; an input that does not fit its pattern raises ShapeError. A declared
    shape that does not fit, or a requirement that fails at these sizes, is reported in the result (``ok``,
    ``problems()``), not raised."""
    binder = Binder(spec)
    attr_values = binder.attrs({**{k: v for k, v in spec.meta.example.items() if k in spec.meta.attrs},
                                **(attrs or {})})
    concrete = input_shapes(spec, {**attr_values, **spec.example_dims, **check_dims(spec, dims or {})},
                            {**spec.example_shapes, **check_shapes(spec, shapes or {})})
    env = binder.bind(concrete, attr_values)
    ranks = {name: len(shape) for name, shape in zip(spec.input_names, concrete)
             if (spec.meta.inputs or {}).get(name) is None}
    inference = infer_symbolic(spec, attr_values, ranks, {group: len(env[group]) for group in spec.meta.groups()})
    report = Report([row_of(spec, name) for name in _tensor_names(spec)],
                    {k: v for k, v in env.items() if k not in attr_values}, attr_values, None, inference)
    found: dict[str, tuple] = {}
    try:
        concrete_shapes(spec, env, concrete, into=found)
    except ShapeError as error:
        report.failure = error
    values = {**env, **_unnamed_sizes(spec, binder, concrete)}
    report.conditions = [_condition(requirement, inference, values) for requirement in inference.requirements]
    _fail_on_a_condition(spec, report, found)
    for row in report.rows:
        _fill(spec, row, found.get(spec.tensor_id(row.name)), inference, env)
    if backward:
        _gradients(spec, report)
    return report


def _tensor_names(spec: Spec) -> list[str]:
    return [tensor.name for tensor in spec.tensors()]


def _unnamed_sizes(spec: Spec, binder: Binder, shapes: list[tuple]) -> dict[str, int]:
    """The values of the symbols that stand for sizes the patterns do not name one by one: ``x[1]`` for a
    wildcard, every dim of an input without a pattern, ``batch[0]``… for a ``...batch`` group."""
    patterns = spec.meta.inputs or {}
    sizes = {}
    for name, shape in zip(spec.input_names, shapes):
        pattern = patterns.get(name)
        if pattern is None:
            sizes.update((f"{name}[{axis}]", size) for axis, size in enumerate(shape))
            continue
        for index, _, entry, size in binder.align(name, pattern, shape):
            if isinstance(entry, Splice):
                sizes.update((f"{entry.id}[{i}]", s) for i, s in enumerate(size))
            elif is_wildcard(entry):
                sizes[f"{name}[{index}]"] = size
    return sizes


def _condition(requirement: Requirement, inference: Inference, values: dict[str, Any]) -> Condition:
    node = requirement.node
    try:
        holds, shown = requirement.claim.holds(values), requirement.claim.show_values(values)
    except (KeyError, ZeroDivisionError, TypeError):  # a size not known here
        holds, shown = None, None
    return Condition(requirement.show(inference.namer), requirement.why, node.id, node.label, node.line, holds, shown)


def _fail_on_a_condition(spec: Spec, report: Report, found: dict[str, tuple]) -> None:
    """The first condition that fails here is the failure: it names the op, its line and the condition (the op's
    own refusal, from the concrete rules, says less)."""
    failed = next((c for c in report.conditions if c.holds is False), None)
    if failed is None:
        return
    node = spec.op(failed.op_id)
    inputs = [found.get(t) if t is not None else None for t in node.inputs]
    report.failure = op_shape_error(spec, node, f"requires {failed.text}, but here {failed.values} is false "
                                                f"({failed.why})", inputs)


def _fill(spec: Spec, row: Row, shape: tuple | None, inference: Inference, env: dict[str, Any]) -> None:
    tensor_id = spec.tensor_id(row.name)
    inferred = inference.shapes.get(tensor_id)
    row.shape = shape
    row.inferred = inference.namer.show(inferred) if inferred is not None else None
    if row.symbolic is None:
        return
    if row.op_id is None:
        row.proof = "input"
    elif proved(declared_symbolic(spec, row.name, inference.env), inferred):
        row.proof = "proved"
    elif shape is not None:
        mismatch = shape_mismatch(spec, row.name, shape, env)
        row.proof = "checked" if mismatch is None else "✗"
        row.problems.extend([str(mismatch)] if mismatch is not None else [])


def _gradients(spec: Spec, report: Report) -> None:
    """Each tensor that backward gives a gradient has a gradient of its own shape: a VJP returns one per input of
    the input's shape, which the compiled backward checks (``graphconv run --device meta --backward`` runs them)."""
    Program(spec)  # every op has a VJP (else a SpecError naming it)
    wanted = gradient_tensors(spec)
    for row in report.rows:
        if spec.tensor_id(row.name) in wanted:
            row.grad_shape = row.shape
