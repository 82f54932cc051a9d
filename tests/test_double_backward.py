"""Second derivatives everywhere: every shipped spec, compiled both ways, passes gradgradcheck; every nn layer's
gradient penalty matches torch's; torch.func transforms go through a spec used as an op (graphconv.nn.Conv1d).

A backward with ``create_graph=True`` recomputes forward from the inputs and runs the hand-written VJPs on that,
so their derivatives are the second derivatives — through specs used as ops too (their VJP runs the used spec's
generated forward and backward on the saved inputs as they are, graph and all)."""
from __future__ import annotations

import pytest
import torch
from conftest import SPECS
from torch.func import functional_call, grad, jacrev, vmap

import graphconv
from graphconv.compiler.examples import example_inputs

SHIPPED = sorted(p.name for p in SPECS.glob("*.mmd"))


@pytest.mark.parametrize("save", ["all", "minimal"])
@pytest.mark.parametrize("name", SHIPPED)
def test_gradgradcheck_every_shipped_spec(name, save):
    spec = graphconv.load(SPECS / name)
    op = graphconv.compile(spec, save=save)
    attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.attrs.items()}
    inputs = example_inputs(spec, {**spec.meta.example, **attrs}, torch.Generator().manual_seed(0))
    inputs = [t.requires_grad_() for t in inputs]
    assert torch.autograd.gradgradcheck(lambda *xs: op(*xs), inputs, fast_mode=True)


def layers() -> list[tuple[torch.nn.Module, torch.nn.Module, tuple[int, ...]]]:
    """(graphconv layer, torch layer with the same parameters, input shape)."""
    made = []
    for ours, theirs, shape in [
        (graphconv.nn.Conv1d(2, 3, 3, padding=1), torch.nn.Conv1d(2, 3, 3, padding=1), (2, 2, 7)),
        (graphconv.nn.Conv2d(2, 4, 3, stride=2, groups=2), torch.nn.Conv2d(2, 4, 3, stride=2, groups=2), (2, 2, 7, 6)),
        (graphconv.nn.ConvTranspose2d(2, 3, 3, stride=2), torch.nn.ConvTranspose2d(2, 3, 3, stride=2), (1, 2, 4, 5)),
        (graphconv.nn.Linear(5, 3), torch.nn.Linear(5, 3), (4, 5)),
    ]:
        ours, theirs = ours.double(), theirs.double()
        theirs.load_state_dict(ours.state_dict())
        made.append((ours, theirs, shape))
    return made


@pytest.mark.parametrize("ours, theirs, shape", layers(), ids=lambda v: type(v).__name__ if isinstance(v, torch.nn.Module) else None)
def test_a_gradient_penalty_matches_torch(ours, theirs, shape):
    """loss = y.sum() + |dy/dx|²: its weight gradient needs the second derivative through the layer."""
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)

    def weight_grad(layer):
        y = layer(x)
        gx, = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(y.sum() + gx.pow(2).sum(), layer.weight)[0]

    got = weight_grad(ours)
    assert got.grad_fn is None and got.abs().sum() > 0
    torch.testing.assert_close(got, weight_grad(theirs))


def test_torch_func_through_a_spec_used_as_an_op():
    """graphconv.nn.Conv1d is conv1d.mmd, which uses conv2d_full.mmd as an op."""
    ours, theirs, shape = layers()[0]
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    params, reference = dict(ours.named_parameters()), dict(theirs.named_parameters())
    got = grad(lambda p: functional_call(ours, p, (x,)).pow(2).sum())(params)
    want = grad(lambda p: functional_call(theirs, p, (x,)).pow(2).sum())(reference)
    for name in got:
        torch.testing.assert_close(got[name], want[name])
    torch.testing.assert_close(jacrev(ours)(x), jacrev(theirs)(x))
    torch.testing.assert_close(vmap(ours)(x.unsqueeze(1)), vmap(theirs)(x.unsqueeze(1)))
    hessian = jacrev(grad(lambda w: functional_call(ours, {**params, "weight": w}, (x,)).pow(2).sum()))
    reference_hessian = jacrev(grad(lambda w: functional_call(theirs, {**reference, "weight": w}, (x,)).pow(2).sum()))
    torch.testing.assert_close(hessian(params["weight"]), reference_hessian(reference["weight"]))
