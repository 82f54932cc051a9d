"""The window_reduce pass and the pooling ops it makes (graphconv.ops.pooling): each fused op equals the literal
composition it replaces — the same spec compiled with ``optimize=False`` — in value and in the gradient of the
input, over kernel sizes, strides, paddings, dilations, pad values, odd sizes, empty batches, non-contiguous and
channels-last inputs, and the cases where torch's kernel would route the max's gradient elsewhere (ties, NaN, -inf
at the padded edge); double backward, torch.func and torch.compile(fullgraph=True) go through them."""
from __future__ import annotations

import math
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import SPECS
from torch.func import jacrev, vmap

import graphconv
from graphconv.check.verify import gradcheck_op
from graphconv.cli import main
from graphconv.compiler import passes
from graphconv.compiler.passes import window_reduce
from graphconv.ops import pooling
from graphconv.ops.helpers import resolved_shape

NAN, INF = float("nan"), float("inf")


def load(text: str):
    return graphconv.loads(textwrap.dedent(text).lstrip("\n"))


def window_spec(reduce: str, value: str = "", dilation: bool = True) -> str:
    """``windows → reduce`` on a (b, c, h, w) input, every windows attr an attr of the spec."""
    dilation_arg = ", dilation=dilation" if dilation else ""
    return f"""\
        ---
        graphconv:
          inputs: {{x: [b, c, h, w]}}
          attrs: {{kernel_size: 2, stride: 1, padding: 0, dilation: 1}}
          ops:
            sliding: windows(kernel_size=kernel_size, stride=stride, padding=padding{dilation_arg}{value})
        ---
        graph LR
          X(x) --> S((sliding)) --> V(v)
          {reduce}
        """


MAX_MAX = "V --> R((\"max(dim=5)\")) --> RM(rm) --> M((\"max(dim=4)\")) --> Y(y)"


def fused_ops(spec) -> list[str]:
    return [step.op.name for step in graphconv.compile(spec).program.steps]


def assert_same_as_literal(spec, x, **attrs) -> None:
    """The optimized op equals the spec as written in value and in the input's gradient (NaN where it has NaN)."""
    fast, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    x_fast, x_plain = x.detach().requires_grad_(), x.detach().clone().requires_grad_()
    got, want = fast(x_fast, **attrs), plain(x_plain, **attrs)
    torch.testing.assert_close(got, want, equal_nan=True)
    grad = torch.randn(want.shape, dtype=want.dtype, generator=torch.Generator().manual_seed(3))
    got.backward(grad)
    want.backward(grad)
    torch.testing.assert_close(x_fast.grad, x_plain.grad, equal_nan=True)


GEOMETRIES = [  # (b, c, h, w), kernel_size, stride, padding, dilation
    ((2, 3, 8, 8), 3, 2, 1, 1),
    ((1, 2, 7, 9), (2, 3), (1, 2), (1, 0), (2, 1)),
    ((3, 1, 5, 6), 3, 1, 1, 1),
    ((2, 2, 6, 7), (3, 2), (2, 3), (0, 1), 1),
    ((1, 4, 9, 5), 2, 2, 2, 1),  # padding of more than half the kernel: padded explicitly
    ((2, 2, 6, 6), 2, 1, 1, 2),
]


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", GEOMETRIES)
def test_max_pool2d_spec_fuses_and_keeps_values_and_gradients(shape, kernel, stride, padding, dilation):
    spec = graphconv.load(SPECS / "max_pool2d.mmd")
    assert fused_ops(spec) == ["window_max"]
    x = torch.randn(shape, dtype=torch.float64)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    assert_same_as_literal(spec, x, **attrs)
    g = pooling.Windows(shape, kernel, dilation, padding, stride)
    if 2 * g.ph <= g.kh and 2 * g.pw <= g.kw:  # what F.max_pool2d takes
        torch.testing.assert_close(graphconv.compile(spec)(x, **attrs), F.max_pool2d(x, kernel, stride, padding,
                                                                                    dilation))


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", GEOMETRIES)
@pytest.mark.parametrize("reduce, op_name", [("mean", "window_mean"), ("sum", "window_sum")])
def test_window_mean_and_sum_fuse_and_keep_values_and_gradients(shape, kernel, stride, padding, dilation, reduce,
                                                                 op_name):
    spec = load(window_spec(f'V --> A(("{reduce}(dim=(-2, -1))")) --> Y(y)'))
    assert fused_ops(spec) == [op_name]
    x = torch.randn(shape, dtype=torch.float64)
    assert_same_as_literal(spec, x, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), ((2, 3), (1, 2), (1, 0)), (3, 3, 0), (2, None, 1)])
def test_avg_pool2d_spec_fuses_and_matches_torch(kernel, stride, padding):
    spec = graphconv.load(SPECS / "avg_pool2d.mmd")
    assert fused_ops(spec) == ["window_mean"]
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding)
    assert_same_as_literal(spec, x, **attrs)
    torch.testing.assert_close(graphconv.compile(spec)(x, **attrs), F.avg_pool2d(x, kernel, stride, padding))


@pytest.mark.parametrize("reduce", ["max", "mean", "sum"])
@pytest.mark.parametrize("value", [-1.5, 0.0, 2.0, -INF, INF])
def test_any_pad_value_is_the_spec_s(reduce, value):
    """A pad value other than the kernel's (-inf for the max, 0 for the mean) is padded explicitly."""
    line = MAX_MAX if reduce == "max" else f'V --> A(("{reduce}(dim=(4, 5))")) --> Y(y)'
    spec = load(window_spec(line, value=", value=pad_value").replace("dilation: 1}", "dilation: 1, pad_value: 0}"))
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64) - 3  # below a pad value of 0 or more: the padding wins
    assert_same_as_literal(spec, x, kernel_size=3, stride=2, padding=1, pad_value=value)


def test_windows_without_a_value_pad_with_zeros_for_the_max_too():
    spec = load(window_spec(MAX_MAX, dilation=False))
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64) - 3
    assert fused_ops(spec) == ["window_max"]
    assert_same_as_literal(spec, x, kernel_size=3, stride=1, padding=1)


def with_cells(shape, cells) -> torch.Tensor:
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for index, value in cells:
        x[index] = value
    return x


MAX_CASES = {
    # ties: the first maximum in row-major order (torch's kernel agrees)
    "ties": (torch.tensor([[[[1.0, 2.0, 2.0], [2.0, 0.0, 2.0], [1.0, 2.0, 1.0]]]], dtype=torch.float64), 3, 1, 0),
    "ties across windows": (torch.ones(1, 2, 5, 5, dtype=torch.float64), 3, 1, 1),
    # several NaN in a window: the first NaN (the kernel picks the last)
    "NaN": (with_cells((1, 2, 6, 6), [((0, 0, 1, 1), NAN), ((0, 0, 1, 2), NAN), ((0, 0, 2, 1), NAN),
                                      ((0, 1, 4, 4), NAN)]), 3, 1, 1),
    "NaN strided, dilated": (with_cells((2, 1, 7, 7), [((0, 0, 2, 2), NAN), ((0, 0, 4, 4), NAN),
                                                       ((1, 0, 0, 0), NAN), ((1, 0, 6, 6), NAN)]), 3, 2, 1),
    # a -inf maximum in a window that starts in the padding: the spec's gradient goes to the padded cell (dropped)
    "-inf at the edge": (torch.full((1, 2, 5, 4), -INF, dtype=torch.float64), 3, 2, 1),
    "-inf in a corner": (with_cells((1, 1, 4, 4), [((0, 0, 0, 0), -INF), ((0, 0, 0, 1), -INF),
                                                   ((0, 0, 1, 0), -INF), ((0, 0, 1, 1), -INF)]), 2, 1, 1),
    "+inf and -inf": (with_cells((1, 1, 5, 5), [((0, 0, 1, 1), INF), ((0, 0, 1, 2), INF), ((0, 0, 3, 3), -INF)]),
                      3, 1, 1),
    "NaN and +inf": (with_cells((1, 1, 4, 4), [((0, 0, 0, 0), INF), ((0, 0, 0, 1), NAN), ((0, 0, 1, 1), NAN)]),
                     2, 1, 1),
}


@pytest.mark.parametrize("case", MAX_CASES)
def test_the_max_s_gradient_goes_where_the_spec_sends_it(case):
    x, kernel, stride, padding = MAX_CASES[case]
    spec = graphconv.load(SPECS / "max_pool2d.mmd")
    dilation = 2 if "dilated" in case else 1
    assert_same_as_literal(spec, x, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize("case", MAX_CASES)
def test_the_max_s_gradient_is_the_spec_s_under_vmap(case):
    """Under a functorch transform no Python branch reads values: the corrections are computed for every window."""
    x, kernel, stride, padding = MAX_CASES[case]
    spec = graphconv.load(SPECS / "max_pool2d.mmd")
    fast, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding)
    grads = torch.randn((3, *fast(x, **attrs).shape), dtype=torch.float64)

    def vjp_of(op):
        def vjp(grad):
            return torch.func.vjp(lambda t: op(t, **attrs), x)[1](grad)[0]
        return vjp

    torch.testing.assert_close(vmap(vjp_of(fast))(grads), vmap(vjp_of(plain))(grads), equal_nan=True)


def test_non_contiguous_channels_last_and_float32_inputs():
    spec = graphconv.load(SPECS / "max_pool2d.mmd")
    base = torch.randn(2, 9, 3, 8)
    assert_same_as_literal(spec, base.permute(0, 2, 3, 1), kernel_size=3, stride=2, padding=1)
    assert_same_as_literal(spec, base.contiguous(memory_format=torch.channels_last), kernel_size=2, stride=1)
    mean = graphconv.load(SPECS / "avg_pool2d.mmd")
    assert_same_as_literal(mean, base[:, :, :, ::2], kernel_size=2, stride=1, padding=1)


@pytest.mark.parametrize("spec_name", ["max_pool2d.mmd", "avg_pool2d.mmd", "avg_pool_2x2.mmd"])
def test_an_empty_batch(spec_name):
    spec = graphconv.load(SPECS / spec_name)
    attrs = {} if spec_name == "avg_pool_2x2.mmd" else {"kernel_size": 3, "stride": 2, "padding": 1}
    assert_same_as_literal(spec, torch.randn(0, 3, 6, 8, dtype=torch.float64), **attrs)


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 1, 2, 4), (3, 2, 10, 2)])
def test_avg_pool_2x2_becomes_block_mean(shape):
    spec = graphconv.load(SPECS / "avg_pool_2x2.mmd")
    assert fused_ops(spec) == ["block_mean"]
    x = torch.randn(shape, dtype=torch.float64)
    assert_same_as_literal(spec, x)
    assert_same_as_literal(spec, x.transpose(2, 3).contiguous().transpose(2, 3))
    torch.testing.assert_close(graphconv.compile(spec)(x), F.avg_pool2d(x, 2))


BLOCKS = """\
    ---
    graphconv:
      inputs: {x: [b, c, h, w]}
      attrs: {rows: 2, height: 2, columns: 2}
    ---
    graph LR
      X(x) --> R(("reshape(b, c, rows, height, columns, -1)")) --> B(blocks) --> M(("mean(dim=(3, -1))")) --> Y(y)
    """


@pytest.mark.parametrize("shape, sizes, pooled", [
    ((2, 3, 4, 6), (2, 2, 2), True),  # (b, c, 2, 2, 2, 3): blocks of 2×3
    ((2, 3, 4, 6), (2, 2, 3), True),  # blocks of 2×2
    ((1, 1, 4, 8), (4, 2, 2), False),  # (b, c, 4, 2, 2, 2) is not a cut of a 4×8 image into blocks
    ((2, 3, 4, 6), (4, 3, 2), False),
    ((1, 2, 6, 4), (2, 4, 3), False),
])
def test_block_mean_pools_only_where_the_reshape_cuts_blocks(shape, sizes, pooled):
    spec = load(BLOCKS)
    assert fused_ops(spec) == ["block_mean"]
    x = torch.randn(shape, dtype=torch.float64)
    rows, height, columns = sizes
    assert_same_as_literal(spec, x, rows=rows, height=height, columns=columns)
    full = resolved_shape((shape[0], shape[1], rows, height, columns, -1), math.prod(shape))
    assert (pooling.blocks(shape, full) is not None) == pooled


@pytest.mark.parametrize("line", [
    'V --> R(("max(dim=4)")) --> RM(rm) --> M(("max(dim=4)")) --> Y(y)',  # column-major tie-breaking
    'V --> R(("max(dim=5, keepdim=True)")) --> RM(rm) --> M(("max(dim=4)")) --> Y(y)',
    'V --> A(("amax(dim=(4, 5))")) --> Y(y)',  # splits the gradient between ties
    'V --> A(("mean(dim=(3, 5))")) --> Y(y)',
    'V --> A(("sum(dim=5)")) --> Y(y)',
])
def test_the_pass_leaves_other_reductions_alone(line):
    spec = load(window_spec(line))
    assert "window" not in " ".join(fused_ops(spec)[1:]) and fused_ops(spec)[0] == "windows"


def test_the_pass_keeps_an_intermediate_that_is_read_elsewhere():
    spec = load(window_spec(MAX_MAX + "\n          RM --> E((exp)) --> Z(z)"))
    assert fused_ops(spec) == ["windows", "max", "max", "exp"]


def test_explain_says_what_the_pass_did(capsys):
    assert main(["compile", "--explain", str(SPECS / "max_pool2d.mmd")]) == 0
    out = capsys.readouterr().out
    assert window_reduce.SUMMARY in out
    assert "S (sliding) → R (row_max) → M (window_max) → S+R+M (window_max)" in out
    assert "backward keeps the indices (S+R+M_indices)" in out
    _, [report] = passes.optimize(graphconv.load(SPECS / "avg_pool2d.mmd"), (window_reduce,))
    assert report.changes == ["S (sliding) → A (average) → S+A (window_mean): no window copy"]


@pytest.mark.parametrize("op", [pooling.window_max, pooling.window_mean, pooling.window_sum])
def test_nan_free_vjps_gradcheck_on_odd_geometries(op):
    x = torch.randn(1, 2, 7, 5, dtype=torch.float64)
    for attrs in [{"kernel_size": 3, "padding": 1, "stride": 2, "dilation": (1, 2)},
                  {"kernel_size": (1, 4), "padding": (0, 2), "stride": 3}]:
        assert gradcheck_op(op, (x,), attrs) is None


@pytest.mark.parametrize("spec_name, attrs", [
    ("max_pool2d.mmd", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("avg_pool2d.mmd", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("avg_pool_2x2.mmd", {}),
])
def test_second_derivatives_and_jacobians(spec_name, attrs):
    spec = graphconv.load(SPECS / spec_name)
    op = graphconv.compile(spec)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: op(t, **attrs), (x,))
    plain = graphconv.compile(spec, optimize=False)
    torch.testing.assert_close(jacrev(lambda t: op(t, **attrs))(x), jacrev(lambda t: plain(t, **attrs))(x))


@pytest.mark.slow
@pytest.mark.parametrize("spec_name, attrs, backend", [
    ("max_pool2d.mmd", {"kernel_size": 3, "stride": 2, "padding": 1}, "aot_eager"),
    ("max_pool2d.mmd", {"kernel_size": 3, "stride": 2, "padding": 1}, "inductor"),  # torch.cond decides there
    ("avg_pool2d.mmd", {"kernel_size": 3, "stride": 2, "padding": 1}, "aot_eager"),
    ("avg_pool_2x2.mmd", {}, "aot_eager"),
])
def test_torch_compile_fullgraph(spec_name, attrs, backend):
    """With NaN in a window and a channel of -inf, and (inductor) without: the corrections are taken or not."""
    torch._dynamo.reset()
    op = graphconv.compile(SPECS / spec_name)
    x = with_cells((2, 3, 8, 8), [((0, 0, 1, 1), NAN), ((0, 0, 1, 2), NAN)])
    x[1, 1] = -INF

    def step(run, t):
        t = t.detach().requires_grad_()
        y = run(t)
        y.backward(torch.ones_like(y))
        return y, t.grad

    compiled = torch.compile(lambda t: op(t, **attrs), fullgraph=True, backend=backend)
    plain = graphconv.compile(SPECS / spec_name, optimize=False)
    for inputs in [x] + ([torch.randn(2, 3, 8, 8)] if backend == "inductor" else []):
        for got, want in zip(step(compiled, inputs), step(lambda t: plain(t, **attrs), inputs)):
            torch.testing.assert_close(got, want, equal_nan=True)


UNFOLD_MEAN = """\
    ---
    graphconv:
      inputs: {x: [b, c, h, w]}
      attrs: {kernel_size: 2, stride: 1, padding: 0, dilation: 1, groups: 0}
      dims:
        k: pair(kernel_size)[0] * pair(kernel_size)[1]
        o_h: (h + 2 * pair(padding)[0] - pair(dilation)[0] * (pair(kernel_size)[0] - 1) - 1) // pair(stride)[0] + 1
        o_w: (w + 2 * pair(padding)[1] - pair(dilation)[1] * (pair(kernel_size)[1] - 1) - 1) // pair(stride)[1] + 1
        channels: "c if groups == 0 else groups"
      ops:
        im2col: unfold(kernel_size=kernel_size, padding=padding, stride=stride, dilation=dilation)
    ---
    graph LR
      X(x) --> U((im2col)) --> C(columns)
      C --> P(("reshape(b, channels, -1, o_h * o_w)")) --> W(windows) --> A(("mean(dim=2)")) --> M(means)
      M --> I(("reshape(b, channels, o_h, o_w)")) --> Y(y)
    """


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", GEOMETRIES)
def test_the_unfold_mean_form_fuses_and_keeps_values_and_gradients(shape, kernel, stride, padding, dilation):
    spec = load(UNFOLD_MEAN)
    assert fused_ops(spec) == ["unfold_mean"]
    x = torch.randn(shape, dtype=torch.float64)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    assert_same_as_literal(spec, x, **attrs)
    g = pooling.Windows(shape, kernel, dilation, padding, stride)
    per_channel, image = (*shape[:2], -1, g.patches), (*shape[:2], g.oh, g.ow)
    assert pooling.UnfoldMean(shape, kernel, dilation, padding, stride, per_channel, image).pooled


def test_the_unfold_mean_form_runs_literally_where_the_reshape_mixes_channels():
    """channels = 1: each "window" then spans every channel's patch values — not an average pool."""
    spec = load(UNFOLD_MEAN)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert_same_as_literal(spec, x, kernel_size=3, padding=1, groups=1)
    assert not pooling.UnfoldMean(x.shape, 3, 1, 1, 1, (2, 1, -1, 36), None).pooled


def test_the_unfold_mean_form_without_its_image_reshape():
    image = 'M --> I(("reshape(b, channels, o_h, o_w)")) --> Y(y)'
    spec = load(UNFOLD_MEAN.replace(image, "M --> E((exp)) --> Y(y)"))
    assert fused_ops(spec) == ["unfold_mean", "exp"]
    assert_same_as_literal(spec, torch.randn(2, 3, 7, 5, dtype=torch.float64), kernel_size=3, stride=2)


def test_the_im2col_avg_pool2d_of_earlier_releases_matches_torch():
    spec = load(UNFOLD_MEAN)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(graphconv.compile(spec)(x, kernel_size=3, stride=2, padding=1),
                               F.avg_pool2d(x, 3, 2, 1))
