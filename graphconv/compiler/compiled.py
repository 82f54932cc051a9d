"""``CompiledOp``: a loaded spec as a differentiable callable, ``op(x, w, stride=2)``.

Compiling runs the optimization passes on the op graph (unless ``optimize=False``), plans what backward keeps
(``save="all"`` or ``"minimal"``) and generates the forward and backward source once. Per call: check the
inputs, bind the spec's names from their shapes and the attrs (cached per shapes and attrs, so derived dims and
op arguments are computed once per new shape), then run the generated code through an autograd.Function — or
straight, when no gradient is wanted. The first call with a new binding also checks every declared intermediate
shape by the ops' shape rules (microseconds: no tensor is made), with the spec as written (before any pass).
``backend="inductor"`` runs the generated functions compiled by torch.compile (:mod:`graphconv.compiler.inductor`).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from graphconv.compiler import codegen, function, inductor, infer, passes
from graphconv.compiler.binding import Binder, as_size, shape_mismatch
from graphconv.compiler.codegen.source import identifier
from graphconv.compiler.program import Program
from graphconv.compiler.used_specs import SpecForward
from graphconv.graph.opgraph import Spec

CACHE_LIMIT = 256


class CompiledOp:
    def __init__(self, spec: Spec, *, optimize: bool = True, save: str = "all", backend: str = "eager") -> None:
        self.spec, self.backend = spec, inductor.check_backend(backend)
        self.optimized, self.reports = passes.optimize(spec) if optimize else (spec, [])
        self.program = Program(self.optimized, save)
        self.code = codegen.generate(self.program)
        if backend == "inductor":
            self.code = inductor.InductorCode(self.code)
        self.casts_down = function.casts_down(self.program)
        self.binder = Binder(spec)
        compile_used_specs(self.program)
        self._bindings: dict[Any, tuple] = {}
        self.__signature__ = self._signature()
        self.__name__ = self.__qualname__ = spec.name
        self.__doc__ = f"{spec.name}{self.__signature__} — compiled from {spec.path or 'a spec'}"

    def __repr__(self) -> str:
        return f"<graphconv op {self.spec.name}{self.__signature__}>"

    def __call__(self, /, *inputs: torch.Tensor, **attrs: Any) -> Any:  # an attr may be named self
        if function.any_autocast():
            device = inputs[0].device.type if inputs and isinstance(inputs[0], torch.Tensor) else None
            if device is not None and torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
                with torch.autocast(device, enabled=False):
                    return self.run(function.autocast_inputs(inputs, device, self.casts_down), attrs)
        return self.run(inputs, attrs)

    def run(self, inputs: tuple, attrs: dict[str, Any]) -> Any:
        """One call, autocast aside."""
        args = self.arguments(inputs, attrs)
        if torch.is_grad_enabled() and function.any_requires_grad(inputs) or torch.jit.is_tracing():
            return function.apply(self.code, args, inputs)  # tracing: one path (its check reruns under no_grad)
        try:
            return self.code.forward_nograd(args, *inputs)
        except Exception as error:
            raise self.code.errors.wrap(error) from error

    @property
    def source(self) -> str:
        """The generated Python source of forward and backward."""
        return self.code.source

    def arguments(self, inputs: tuple, attrs: dict[str, Any]) -> tuple:
        """This call's op argument values (checked and cached per input shapes and attrs). While torch.compile
        traces, the binding runs as a constant of the trace (:func:`_bound_while_tracing`)."""
        self.binder.check_inputs(inputs)
        dtype = inputs[0].dtype if inputs else None
        if function.tracing():
            return self.traced_arguments([tuple(t.shape) for t in inputs], dtype, attrs)
        return self.bound([t.shape for t in inputs], dtype, attrs)

    def traced_arguments(self, shapes: list, dtype: Any, attrs: dict[str, Any]) -> tuple:
        """The op arguments while torch.compile traces: bound (and checked) as a constant of the trace, for sizes
        read as ints — a symbolic size (dynamic shapes) is specialised to its value, as binding it always did."""
        return _bound_while_tracing(self, [tuple([_as_int(size) for size in shape]) for shape in shapes], dtype,
                                    attrs)

    def bound(self, shapes: list, dtype: Any, attrs: dict[str, Any]) -> tuple:
        """The op arguments for these input shapes and attrs, bound (and the declared shapes checked) on the first
        call with them."""
        key = (*shapes, *attrs.items()) if attrs else tuple(shapes)
        try:
            args = self._bindings.get(key)
        except TypeError:  # an unhashable attr value: bind without caching
            return self.bind(shapes, dtype, attrs)
        if args is None:
            args = self.bind(shapes, dtype, attrs)
            if len(self._bindings) >= CACHE_LIMIT:
                self._bindings.clear()
            self._bindings[key] = args
        return args

    def bind(self, shapes: list, dtype: Any, attrs: dict[str, Any]) -> tuple:
        env = self.binder.bind(shapes, self.binder.attrs(attrs))
        self.check_declared_shapes(shapes, dtype, env)
        return self.code.arguments(env)

    def check_declared_shapes(self, input_shapes: list, dtype: Any, env: dict[str, Any]) -> None:
        """Infer every shape of the spec as written by the ops' shape rules (an op without one runs on the meta
        device) and compare each declared shape with it."""
        if not self.spec.meta.shapes:
            return
        shapes = infer.concrete_shapes(self.spec, env, [tuple(map(as_size, shape)) for shape in input_shapes],
                                       dtype=dtype)
        for tensor_id, shape in shapes.items():
            mismatch = shape_mismatch(self.spec, self.spec.tensor(tensor_id).name, shape, env)
            if mismatch:
                raise mismatch

    def _signature(self) -> inspect.Signature:
        """Inputs positional, attrs keyword-only (names that are not identifiers shown as the source names them)."""
        taken: set[str] = set()
        params = [inspect.Parameter(identifier(name, taken), inspect.Parameter.POSITIONAL_ONLY)
                  for name in self.spec.input_names]
        params += [inspect.Parameter(identifier(k, taken), inspect.Parameter.KEYWORD_ONLY, default=v)
                   for k, v in self.spec.meta.attrs.items()]
        return inspect.Signature(params)


def _bound_while_tracing(op: CompiledOp, shapes: list, dtype: Any, attrs: dict[str, Any]) -> tuple:
    """``op.bound(…)``, which torch.compile runs as it traces instead of tracing it, its result a constant of the
    graph (the mark ``torch.compiler.assume_constant_result`` sets, set here without importing dynamo, which that
    function does). It is constant there: its inputs are the shapes and attrs the graph is specialised on. Traced,
    the binding's spec expressions would cost hundreds of guards, checked on every call of the compiled model."""
    return op.bound(shapes, dtype, attrs)


_bound_while_tracing._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _as_int(size: Any) -> int:
    """A size as a Python int while dynamo traces: a static size is one already; a symbolic size (a dynamic
    shape) becomes its value, with a guard that recompiles for another (dynamo reads ``len(range(n))`` as an int:
    ``int()`` and ``operator.index`` keep it symbolic)."""
    return len(range(size))


def compile_used_specs(program: Program) -> None:
    """Compile the specs this one uses as ops now, not on their first call, which torch.compile may be tracing
    (it cannot trace the passes and code generation: a graph break)."""
    for step in program.steps:
        if isinstance(step.op.forward, SpecForward):
            step.op.forward.compiled()
