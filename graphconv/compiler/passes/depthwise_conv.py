"""Depthwise-convolution fusion: ``unfold → reshape(b, c, 1, taps, patches) → mul(weight → reshape(c, m, taps, 1))
→ sum(dim) → reshape(b, c·m, o_h, o_w)`` — depthwise_conv2d's drawing — becomes one ``depthwise_conv`` op
(graphconv.ops.convolution), lowered per call to torch's convolution kernel with groups = channels
(``torch.convolution``; its VJP ``aten.convolution_backward``) where the call's shapes make the chain a depthwise
convolution (the sum over the taps), and computed as written otherwise — without the (b, c, m, taps, patches)
products the chain draws.

Fires when each intermediate has that one reader and is not a graph output, the reshapes' targets have the ranks
above, the mul multiplies the windows by the reshaped kernels (in either order), and the sum keeps no dims (checked
here: ``keepdim`` must be absent or the constant false). The sum's dim and all sizes are checked per call by the op.
"""
from __future__ import annotations

from graphconv.compiler.passes.grouped_conv import reshape_to
from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.convolution import depthwise_conv

NAME = "depthwise_conv"
SUMMARY = "unfold → reshape → mul(reshaped kernels) → sum → reshape as one depthwise_conv (torch's kernel)"


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("unfold", fuse)


def fuse(graph: Rewriter, unfold: OpNode) -> str | None:
    windows = graph.sole_consumer(unfold.outputs[0])
    if not reshape_to(windows, 5):
        return None
    mul = graph.sole_consumer(windows.outputs[0])
    if mul is None or mul.op.name != "mul" or windows.outputs[0] not in mul.inputs or mul.inputs[0] == mul.inputs[1]:
        return None
    (kernel_tensor,) = [t for t in mul.inputs if t != windows.outputs[0]]
    kernels = graph.producer(kernel_tensor)
    if not reshape_to(kernels, 4) or graph.sole_consumer(kernel_tensor) is None:
        return None
    total = graph.sole_consumer(mul.outputs[0])
    if total is None or total.op.name != "sum" or "dim" not in total.args:
        return None
    if "keepdim" in total.args and constant(total.args["keepdim"]) is not False:
        return None
    image = graph.sole_consumer(total.outputs[0])
    if not reshape_to(image, 4):
        return None
    chain, args = [unfold, windows, kernels, mul, total, image], dict(unfold.args)
    args.update(windows_shape=windows.args["shape"], kernels_shape=kernels.args["shape"], dim=total.args["dim"],
                out_shape=image.args["shape"])
    fused = graph.fuse(sorted(chain, key=lambda n: (n.line, n.column)), depthwise_conv,
                       (unfold.inputs[0], kernels.inputs[0]), args, image.outputs)
    return (f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (depthwise_conv): lowered to "
            "torch.convolution with groups = channels per call where the shapes are a depthwise convolution's")
