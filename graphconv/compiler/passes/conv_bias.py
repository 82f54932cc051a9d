"""Convolution-bias fusion: a fused convolution's output ``→ add(·, bias → reshape(shape))`` — conv2d_full's and
conv_transpose2d's drawing — becomes the convolution op with the bias as its third input and ``bias_shape`` the
reshape's target (graphconv.ops.convolution): torch's kernel adds a bias of one value per output channel as it
writes the output and its backward sums the bias's gradient, so no output is made beside the convolution's, and
backward does not hold the bias's gradient while the kernel's gradients are made.

Fires when the convolution (a ``grouped_conv`` or ``transposed_conv`` without a bias) has that one reader and is
not a graph output, and the other addend is the reshape of a tensor, or a tensor, of at most 3 dims (the spec says
so: a declared shape with no ``...group``, or the reshape's target). The op checks per call that the bias is one
per channel, and adds it after the kernel otherwise.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter
from graphconv.graph.opgraph import OpNode
from graphconv.syntax.expr import Splice, Tuple

NAME = "conv_bias"
SUMMARY = "a fused convolution → add(·, bias [→ reshape]) as the convolution with its bias (torch's kernel adds it)"

CONVOLUTIONS = ("grouped_conv", "transposed_conv")


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("add", fuse)


def fuse(graph: Rewriter, add: OpNode) -> str | None:
    for position in (0, 1):
        conv, addend = graph.producer_of(add, position, *CONVOLUTIONS), add.inputs[1 - position]
        if (conv is None or len(conv.inputs) > 2 or addend in conv.inputs or addend == add.inputs[position]
                or graph.sole_consumer(add.inputs[position]) is None):
            continue
        reshape = graph.producer_of(add, 1 - position, "reshape")
        if reshape is not None:
            shape = reshape.args.get("shape")
            if not _at_most_three(shape.items if isinstance(shape, Tuple) else None):
                continue
            bias, args = reshape.inputs[0], {**conv.args, "bias_shape": shape}
            chain = [conv, reshape, add] if graph.sole_consumer(addend) is not None else [conv, add]
        elif _at_most_three(graph.declared_shape(addend)):
            bias, args, chain = addend, dict(conv.args), [conv, add]
        else:
            continue
        fused = graph.fuse(chain, conv.op, (conv.inputs[0], conv.inputs[1], bias), args, add.outputs)
        return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} ({conv.op.name} with its bias): "
                "the kernel adds it")
    return None


def _at_most_three(shape) -> bool:
    """Whether a shape the spec gives (a list of size expressions) is of at most 3 dims, with no ``...group``."""
    return shape is not None and len(shape) <= 3 and not any(isinstance(size, Splice) for size in shape)
