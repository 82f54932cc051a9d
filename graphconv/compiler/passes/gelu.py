"""GELU fusion: ``mul_scalar(scale) → erf → add_scalar(shift) → mul(x, ·) → mul_scalar(half)`` on one tensor ``x``
becomes one ``erf_gelu`` op (graphconv.ops.activation): torch's GELU kernel and its backward where the constants are
GELU's (checked per call: a spec computes 1/√2 as an expression), the same math as torch ops otherwise.

Fires when the first ``mul_scalar`` and the ``mul`` read the same tensor and each intermediate has that one reader
and is not a graph output.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter
from graphconv.graph.opgraph import OpNode
from graphconv.ops.activation import erf_gelu

NAME = "gelu"
SUMMARY = "x · (1 + erf(x/√2)) / 2 as one erf_gelu (torch's GELU kernel)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("erf", fuse)


def fuse(graph: Rewriter, erf: OpNode) -> str | None:
    scale = graph.producer(erf.inputs[0])
    if scale is None or scale.op.name != "mul_scalar" or graph.sole_consumer(erf.inputs[0]) is None:
        return None
    shift = _next(graph, erf, "add_scalar")
    times = _next(graph, shift, "mul") if shift is not None else None
    (x,) = scale.inputs
    if times is None or sorted(times.inputs) != sorted((x, shift.outputs[0])) or x == shift.outputs[0]:
        return None
    half = _next(graph, times, "mul_scalar")
    if half is None:
        return None
    chain = [scale, erf, shift, times, half]
    args = {"scale": scale.args["value"], "shift": shift.args["value"], "half": half.args["value"]}
    fused = graph.fuse(chain, erf_gelu, (x,), args, half.outputs)
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (erf_gelu): torch's GELU kernel and "
            "its backward where the constants are GELU's")


def _next(graph: Rewriter, node: OpNode, op_name: str) -> OpNode | None:
    """The one reader of ``node``'s output, when it is an ``op_name``."""
    reader = graph.sole_consumer(node.outputs[0])
    return reader if reader is not None and reader.op.name == op_name else None
