"""SiLU fusion: ``sigmoid(x) → mul(x, ·)`` becomes one ``silu`` op (graphconv.ops.activation): torch's SiLU kernel
and its backward, which keep only ``x`` — not the sigmoid and the product as well.

Fires when the product reads the same tensor the sigmoid does and the sigmoid's output has that one reader and is
not a graph output.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter
from graphconv.graph.opgraph import OpNode
from graphconv.ops.activation import silu

NAME = "silu"
SUMMARY = "x · sigmoid(x) as one silu (torch's SiLU kernel)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("sigmoid", fuse)


def fuse(graph: Rewriter, sigmoid: OpNode) -> str | None:
    (x,), (gate,) = sigmoid.inputs, sigmoid.outputs
    times = graph.sole_consumer(gate)
    if times is None or times.op.name != "mul" or sorted(times.inputs) != sorted((x, gate)) or x == gate:
        return None
    fused = graph.fuse([sigmoid, times], silu, (x,), {}, times.outputs)
    return f"{sigmoid.id} ({sigmoid.label}) → {times.id} ({times.label}) → {fused.id} (silu): torch's SiLU kernel"
