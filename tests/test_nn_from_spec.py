"""graphconv.nn.from_spec: a spec's ``params`` inputs become initialised parameters, the rest are forward()'s
arguments; the result matches the same computation written in torch, in value and gradient."""
from __future__ import annotations

import math

import pytest
import torch

import graphconv
from conftest import ROOT, write_spec
from graphconv.errors import CallError

SQUEEZE_EXCITE = ROOT / "examples" / "squeeze_excite.mmd"

SCALED_LINEAR = """
---
title: scaled_linear
graphconv:
  inputs:
    input: [b, in_features]
    weight: [out_features, in_features]
    scale: [out_features]
  attrs: {power: 2}
  params: PARAMS
  ops:
    transpose_weight: transpose(dim0=0, dim1=1)
    raise: pow(exponent=power)
  example: {b: 3, in_features: 4, out_features: 2}
---
graph LR
  W(weight) --> T((transpose_weight)) --> WT(weight_t)
  X(input) -->|a| M((matmul))
  WT -->|b| M
  M --> P(product)
  P --> R((raise)) --> Q(powered)
  Q -->|a| S((mul))
  SC(scale) -->|b| S
  S --> O(output)
"""


def scaled_linear(tmp_path, params: str = "[weight, scale]"):
    return write_spec(tmp_path, SCALED_LINEAR.replace("PARAMS", params), "scaled_linear.mmd")


class TorchSqueezeExcite(torch.nn.Module):
    """The squeeze-excite spec written in torch: its parameters are drawn in the same order (w1, b1, w2, b2)."""

    def __init__(self, channels: int, hidden: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.down = torch.nn.Linear(channels, hidden, dtype=dtype)
        self.up = torch.nn.Linear(hidden, channels, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.up(torch.relu(self.down(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


def test_squeeze_excite_matches_torch_in_value_and_gradient():
    torch.manual_seed(0)
    block = graphconv.nn.from_spec(SQUEEZE_EXCITE, channels=6, hidden=3, dtype=torch.float64)
    torch.manual_seed(0)
    reference = TorchSqueezeExcite(6, 3, dtype=torch.float64)
    assert [(n, tuple(p.shape)) for n, p in block.named_parameters()] == [
        ("w1", (3, 6)), ("b1", (3,)), ("w2", (6, 3)), ("b2", (6,))]
    pairs = [(block.w1, reference.down.weight), (block.b1, reference.down.bias),
             (block.w2, reference.up.weight), (block.b2, reference.up.bias)]
    for ours, theirs in pairs:
        assert torch.equal(ours, theirs)  # uniform_fan_in draws exactly what torch.nn.Linear draws
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = block(x), reference(x_ref)
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for ours, theirs in pairs:
        torch.testing.assert_close(ours.grad, theirs.grad)


def test_module_describes_itself():
    block = graphconv.nn.from_spec(SQUEEZE_EXCITE, channels=6, hidden=3)
    assert repr(block) == "SpecModule(squeeze_excite, channels=6, hidden=3)"
    assert list(block.state_dict()) == ["w1", "b1", "w2", "b2"]


def test_params_listed_without_initialisers_get_the_defaults(tmp_path):
    """A matrix gets torch.nn's default (U(±1/√fan_in)), a vector zeros; attrs are fixed by the module."""
    torch.manual_seed(0)
    module = graphconv.nn.from_spec(scaled_linear(tmp_path), in_features=5, out_features=3, power=3,
                                    dtype=torch.float64)
    torch.manual_seed(0)
    expected = torch.nn.Linear(5, 3, dtype=torch.float64).weight
    assert torch.equal(module.weight, expected) and torch.equal(module.scale, torch.zeros(3, dtype=torch.float64))
    with torch.no_grad():
        module.scale.fill_(0.5)
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(module(x), (x @ expected.T) ** 3 * 0.5)


def test_initialisers_take_arguments_from_dims_and_attrs(tmp_path):
    path = scaled_linear(tmp_path, "{weight: 'normal(std=1 / in_features)', scale: 'constant(power / 4)'}")
    torch.manual_seed(0)
    module = graphconv.nn.from_spec(path, in_features=8, out_features=2, dtype=torch.float64)
    torch.manual_seed(0)
    expected = torch.nn.init.normal_(torch.empty(2, 8, dtype=torch.float64), std=1 / 8)
    assert torch.equal(module.weight, expected)
    assert torch.equal(module.scale, torch.full((2,), 0.5, dtype=torch.float64))


def test_reset_parameters_draws_again(tmp_path):
    module = graphconv.nn.from_spec(scaled_linear(tmp_path, "{weight: kaiming_normal, scale: ones}"),
                                    in_features=4, out_features=3)
    torch.manual_seed(5)
    module.reset_parameters()
    torch.manual_seed(5)
    expected = torch.nn.init.kaiming_normal_(torch.empty(3, 4))
    assert torch.equal(module.weight, expected) and torch.equal(module.scale, torch.ones(3))


def test_forward_takes_the_other_inputs_in_spec_order(tmp_path):
    """With only ``scale`` a parameter, ``input`` and ``weight`` are forward()'s arguments, in that order."""
    module = graphconv.nn.from_spec(scaled_linear(tmp_path, "{scale: ones}"), out_features=3)
    assert [n for n, _ in module.named_parameters()] == ["scale"]
    x, w = torch.randn(2, 4), torch.randn(3, 4)
    torch.testing.assert_close(module(x, w), (x @ w.T) ** 2)
    with pytest.raises(CallError, match=r"takes 2 input\(s\) \(input, weight\) but 1 were given"):
        module(x)


def test_a_spec_without_params_is_a_module_without_parameters():
    conv = graphconv.nn.from_spec(ROOT / "specs" / "conv2d_full.mmd", stride=2, padding=1)
    assert list(conv.parameters()) == []
    x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    torch.testing.assert_close(conv(x, w, b), torch.nn.functional.conv2d(x, w, b, stride=2, padding=1))


def test_device_and_dtype_are_honoured():
    block = graphconv.nn.from_spec(SQUEEZE_EXCITE, channels=4, hidden=2, dtype=torch.float64, device="meta")
    assert {(p.dtype, p.device.type) for p in block.parameters()} == {(torch.float64, "meta")}


def test_unknown_keyword_names_the_attrs_and_dims():
    with pytest.raises(CallError, match=r"'chanels' is neither an attr nor a dim of the spec; did you mean "
                                        r"'channels'\? \(attrs: none; dims: b, channels, h, hidden, w\)"):
        graphconv.nn.from_spec(SQUEEZE_EXCITE, chanels=4, hidden=2)


def test_missing_dim_says_which_keyword_to_give():
    with pytest.raises(CallError, match=r"parameter w1 has shape \[hidden, channels\]; give hidden=\.\.\."):
        graphconv.nn.from_spec(SQUEEZE_EXCITE, channels=4)


def test_unknown_initialiser_points_at_it(tmp_path):
    path = scaled_linear(tmp_path, "{weight: kaiming_uniform, scale: onez}")
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.nn.from_spec(path, in_features=4, out_features=3)
    error = caught.value
    assert error.message.startswith("params.scale: unknown initialiser 'onez'; did you mean 'ones'? (known: ")
    assert error.path == str(path) and (error.line, error.column) == (9, 44)  # under onez
    assert str(error).endswith("params: {weight: kaiming_uniform, scale: onez}\n" + " " * (4 + 43) + "^")


def test_initialiser_arguments_torch_refuses_are_a_spec_error(tmp_path):
    with pytest.raises(graphconv.SpecError, match=r"params.weight: normal cannot initialise a parameter of shape "
                                                  r"\(3, 4\) with these arguments: .*stdd"):
        graphconv.nn.from_spec(scaled_linear(tmp_path, "{weight: 'normal(stdd=1)'}"), in_features=4, out_features=3)


def test_a_param_that_is_no_input_is_a_spec_error(tmp_path):
    with pytest.raises(graphconv.SpecError, match=r"params: 'wieght' is not an input of the spec; did you mean "
                                                  r"'weight'\? \(inputs: input, weight, scale\)") as caught:
        graphconv.nn.from_spec(scaled_linear(tmp_path, "[weight, wieght]"), in_features=4, out_features=3)
    assert (caught.value.line, caught.value.column) == (9, 20)


def test_a_bad_initialiser_is_caught_when_the_spec_loads(tmp_path):
    """The initialiser is parsed with the spec (no torch): a syntax error points into the front matter."""
    with pytest.raises(graphconv.SpecError, match=r"unexpected '\)' in 'normal\(std=\)'") as caught:
        graphconv.load(scaled_linear(tmp_path, "{weight: 'normal(std=)'}"))
    assert (caught.value.line, caught.value.column) == (9, 20)
    with pytest.raises(graphconv.SpecError, match=r"params.weight: expected an initialiser such as zeros"):
        graphconv.load(scaled_linear(tmp_path, "{weight: 3}"))


def test_metadata_reads_both_forms_of_params(tmp_path):
    listed = graphconv.load(scaled_linear(tmp_path)).meta
    assert listed.params == ["weight", "scale"] and listed.param_init == {}
    mapped = graphconv.load(scaled_linear(tmp_path, "{weight: 'uniform(-1, 1)', scale: null}")).meta
    assert mapped.params == ["weight", "scale"] and list(mapped.param_init) == ["weight"]
    call = mapped.param_init["weight"]
    assert call.name == "uniform" and (call.line, call.column) == (9, 20)


def test_uniform_fan_in_is_torchs_bias_bound():
    weight = torch.empty(5, 3, 2, 2)
    bias = graphconv.nn.init.uniform_fan_in(torch.empty(10_000), weight)
    bound = 1 / math.sqrt(3 * 2 * 2)
    assert bias.abs().max() <= bound and bias.abs().max() > 0.99 * bound


@pytest.mark.parametrize("params, message", [
    ("{weight: 'uniform_fan_in(power)'}", "uniform_fan_in cannot initialise a parameter of shape (3, 4) with these "
                                          "arguments: its argument names the parameter whose fan-in bounds it"),
    ("{weight: 'normal(std=-1)'}", "normal cannot initialise a parameter of shape (3, 4) with these arguments: "
                                   "normal expects std >= 0.0"),
    ("{weight: 'uniform(b=inf)'}", "an initialiser's arguments are finite numbers, got inf"),
    ("{weight: 'normal(std=-inf)'}", "an initialiser's arguments are finite numbers, got -inf"),
    ("{weight: \"constant(val='a')\"}", "constant cannot initialise a parameter of shape (3, 4)"),
])
def test_a_bad_initialiser_argument_is_a_spec_error_at_its_params_entry(tmp_path, params, message):
    """Were a raw AttributeError or RuntimeError, or a parameter filled with inf, with no file or line."""
    path = scaled_linear(tmp_path, params)
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.nn.from_spec(path, in_features=4, out_features=3)
    error = caught.value
    assert error.message.startswith("params.weight: ") and message in error.message
    assert error.path == str(path) and (error.line, error.column) == (9, 20)


@pytest.mark.parametrize("shape, message", [
    ("[out_features - 10, in_features]", "its shape [out_features - 10, in_features] = (-7, 4) is not a shape"),
    ("[in_features / 2, in_features]", "= (2.0, 4) is not a shape (sizes are integers ≥ 0)"),
    ("[2 ** 40, in_features]", "= (1099511627776, 4) has 4398046511104 elements, more than a parameter may have"),
    ("[2 ** 62 * out_features, 2 ** 62]", "has 63802943797675961899382738893456539648 elements"),
    ("['2 ** 70', in_features]", "its shape [2 ** 70, in_features]: exponent 70 out of range"),
])
def test_a_parameter_shape_that_is_no_shape_or_too_big_is_refused_before_torch_allocates(tmp_path, monkeypatch,
                                                                                      shape, message):
    monkeypatch.setattr(torch, "empty", lambda *args, **kwargs: pytest.fail("allocated"))
    path = write_spec(tmp_path, SCALED_LINEAR.replace("weight: [out_features, in_features]", f"weight: {shape}")
                      .replace("PARAMS", "[weight, scale]"), "scaled_linear.mmd")
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.nn.from_spec(path, in_features=4, out_features=3)
    error = caught.value
    assert error.message.startswith("params.weight: ") and message in error.message, error.message
    assert error.path == str(path) and (error.line, error.column) == (9, 12)


def test_a_parameter_torch_cannot_allocate_is_a_spec_error_at_its_params_entry(tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(torch, "empty", no_memory)
    with pytest.raises(graphconv.SpecError, match=r"params.weight: cannot make a parameter of shape \(3, 4\): "
                                                  r"DefaultCPUAllocator") as caught:
        graphconv.nn.from_spec(scaled_linear(tmp_path), in_features=4, out_features=3)
    assert (caught.value.line, caught.value.column) == (9, 12)


def test_an_empty_parameter_is_made_as_torch_makes_it(tmp_path):
    path = scaled_linear(tmp_path, "{weight: orthogonal, scale: ones}")
    module = graphconv.nn.from_spec(path, in_features=0, out_features=3)
    assert module.weight.shape == (3, 0)
    assert module(torch.randn(2, 0)).shape == (2, 3)
