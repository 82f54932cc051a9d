"""What generating source needs, shared by both directions and by export: the text being built (:class:`Source`),
literals, identifiers made from spec names (:class:`Names`), where attribute values come from
(:class:`Arguments`), and :class:`Unit`, which bundles them for one program.

Names in the source are derived from tensor names but reduced to ``[A-Za-z0-9_]``; spec text reaches the source
only through ``repr``.
"""
from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any

from graphconv.compiler.memory import MemoryPlan
from graphconv.compiler.program import Program, Step
from graphconv.errors import SpecError
from graphconv.syntax.expr import names

PREFIXES = ("g_", "q_", "sh_", "dt_", "op_", "vjp_", "r_", "_")  # names the generator derives; tensors avoid them
RESERVED = {"A", "K", "Ctx", "torch", "saved", "meta", "needs", "result", "grads"}


# --- source text --------------------------------------------------------------------------------------------


@dataclass
class Source:
    """Lines of generated code, each remembering the step (and pass) it belongs to."""

    lines: list[str] = field(default_factory=list)
    origins: dict[int, tuple[int, str]] = field(default_factory=dict)  # line number (1-based) → (step, phase)

    def add(self, text: str, depth: int = 1, origin: tuple[int, str] | None = None) -> None:
        self.lines.append("    " * depth + text)
        if origin is not None:
            self.origins[len(self.lines)] = origin

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def literal(value: Any) -> str | None:
    """Python source for a plain value (None, bool, int, finite float, str, tuple of those), else None."""
    if value is None or isinstance(value, bool) or type(value) in (int, str):
        return repr(value)
    if type(value) is float:
        return repr(value) if math.isfinite(value) else None
    if type(value) is tuple:
        items = [literal(v) for v in value]
        if any(item is None for item in items):
            return None
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return None


def comment(text: str) -> str:
    """Spec text for a comment: ``repr`` escapes every line break, so it stays one comment line."""
    return repr(text)[1:-1]


# --- names --------------------------------------------------------------------------------------------------


def identifier(name: str, taken: set[str], prefix: str = "") -> str:
    """A fresh Python identifier that looks like ``name`` (after ``prefix``, one of the generator's own)."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "t"
    if not prefix and (base[0].isdigit() or keyword.iskeyword(base) or base in RESERVED
                       or base.startswith(PREFIXES)):
        base = f"v_{base}"
    base = prefix + base
    candidate, suffix = base, 2
    while candidate in taken:
        candidate, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


@dataclass
class Names:
    """Every identifier the source uses: one variable per value slot, one function per op."""

    value: list[str]  # by slot
    forward: dict[int, str]  # id(op) → op function name
    vjp: dict[int, str]  # id(op) → VJP function name

    @classmethod
    def of(cls, program: Program) -> "Names":
        taken: set[str] = set()
        value = [identifier(name, taken) for name in program.names]
        forward, vjp = {}, {}
        for step in program.steps:
            if id(step.op) not in forward:
                forward[id(step.op)] = identifier(step.op.name, taken, "op_")
                vjp[id(step.op)] = identifier(step.op.name, taken, "vjp_")
        return cls(value, forward, vjp)


# --- attribute values ---------------------------------------------------------------------------------------


@dataclass
class Arguments:
    """Where each op's attribute values come from: literal text, ``K[i]`` (a fixed value with no literal form)
    or ``A[i]`` (a value that depends on the binding: evaluated once per input shapes and attrs)."""

    code: list[dict[str, str]]  # per step: attr name → source text
    constants: list[Any]  # K
    dynamic: list[tuple[int, str, Any]]  # A: (step, attr name, expression)

    @classmethod
    def of(cls, program: Program) -> "Arguments":
        made = cls([], [], [])
        for index, step in enumerate(program.steps):
            code = {}
            for name in step.op_attr_names():
                code[name] = made.reference(program, index, step, name)
            made.code.append(code)
        return made

    def reference(self, program: Program, index: int, step: Step, name: str) -> str:
        if name not in step.node.args:
            return self.fixed(step.defaults[name])
        expr = step.node.args[name]
        if not names(expr):
            try:
                return self.fixed(program.argument(step, name, {}))
            except SpecError:
                pass  # e.g. a division by zero: raised at call time, with the op's position
        self.dynamic.append((index, name, expr))
        return f"A[{len(self.dynamic) - 1}]"

    def fixed(self, value: Any) -> str:
        text = literal(value)
        if text is not None:
            return text
        self.constants.append(value)
        return f"K[{len(self.constants) - 1}]"

    def values(self, program: Program, env: dict[str, Any]) -> tuple:
        """``A`` for one binding of the spec's names."""
        return tuple(program.argument(program.steps[index], name, env) for index, name, _ in self.dynamic)


# --- one program ------------------------------------------------------------------------------------------


@dataclass
class Unit:
    """What generating one program's source needs: the program, its memory plan, names and argument texts."""

    program: Program
    plan: MemoryPlan
    names: Names
    arguments: Arguments

    @classmethod
    def of(cls, program: Program, plan: MemoryPlan) -> "Unit":
        return cls(program, plan, Names.of(program), Arguments.of(program))

    def var(self, slot: int | None) -> str:
        return "None" if slot is None else self.names.value[slot]

    def call(self, index: int) -> str:
        """``op_x(a, b, attr=value, …)`` for step ``index``."""
        step = self.program.steps[index]
        args = [self.var(slot) for slot in step.inputs]
        args += [f"{name}={text}" for name, text in self.arguments.code[index].items()]
        return f"{self.names.forward[id(step.op)]}({', '.join(args)})"

    def header(self, index: int) -> str:
        node = self.program.steps[index].node
        return f"# {comment(node.id)}: {comment(node.label)} (line {node.line})"
