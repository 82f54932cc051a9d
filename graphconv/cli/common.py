"""What the CLI verbs share: exit codes, ``name=value`` and byte-size arguments, ``--ops`` modules."""
from __future__ import annotations

import importlib
import re
from fractions import Fraction
from types import ModuleType
from typing import Any, Sequence

from graphconv.errors import SpecError
from graphconv.syntax.expr import Name, evaluate, parse_call, show_value

EXIT_OK, EXIT_SHAPE, EXIT_SPEC = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


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


UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "kib": 2 ** 10, "m": 10 ** 6, "mb": 10 ** 6, "mib": 2 ** 20,
         "g": 10 ** 9, "gb": 10 ** 9, "gib": 2 ** 30, "t": 10 ** 12, "tb": 10 ** 12, "tib": 2 ** 40}


MAX_BYTES = 2 ** 63 - 1  # what a byte count may be (torch counts bytes in int64)


def parse_bytes(text: str, what: str) -> int:
    """``512MiB``, ``2GB``, ``1.5g``, ``100000`` → a number of bytes (exact: no float rounds or overflows it)."""
    found = re.fullmatch(r"\s*(\d{1,30}(?:\.\d{1,30})?)\s*([a-zA-Z]*)\s*", text)
    if not found or found.group(2).lower() not in UNITS:
        raise SpecError(f"{what}: cannot read {show_value(text)} as a size: a number (at most 30 digits) with an "
                        "optional unit (KiB, MiB, GiB, TiB or KB, MB, GB, TB)")
    count = int(Fraction(found.group(1)) * UNITS[found.group(2).lower()])
    if count > MAX_BYTES:
        raise SpecError(f"{what}: {show_value(text)} is more bytes than anything can hold (2**63 - 1)")
    return count


def show_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def import_modules(names: Sequence[str] | None) -> list[ModuleType]:
    """The modules ``--ops`` names (each may define ops)."""
    modules = []
    for name in names or ():
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise SpecError(f"--ops {name}: cannot import: {error}") from None
    return modules
