"""Dead-code elimination: ops whose outputs reach no graph output are removed (last reader first).

A spec that lists its ``outputs:`` may leave a branch unused; left in, it would run and keep values alive.
"""
from __future__ import annotations

from graphconv.compiler.passes.rewrite import Rewriter

NAME = "dce"
SUMMARY = "remove ops whose outputs reach no graph output"


def run(graph: Rewriter) -> list[str]:
    removed: list[str] = []
    for node in reversed(graph.ops()):
        if graph.has(node.id) and graph.is_dead(node):
            removed += graph.remove_if_dead(node.id)
    return [f"{node_id}: its outputs reach no graph output, removed" for node_id in removed]
