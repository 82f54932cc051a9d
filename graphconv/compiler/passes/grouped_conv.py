"""Grouped-convolution fusion: ``[pad →] unfold → reshape(b, groups, group_patch, patches) → matmul(weight →
reshape(groups, group_out, group_patch), ·) → reshape(b, o, o_h, o_w)`` — conv2d_full's drawing — becomes one
``grouped_conv`` op (graphconv.ops.convolution), lowered per call to torch's convolution kernel with ``groups``
(``torch.convolution``; its VJP ``aten.convolution_backward``) where the call's shapes make the chain a grouped
convolution, and computed as written otherwise.

Fires when each intermediate has that one reader and is not a graph output, the reshapes' targets have the ranks
above, the matmul reads the kernels first and the columns second, and a pad folded in pads with the constant 0
(its value is checked here: only a constant zero is the convolution's padding). Everything that depends on sizes
and attrs (whole channels per group, the output being the image) is checked per call by the op.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.convolution import grouped_conv
from graphconv.syntax.expr import Tuple as TupleExpr

NAME = "grouped_conv"
SUMMARY = "[pad →] unfold → reshape → matmul(reshaped kernels) → reshape as one grouped_conv (torch's kernel)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("unfold", fuse)


def reshape_to(node: OpNode | None, rank: int) -> bool:
    """Whether ``node`` is a reshape to a target of ``rank`` items."""
    shape = node.args.get("shape") if node is not None and node.op.name == "reshape" else None
    return isinstance(shape, TupleExpr) and len(shape.items) == rank


def fuse(graph: Rewriter, unfold: OpNode) -> str | None:
    (columns,) = unfold.outputs
    split = graph.sole_consumer(columns)
    if not reshape_to(split, 4):
        return None
    (groups,) = split.outputs
    matmul = graph.sole_consumer(groups)
    if matmul is None or matmul.op.name != "matmul" or matmul.inputs[1] != groups or matmul.inputs[0] == groups:
        return None
    kernels = graph.producer(matmul.inputs[0])
    if not reshape_to(kernels, 3) or graph.sole_consumer(matmul.inputs[0]) is None:
        return None
    image = graph.sole_consumer(matmul.outputs[0])
    if not reshape_to(image, 4):
        return None
    chain, args, source = [unfold, split, kernels, matmul, image], dict(unfold.args), unfold.inputs[0]
    args.update(columns_shape=split.args["shape"], weight_shape=kernels.args["shape"], out_shape=image.args["shape"])
    pad = graph.producer(source)
    if is_zero_pad(pad) and graph.sole_consumer(source) is not None:
        chain.insert(0, pad)
        args["pad"], source = pad.args["pad"], pad.inputs[0]
    fused = graph.fuse(sorted(chain, key=lambda n: (n.line, n.column)), grouped_conv, (source, kernels.inputs[0]),
                       args, image.outputs)
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (grouped_conv): lowered to "
            "torch.convolution with groups per call where the shapes are a grouped convolution's")


def is_zero_pad(node: OpNode | None) -> bool:
    """Whether ``node`` is a ``pad`` with the constant 0 (the convolution's padding)."""
    if node is None or node.op.name != "pad":
        return False
    value = node.args.get("value")
    return value is None or constant(value) == 0
