"""``torch`` for op modules, imported on first use.

Op modules are imported when a spec is loaded (to read op signatures), and loading a spec must not import
torch. They write ``from graphconv.ops.lazy_torch import torch`` and use it like the real module.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any


class _Torch:
    def __getattr__(self, name: str) -> Any:
        """Called for names not fetched yet: each is kept, so later reads cost a plain attribute lookup. torch is
        taken from sys.modules when imported (always, when torch.compile traces: it cannot trace import_module). While
        torch.compile traces, nothing is kept: dynamo would replay the write through this very method, endlessly."""
        real = sys.modules.get("torch") or importlib.import_module("torch")
        value = getattr(real, name)
        if not real.compiler.is_compiling():
            setattr(self, name, value)
        return value


torch: Any = _Torch()
