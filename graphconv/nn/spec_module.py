"""``from_spec``: any spec as a torch.nn.Module.

    block = graphconv.nn.from_spec("examples/squeeze_excite.mmd", channels=16, hidden=4)
    y = block(x)

The inputs the spec's ``params`` names become ``nn.Parameter``s (registered and initialised in the order
``params`` lists them), shaped by their ``inputs`` patterns from the dims given as keywords (and the derived dims
those determine) and initialised as ``params`` declares (:mod:`graphconv.nn.init`); the other inputs are
``forward``'s arguments, in spec order. Keywords that name the
spec's attrs are fixed for the module. A module pickles as its spec's text, its values and its tensors, and
compiles again when loaded, so ``torch.save(model)`` / ``torch.load`` work without the spec file.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import torch

import graphconv
from graphconv.api import read_spec
from graphconv.errors import CallError
from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.compiler.binding import show_pattern, show_shape
from graphconv.nn.init import initialise, params_entry
from graphconv.syntax.expr import evaluate, names, suggest

MAX_PARAMETER_ELEMENTS = 2 ** 32  # 16 GiB of float32: a spec's patterns can multiply the dims they are given


@lru_cache(maxsize=64)
def compiled(source: str, path: str | None, backend: str = "eager") -> Any:
    """The spec with this text (read as if at ``path``: ``uses:`` looks next to it), compiled once per backend."""
    return graphconv.compile(graphconv.loads(source, path=path), backend=backend)


def from_spec(path: str | os.PathLike, *, device: Any = None, dtype: torch.dtype | None = None,
              backend: str = "eager", **values: Any) -> "SpecModule":
    """A module computing the spec at ``path``; ``values``: its attrs and the dims that shape its parameters;
    ``backend``: as :func:`graphconv.compile` takes it (``"inductor"``: its generated code compiled by
    torch.compile)."""
    path = str(path)
    return SpecModule(read_spec(path), path, values, device=device, dtype=dtype, backend=backend)


class SpecModule(torch.nn.Module):
    """A compiled spec with its ``params`` inputs held as parameters. ``forward(*inputs)`` takes the other
    inputs in spec order and returns what the spec returns."""

    def __init__(self, source: str, path: str | None, values: dict[str, Any], *, device: Any = None,
                 dtype: torch.dtype | None = None, backend: str = "eager") -> None:
        super().__init__()
        self._source, self._path, self._values, self._backend = source, path, dict(values), backend
        self._op = compiled(source, path, backend)
        spec = self._op.spec
        self._attrs, dims = split_values(spec, self._values)
        self._input_names = list(spec.input_names)  # read once: torch.compile cannot trace the op graph (networkx)
        self._inputs = [name for name in self._input_names if name not in spec.meta.params]
        shapes = parameter_shapes(spec, {**self._attrs, **dims})
        for name, shape in shapes.items():
            self.register_parameter(name, torch.nn.Parameter(_allocate(spec, name, shape, device, dtype)))
        self.reset_parameters()

    @property
    def spec(self) -> Spec:
        return self._op.spec

    def reset_parameters(self) -> None:
        initialise(self.spec, dict(self.named_parameters(recurse=False)), {**self._attrs, **self._values})

    def forward(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self._inputs):
            raise CallError(f"{self.spec.name} module takes {len(self._inputs)} input(s) "
                            f"({', '.join(self._inputs)}) but {len(inputs)} were given", path=self._path)
        given = dict(zip(self._inputs, inputs))
        args = [given[name] if name in given else getattr(self, name) for name in self._input_names]
        return self._op(*args, **self._attrs)

    def extra_repr(self) -> str:
        return ", ".join([self.spec.name] + [f"{key}={value!r}" for key, value in self._values.items()])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_op"]  # compiled code and registered ops: rebuilt from the spec's text when loaded
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._op = compiled(self._source, self._path, state.get("_backend", "eager"))


def split_values(spec: Spec, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The module's keywords → (attrs, with the spec's defaults for the rest; dims that shape the parameters)."""
    dims = set(spec.meta.symbols()) | set(spec.meta.dims)
    for key in values:
        if key not in spec.meta.attrs and key not in dims:
            known = sorted(set(spec.meta.attrs) | dims)
            raise CallError(f"from_spec: {key!r} is neither an attr nor a dim of the spec{suggest(key, known)} "
                            f"(attrs: {', '.join(spec.meta.attrs) or 'none'}; dims: {', '.join(sorted(dims))})",
                            path=spec.path)
    attrs = {key: values.get(key, default) for key, default in spec.meta.attrs.items()}
    attrs = {key: tuple(value) if isinstance(value, list) else value for key, value in attrs.items()}
    return attrs, {key: value for key, value in values.items() if key not in spec.meta.attrs}


def parameter_shapes(spec: Spec, env: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Each parameter's shape, in spec order, from its ``inputs`` pattern with the dims known before any call."""
    env = dict(env)
    for dim in spec.dim_order:  # derived dims that read only given values (group_out: out_channels // groups)
        if dim not in env and names(spec.meta.dims[dim]) <= env.keys():
            try:
                env[dim] = evaluate(spec.meta.dims[dim], env)
            except SpecError as error:
                raise SpecError(f"dims.{dim}: {error.message}", path=spec.path, line=error.line,
                                column=error.column, source=spec.source) from None
    patterns = spec.meta.inputs or {}
    shapes = {}
    for name in spec.meta.params:
        where = params_entry(spec, name)
        if name not in spec.input_names:
            raise SpecError(f"params: {name!r} is not an input of the spec{suggest(name, spec.input_names)} "
                            f"(inputs: {', '.join(spec.input_names)})", **where)
        pattern = patterns.get(name)
        if pattern is None:
            raise SpecError(f"params: {name!r} has no shape; declare it under inputs "
                            f"({name}: [out_features, in_features])", **where)
        missing = sorted(set().union(*(names(entry) for entry in pattern)) - env.keys())
        if missing:
            raise CallError(f"from_spec: parameter {name} has shape {show_pattern(pattern)}; give "
                            f"{', '.join(f'{m}=...' for m in missing)}", path=spec.path)
        try:
            shape = tuple(evaluate(entry, env) for entry in pattern)
        except SpecError as error:
            raise SpecError(f"params.{name}: its shape {show_pattern(pattern)}: {error.message}", **where) from None
        check_parameter_shape(name, pattern, shape, where)
        shapes[name] = shape
    return shapes


def check_parameter_shape(name: str, pattern: list, shape: tuple, where: dict[str, Any]) -> None:
    """Sizes that are integers ≥ 0, and at most :data:`MAX_PARAMETER_ELEMENTS` in all — before torch allocates."""
    shown = f"{show_pattern(pattern)} = {show_shape(shape)}"
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape):
        raise SpecError(f"params.{name}: its shape {shown} is not a shape (sizes are integers ≥ 0)", **where)
    if math.prod(shape) > MAX_PARAMETER_ELEMENTS:
        raise SpecError(f"params.{name}: its shape {shown} has {math.prod(shape)} elements, more than a parameter "
                        f"may have (2**32)", **where)


def _allocate(spec: Spec, name: str, shape: tuple, device: Any, dtype: torch.dtype | None) -> torch.Tensor:
    try:
        return torch.empty(shape, device=device, dtype=dtype)
    except RuntimeError as error:  # no memory for it, or no such device
        raise SpecError(f"params.{name}: cannot make a parameter of shape {show_shape(shape)}: {error}",
                        **params_entry(spec, name)) from None
