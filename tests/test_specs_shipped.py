"""Every shipped spec against the autograd oracle (value, gradients, second derivatives) and its torch reference
(value and the gradient of every input), on the example and each case the spec lists — plus graphconv.nn.functional (conv2d, conv1d, conv_transpose2d, linear) against torch's."""
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

import graphconv
from conftest import SPECS
from graphconv.nn import functional as F
from graphconv.check.reference import read_reference
from graphconv.check.verify import check_spec

SHIPPED = sorted(p.name for p in SPECS.glob("*.mmd"))
SHELF = ["conv2d_full.mmd", "conv1d.mmd", "conv_transpose2d.mmd", "depthwise_conv2d.mmd", "linear.mmd",
         "avg_pool2d.mmd", "max_pool2d.mmd", "layer_norm.mmd", "scaled_dot_product_attention.mmd",
         # what a transformer block, a CNN and their losses are written with (issue 15)
         "gelu.mmd", "gelu_tanh.mmd", "rms_norm.mmd", "swiglu.mmd", "rope.mmd", "causal_attention.mmd",
         "batch_norm.mmd", "group_norm.mmd", "reflect_pad2d.mmd", "replicate_pad2d.mmd", "circular_pad2d.mmd",
         "cross_entropy.mmd", "nll_loss.mmd", "mse_loss.mmd"]
# Specs no torch function can be compared with: dropout draws its mask from a generator of its own (its seed);
# tests/test_authoring.py checks the mask instead.
WITHOUT_REFERENCE = {"dropout.mmd"}


def test_the_shelf_is_shipped():
    assert set(SHELF) <= set(SHIPPED)


@pytest.mark.slow  # builds a wheel (pip, offline: no build isolation)
def test_a_built_wheel_carries_every_spec(tmp_path):
    """graphconv.nn's layers compile the shipped specs, so an installed graphconv must have them: the wheel holds
    the spec library as graphconv/library (the repository's specs/ links to it)."""
    source = tmp_path / "source"  # a copy: building writes scratch folders beside the sources
    shutil.copytree(SPECS.parent, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("graphconv-*.whl")
    packed = {name for name in zipfile.ZipFile(wheel).namelist()
              if name.startswith("graphconv/library/") and not name.endswith(".py")}
    shipped = {f"graphconv/library/{p.name}" for p in SPECS.iterdir() if p.suffix in (".mmd", ".yaml")}
    assert shipped and packed == shipped
    assert F.LIBRARY.samefile(SPECS)


@pytest.mark.parametrize("name", SHIPPED)
def test_spec_matches_the_oracle_and_its_reference_in_value_and_every_gradient(name):
    spec = graphconv.load(SPECS / name)
    reference = read_reference(spec)
    if name in WITHOUT_REFERENCE:
        assert reference is None
        return
    assert reference is not None
    assert reference.function.startswith("torch.nn.functional.") or reference.expression is not None
    rows = check_spec(spec, ops=False)  # the ops themselves: tests/test_ops_gradcheck.py
    failed = [f"{r.what} [{r.case}]: {r.detail}" for r in rows if not r.ok]
    assert not failed, "\n".join(failed)
    cases = {r.case for r in rows}
    assert len(cases) == 1 + len(reference.cases)
    floating = [n for n in spec.input_names if n not in spec.meta.input_types or
                spec.meta.input_types[n].dtype == "float"]  # int and bool inputs have no gradient
    wanted = {"spec gradcheck", "oracle", "value"} | {f"grad {n}" for n in floating}
    for case in cases:
        assert {r.what for r in rows if r.case == case} == wanted, case


@pytest.mark.parametrize("name", [name for name in SHELF if name not in WITHOUT_REFERENCE])
def test_shelf_specs_try_several_configurations(name):
    assert len(read_reference(graphconv.load(SPECS / name)).cases) >= 2


CONV2D_CASES = [
    dict(),
    dict(bias=True),
    dict(stride=2, padding=1, bias=True),
    dict(stride=(2, 1), padding=(1, 2)),
    dict(stride=(3,), padding=(2,)),
    dict(padding="same", bias=True),
    dict(padding="same", kernel=(4, 2), dilation=(1, 3)),
    dict(padding="valid", dilation=2),
    dict(dilation=(2, 1), padding=2, stride=2, bias=True),
    dict(groups=2, bias=True),
    dict(groups=4, padding="same", bias=True),  # depthwise, channel multiplier 2
    dict(groups=2, stride=2, dilation=2, padding=(2, 1), size=(9, 11), bias=True),
    dict(unbatched=True, padding=1, bias=True),
]


@pytest.mark.parametrize("case", CONV2D_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_functional_conv2d_matches_torch_in_value_and_gradients(case):
    case = dict(case)
    groups, kernel, size = case.pop("groups", 1), case.pop("kernel", (3, 3)), case.pop("size", (7, 8))
    with_bias, unbatched = case.pop("bias", False), case.pop("unbatched", False)
    x = torch.randn(*(() if unbatched else (2,)), 4, *size, dtype=torch.float64)
    w = torch.randn(8, 4 // groups, *kernel, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64) if with_bias else None
    assert_matches_torch("conv2d", x, w, b, groups=groups, **case)


def assert_matches_torch(name, *tensors, **kwargs):
    """graphconv.nn.functional.<name> and torch's agree in value and in the gradient of every tensor given."""
    wanted = [t.requires_grad_() for t in tensors if t is not None]
    ours = getattr(F, name)(*tensors, **kwargs)
    theirs = getattr(torch.nn.functional, name)(*tensors, **kwargs)
    torch.testing.assert_close(ours, theirs)
    upstream = torch.randn_like(theirs)
    for got, want in zip(torch.autograd.grad(ours, wanted, upstream), torch.autograd.grad(theirs, wanted, upstream)):
        torch.testing.assert_close(got, want)


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("shape, bias, kwargs", [
    ((2, 4, 9), True, dict(stride=2, padding=1)),
    ((2, 4, 9), False, dict(padding="same", dilation=2, groups=2)),
    ((4, 10), True, dict(stride=(3,), padding=(2,), dilation=(2,))),
])
def test_functional_conv1d_matches_torch(shape, bias, kwargs):
    groups = kwargs.get("groups", 1)
    assert_matches_torch("conv1d", randn(*shape), randn(6, 4 // groups, 3), randn(6) if bias else None, **kwargs)


@pytest.mark.parametrize("shape, bias, kwargs", [
    ((2, 4, 5, 6), True, dict(stride=2, padding=1, output_padding=1)),
    ((2, 4, 5, 6), False, dict(stride=(2, 1), padding=(0, 1), output_padding=(1, 0), dilation=(1, 2))),
    ((4, 5, 6), True, dict(groups=2, stride=2, dilation=2)),
])
def test_functional_conv_transpose2d_matches_torch(shape, bias, kwargs):
    groups = kwargs.get("groups", 1)
    assert_matches_torch("conv_transpose2d", randn(*shape), randn(4, 3, 3, 2), randn(3 * groups) if bias else None,
                         **kwargs)


@pytest.mark.parametrize("shape, bias", [((6, 5), True), ((2, 3, 5), True), ((5,), False), ((2, 1, 3, 5), False)])
def test_functional_linear_matches_torch(shape, bias):
    assert_matches_torch("linear", randn(*shape), randn(4, 5), randn(4) if bias else None)


def test_functional_conv2d_without_bias_leaves_the_grads_of_input_and_weight_right_in_float32():
    x, w = torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(5, 3, 3, 3, requires_grad=True)
    ours = F.conv2d(x, w, padding=1)
    ours.square().sum().backward()
    got = (x.grad, w.grad)
    x.grad = w.grad = None
    torch.nn.functional.conv2d(x, w, padding=1).square().sum().backward()
    torch.testing.assert_close(got, (x.grad, w.grad), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(padding="same", stride=2), "not supported for strided convolutions"),
    (dict(padding="full"), "Invalid padding string"),
    (dict(stride=(1, 2, 3)), "stride must be an int or a tuple of 2 ints"),
])
def test_functional_conv2d_rejects_what_torch_rejects(kwargs, message):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match=message):
        F.conv2d(x, w, **kwargs)


def test_functional_conv2d_shape_errors_name_the_input():
    with pytest.raises(graphconv.SpecError, match="weight"):
        F.conv2d(torch.randn(1, 4, 5, 5), torch.randn(3, 3, 3, 3))
