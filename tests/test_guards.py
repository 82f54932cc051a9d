"""Call-time guards of a compiled spec (``Binder.check_inputs``, run on every call before anything else): the number
of inputs, each a tensor, one device, one floating-point dtype, no integer input where the spec computes in floating
point — each a CallError naming the spec input and pointing at its node. Integer inputs used as indices pass, and
so do inputs of ops graphconv cannot judge (plugins, --ops modules). A gradient of the wrong shape handed to
backward is refused by torch itself before any VJP runs. A fuzz of calls (shapes, dtypes, devices, attrs) raises
nothing but SpecError, and what runs matches torch.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st

import graphconv
from conftest import SPECS
from graphconv import SpecError
from graphconv.errors import CallError
from test_fuzz_specs import FUZZ, SCALE

CONV2D = graphconv.compile(SPECS / "conv2d.mmd")
X_LINE, KERNEL_LINE = 37, 41  # the lines of A(input_batch) and E(kernel) in specs/conv2d.mmd


def rand(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


def call_error(op, *inputs, **attrs) -> CallError:
    with pytest.raises(CallError) as caught:
        op(*inputs, **attrs)
    return caught.value


def test_the_number_of_inputs():
    x = rand(2, 3, 5, 5)
    for inputs in [(x,), (x, rand(4, 3, 3, 3), x), ()]:
        error = call_error(CONV2D, *inputs)
        assert error.message == f"conv2d takes 2 input(s) (input_batch, kernel) but {len(inputs)} were given"


@pytest.mark.parametrize("value, kind", [([1.0], "list"), (np.ones((4, 3, 3, 3)), "ndarray"), (2.0, "float"),
                                         (None, "NoneType")])
def test_an_input_that_is_not_a_tensor_is_named(value, kind):
    error = call_error(CONV2D, rand(2, 3, 5, 5), value)
    assert error.message == f"conv2d: input 'kernel' must be a torch.Tensor, got {kind}"
    assert error.line == KERNEL_LINE and "E(kernel)" in str(error)
    error = call_error(CONV2D, value, rand(4, 3, 3, 3))
    assert error.message == f"conv2d: input 'input_batch' must be a torch.Tensor, got {kind}"
    assert error.line == X_LINE


@pytest.mark.parametrize("x_dtype, w_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                              (torch.float16, torch.float32), (torch.bfloat16, torch.float64)])
def test_floating_inputs_of_two_dtypes_are_refused_naming_both(x_dtype, w_dtype):
    error = call_error(CONV2D, rand(2, 3, 5, 5, dtype=x_dtype), rand(4, 3, 3, 3, dtype=w_dtype))
    x, w = str(x_dtype).removeprefix("torch."), str(w_dtype).removeprefix("torch.")
    assert error.message == (f"conv2d: input 'kernel' is {w} but 'input_batch' is {x}; convert one, e.g. "
                             f"kernel.to({x_dtype})")
    assert error.line == KERNEL_LINE


def test_the_guard_holds_on_the_cached_path():
    x, w = rand(2, 3, 5, 5), rand(4, 3, 3, 3)
    torch.testing.assert_close(CONV2D(x, w), F.conv2d(x, w, padding=1))  # binds and caches these shapes
    call_error(CONV2D, x, w.float())  # the same shapes, another dtype: still refused


def test_inputs_on_two_devices_are_refused_naming_both():
    error = call_error(CONV2D, rand(2, 3, 5, 5), rand(4, 3, 3, 3).to("meta"))
    assert error.message == "conv2d: input 'kernel' is on meta but 'input_batch' is on cpu; move them to one device"
    assert error.line == KERNEL_LINE
    error = call_error(CONV2D, rand(2, 3, 5, 5).to("meta"), rand(4, 3, 3, 3))
    assert error.message == "conv2d: input 'kernel' is on cpu but 'input_batch' is on meta; move them to one device"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_input_with_a_cuda_input_is_refused():
    error = call_error(CONV2D, rand(2, 3, 5, 5).cuda(), rand(4, 3, 3, 3))
    assert error.message == "conv2d: input 'kernel' is on cpu but 'input_batch' is on cuda:0; move them to one device"


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_an_integer_input_where_the_spec_computes_in_floating_point_is_named(dtype):
    x = torch.ones(2, 3, 5, 5, dtype=dtype)
    error = call_error(CONV2D, x, rand(4, 3, 3, 3))
    kind = str(dtype).removeprefix("torch.")
    assert error.message == (f"conv2d: input 'input_batch' is {kind}, but op P (compute_output_2D) at line 54 "
                             f"computes it with 'kernel', which is float64; convert it: "
                             f"input_batch.to(torch.float64)")
    assert error.line == X_LINE


INDEXED = """\
---
graphconv:
  inputs: {table: [n, d], rows: [k]}
---
graph LR
  T(table) --> S(("index_select(dim=0)"))
  R(rows) -->|index| S
  S --> E((exp)) --> Y(y)
"""


def test_an_integer_index_input_passes_and_the_op_matches_torch():
    op = graphconv.compile(graphconv.loads(INDEXED))
    table, rows = rand(5, 3).requires_grad_(), torch.tensor([4, 0, 4, 2])
    y = op(table, rows)
    expected = table.index_select(0, rows).exp()
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, table, grad)[0], torch.autograd.grad(expected, table, grad)[0])


def test_an_integer_input_of_an_op_from_outside_the_library_is_not_judged():
    def count_scaled(x, counts):
        """x times counts (an integer tensor)."""
        return x * counts

    op = graphconv.Op(count_scaled, save=("counts",))
    op.vjp(lambda ctx, grad: (grad * ctx.counts, None))
    spec = graphconv.loads("graph LR\n  X(x) --> C((count_scaled))\n  N(counts) --> C --> Y(y)\n", ops=[op])
    x, counts = rand(3, 4).requires_grad_(), torch.arange(12).reshape(3, 4)
    y = graphconv.compile(spec)(x, counts)
    torch.testing.assert_close(y, x * counts)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x)[0], counts.double())


def test_integer_inputs_alone_run_as_torch_runs_them():
    op = graphconv.compile(graphconv.loads('graph LR\n  x --> P(("permute(1, 0)")) --> R(("reshape(-1)")) --> y\n'))
    x = torch.arange(6).reshape(2, 3)
    assert torch.equal(op(x), x.T.reshape(-1))


@pytest.mark.parametrize("make_grad", [lambda y: torch.ones(y.shape[0], 1), lambda y: torch.ones(y.numel())])
def test_a_gradient_of_the_wrong_shape_is_refused_before_any_vjp_runs(monkeypatch, make_grad):
    """torch checks an output gradient's shape against the output before calling backward (of any function), and
    names both shapes: that is the clearest error there can be, so graphconv leaves it to torch."""
    x, w = rand(2, 3, 5, 5, dtype=torch.float32).requires_grad_(), rand(4, 3, 3, 3, dtype=torch.float32)
    y = CONV2D(x, w)
    ran = []
    monkeypatch.setattr(type(y.grad_fn), "apply", lambda *args: ran.append(args), raising=False)
    grad = make_grad(y)
    for backward in (lambda: y.backward(grad), lambda: torch.autograd.grad(y, x, grad)):
        with pytest.raises(RuntimeError, match=rf"Mismatch in shape: grad_output\[0\] has a shape of "
                                               rf"{re.escape(str(grad.shape))} and output\[0\] has a shape of "
                                               rf"{re.escape(str(y.shape))}"):
            backward()
    assert x.grad is None and not ran


def test_a_gradient_of_another_dtype_is_cast_to_the_output_dtype_by_torch():
    x, w = rand(2, 3, 5, 5, dtype=torch.float32).requires_grad_(), rand(4, 3, 3, 3, dtype=torch.float32)
    grad = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    (got,) = torch.autograd.grad(CONV2D(x, w), x, grad)
    (want,) = torch.autograd.grad(F.conv2d(x, w, padding=1), x, grad.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_the_compiled_op_runs_on_meta_tensors():
    y = CONV2D(torch.empty(2, 3, 5, 5, device="meta"), torch.empty(4, 3, 3, 3, device="meta"))
    assert y.shape == (2, 4, 5, 5) and y.device.type == "meta"


# --- a fuzz of calls ----------------------------------------------------------------------------------------------

DTYPES = [torch.float64] * 4 + [torch.float32, torch.float16, torch.int64, torch.bool]
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple)
attr_values = st.one_of(st.integers(-1, 3), st.integers(-1, 3), st.sampled_from([None, True, 1.5, "same", (1, 1), (1,),
                                                                                [2, 2], 2 ** 70]))


@st.composite
def calls(draw):
    """Inputs for conv2d (often of shapes that fit, sometimes not), of random dtypes and devices, with attrs."""
    b, c, h, w, o, k = (draw(st.integers(0, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 6)),
                        draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    x_shape = draw(st.one_of(st.just((b, c, h, w)), shapes))
    w_shape = draw(st.one_of(st.just((o, c, k, k)), shapes))
    x_dtype = draw(st.sampled_from(DTYPES))
    w_dtype = draw(st.sampled_from([x_dtype] * 3 + DTYPES))
    inputs = [torch.randn(x_shape).to(x_dtype), torch.randn(w_shape).to(w_dtype)]
    if draw(st.integers(0, 9)) == 0:
        inputs[draw(st.integers(0, 1))] = inputs[0].to("meta")
    inputs = draw(st.sampled_from([inputs] * 8 + [inputs[:1], inputs + inputs[:1]]))
    attrs = draw(st.dictionaries(st.sampled_from(["stride", "padding"] * 4 + ["dilation"]), attr_values, max_size=2))
    return inputs, attrs


@settings(FUZZ, max_examples=150 * SCALE)
@given(call=calls(), grad=st.booleans())
def test_calls_raise_nothing_but_spec_errors_and_what_runs_matches_torch(call, grad):
    inputs, attrs = call
    if grad:
        inputs = [t.requires_grad_() if t.is_floating_point() else t for t in inputs]
    try:
        y = CONV2D(*inputs, **attrs)
    except SpecError as error:
        event(type(error).__name__)
        return
    x, w = inputs
    if x.dtype == w.dtype == torch.float64 and x.device.type == "cpu":
        event("compared with torch")
        expected = F.conv2d(x, w, stride=attrs.get("stride", 1), padding=attrs.get("padding", 1))
        torch.testing.assert_close(y, expected)
        if grad and y.numel():
            g = torch.randn_like(y)
            torch.testing.assert_close(torch.autograd.grad(y, (x, w), g), torch.autograd.grad(expected, (x, w), g))
