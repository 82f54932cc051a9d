"""Program → straight-line Python source, compiled once per spec (like torch.fx's GraphModule).

Three functions come out: ``forward(A, *inputs)`` → (outputs, what backward keeps beyond the inputs, the shapes
and dtypes the VJPs read); ``forward_nograd(A, *inputs)`` → outputs; ``backward(A, inputs, kept, meta, needs,
*grads)`` → input grads, made on the first backward. ``inputs`` and ``kept`` are lists handed over to backward,
which empties them (a caller's frame holds its arguments until the call returns: a value inside them would
otherwise outlive its last use). Each op is one call of its forward (``op_<name>``) or VJP (``vjp_<name>``)
with its attributes as literals when the spec fixes them, else as ``A[i]``: this call's binding (input shapes and
attrs → values), computed once per binding by :meth:`GeneratedCode.arguments`. Each value is set to None after its
last use, so it dies as early as in a hand-written function; the source is registered with ``linecache`` so
tracebacks show generated lines, and an error is re-raised naming the op node and its spec line.

source.py holds what the directions share; forward.py and backward.py emit them, one function per
kind of line; export.py writes a standalone module.
"""
from __future__ import annotations

import itertools
import linecache
import weakref
from typing import Any, Callable

from graphconv.compiler.codegen import backward as codegen_backward, forward as codegen_forward
from graphconv.compiler.codegen.source import RUNTIME, Source, Unit
from graphconv.compiler.program import Program
from graphconv.errors import SpecError
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import Context

_counter = itertools.count(1)


def runtime_globals(unit: Unit, errors: "Errors") -> dict[str, Any]:
    """What the generated functions call: each op's forward and VJP, the attribute constants, the VJP context."""
    scope: dict[str, Any] = {"__builtins__": __builtins__, f"{RUNTIME}K": tuple(unit.arguments.constants),
                             f"{RUNTIME}Ctx": Context, f"{RUNTIME}grads": errors.grads,
                             f"{RUNTIME}sum_into": sum_into}
    for step in unit.program.steps:
        scope[unit.names.forward[id(step.op)]] = step.op.forward
        scope[unit.names.vjp[id(step.op)]] = step.op.backward
    return scope


def sum_into(fresh: Any, other: Any) -> Any:
    """``fresh + other``, two gradients of one value, written into ``fresh`` — made by its op's VJP for this call
    alone (the op's ``fresh_grads``) — where that is safe: a plain eager backward (no graph recorded for a second
    derivative, no functorch transform, no tracing), the same dtype and shape, a dense ``fresh``. Backward then
    holds one buffer of the value's size fewer, as torch's engine does when it accumulates in place."""
    if (fresh.dtype == other.dtype and fresh.shape == other.shape and fresh.is_contiguous()
            and not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()
            and not torch.compiler.is_compiling()):
        return fresh.add_(other)
    return fresh + other


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
        return self.program.op_error(index, message)

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


EAGER_BACKWARD_STEPS = 500  # programs up to this size get their backward at once (under 50 ms to generate)


class GeneratedCode:
    """A program's generated functions and the binding → ``A`` evaluation. ``forward`` and ``forward_nograd`` are
    compiled at once, and so is ``backward`` for programs up to EAGER_BACKWARD_STEPS: torch.compile cannot trace
    the exec() that makes it, so generating it on first use would break the first graph that runs a backward.
    Bigger programs get it on first use (an op only ever called without gradients never pays for it)."""

    def __init__(self, unit: Unit) -> None:
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
        if len(unit.program.steps) <= EAGER_BACKWARD_STEPS:
            self.backward  # noqa: B018  (generates it)

    @property
    def backward(self) -> Callable:
        if self._backward is None:
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


def generate(program: Program) -> GeneratedCode:
    return GeneratedCode(Unit.of(program))
