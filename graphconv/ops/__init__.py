"""The op library: the registry and the primitives registered in it (importing this imports no torch).

One module per kind of op, each op's VJP right below its forward: movement, elementwise, pointwise, logic,
indexing, reduce, linalg, einsum, windows, padding, nn, random; and the fused ops the optimizer rewrites chains into
(fused, convolution, pooling), each lowered to torch's kernel where a call's shapes allow.
"""
from graphconv.ops import elementwise, linalg, movement, nn, reduce, windows  # noqa: F401  (register the ops)
from graphconv.ops import einsum, indexing, logic, padding, pointwise, random  # noqa: F401
from graphconv.ops import convolution, fused, pooling  # noqa: F401  (fused ops: graphconv.compiler.passes)
from graphconv.ops import activation, attention, dense, normalization  # noqa: F401  (fused transformer ops)
from graphconv.ops.registry import REGISTRY, Op, Registry, op, register_op

__all__ = ["REGISTRY", "Op", "Registry", "op", "register_op"]
