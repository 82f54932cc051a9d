"""Attention fusion: ``matmul(query, key_t) → mul_scalar(scale) [→ masked_fill(causal mask, -inf)] → softmax(dim=-1)
→ matmul(·, value)`` becomes one ``attention`` op (graphconv.ops.attention), lowered to torch's fused CPU attention
kernel: no (l, s) score or weight matrix is kept for backward, only the output and each row's log-sum-exp (an extra
output of the fused op that nothing reads).

The causal mask is the one the shipped spec draws: ``full_like(scores, value≠0) → tril(diagonal=0) →
eq(value=0) → masked_fill(value=-inf)`` — position i attends to j ≤ i, the top-left-aligned mask torch's
``is_causal`` means. Fires when every attr is that constant (the scale may be any expression: it is evaluated per
call), query, key_t and value have at least 2 dims by the spec, and each intermediate is read only inside the chain
and is not a graph output. The op itself takes the math path wherever the kernel cannot take the call.
"""
from __future__ import annotations

import math

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.attention import attention
from graphconv.syntax.expr import Const, Splice

NAME = "attention"
SUMMARY = "matmul(q, kᵀ) → scale → [causal mask] → softmax → matmul(·, v) as one attention (torch's fused kernel)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("softmax", fuse)


def fuse(graph: Rewriter, softmax: OpNode) -> str | None:
    if constant(softmax.args.get("dim")) != -1:
        return None
    (weights,) = softmax.outputs
    apply = graph.sole_consumer(weights)
    if apply is None or apply.op.name != "matmul" or apply.inputs[0] != weights or apply.inputs[1] == weights:
        return None
    masked = graph.producer(softmax.inputs[0])
    mask = _causal_mask(graph, masked) if masked is not None and masked.op.name == "masked_fill" else None
    scaled = graph.producer(masked.inputs[0]) if mask is not None else masked
    if scaled is None or scaled.op.name != "mul_scalar" or graph.sole_consumer(scaled.outputs[0]) is None:
        return None
    product = graph.producer(scaled.inputs[0])
    if product is None or product.op.name != "matmul":
        return None
    query, key_t, value = product.inputs[0], product.inputs[1], apply.inputs[1]
    readers = {scaled.id} | ({mask[0].id} if mask is not None else set())  # the mask's full_like reads the scores
    if (graph.is_output(product.outputs[0]) or {n.id for n in graph.consumers(product.outputs[0])} != readers
            or not all(_at_least_2d(graph, t) for t in (query, key_t, value))):
        return None
    chain = [product, scaled, *(mask or []), *([masked] if mask is not None else []), softmax, apply]
    args = {"scale": scaled.args["value"], "causal": Const(softmax.line, softmax.column, mask is not None)}
    (out,) = apply.outputs
    lse = graph.add_tensor(f"{graph.tensor(out).name}_lse", out)
    fused = graph.fuse(sorted(chain, key=lambda n: (n.line, n.column)), attention, (query, key_t, value), args,
                       (out, lse))
    kind = "causal " if mask is not None else ""
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (attention): {kind}attention lowered "
            f"to torch's fused CPU kernel; backward keeps the output and its log-sum-exp ({lse}), not the weights")


def _causal_mask(graph: Rewriter, masked: OpNode) -> list[OpNode] | None:
    """The ``full_like → tril → eq(0)`` ops making ``masked``'s mask, when it is the causal one and fills -inf."""
    if constant(masked.args.get("value")) != -math.inf or graph.sole_consumer(masked.inputs[0]) is None:
        return None
    is_zero = graph.producer(masked.inputs[1])
    if (is_zero is None or is_zero.op.name != "eq" or is_zero.inputs[1] is not None
            or constant(is_zero.args.get("value", Const(0, 0, 0.0))) != 0):
        return None
    lower = graph.producer(is_zero.inputs[0])
    if lower is None or lower.op.name != "tril" or constant(lower.args.get("diagonal", Const(0, 0, 0))) != 0:
        return None
    ones = graph.producer(lower.inputs[0])
    value = constant(ones.args.get("value")) if ones is not None and ones.op.name == "full_like" else None
    if not isinstance(value, (int, float)) or value == 0 or math.isnan(value):
        return None
    if any(graph.sole_consumer(node.outputs[0]) is None for node in (ones, lower, is_zero)):
        return None
    return [ones, lower, is_zero]


def _at_least_2d(graph: Rewriter, tensor: str) -> bool:
    """The spec says the tensor has at least 2 dims: its declared shape has two sizes besides any ``...group``
    (or it is a transpose of such a tensor)."""
    declared = graph.declared_shape(tensor)
    if declared is not None:
        return sum(not isinstance(size, Splice) for size in declared) >= 2
    producer = graph.producer(tensor)
    return producer is not None and producer.op.name == "transpose" and _at_least_2d(graph, producer.inputs[0])
