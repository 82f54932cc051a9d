"""``backend="inductor"``: the generated forward and backward compiled with torch.compile.

The generated functions are straight-line torch code — each op's forward, and in backward its hand-written VJP — so
inductor turns an authored elementwise chain (layer norm, GELU, softmax-based ops) into a few fused kernels, the
VJPs included. Each function is compiled on its first call with a new shape (torch.compile's own cache, guarded on
the shapes and on the op arguments ``A``: one compiled graph per shape class, up to dynamo's cache limit, past
which dynamo runs the function as it is). Where inductor cannot build kernels — no C++ compiler on a CPU machine —
the functions stay the eager ones, with one warning.
"""
from __future__ import annotations

import shutil
import warnings
from typing import Any, Callable

import torch

from graphconv.compiler.codegen.generated import GeneratedCode

BACKENDS = ("eager", "inductor")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend


def has_cpp_compiler() -> bool:
    """Whether inductor finds a C++ compiler for its CPU kernels (it tries the names in its config, in order)."""
    from torch._inductor import config

    return any(name and shutil.which(name) for name in config.cpp.cxx)


class InductorCode:
    """A :class:`GeneratedCode` with its three functions compiled by inductor (with the same interface)."""

    def __init__(self, code: GeneratedCode) -> None:
        self.eager, self.unit, self.errors = code, code.unit, code.errors
        self.forward = _Compiled(code.forward)
        self.forward_nograd = _Compiled(code.forward_nograd)
        self.backward = _Compiled(code.backward)

    @property
    def source(self) -> str:
        return self.eager.source

    def arguments(self, env: dict[str, Any]) -> tuple:
        return self.eager.arguments(env)


class _Compiled:
    """One generated function through torch.compile, or itself when inductor cannot compile it (no C++ compiler
    for a CPU tensor: checked once, on the first call)."""

    def __init__(self, function: Callable) -> None:
        self.eager = function
        self.compiled = torch.compile(function, backend="inductor", dynamic=False)
        self.run: Callable | None = None

    def __call__(self, *args: Any) -> Any:
        if self.run is None:
            self.run = self.compiled if _can_compile(args) else self.eager
        return self.run(*args)


def _can_compile(args: tuple) -> bool:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    on_cpu = any(t.device.type == "cpu" for t in tensors)
    if on_cpu and not has_cpp_compiler():
        warnings.warn("graphconv: backend='inductor' found no C++ compiler for CPU kernels; running the generated "
                      "code eagerly", RuntimeWarning, stacklevel=4)
        return False
    return True
