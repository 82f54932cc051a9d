"""``CompiledOp``: a loaded spec as a differentiable callable, ``op(x, w, stride=2)``.

Per call: check the inputs, bind the spec's names from their shapes and the attrs (cached per shapes and
attrs, so derived dims and op arguments are computed once per new shape), then run through
:class:`~graphconv.compiler.function.GraphFunction` — or straight through the program when no gradient is
wanted. The first call with a new binding also checks every declared intermediate shape.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from graphconv.compiler import executor
from graphconv.compiler.binding import Binder, CallError, shape_mismatch
from graphconv.compiler.function import Call, GraphFunction
from graphconv.compiler.program import Program
from graphconv.graph.opgraph import Spec
from graphconv.loader import load

CACHE_LIMIT = 256


class CompiledOp:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.program = Program(spec)
        self.binder = Binder(spec)
        self._plans: dict[Any, list[dict[str, Any]]] = {}
        self.__signature__ = self._signature()
        self.__name__ = self.__qualname__ = spec.name
        self.__doc__ = f"{spec.name}{self.__signature__} — compiled from {spec.path or 'a spec'}"

    def __repr__(self) -> str:
        return f"<graphconv op {self.spec.name}{self.__signature__}>"

    def __call__(self, *inputs: torch.Tensor, **attrs: Any) -> Any:
        args = self.arguments(inputs, attrs)
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            return GraphFunction.apply(Call(self.program, args), *inputs)
        outputs, _, _ = executor.forward(self.program, args, inputs, save=False)
        return tuple(outputs) if len(outputs) > 1 else outputs[0]

    def arguments(self, inputs: tuple, attrs: dict[str, Any]) -> list[dict[str, Any]]:
        """Every op's attribute values for this call (checked and cached per input shapes and attrs)."""
        self.binder.check_arity(len(inputs))
        for name, value in zip(self.binder.names, inputs):
            if not isinstance(value, torch.Tensor):
                raise CallError(f"{self.spec.name}: input {name!r} must be a torch.Tensor, got "
                                f"{type(value).__name__}", path=self.spec.path)
        values = self.binder.attrs(attrs)
        key = (tuple(t.shape for t in inputs), tuple(values.items()))
        try:
            args = self._plans.get(key)
        except TypeError:  # an unhashable attr value: bind without caching
            return self.program.arguments(self.binder.bind([t.shape for t in inputs], values))
        if args is None:
            env = self.binder.bind([t.shape for t in inputs], values)
            args = self.program.arguments(env)
            self.check_declared_shapes(inputs, args, env)
            if len(self._plans) >= CACHE_LIMIT:
                self._plans.clear()
            self._plans[key] = args
        return args

    def check_declared_shapes(self, inputs: tuple, args: list[dict[str, Any]], env: dict[str, Any]) -> None:
        """Run the program once on the meta device and compare every declared shape with the real one."""
        if not self.spec.meta.shapes:
            return
        meta_inputs = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in inputs]
        _, _, values = executor.forward(self.program, args, meta_inputs, save=False, keep=True)
        for name, value in zip(self.program.names, values):
            mismatch = shape_mismatch(self.spec, name, tuple(value.shape), env)
            if mismatch:
                raise mismatch

    def _signature(self) -> inspect.Signature:
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in self.spec.input_names]
        params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
                   for k, v in self.spec.meta.attrs.items()]
        return inspect.Signature(params)


def compile(spec: Spec | str, *, ops: Any = ()) -> CompiledOp:
    """A differentiable callable from a spec (a loaded :class:`Spec` or a path to load)."""
    if not isinstance(spec, Spec):
        spec = load(spec, ops=ops)
    return CompiledOp(spec)
