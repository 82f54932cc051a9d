"""Program → straight-line Python source, compiled once per spec (like torch.fx's GraphModule; backward on first use).

Three functions come out: ``forward(A, *inputs)`` → (outputs, what backward keeps, the shapes and dtypes the
VJPs read); ``forward_nograd(A, *inputs)`` → outputs; ``backward(A, saved, meta, needs, *grads)`` → input grads.
Each op is one call of its forward (``op_<name>``) or VJP (``vjp_<name>``) with its attributes as literals when
the spec fixes them, else as ``A[i]``: this call's binding (input shapes and attrs → values), computed once per
binding by :meth:`GeneratedCode.arguments`. Each value is set to None after its last use, so it dies as early as
in a hand-written function; the source is registered with ``linecache`` so tracebacks show generated lines, and
an error is re-raised naming the op node and its spec line.

Names in the source are derived from tensor names but reduced to ``[A-Za-z0-9_]``; spec text reaches the
source only through ``repr``. This module holds what both passes share; codegen_forward and codegen_backward
emit the two directions, one function per kind of line.
"""
from __future__ import annotations

import itertools
import keyword
import linecache
import math
import re
import types
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from graphconv.compiler.memory import MemoryPlan
from graphconv.compiler.program import Program, Step
from graphconv.errors import SpecError
from graphconv.spec.expr import names

PREFIXES = ("g_", "q_", "sh_", "dt_", "op_", "vjp_", "r_", "_")  # names the generator derives; tensors avoid them
RESERVED = {"A", "K", "Ctx", "torch", "saved", "meta", "needs", "result", "grads"}
_counter = itertools.count(1)


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


# --- the three functions ------------------------------------------------------------------------------------


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


def functions_source(unit: Unit) -> Source:
    """The source of ``forward``, ``forward_nograd`` and ``backward``."""
    from graphconv.compiler import codegen_backward, codegen_forward

    source = Source()
    codegen_forward.emit(source, unit, saving=True)
    source.add("", 0)
    codegen_forward.emit(source, unit, saving=False)
    source.add("", 0)
    codegen_backward.emit(source, unit)
    return source


def runtime_globals(unit: Unit, errors: "Errors") -> dict[str, Any]:
    """What the generated functions call: each op's forward and VJP, the attribute constants, the VJP context."""
    scope: dict[str, Any] = {"__builtins__": __builtins__, "K": tuple(unit.arguments.constants),
                             "Ctx": types.SimpleNamespace, "_grads": errors.grads}
    for step in unit.program.steps:
        scope[unit.names.forward[id(step.op)]] = step.op.forward
        scope[unit.names.vjp[id(step.op)]] = step.op.backward
    return scope


# --- errors -------------------------------------------------------------------------------------------------


class Errors:
    """Turns an exception raised in generated code into a SpecError naming the op node and its spec line."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.origins: dict[str, dict[int, tuple[int, str]]] = {}  # generated file → its lines' (step, phase)

    def locate(self, error: BaseException) -> tuple[int, str] | None:
        """(step, phase) of the innermost generated line in the traceback."""
        found, tb = None, error.__traceback__
        while tb is not None:
            origins = self.origins.get(tb.tb_frame.f_code.co_filename)
            if origins is not None:
                found = origins.get(tb.tb_lineno, found)
            tb = tb.tb_next
        return found

    def wrap(self, error: Exception) -> Exception:
        if isinstance(error, SpecError):
            return error
        origin = self.locate(error)
        if origin is None:
            return error
        index, phase = origin
        where = {"forward": "", "vjp": "in its VJP: ", "recompute": "recomputing it for backward: "}[phase]
        return self.op_error(index, f"{where}{type(error).__name__}: {error}")

    def op_error(self, index: int, message: str) -> SpecError:
        node, spec = self.program.steps[index].node, self.program.spec
        return SpecError(f"while executing op {node.id} ({node.label}): {message}", path=spec.path, line=node.line,
                         column=node.column, source=spec.source)

    def grads(self, index: int, grads: Any, shapes: tuple, needs: tuple) -> tuple:
        """A VJP's result checked — one gradient per input, each of its input's shape — with None for the inputs
        that want none."""
        if type(grads) not in (tuple, list) or len(grads) != len(shapes):
            raise self.wrong_count(index, grads)
        for position, (grad, shape, need) in enumerate(zip(grads, shapes, needs)):
            if need and grad is not None and grad.shape != shape:
                raise self.wrong_shape(index, position, grad, shape)
        return tuple(grad if need else None for grad, need in zip(grads, needs))

    def wrong_count(self, index: int, grads: Any) -> SpecError:
        step = self.program.steps[index]
        names_ = step.input_names()
        got = len(grads) if isinstance(grads, (tuple, list)) else type(grads).__name__
        return self.op_error(index, f"its VJP returned {got} gradient(s) for {len(names_)} input(s) "
                                    f"({', '.join(names_)})")

    def wrong_shape(self, index: int, position: int, grad: Any, shape: Any) -> SpecError:
        name = self.program.steps[index].input_names()[position]
        return self.op_error(index, f"its VJP returned a gradient of shape {tuple(grad.shape)} for input {name!r} "
                                    f"of shape {tuple(shape)}")


# --- compiling ----------------------------------------------------------------------------------------------


class GeneratedCode:
    """A program's generated functions and the binding → ``A`` evaluation. ``forward`` and ``forward_nograd`` are
    compiled at once; ``backward`` on first use (an op only ever called without gradients never pays for it)."""

    def __init__(self, unit: Unit) -> None:
        from graphconv.compiler import codegen_forward

        self.unit = unit
        self.errors = Errors(unit.program)
        self.name = f"<graphconv {unit.program.spec.name} #{next(_counter)}"
        source = Source()
        codegen_forward.emit(source, unit, saving=True)
        source.add("", 0)
        codegen_forward.emit(source, unit, saving=False)
        self.forward_source = source.text()
        scope = self._compile(source, "forward")
        self.forward, self.forward_nograd = scope["forward"], scope["forward_nograd"]
        self._backward: tuple[str, Callable] | None = None

    @property
    def backward(self) -> Callable:
        if self._backward is None:
            from graphconv.compiler import codegen_backward

            source = Source()
            codegen_backward.emit(source, self.unit)
            self._backward = (source.text(), self._compile(source, "backward")["backward"])
        return self._backward[1]

    @property
    def source(self) -> str:
        """The generated source of all three functions."""
        self.backward  # noqa: B018  (generates it)
        return self.forward_source + "\n" + self._backward[0]

    def arguments(self, env: dict[str, Any]) -> tuple:
        return self.unit.arguments.values(self.unit.program, env)

    def filename(self, part: str) -> str:
        return f"{self.name} {part}>"

    def _compile(self, source: Source, part: str) -> dict[str, Any]:
        """Compile generated source (ours, never spec text), registered with linecache for tracebacks."""
        filename, text = self.filename(part), source.text()
        scope = runtime_globals(self.unit, self.errors)
        exec(compile(text, filename, "exec"), scope)
        self.errors.origins[filename] = source.origins
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
        weakref.finalize(self, linecache.cache.pop, filename, None)
        return scope


def generate(program: Program, plan: MemoryPlan) -> GeneratedCode:
    return GeneratedCode(Unit.of(program, plan))
