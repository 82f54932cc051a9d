"""``CompiledOp``: a loaded spec as a differentiable callable, ``op(x, w, stride=2)``.

Compiling runs the optimization passes on the op graph (unless ``optimize=False``), plans what backward keeps
(``save="all"`` or ``"minimal"``) and generates the forward and backward source once. Per call: check the
inputs, bind the spec's names from their shapes and the attrs (cached per shapes and attrs, so derived dims and
op arguments are computed once per new shape), then run the generated code through an autograd.Function — or
straight, when no gradient is wanted. The first call with a new binding also checks every declared intermediate
shape, on the meta device, with the spec as written (before any pass).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from graphconv.compiler import codegen, function, interpreter, passes
from graphconv.compiler.binding import Binder, shape_mismatch
from graphconv.compiler.codegen.source import identifier
from graphconv.compiler.program import Program
from graphconv.graph.opgraph import Spec

CACHE_LIMIT = 256


class CompiledOp:
    def __init__(self, spec: Spec, *, optimize: bool = True, save: str = "all") -> None:
        self.spec = spec
        self.optimized, self.reports = passes.optimize(spec, low_memory=save == "minimal") if optimize else (spec, [])
        self.program = Program(self.optimized, save)
        self.code = codegen.generate(self.program)
        self.casts_down = function.casts_down(self.program)
        self.binder = Binder(spec)
        self._bindings: dict[Any, tuple] = {}
        self.__signature__ = self._signature()
        self.__name__ = self.__qualname__ = spec.name
        self.__doc__ = f"{spec.name}{self.__signature__} — compiled from {spec.path or 'a spec'}"

    def __repr__(self) -> str:
        return f"<graphconv op {self.spec.name}{self.__signature__}>"

    def __call__(self, *inputs: torch.Tensor, **attrs: Any) -> Any:
        device = inputs[0].device.type if inputs and isinstance(inputs[0], torch.Tensor) else None
        if device is not None and torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self.run(function.autocast_inputs(inputs, device, self.casts_down), attrs)
        return self.run(inputs, attrs)

    def run(self, inputs: tuple, attrs: dict[str, Any]) -> Any:
        """One call, autocast aside."""
        args = self.arguments(inputs, attrs)
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs) or torch.jit.is_tracing():
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
        """This call's op argument values (checked and cached per input shapes and attrs)."""
        self.binder.check_inputs(inputs)
        key = (tuple([t.shape for t in inputs]), tuple(attrs.items()))
        try:
            args = self._bindings.get(key)
        except TypeError:  # an unhashable attr value: bind without caching
            return self.bind(inputs, attrs)
        if args is None:
            args = self.bind(inputs, attrs)
            if len(self._bindings) >= CACHE_LIMIT:
                self._bindings.clear()
            self._bindings[key] = args
        return args

    def bind(self, inputs: tuple, attrs: dict[str, Any]) -> tuple:
        env = self.binder.bind([t.shape for t in inputs], self.binder.attrs(attrs))
        if not function.tracing():  # torch.compile would break its graph at the meta run: eager calls check
            self.check_declared_shapes(inputs, env)
        return self.code.arguments(env)

    def check_declared_shapes(self, inputs: tuple, env: dict[str, Any]) -> None:
        """Run the spec as written once on the meta device and compare every declared shape with the real one."""
        if not self.spec.meta.shapes:
            return
        program = Program(self.spec)
        meta_inputs = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in inputs]
        _, _, values = interpreter.forward(program, program.arguments(env), meta_inputs, save=False, keep=True)
        for name, value in zip(program.names, values):
            mismatch = shape_mismatch(self.spec, name, tuple(value.shape), env)
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
