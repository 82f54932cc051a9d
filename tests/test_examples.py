"""The examples run and show what they claim: the digits CNN trains to the same curve with graphconv's and torch's
Conv2d (and ≥ 95% test accuracy with the default epochs), the spec-authored block trains like its torch twin."""
from __future__ import annotations

import importlib.util
import runpy

import pytest
import torch

from conftest import ROOT

EXAMPLES = ROOT / "examples"
EXTRA = ("sklearn", "matplotlib", "tqdm")
MISSING = [name for name in EXTRA if importlib.util.find_spec(name) is None]
needs_extra = pytest.mark.skipif(bool(MISSING), reason=f"the 'examples' extra is not installed (no "
                                                       f"{', '.join(MISSING)}): pip install -e '.[examples]'")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / name), run_name=name.removesuffix(".py"))


@pytest.fixture
def keep_threads():
    """The digits example sets torch's thread count: give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_custom_op_trains_like_its_torch_twin(capsys):
    result = example("custom_op_in_model.py")["main"](["--steps", "8"])
    assert result["start_gap"] == 0  # from_spec drew exactly torch.nn.Linear's parameters
    assert result["loss_gap"] < 1e-12 and result["param_gap"] < 1e-12
    losses = result["losses"]["graphconv"]
    assert len(losses) == 8 and losses[-1] < 0.97 * losses[0]
    assert "SpecModule(squeeze_excite, channels=16, hidden=4)" in capsys.readouterr().out


@needs_extra
def test_digits_short_run_writes_the_plot(tmp_path, capsys, keep_threads):
    plot = tmp_path / "plots" / "loss.png"
    result = example("digits_cnn.py")["main"](["--epochs", "2", "--plot", str(plot)])
    assert plot.read_bytes().startswith(PNG_SIGNATURE) and plot.stat().st_size > 10_000
    assert len(result["losses"]["torch"]) == 2 * 23  # 1437 training images in batches of 64
    assert result["max_loss_difference"] < 1e-12
    assert result["accuracy"]["graphconv"] == result["accuracy"]["torch"] > 0.8
    out = capsys.readouterr().out
    assert "max |loss difference| over 46 steps" in out and f"plot: {plot}" in out


@needs_extra
@pytest.mark.slow
def test_digits_default_run_reaches_95_percent(tmp_path, keep_threads):
    result = example("digits_cnn.py")["main"](["--plot", str(tmp_path / "loss.png")])
    assert result["accuracy"]["graphconv"] >= 0.95 and result["accuracy"]["torch"] >= 0.95
    assert result["max_loss_difference"] < 1e-12
