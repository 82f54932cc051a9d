"""graphconv.compile(spec, backend="inductor"): the generated forward and backward compiled by torch.compile —
same values and gradients as the eager backend; eager, with a warning, where there is no C++ compiler."""
from pathlib import Path

import pytest
import torch

import graphconv
import graphconv.nn as gnn
from graphconv.compiler import inductor

LIBRARY = Path(graphconv.__file__).parent / "library"


def layer_norm_inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    return tuple(torch.randn(*shape, requires_grad=True) for shape in ((2, 3, 8), (8,), (8,)))


def values_and_grads(op, inputs) -> tuple:
    out = op(*inputs)
    return (out, *torch.autograd.grad(out.square().sum(), inputs))


@pytest.mark.slow
def test_an_inductor_layer_norm_matches_torch():
    torch._dynamo.reset()
    inputs = layer_norm_inputs()
    got = values_and_grads(graphconv.compile(LIBRARY / "layer_norm.mmd", backend="inductor"), inputs)
    want = values_and_grads(lambda x, w, b: torch.nn.functional.layer_norm(x, (8,), w, b), inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_an_inductor_conv2d_layer_matches_torch():
    torch._dynamo.reset()
    torch.manual_seed(1)
    ours = gnn.Conv2d(3, 4, 3, stride=2, padding=1, backend="inductor")
    theirs = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    got = values_and_grads(ours, (x,)) + (torch.autograd.grad(ours(x).sum(), ours.weight)[0],)
    want = values_and_grads(theirs, (x,)) + (torch.autograd.grad(theirs(x).sum(), theirs.weight)[0],)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_without_a_cpp_compiler_inductor_falls_back_to_eager(monkeypatch):
    monkeypatch.setattr(inductor, "has_cpp_compiler", lambda: False)
    op = graphconv.compile(LIBRARY / "layer_norm.mmd", backend="inductor")
    inputs = layer_norm_inputs()
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        got = values_and_grads(op, inputs)
    want = values_and_grads(graphconv.compile(LIBRARY / "layer_norm.mmd"), inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of 'eager', 'inductor'"):
        graphconv.compile(LIBRARY / "layer_norm.mmd", backend="tvm")


def test_from_spec_takes_the_backend():
    block = gnn.from_spec(Path(__file__).parent.parent / "examples" / "squeeze_excite.mmd", channels=8, hidden=2,
                          backend="inductor")
    assert block._op.backend == "inductor"
