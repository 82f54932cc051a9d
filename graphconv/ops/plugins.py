"""Ops from installed packages, found through the entry-point group ``graphconv.ops``.

A package that ships ops declares each module (or single op) in its ``pyproject.toml``::

    [project.entry-points."graphconv.ops"]
    myops = "mypkg.myops"              # a module: its ops (``@graphconv.op`` functions) are registered
    swish = "mypkg.act:swish"          # one Op object

They are loaded once per process, the first time a spec is loaded (or ``graphconv ops`` lists the ops). Two ops
of the same name — from two plugins, or a plugin and graphconv — are an error that names both sources.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

from graphconv.errors import OpClashError, SpecError
from graphconv.ops.registry import REGISTRY, Op, Registry

GROUP = "graphconv.ops"

_loaded: set[int] = set()  # the registries plugins were loaded into (by id)


def load_plugins(registry: Registry = REGISTRY) -> None:
    """Register the ops of every installed ``graphconv.ops`` entry point into ``registry`` (once)."""
    if id(registry) in _loaded:
        return
    for point in entry_points(group=GROUP):
        for op in _ops_of(point):
            try:
                registry.add(op)
            except OpClashError as error:
                raise OpClashError(f"{_describe(point)}: {error.message}") from None
    _loaded.add(id(registry))


def _ops_of(point: EntryPoint) -> list[Op]:
    try:
        target: Any = point.load()
    except OpClashError as error:  # the module registered an op (with @graphconv.op) whose name is taken
        raise OpClashError(f"{_describe(point)}: {error.message}") from None
    except Exception as error:
        raise SpecError(f"{_describe(point)} cannot be loaded: {type(error).__name__}: {error}") from None
    if isinstance(target, Op):
        return [target]
    if isinstance(target, ModuleType):
        return [value for value in vars(target).values() if isinstance(value, Op)]
    raise SpecError(f"{_describe(point)} is {type(target).__name__}, not a module or an op")


def _describe(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    package = f" of package {dist.name}" if dist is not None else ""
    return f"plugin {point.name} = {point.value} (entry point {GROUP}{package})"
