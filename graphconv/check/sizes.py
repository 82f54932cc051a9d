"""The sizes a spec is checked at — the caller's dims and whole input shapes, checked — and the row ``graphconv run``
reports per tensor. Imports no torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphconv.compiler.binding import show_pattern
from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import show_value, suggest, to_source


@dataclass
class Row:
    """One tensor: the op that produced it (its label; ``input`` for a graph input), its declared shape as the
    spec writes it (``symbolic``), its shape as the shape rules infer it for every size (``inferred``), what it
    turned out to be at the sizes checked, and whether the declared shape is ``proved`` (for every size),
    ``checked`` (at these sizes), ``input`` (a pattern the call binds) or ``-`` (nothing declared)."""

    name: str
    op: str
    op_id: str | None
    line: int
    symbolic: str | None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    grad_shape: tuple[int, ...] | None = None
    inferred: str | None = None
    proof: str = "-"
    problems: list[str] = field(default_factory=list)


class Outcome:
    """``ok`` and ``problems()`` of a run's rows and failure, for a :class:`~graphconv.check.proof.Report` (the
    shape rules) and a :class:`~graphconv.check.trace.Trace` (torch) alike."""

    rows: list[Row]
    failure: Any

    @property
    def ok(self) -> bool:
        return self.failure is None and not any(row.problems for row in self.rows)

    def problems(self) -> list[str]:
        found = [p for row in self.rows for p in row.problems]
        return found + ([str(self.failure)] if self.failure else [])


def check_dims(spec: Spec, dims: dict[str, Any]) -> dict[str, int]:
    """The caller's dims: each an input dim (not an attr, not a derived dim) with a size ≥ 0 (a group of dims,
    ``...batch`` in a pattern, a tuple of them)."""
    symbols, groups = spec.meta.symbols(), spec.meta.groups()
    for name, size in dims.items():
        if name in spec.meta.attrs:
            raise SpecError(f"--dims {name}: {name!r} is an attr of {spec.name}; set it with --attr {name}=…",
                            path=spec.path)
        if name in spec.meta.dims:
            raise SpecError(f"--dims {name}: {name!r} is derived ({name}: {to_source(spec.meta.dims[name])}); "
                            "set the dims it is computed from", path=spec.path)
        if name not in symbols:
            known = f"; its input dims are: {', '.join(symbols)}" if symbols else " (it declares no input patterns)"
            raise SpecError(f"--dims {name}: not an input dim of {spec.name}{suggest(name, symbols)}{known}",
                            path=spec.path)
        if name in groups:
            dims[name] = size = tuple(size) if isinstance(size, (tuple, list)) else (size,)
            if not all(_is_size(s) for s in size):
                raise SpecError(f"--dims {name}={show_value(size)}: {name} is a group of dims (...{name}), a tuple of "
                                f"sizes such as {name}=(2,3) or {name}=()", path=spec.path)
        elif not _is_size(size):
            raise SpecError(f"--dims {name}={show_value(size)}: a dim is a size, an integer ≥ 0", path=spec.path)
    return dims


def _is_size(size: Any) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and size >= 0


def check_shapes(spec: Spec, shapes: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Whole input shapes by input name, as tuples of sizes ≥ 0."""
    checked, inputs = {}, set(spec.input_names)
    for name, shape in shapes.items():
        if name not in inputs:
            raise SpecError(f"--shapes {name}: not an input of {spec.name}{suggest(name, spec.input_names)}; its "
                            f"inputs are: {', '.join(spec.input_names)}", path=spec.path)
        shape = shape if isinstance(shape, tuple) else (shape,)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise SpecError(f"--shapes {name}={show_value(shape)}: a shape is a tuple of integers ≥ 0, "
                            f"e.g. {name}=(2,3)",
                            path=spec.path)
        checked[name] = shape
    return checked


def row_of(spec: Spec, name: str) -> Row:
    """The row of tensor ``name``, before anything is known of its sizes."""
    tensor = spec.tensor(spec.tensor_id(name))
    op = spec.op(tensor.producer) if tensor.producer else None
    declared = spec.meta.shapes.get(name) or (spec.meta.inputs or {}).get(name)
    symbolic = show_pattern(declared) if declared is not None else None
    return Row(name, op.label if op else "input", op.id if op else None, op.line if op else tensor.line, symbolic)
