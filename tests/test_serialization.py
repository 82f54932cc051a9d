"""Models holding graphconv modules survive pickle, torch.save/torch.load, state_dict files and deepcopy: the copy
computes the same outputs and gradients, also when the spec file of a from_spec module is gone."""
from __future__ import annotations

import copy
import pickle
import shutil

import pytest
import torch

import graphconv
from graphconv.nn import spec_module
from conftest import ROOT


def make_model(spec_path, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        graphconv.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
        torch.nn.ReLU(),
        graphconv.nn.from_spec(spec_path, channels=8, hidden=2),
        torch.nn.Flatten(),
        graphconv.nn.Linear(8 * 6 * 6, 5),
    )


@pytest.fixture
def spec_path(tmp_path):
    """A copy of the squeeze-excite spec that a test may delete."""
    path = tmp_path / "squeeze_excite.mmd"
    shutil.copy(ROOT / "examples" / "squeeze_excite.mmd", path)
    return path


def assert_same_model(model, restored) -> None:
    assert [type(m) for m in restored] == [type(m) for m in model]
    for (name, p), (name_r, p_r) in zip(model.named_parameters(), restored.named_parameters()):
        assert name == name_r and torch.equal(p, p_r)
    x = torch.randn(2, 3, 6, 6)
    y, y_restored = model(x), restored(x)
    assert torch.equal(y, y_restored)
    y.square().sum().backward()
    y_restored.square().sum().backward()
    for p, p_r in zip(model.parameters(), restored.parameters()):
        assert p.grad is not None and torch.equal(p.grad, p_r.grad)


def forget_spec(path) -> None:
    """Delete the spec file and the compiled ops cached in this process: loading must not need either."""
    path.unlink()
    spec_module.compiled.cache_clear()


def test_pickle_round_trip(spec_path):
    model = make_model(spec_path)
    data = pickle.dumps(model)
    forget_spec(spec_path)
    assert_same_model(model, pickle.loads(data))


def test_torch_save_and_load_whole_model(spec_path, tmp_path):
    model = make_model(spec_path)
    torch.save(model, tmp_path / "model.pt")
    forget_spec(spec_path)
    restored = torch.load(tmp_path / "model.pt", weights_only=False)
    assert repr(restored) == repr(model)
    assert_same_model(model, restored)


def test_state_dict_file_loads_with_weights_only(spec_path, tmp_path):
    model = make_model(spec_path)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    fresh = make_model(spec_path, seed=1)
    assert not torch.equal(fresh[0].weight, model[0].weight)
    fresh.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    assert_same_model(model, fresh)


def test_deepcopy(spec_path):
    model = make_model(spec_path)
    clone = copy.deepcopy(model)
    assert clone[2].w1 is not model[2].w1
    assert_same_model(model, clone)


def test_torch_state_dict_loads_into_a_graphconv_model(tmp_path):
    """A checkpoint written by a torch.nn model loads into the same model built from graphconv layers."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    torch.save(theirs.state_dict(), tmp_path / "torch.pt")
    ours = torch.nn.Sequential(graphconv.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               graphconv.nn.Linear(64, 2))
    ours.load_state_dict(torch.load(tmp_path / "torch.pt", weights_only=True))
    x = torch.randn(3, 3, 6, 6)
    torch.testing.assert_close(ours(x), theirs(x))
