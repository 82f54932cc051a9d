"""Optimization passes on the op graph, each semantics-preserving, run in order by :func:`optimize`.

A pass is a module with ``NAME``, a one-line ``SUMMARY``, and ``run(graph)`` that edits
a :class:`~graphconv.compiler.passes.rewrite.Rewriter` and returns one line per change (``graphconv compile
--explain`` prints them). ``graphconv.compile(spec, optimize=False)`` skips them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from graphconv.compiler.passes import (attention, conv_bias, cse, dce, depthwise_conv, fold_views, gelu,
                                       grouped_conv, im2col, layer_norm, matmul_bias, patch_matmul, rms_norm, silu,
                                       transposed_conv, window_reduce)
from graphconv.compiler.passes.rewrite import Rewriter
from graphconv.graph.opgraph import Spec

PIPELINE: tuple[ModuleType, ...] = (dce, fold_views, cse, im2col, patch_matmul, grouped_conv, depthwise_conv,
                                    transposed_conv, conv_bias, window_reduce, attention, matmul_bias, layer_norm,
                                    rms_norm, gelu, silu)


@dataclass
class PassReport:
    name: str
    summary: str
    changes: list[str]


def optimize(spec: Spec, pipeline: tuple[ModuleType, ...] = PIPELINE) -> tuple[Spec, list[PassReport]]:
    """The spec with every pass of ``pipeline`` applied (the given spec is not changed), and what each did."""
    graph = Rewriter(spec)
    reports = [PassReport(module.NAME, module.SUMMARY, module.run(graph)) for module in pipeline]
    return graph.spec(), reports
