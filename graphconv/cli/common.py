"""What the CLI verbs share: exit codes, ``name=value`` arguments, ``--ops`` modules."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Sequence

from graphconv.errors import SpecError
from graphconv.spec.expr import Name, evaluate, parse_call

EXIT_OK, EXIT_SHAPE, EXIT_SPEC = 0, 1, 2


def parse_assignments(text: str | None, what: str) -> dict[str, Any]:
    """``b=4,i_h=8`` → ``{"b": 4, "i_h": 8}``; values are ints, floats, tuples ``(1,2)`` or words
    (``padding=same`` and ``padding='same'`` alike)."""
    if not text:
        return {}
    try:
        call = parse_call(f"f({text})")
    except SpecError as error:
        raise SpecError(f"{what}: cannot read {text!r}: {error.message}") from None
    if call.args:
        raise SpecError(f"{what}: expected name=value pairs, got {text!r}")
    return {key: expr.id if isinstance(expr, Name) else evaluate(expr, {}) for key, expr in call.kwargs}


def import_modules(names: Sequence[str] | None) -> list[ModuleType]:
    """The modules ``--ops`` names (each may define ops)."""
    modules = []
    for name in names or ():
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise SpecError(f"--ops {name}: cannot import: {error}") from None
    return modules
