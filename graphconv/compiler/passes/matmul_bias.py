"""Dense-layer fusion: ``matmul(input, weight_t) → add(·, bias)`` becomes one ``matmul_bias`` op
(graphconv.ops.dense): one ``torch.addmm`` writes the product and the bias straight into the output, so no (rows,
out) product is made beside it.

Fires when the spec gives ``weight_t`` exactly 2 dims (a declared shape, or a transpose of one) and the bias exactly
1, and the product has that one reader and is not a graph output. ``matmul_bias`` checks each call's shapes and takes
the literal matmul then add when they are not a dense layer's.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter
from graphconv.graph.opgraph import OpNode
from graphconv.ops.dense import matmul_bias
from graphconv.syntax.expr import Splice

NAME = "matmul_bias"
SUMMARY = "matmul(input, weight_t) → add(·, bias) as one matmul_bias (torch.addmm)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("add", fuse)


def fuse(graph: Rewriter, add: OpNode) -> str | None:
    for position in (0, 1):
        product, bias = add.inputs[position], add.inputs[1 - position]
        matmul = graph.producer_of(add, position, "matmul")
        if (matmul is not None and bias != product and graph.sole_consumer(product) is not None
                and _rank(graph, bias) == 1 and _rank(graph, matmul.inputs[1]) == 2):
            fused = graph.fuse([matmul, add], matmul_bias, (matmul.inputs[0], matmul.inputs[1], bias), {},
                               add.outputs)
            return (f"{matmul.id} ({matmul.label}) → {add.id} ({add.label}) → {fused.id} (matmul_bias): one "
                    "torch.addmm, no product beside the output")
    return None


def _rank(graph: Rewriter, tensor: str) -> int | None:
    """The tensor's number of dims when the spec fixes it: a declared shape with no ``...group``, or a transpose of
    such a tensor."""
    declared = graph.declared_shape(tensor)
    if declared is not None:
        return None if any(isinstance(size, Splice) for size in declared) else len(declared)
    producer = graph.producer(tensor)
    return _rank(graph, producer.inputs[0]) if producer is not None and producer.op.name == "transpose" else None
