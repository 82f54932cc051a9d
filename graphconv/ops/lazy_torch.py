"""``torch`` for op modules, imported on first use.

Op modules are imported when a spec is loaded (to read op signatures), and loading a spec must not import
torch. They write ``from graphconv.ops.lazy_torch import torch`` and use it like the real module.
"""
from __future__ import annotations

import importlib
from typing import Any


class _Torch:
    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("torch"), name)


torch: Any = _Torch()
