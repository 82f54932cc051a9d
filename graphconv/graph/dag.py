"""Topological order and cycles of a small directed graph given as ``node → successors``.

What loading a spec needs of a graph library, without importing networkx (0.25–0.5 s on these machines, more than
the rest of a shape check): the builder validates with these, and ``Spec.graph`` makes the networkx view on first
use.
"""
from __future__ import annotations

import heapq
from typing import Callable, Hashable, Iterable, Mapping, Sequence


class CycleError(Exception):
    """The graph has a cycle; ``cycle`` lists its nodes in order (the first follows the last)."""

    def __init__(self, cycle: list) -> None:
        super().__init__(" → ".join(map(str, cycle + cycle[:1])))
        self.cycle = cycle


def topological_order(nodes: Iterable[Hashable], successors: Mapping[Hashable, Sequence[Hashable]],
                      key: Callable[[Hashable], object]) -> list:
    """Every node after its predecessors; among the nodes ready at once, the smallest ``key`` first (networkx's
    ``lexicographical_topological_sort``). Raises CycleError naming the nodes on a cycle."""
    nodes = list(nodes)
    waiting = {node: 0 for node in nodes}
    for node in nodes:
        for after in successors.get(node, ()):
            waiting[after] += 1
    ready = [(key(node), index, node) for index, node in enumerate(nodes) if waiting[node] == 0]
    heapq.heapify(ready)
    position = {node: index for index, node in enumerate(nodes)}
    order = []
    while ready:
        _, _, node = heapq.heappop(ready)
        order.append(node)
        for after in successors.get(node, ()):
            waiting[after] -= 1
            if waiting[after] == 0:
                heapq.heappush(ready, (key(after), position[after], after))
    if len(order) < len(nodes):
        raise CycleError(find_cycle([n for n in nodes if waiting[n] > 0], successors))
    return order


def find_cycle(candidates: Sequence[Hashable], successors: Mapping[Hashable, Sequence[Hashable]]) -> list:
    """A cycle among ``candidates`` (the nodes a topological sort could not place: every one of them lies on a cycle
    or after one), found by walking back along predecessors until a node repeats — iteratively, for big graphs."""
    left = set(candidates)
    predecessor = {}
    for node in candidates:
        for after in successors.get(node, ()):
            if after in left:
                predecessor.setdefault(after, node)
    node, seen = candidates[0], {}
    while node not in seen:
        seen[node] = len(seen)
        node = predecessor[node]
    walk = list(seen)[seen[node]:]
    return walk[::-1]
