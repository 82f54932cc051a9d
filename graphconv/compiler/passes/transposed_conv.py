"""Transposed-convolution fusion: ``matmul(weight → reshape(groups, c/groups, o/groups·kh·kw) → transpose(1, 2),
input → reshape(b, groups, c/groups, h·w)) → reshape(b, o·kh·kw, h·w) → fold [→ pad]`` — conv_transpose2d's
drawing — becomes one ``transposed_conv`` op (graphconv.ops.convolution), lowered per call to torch's transposed
convolution kernel (``torch.convolution`` with ``transposed=True``; its VJP ``aten.convolution_backward``) where
the call's shapes make the chain one, fold's padding and output size and the pad becoming its padding and output
padding; computed as written otherwise.

Fires when each intermediate has that one reader and is not a graph output, the reshapes' targets have the ranks
above, the kernels' transpose swaps dims 1 and 2 of the 3-dim kernels (checked here: its dims must be constants),
and a pad folded in pads with the constant 0. All sizes and attrs are checked per call by the op.
"""
from __future__ import annotations

from graphconv.compiler.passes.grouped_conv import is_zero_pad, reshape_to
from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.convolution import transposed_conv

NAME = "transposed_conv"
SUMMARY = "matmul(transposed kernels, pixels) → reshape → fold [→ pad] as one transposed_conv (torch's kernel)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("fold", fuse)


def fuse(graph: Rewriter, fold: OpNode) -> str | None:
    merge = graph.producer(fold.inputs[0])
    if not reshape_to(merge, 3) or graph.sole_consumer(fold.inputs[0]) is None:
        return None
    matmul = graph.producer(merge.inputs[0])
    if matmul is None or matmul.op.name != "matmul" or graph.sole_consumer(merge.inputs[0]) is None:
        return None
    transpose, split = graph.producer(matmul.inputs[0]), graph.producer(matmul.inputs[1])
    if not (_swaps_last_two_of_three(transpose) and reshape_to(split, 4) and matmul.inputs[0] != matmul.inputs[1]):
        return None
    if graph.sole_consumer(matmul.inputs[0]) is None or graph.sole_consumer(matmul.inputs[1]) is None:
        return None
    kernels = graph.producer(transpose.inputs[0])
    if not reshape_to(kernels, 3) or graph.sole_consumer(transpose.inputs[0]) is None:
        return None
    chain, args, (last,) = [split, kernels, transpose, matmul, merge, fold], dict(fold.args), fold.outputs
    args.update(input_shape=split.args["shape"], weight_shape=kernels.args["shape"], columns_shape=merge.args["shape"])
    pad = graph.sole_consumer(last)
    if is_zero_pad(pad):
        chain.append(pad)
        args["pad"], (last,) = pad.args["pad"], pad.outputs
    fused = graph.fuse(sorted(chain, key=lambda n: (n.line, n.column)), transposed_conv,
                       (split.inputs[0], kernels.inputs[0]), args, (last,))
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (transposed_conv): lowered to "
            "torch.convolution (transposed) per call where the shapes are a transposed convolution's")


def _swaps_last_two_of_three(node: OpNode | None) -> bool:
    """A ``transpose(1, 2)`` (or ``permute(0, 2, 1)``) of a 3-dim tensor, its dims constants."""
    if node is None:
        return False
    if node.op.name == "permute":
        dims = constant(node.args.get("dims"))
        return isinstance(dims, tuple) and len(dims) == 3 and tuple(d % 3 for d in dims) == (0, 2, 1)
    if node.op.name == "transpose":
        dims = (constant(node.args.get("dim0")), constant(node.args.get("dim1")))
        return all(isinstance(d, int) for d in dims) and sorted(d % 3 for d in dims) == [1, 2] and dims[0] != dims[1]
    return False
