"""graphconv.nn's layers against their torch.nn counterparts: same parameters from the same seed, same outputs and
gradients, state_dicts that load both ways, the same repr; channels_last and non-contiguous inputs; CUDA."""
from __future__ import annotations

import pytest
import torch

import graphconv.nn as gnn

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pair_of_layers(kind: str, *args, device="cpu", dtype=torch.float64, **kwargs):
    """(graphconv layer, torch layer), each built right after seeding with 0."""
    torch.manual_seed(0)
    ours = getattr(gnn, kind)(*args, device=device, dtype=dtype, **kwargs)
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(*args, device=device, dtype=dtype, **kwargs)
    return ours, theirs


def assert_same_function(ours, theirs, x, **call):
    """Same output, and the same gradients for the input and every parameter, under a random output gradient."""
    x_ours = x.detach().clone().requires_grad_()
    x_theirs = x.detach().clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours, **call), theirs(x_theirs, **call)
    torch.testing.assert_close(y_ours, y_theirs)
    grad = torch.randn_like(y_theirs)
    y_ours.backward(grad)
    y_theirs.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad)
    for (name, p_ours), (_, p_theirs) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(p_ours.grad, p_theirs.grad, msg=lambda m: f"grad of {name}: {m}")
    return y_ours


CONV2D = [
    dict(args=(3, 8, 3)),
    dict(args=(3, 8, 3), kwargs=dict(stride=2, padding=1)),
    dict(args=(4, 6, (3, 2)), kwargs=dict(stride=(2, 1), padding=(2, 0), dilation=(1, 2))),
    dict(args=(4, 6, 3), kwargs=dict(padding="same", dilation=2)),
    dict(args=(4, 6, 4), kwargs=dict(padding="same")),  # even kernel: torch pads one more at the bottom/right
    dict(args=(4, 6, 3), kwargs=dict(padding="valid", groups=2, bias=False)),
    dict(args=(4, 8, 3), kwargs=dict(groups=4, padding=1, stride=2, dilation=2)),
    dict(args=(4, 4, 3), kwargs=dict(groups=4, padding=1, bias=False)),  # depthwise
    dict(args=(3, 5, 3), kwargs=dict(padding=1, padding_mode="reflect")),
    dict(args=(3, 5, 3), kwargs=dict(padding=(2, 1), padding_mode="replicate", stride=2)),
    dict(args=(3, 5, 3), kwargs=dict(padding="same", padding_mode="circular", bias=False)),
    dict(args=(2, 4, 4), kwargs=dict(padding="same", padding_mode="reflect", dilation=2)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's, about its own speed
@pytest.mark.parametrize("config", CONV2D, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.get("kwargs", {}).items()))
def test_conv2d_matches_torch(config):
    ours, theirs = pair_of_layers("Conv2d", *config["args"], **config.get("kwargs", {}))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p_ours, p_theirs)  # the same seed draws the same numbers
    x = torch.randn(2, config["args"][0], 9, 8, dtype=torch.float64)
    assert_same_function(ours, theirs, x)


def test_conv2d_is_a_torch_conv2d_with_its_repr():
    ours, theirs = pair_of_layers("Conv2d", 3, 8, 3, stride=2, padding=1, bias=False,
                                  padding_mode="reflect")
    assert isinstance(ours, torch.nn.Conv2d)
    assert repr(ours) == repr(theirs) == ("Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
                                          "bias=False, padding_mode=reflect)")
    assert ours.bias is None and ours.weight.shape == (8, 3, 3, 3)


def test_conv2d_takes_an_unbatched_input():
    ours, theirs = pair_of_layers("Conv2d", 3, 4, 3, padding=1)
    assert_same_function(ours, theirs, torch.randn(3, 6, 6, dtype=torch.float64))


def test_conv2d_rejects_what_torch_rejects():
    with pytest.raises(ValueError, match="padding_mode"):
        gnn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="groups"):
        gnn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        gnn.Conv2d(3, 4, 3, stride=2, padding="same")


CONV1D = [
    dict(args=(3, 8, 3)),
    dict(args=(4, 6, 3), kwargs=dict(stride=2, padding=1, dilation=2, groups=2)),
    dict(args=(4, 6, 4), kwargs=dict(padding="same", bias=False)),
    dict(args=(3, 5, 3), kwargs=dict(padding=2, padding_mode="circular")),
    dict(args=(3, 5, 3), kwargs=dict(padding=1, padding_mode="reflect", stride=3)),
]


@pytest.mark.parametrize("config", CONV1D, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.get("kwargs", {}).items()))
def test_conv1d_matches_torch(config):
    ours, theirs = pair_of_layers("Conv1d", *config["args"], **config.get("kwargs", {}))
    assert repr(ours) == repr(theirs)
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p_ours, p_theirs)
    assert_same_function(ours, theirs, torch.randn(2, config["args"][0], 11, dtype=torch.float64))


CONV_TRANSPOSE2D = [
    dict(args=(4, 3, 3)),
    dict(args=(4, 3, 3), kwargs=dict(stride=2, padding=1, output_padding=1)),
    dict(args=(4, 6, (3, 2)), kwargs=dict(stride=(2, 3), padding=(0, 1), output_padding=(1, 2), dilation=(2, 1))),
    dict(args=(4, 4, 3), kwargs=dict(groups=2, stride=2, dilation=2, bias=False)),
]


@pytest.mark.parametrize("config", CONV_TRANSPOSE2D,
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.get("kwargs", {}).items()))
def test_conv_transpose2d_matches_torch(config):
    ours, theirs = pair_of_layers("ConvTranspose2d", *config["args"], **config.get("kwargs", {}))
    assert repr(ours) == repr(theirs) and isinstance(ours, torch.nn.ConvTranspose2d)
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p_ours, p_theirs)
    assert_same_function(ours, theirs, torch.randn(2, config["args"][0], 5, 4, dtype=torch.float64))


def test_conv_transpose2d_output_size_picks_the_output_padding():
    ours, theirs = pair_of_layers("ConvTranspose2d", 4, 3, 3, stride=2, padding=1)
    y = assert_same_function(ours, theirs, torch.randn(2, 4, 5, 5, dtype=torch.float64), output_size=[10, 10])
    assert y.shape == (2, 3, 10, 10)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias):
    ours, theirs = pair_of_layers("Linear", 7, 4, bias=bias)
    assert repr(ours) == repr(theirs) == f"Linear(in_features=7, out_features=4, bias={bias})"
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p_ours, p_theirs)
    assert_same_function(ours, theirs, torch.randn(*shape, dtype=torch.float64))


@pytest.mark.parametrize("kind, args", [("Conv2d", (4, 6, 3)), ("Conv1d", (4, 6, 3)),
                                        ("ConvTranspose2d", (4, 6, 3)), ("Linear", (4, 6))])
def test_state_dict_loads_both_ways(kind, args):
    """A state_dict of our layer loads into torch's (strictly) and back, and both then compute the same."""
    torch.manual_seed(1)
    ours = getattr(gnn, kind)(*args, dtype=torch.float64)
    torch.manual_seed(2)
    theirs = getattr(torch.nn, kind)(*args, dtype=torch.float64)
    assert not torch.equal(ours.weight, theirs.weight)
    theirs.load_state_dict(ours.state_dict())
    assert list(theirs.state_dict()) == list(ours.state_dict())
    x = torch.randn((2, 4, 7, 7) if kind.endswith("2d") else (2, 4, 9) if kind == "Conv1d" else (3, 4),
                    dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.manual_seed(3)
    fresh = getattr(torch.nn, kind)(*args, dtype=torch.float64)
    ours.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(ours(x), fresh(x))
    assert torch.equal(ours.weight, fresh.weight)


def test_channels_last_input_and_layer():
    ours, theirs = pair_of_layers("Conv2d", 4, 6, 3, padding=1, groups=2)
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64).to(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    assert_same_function(ours, theirs, x)
    ours, theirs = ours.to(memory_format=torch.channels_last), theirs.to(memory_format=torch.channels_last)
    assert ours.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_function(ours, theirs, x)


@pytest.mark.parametrize("view", ["transposed", "strided", "expanded"])
def test_non_contiguous_inputs(view):
    ours, theirs = pair_of_layers("Conv2d", 3, 4, 3, stride=2, padding=1)
    base = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    x = {"transposed": base.transpose(2, 3), "strided": base[:, :, ::2, 1::2],
         "expanded": base[:1].expand(2, -1, -1, -1)}[view]
    assert not x.is_contiguous()
    assert_same_function(ours, theirs, x)
    linear_ours, linear_theirs = pair_of_layers("Linear", 10, 3)
    assert_same_function(linear_ours, linear_theirs, base[:, 0].transpose(1, 2))


def test_gradients_accumulate_over_two_backward_passes():
    ours, theirs = pair_of_layers("Conv2d", 3, 4, 3)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    for layer in (ours, theirs):
        layer(x).sum().backward()
        layer(2 * x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


@needs_cuda
@pytest.mark.parametrize("kind, args, shape", [("Conv2d", (4, 6, 3), (2, 4, 9, 9)), ("Conv1d", (4, 6, 3), (2, 4, 9)),
                                               ("ConvTranspose2d", (4, 6, 3), (2, 4, 5, 5)), ("Linear", (4, 6), (3, 4))])
def test_layers_on_cuda_match_torch(kind, args, shape):
    ours, theirs = pair_of_layers(kind, *args, device="cuda", dtype=torch.float32)
    y = assert_same_function(ours, theirs, torch.randn(shape, device="cuda"))
    assert y.device.type == "cuda" and ours.weight.grad.device.type == "cuda"


@needs_cuda
def test_layer_moved_to_cuda_after_construction():
    ours, theirs = pair_of_layers("Conv2d", 3, 4, 3, padding=1, padding_mode="reflect", dtype=torch.float32)
    ours, theirs = ours.cuda(), theirs.cuda()
    x = torch.randn(2, 3, 8, 8, device="cuda").to(memory_format=torch.channels_last)
    assert_same_function(ours, theirs, x)
