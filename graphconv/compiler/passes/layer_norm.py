"""Layer-norm lowering: ``mean(x) → sub → pow(2) → mean → add_scalar(eps) → sqrt → div [→ mul(weight) →
add(bias)]``, every mean over the last dim with ``keepdim=True``, becomes one ``fused_layer_norm`` op
(graphconv.ops.normalization): ``torch.native_layer_norm`` forward and ``native_layer_norm_backward`` VJP, one pass
over memory each way instead of eight ops and their VJPs. The row means the chain makes (its ``mean`` tensor) stay
an output of the fused op, with the reciprocal standard deviations as a new one: the VJP reads both.

Fires where the chain is exactly that math: the centring subtracts the mean of the very tensor it centres, the
variance is the mean of the square of that centred tensor, the division divides it by the square root; the weight
and the bias are 1-dim by the spec; every intermediate is read only inside the chain and is not a graph output.
``fused_layer_norm`` takes the same math as torch ops for a call whose weight or bias broadcasts.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.normalization import fused_layer_norm
from graphconv.syntax.expr import Splice

NAME = "layer_norm"
SUMMARY = "mean → sub → pow(2) → mean → add eps → sqrt → div [→ mul weight → add bias] as one fused_layer_norm"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("div", fuse)


def fuse(graph: Rewriter, div: OpNode) -> str | None:
    centered, std = div.inputs
    sqrt = only_reader_of_output(graph, graph.producer(std), "sqrt", div)
    plus_eps = only_reader_of_output(graph, graph.producer(sqrt.inputs[0]), "add_scalar", sqrt) if sqrt else None
    variance = row_mean(graph, graph.producer(plus_eps.inputs[0]), plus_eps) if plus_eps else None
    square = only_reader_of_output(graph, graph.producer(variance.inputs[0]), "pow", variance) if variance else None
    if square is None or constant(square.args.get("exponent")) != 2 or square.inputs[0] != centered:
        return None
    sub = graph.producer(centered)
    if (sub is None or sub.op.name != "sub" or graph.is_output(centered)
            or {n.id for n in graph.consumers(centered)} != {square.id, div.id}):
        return None
    input, mu = sub.inputs
    mean = row_mean(graph, graph.producer(mu), sub)
    if mean is None or mean.inputs[0] != input:
        return None
    chain, inputs, (out,) = [mean, sub, square, variance, plus_eps, sqrt, div], [input, None, None], div.outputs
    for position, name in ((1, "mul"), (2, "add")):
        affine = affine_operand(graph, out, name)
        if affine is None:
            break
        node, inputs[position] = affine
        chain.append(node)
        (out,) = node.outputs
    rstd = graph.add_tensor(f"{graph.tensor(out).name}_rstd", out)
    fused = graph.fuse(chain, fused_layer_norm, tuple(inputs), {"eps": plus_eps.args["value"]}, (out, mu, rstd))
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (fused_layer_norm): "
            f"torch.native_layer_norm and its backward; outputs {graph.tensor(mu).name} (row means) and {rstd} "
            "(1 / std) for the VJP")


def only_reader_of_output(graph: Rewriter, node: OpNode | None, op_name: str, reader: OpNode) -> OpNode | None:
    """``node`` when it is an ``op_name`` whose one output only ``reader`` reads, and that is not a graph output."""
    if node is None or node.op.name != op_name:
        return None
    consumer = graph.sole_consumer(node.outputs[0])
    return node if consumer is not None and consumer.id == reader.id else None


def row_mean(graph: Rewriter, node: OpNode | None, reader: OpNode) -> OpNode | None:
    """``node`` when it is a ``mean(dim=-1, keepdim=True)`` read only by ``reader``."""
    node = only_reader_of_output(graph, node, "mean", reader)
    if node is None or constant(node.args.get("dim")) not in (-1, (-1,)):
        return None
    return node if constant(node.args.get("keepdim")) is True else None


def affine_operand(graph: Rewriter, tensor: str, op_name: str) -> tuple[OpNode, str] | None:
    """The ``mul`` (weight) or ``add`` (bias) that is ``tensor``'s one reader, with a 1-dim other operand; that
    node and the operand."""
    node = graph.sole_consumer(tensor)
    if node is None or node.op.name != op_name:
        return None
    other = node.inputs[1] if node.inputs[0] == tensor else node.inputs[0]
    declared = graph.declared_shape(other)
    if other == tensor or declared is None or len(declared) != 1 or isinstance(declared[0], Splice):
        return None
    return node, other
