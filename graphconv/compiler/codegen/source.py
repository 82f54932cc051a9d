"""What generating source needs, shared by both directions and by export: the text being built (:class:`Source`),
literals, identifiers made from spec names (:class:`Names`), where attribute values come from
(:class:`Arguments`), and :class:`Unit`, which bundles them for one program.

Hygiene, by construction: every value's variable is ``v_`` + its name reduced to ``[A-Za-z0-9_]`` (made unique),
and nothing else the generator writes starts with ``v_`` — its own names are parameters (``A``, ``saved``,
``meta``, ``needs``), derived from a value's (``g_v_x``, ``q_v_x``, ``sh_v_x``, ``dt_v_x``), numbered temporaries
(``r0``), op functions (``op_…``, ``vjp_…``) or the runtime's globals, which start with ``_gc_`` (``_gc_Ctx``,
``_gc_K``, ``_gc_grads``: an exported module refuses op code that names a global so). Spec text reaches the source only through
``repr`` (attribute names included: one that is not a plain identifier is passed as ``**{'a b': …}``).
"""
from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any

from graphconv.compiler.program import Program, Step
from graphconv.errors import SpecError
from graphconv.syntax.expr import names

VALUE = "v_"  # the prefix of every value's variable, and of nothing else
RUNTIME = "_gc_"  # the prefix of the runtime's globals (the context class, constants, the gradient check)


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
    """Python source for a plain value (None, bool, int, float, str, tuple of those), else None."""
    if value is None or isinstance(value, bool) or type(value) in (int, str):
        return repr(value)
    if type(value) is float:
        return repr(value) if math.isfinite(value) else f"float({str(value)!r})"  # float('-inf'), float('nan')
    if type(value) is tuple:
        items = [literal(v) for v in value]
        if any(item is None for item in items):
            return None
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return None


def as_tuple(items) -> str:
    """``(a, b)``, ``(a,)`` or ``()`` source for these item sources."""
    items = list(items)
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def comment(text: str) -> str:
    """Spec text for a comment: ``repr`` escapes every line break, so it stays one comment line."""
    return repr(text)[1:-1]


# --- names --------------------------------------------------------------------------------------------------


def identifier(name: str, taken: set[str], prefix: str = "") -> str:
    """A fresh Python identifier (not in ``taken``, which it joins) that looks like ``prefix`` + ``name``."""
    base = prefix + (re.sub(r"[^0-9A-Za-z_]", "_", name) or "t")
    if base[0].isdigit() or keyword.iskeyword(base):
        base = f"n_{base}"
    candidate, suffix = base, 2
    while candidate in taken:
        candidate, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def plain_identifier(name: str) -> bool:
    """``name`` can be written as a keyword argument and arrives under the same name (ASCII: Python folds
    other identifiers to NFKC, so ``ﬁ=`` would arrive as ``fi``)."""
    return name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


def keyword_arguments(items: list[tuple[str, str]]) -> list[str]:
    """``name=value`` source for each (name, value source), with the names that are not plain identifiers
    passed in one ``**{'name': value}``."""
    plain = [f"{name}={value}" for name, value in items if plain_identifier(name)]
    other = [f"{name!r}: {value}" for name, value in items if not plain_identifier(name)]
    return plain + ([f"**{{{', '.join(other)}}}"] if other else [])


@dataclass
class Names:
    """Every identifier the source uses: one variable per value slot, one function per op."""

    value: list[str]  # by slot
    forward: dict[int, str]  # id(op) → op function name
    vjp: dict[int, str]  # id(op) → VJP function name

    @classmethod
    def of(cls, program: Program) -> "Names":
        taken: set[str] = set()
        value = [identifier(name, taken, VALUE) for name in program.names]
        forward, vjp = {}, {}
        for step in program.steps:
            if id(step.op) not in forward:
                forward[id(step.op)] = identifier(step.op.name, taken, "op_")
                vjp[id(step.op)] = identifier(step.op.name, taken, "vjp_")
        return cls(value, forward, vjp)


# --- attribute values ---------------------------------------------------------------------------------------


@dataclass
class Arguments:
    """Where each op's attribute values come from: literal text, ``_gc_K[i]`` (a fixed value with no literal form)
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
        return f"{RUNTIME}K[{len(self.constants) - 1}]"

    def values(self, program: Program, env: dict[str, Any]) -> tuple:
        """``A`` for one binding of the spec's names."""
        return tuple(program.argument(program.steps[index], name, env) for index, name, _ in self.dynamic)


# --- one program ------------------------------------------------------------------------------------------


@dataclass
class Unit:
    """What generating one program's source needs: the program, names and argument texts. ``prefix`` goes
    before the generated functions' names (an exported module's ``_gc_forward``: its public name is the spec's)."""

    program: Program
    names: Names
    arguments: Arguments
    prefix: str = ""

    @classmethod
    def of(cls, program: Program, prefix: str = "") -> "Unit":
        return cls(program, Names.of(program), Arguments.of(program), prefix)

    def function(self, name: str) -> str:
        """The name of generated function ``name`` (``forward``, ``forward_nograd``, ``backward``)."""
        return self.prefix + name

    def var(self, slot: int | None) -> str:
        return "None" if slot is None else self.names.value[slot]

    def call(self, index: int) -> str:
        """``op_x(a, b, attr=value, …)`` for step ``index``."""
        step = self.program.steps[index]
        args = [self.var(slot) for slot in step.inputs]
        args += keyword_arguments(list(self.arguments.code[index].items()))
        return f"{self.names.forward[id(step.op)]}({', '.join(args)})"

    def context(self, index: int) -> str:
        """``Ctx(attrs, saved, shapes, dtypes, needs)`` for step ``index``'s VJP, laid out by the program."""
        step = self.program.steps[index]
        attrs = "{" + ", ".join(f"{name!r}: {text}" for name, text in self.arguments.code[index].items()) + "}"
        saved = "{" + ", ".join(f"{field.name!r}: {self.packed(field.slots, field.packed)}"
                                for field in self.program.saved_fields[index]) + "}"
        shapes = as_tuple(f"sh_{self.var(s)}" if s is not None else "None" for s in step.inputs)
        dtypes = as_tuple(f"dt_{self.var(s)}" if s is not None else "None" for s in step.inputs)
        return f"{RUNTIME}Ctx({attrs}, {saved}, {shapes}, {dtypes}, {self.needs(index)})"

    def needs(self, index: int) -> str:
        """Which of step ``index``'s inputs want a gradient: ``(q_v_a, q_v_b)``."""
        return as_tuple(f"q_{self.var(s)}" if s is not None else "False" for s in self.program.steps[index].inputs)

    def packed(self, slots: tuple[int, ...], packed: bool) -> str:
        return as_tuple(self.var(s) for s in slots) if packed else self.var(slots[0])

    def header(self, index: int) -> str:
        node = self.program.steps[index].node
        return f"# {comment(node.id)}: {comment(node.label)} (line {node.line})"
