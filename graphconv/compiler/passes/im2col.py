"""The im2col pass: ``unfold → permute(0, 2, 1) [→ reshape]`` becomes one ``im2col`` op, a single strided copy of
the padded input straight into the (batch · patches, patch) layout a matmul reads — where the chain makes the
(b, c·kh·kw, patches) patch matrix and then copies it again to transpose it.

Fires when each intermediate tensor has that one reader and is not a graph output. ``im2col`` is
graphconv.ops.fused.im2col: the same values, with its own VJP (col2im through fold).
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter, constant
from graphconv.graph.opgraph import OpNode
from graphconv.ops.fused import im2col

NAME = "im2col"
SUMMARY = "unfold → permute → reshape as one strided copy (im2col)"
TRANSPOSE_PATCHES = (0, 2, 1)


def run(graph: Rewriter) -> list[str]:
    return graph.fuse_each("unfold", fuse)


def fuse(graph: Rewriter, unfold: OpNode) -> str | None:
    (patches,) = unfold.outputs
    permute = graph.sole_consumer(patches)
    if permute is None or permute.op.name != "permute" or not _transposes_patches(permute):
        return None
    chain, args, (last,) = [unfold, permute], dict(unfold.args), permute.outputs
    reshape = graph.sole_consumer(last)
    if reshape is not None and reshape.op.name == "reshape":
        chain.append(reshape)
        args["shape"] = reshape.args["shape"]
        (last,) = reshape.outputs
    fused = graph.fuse(chain, im2col, (unfold.inputs[0],), args, (last,))
    return f"{' → '.join(f'{n.id} ({n.label})' for n in chain)} → {fused.id} (im2col): one strided copy"


def _transposes_patches(permute: OpNode) -> bool:
    dims = constant(permute.args.get("dims"))
    return isinstance(dims, tuple) and len(dims) == 3 and tuple(d % 3 for d in dims) == TRANSPOSE_PATCHES
