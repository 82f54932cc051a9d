"""Shared test helpers: spec paths and the torch comparison every compiled-spec test makes."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SEED = ROOT.parent / "shared" / "seed" / "000_01b1be2d849a49ab.txt"

# A spec with no front matter: dims come only from the actual shapes (run needs --shapes).
NO_FRONT_MATTER = """\
    graph LR
      x --> P(("permute(0, 2, 1)")) --> R(("reshape(-1, 6)"))
      R --> flat
      flat --> M((matmul))
      w --> M
      M --> y
    """


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite runs torch on one thread: its tensors are tiny, where a second thread only waits (on a loaded
    two-core machine, 2-3× slower). Tests that need more set it themselves."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def specs_dir() -> Path:
    return SPECS


def write_spec(tmp_path: Path, text: str, name: str = "spec.mmd") -> Path:
    """Write spec text to a file (dedented) and return its path."""
    import textwrap

    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path
