"""RMS-norm fusion: ``pow(x, 2) → mean(dim=-1, keepdim=True) → add_scalar(eps) → rsqrt → mul(x, ·) [→ mul(weight)]``
becomes one ``fused_rms_norm`` op (graphconv.ops.normalization): torch's fused RMS-norm forward, and a VJP that reads
the input and the kept reciprocal root mean square (the chain's ``rsqrt`` tensor, which stays an output of the fused op)
instead of the normalized tensor.

Fires when the square and the product read the same tensor, the weight is 1-dim by the spec, and every
intermediate is read only inside the chain and is not a graph output.
"""
from __future__ import annotations

from graphconv.compiler.passes.layer_norm import affine_operand, only_reader_of_output, row_mean
from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.normalization import fused_rms_norm

NAME = "rms_norm"
SUMMARY = "pow(2) → mean → add eps → rsqrt → mul x [→ mul weight] as one fused_rms_norm"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("rsqrt", fuse)


def fuse(graph: Rewriter, rsqrt: OpNode) -> str | None:
    (inv_rms,) = rsqrt.outputs
    times = graph.sole_consumer(inv_rms)
    plus_eps = only_reader_of_output(graph, graph.producer(rsqrt.inputs[0]), "add_scalar", rsqrt)
    mean = row_mean(graph, graph.producer(plus_eps.inputs[0]), plus_eps) if plus_eps else None
    square = only_reader_of_output(graph, graph.producer(mean.inputs[0]), "pow", mean) if mean else None
    if square is None or constant(square.args.get("exponent")) != 2 or times is None or times.op.name != "mul":
        return None
    (input,) = square.inputs
    if sorted(times.inputs) != sorted((input, inv_rms)) or input == inv_rms:
        return None
    chain, weight, (out,) = [square, mean, plus_eps, rsqrt, times], None, times.outputs
    affine = affine_operand(graph, out, "mul")
    if affine is not None:
        node, weight = affine
        chain.append(node)
        (out,) = node.outputs
    fused = graph.fuse(chain, fused_rms_norm, (input, weight), {"eps": plus_eps.args["value"]}, (out, inv_rms))
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (fused_rms_norm): torch's fused "
            f"RMS-norm forward; backward keeps {graph.tensor(inv_rms).name} (1 / rms), not the normalized tensor")
