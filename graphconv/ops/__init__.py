"""The op library: the registry and the primitives registered in it (importing this imports no torch).

One module per kind of op, each op's VJP right below its forward: movement, elementwise, reduce, linalg,
windows, nn.
"""
from graphconv.ops import elementwise, linalg, movement, nn, reduce, windows  # noqa: F401  (register the ops)
from graphconv.ops import fused  # noqa: F401  (the optimizer's fused ops: graphconv.compiler.passes)
from graphconv.ops.registry import REGISTRY, Op, Registry, op, register_op

__all__ = ["REGISTRY", "Op", "Registry", "op", "register_op"]
