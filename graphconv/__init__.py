"""graphconv: turn a computation-graph diagram (Mermaid or YAML) into a differentiable PyTorch op.

    import graphconv
    spec = graphconv.load("specs/conv2d.mmd")   # parse + validate (no torch needed)
    conv2d = graphconv.compile(spec)            # a torch.autograd.Function-backed callable
    y = conv2d(x, w, stride=1, padding=1)

Reading and validating specs imports no torch; ``compile`` and ``graphconv.nn`` do, on first use.
"""
from __future__ import annotations

from typing import Any

from graphconv.errors import SpecError
from graphconv.api import compile, load, loads
from graphconv.ops import REGISTRY, Op, op, register_op
from graphconv.syntax.mermaid import parse_diagram

__all__ = ["SpecError", "load", "loads", "parse_diagram", "compile", "op", "register_op", "Op", "REGISTRY", "nn"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "nn":  # graphconv.nn imports torch: only when asked for
        import importlib

        return importlib.import_module("graphconv.nn")
    raise AttributeError(f"module 'graphconv' has no attribute {name!r}")
