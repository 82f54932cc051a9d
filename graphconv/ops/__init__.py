"""The op library: the registry and the primitives registered in it (importing this imports no torch)."""
from graphconv.ops import primitives  # noqa: F401  (registers the primitives)
from graphconv.ops.registry import REGISTRY, Op, Registry, op, register_op

__all__ = ["REGISTRY", "Op", "Registry", "op", "register_op"]
