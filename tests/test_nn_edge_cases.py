"""graphconv.nn's drop-ins where torch's own behaviour is unusual — matched case by case against torch: transposed
convolutions whose output padding reaches the stride (torch allows up to the dilation), layers without input
features or channels (PyTorch's own tests ``test_conv_empty_channel`` and ``test_conv_backend`` with
``empty_channel``/``empty_batch`` inputs, reproduced), and ``torch.jit.trace`` of a model built from them."""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import graphconv.nn as gnn
from graphconv import SpecError
from graphconv.nn import functional as F

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about initialising empty tensors


def same_module(ours: torch.nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    theirs.load_state_dict(ours.state_dict())
    return theirs


def assert_same_value_and_gradients(ours, theirs, x):
    """Both modules on ``x`` under one upstream gradient: outputs, input and parameter gradients equal."""
    results = []
    upstream = None
    for module in (ours, theirs):
        x_ = x.detach().clone().requires_grad_()
        y = module(x_)
        upstream = torch.randn_like(y) if upstream is None else upstream
        results.append((y, torch.autograd.grad(y, [x_, *module.parameters()], upstream)))
    (y1, grads1), (y2, grads2) = results
    torch.testing.assert_close(y1, y2)
    for g1, g2 in zip(grads1, grads2, strict=True):
        torch.testing.assert_close(g1, g2)


# --- transposed convolution: output padding from the stride up to the dilation ------------------------------------


@pytest.mark.parametrize("stride, padding, output_padding, dilation", [
    (2, 0, 2, 3),  # stride ≤ output_padding < dilation: was a SpecError at col2im
    (1, 0, 1, 2),
    (1, 2, 1, 2),  # padding above the output padding: the output is cropped, then extended
    ((1, 2), (2, 1), (1, 3), (2, 4)),
    (3, 1, 4, 5),
    (2, 1, 1, 1),  # output_padding < stride, as before
])
def test_conv_transpose2d_takes_every_output_padding_torch_takes(stride, padding, output_padding, dilation):
    torch.manual_seed(0)
    ours = gnn.ConvTranspose2d(2, 3, 3, stride=stride, padding=padding, output_padding=output_padding,
                               dilation=dilation, dtype=torch.float64)
    theirs = same_module(ours, torch.nn.ConvTranspose2d(2, 3, 3, stride=stride, padding=padding,
                                                        output_padding=output_padding, dilation=dilation,
                                                        dtype=torch.float64))
    assert_same_value_and_gradients(ours, theirs, torch.randn(2, 2, 5, 4, dtype=torch.float64))


# --- no input features, no input channels -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 0), (0,), (2, 3, 0), (0, 0)])
def test_linear_without_input_features_is_its_bias(shape):
    torch.manual_seed(0)
    ours = gnn.Linear(0, 4, dtype=torch.float64)  # was a RuntimeError: reshape(-1, 0) is ambiguous
    theirs = same_module(ours, torch.nn.Linear(0, 4, dtype=torch.float64))
    assert_same_value_and_gradients(ours, theirs, torch.randn(shape, dtype=torch.float64))


def module_empty_input(module, inp):
    """PyTorch's ``_test_module_empty_input`` (check_size=False): backward runs, and every gradient is zero."""
    inp.requires_grad_(True)
    out = module(inp)
    out.backward(torch.rand_like(out))
    for p in module.parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, torch.zeros_like(p.grad))
    torch.testing.assert_close(inp.grad, torch.zeros_like(inp))
    return out


def test_conv_empty_channel():
    """PyTorch's test_conv_empty_channel (test/nn/test_convolution.py), Conv1d and Conv2d."""
    mod = gnn.Conv1d(0, 8, 2, stride=2)
    out = module_empty_input(mod, torch.randn(2, 0, 15))
    assert out.shape == torch.nn.functional.conv1d(torch.randn(2, 0, 15), mod.weight, mod.bias, 2).shape == (2, 0, 7)
    # torch: "Given groups=1, weight of size [8, 0, 2], expected input[2, 1, 0] to have 0 channels"
    with pytest.raises(SpecError, match="weight: dim 1 is 0 but in_channels // groups is 1"):
        mod(torch.randn(2, 1, 0))

    mod = gnn.Conv2d(0, 33, 3, stride=2)
    out = module_empty_input(mod, torch.randn(2, 0, 50, 100))
    assert out.shape == (2, 0, 24, 49)
    with pytest.raises(SpecError, match="weight: dim 1 is 0 but in_channels // groups is 1"):
        mod(torch.randn(2, 1, 40, 0))


def make_noncontiguous(tensor):
    """As PyTorch's test_conv_backend makes its inputs non-contiguous."""
    if tensor is None:
        return None
    wanted = tensor.requires_grad
    return torch.repeat_interleave(tensor, 2, dim=-1)[..., ::2].detach().requires_grad_(wanted)


BACKEND_CASES = [  # (input shape, groups): PyTorch's test_conv_backend cases on the 'Empty' backend
    ((0, 6, 7), 3), ((2, 0, 7), 3), ((0, 0, 7), 3), ((0, 6, 7, 8), 3), ((2, 0, 7, 8), 3), ((0, 0, 7, 8), 3),
    ((2, 0, 7), 1), ((2, 0, 7, 8), 1),
]


@pytest.mark.parametrize("input_shape, groups", BACKEND_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("has_bias, strided, contiguous", list(itertools.product([True, False], repeat=3)))
def test_conv_backend_empty(input_shape, groups, has_bias, strided, contiguous):
    """PyTorch's test_conv_backend for its empty_batch, empty_channel and empty_batch_channel cases (1d and 2d,
    not transposed, not dilated): the value torch gives, a backward that runs, gradcheck and gradgradcheck."""
    torch.manual_seed(0)
    c_in, c_out, dim = input_shape[1], 12, len(input_shape) - 2
    x = torch.randn(*input_shape, requires_grad=True)
    weight = torch.randn(c_out, c_in // groups, *[3] * dim, requires_grad=True)
    bias = torch.randn(c_out, requires_grad=True) if has_bias else None
    if not contiguous:
        x, weight, bias = make_noncontiguous(x), make_noncontiguous(weight), make_noncontiguous(bias)
    stride = 2 if strided else 1
    ours = F.conv1d if dim == 1 else F.conv2d
    theirs = torch.nn.functional.conv1d if dim == 1 else torch.nn.functional.conv2d
    output = ours(x, weight, bias, stride=stride, groups=groups)
    torch.testing.assert_close(output, theirs(x, weight, bias, stride=stride, groups=groups))
    output.backward(torch.randn(output.shape))

    inputs = [t.detach().double().requires_grad_() for t in (x, weight) + ((bias,) if has_bias else ())]

    def convolution(*tensors):
        return ours(*tensors, stride=stride, groups=groups)

    assert gradcheck(convolution, inputs)
    if has_bias:
        inputs[-1].requires_grad_(False)  # as PyTorch: double backward does not support bias gradients
    if c_in == 0:  # the spec's compiled ops are once-differentiable; the empty answer is not theirs
        assert gradgradcheck(convolution, inputs)


# --- torch.jit.trace ----------------------------------------------------------------------------------------------


def test_torch_jit_trace_of_a_model_of_graphconv_layers_runs_and_differentiates():
    """Was a SpecError: traced sizes arrive as tensors (tensor(2) is not a size). The trace runs the compiled ops
    as Python functions: it computes and differentiates as the model does; torch.jit.save refuses it, naming the
    Python function it cannot write."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(gnn.Conv2d(3, 4, 3), torch.nn.ReLU(), gnn.ConvTranspose2d(4, 2, 2, stride=2),
                                gnn.Linear(12, 5))
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's own hints: sizes read as constants
        traced = torch.jit.trace(model, x)
    assert_same_value_and_gradients(traced, model, x)
