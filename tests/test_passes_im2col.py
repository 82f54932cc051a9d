"""The im2col and patch_matmul passes on convolution specs, and the fused ops they produce: same values and
gradients as the unfused graph over kernel sizes, strides, paddings and dilations — the native path (torch's
convolution kernel) against the literal composition it stands in for."""
import textwrap

import pytest
import torch
import torch.nn.functional as F

import graphconv
import graphconv.ops.fused as fused
from graphconv.compiler import passes
from graphconv.compiler.compiled import CompiledOp
from graphconv.compiler.passes import dce, fold_views, im2col, patch_matmul
from graphconv.check.verify import gradcheck_op

SPECS = __import__("conftest").SPECS
CONFIGS = [
    # batch, in, out, (h, w), (kh, kw), stride, padding
    (2, 3, 4, (8, 8), (3, 3), 1, 1),
    (3, 2, 5, (7, 9), (3, 3), 2, 1),
    (1, 6, 8, (10, 7), (2, 4), 2, 2),
    (2, 1, 3, (4, 11), (1, 3), 3, 1),
    (2, 7, 6, (5, 8), (4, 1), 1, 0),
    (5, 16, 12, (12, 10), (3, 3), 1, 1),
]


def compare_conv(before, after, batch, cin, cout, size, kernel, stride, padding, **extra):
    torch.manual_seed(batch * 100 + cin * 10 + cout)
    x = torch.randn(batch, cin, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin, *kernel, dtype=torch.float64, requires_grad=True)
    plain, optimized = CompiledOp(before, optimize=False), CompiledOp(after, optimize=False)
    expected = plain(x, w, stride=stride, padding=padding, **extra)
    got = optimized(x, w, stride=stride, padding=padding, **extra)
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(expected, (x, w), grad))
    return x, w, got


@pytest.mark.parametrize("config", CONFIGS)
def test_im2col_pass_keeps_values_and_gradients(config):
    spec = graphconv.load(SPECS / "conv2d.mmd")
    optimized, [report] = passes.optimize(spec, (im2col,))
    assert [n.op.name for n in optimized.ops()][:1] == ["im2col"] and len(report.changes) == 1
    compare_conv(spec, optimized, *config)


@pytest.mark.parametrize("config", CONFIGS)
def test_patch_matmul_pass_keeps_values_and_gradients(config):
    spec = graphconv.load(SPECS / "conv2d.mmd")
    optimized, reports = passes.optimize(spec)
    assert [n.op.name for n in optimized.ops()] == ["patch_matmul"]
    x, w, y = compare_conv(spec, optimized, *config)
    torch.testing.assert_close(y, F.conv2d(x, w, stride=config[5], padding=config[6]))


DILATED = """\
    ---
    graphconv:
      inputs:
        x: [b, c, h, w]
        kernel: [o, c, kh, kw]
      attrs: {stride: 1, padding: 0, dilation: 1}
      dims:
        oh: (h + 2 * pair(padding)[0] - pair(dilation)[0] * (kh - 1) - 1) // pair(stride)[0] + 1
        ow: (w + 2 * pair(padding)[1] - pair(dilation)[1] * (kw - 1) - 1) // pair(stride)[1] + 1
    ---
    graph LR
      X(x) --> U(("unfold(kernel_size=(kh, kw), dilation=dilation, padding=padding, stride=stride)"))
      U --> UO(u) --> P(("permute(0, 2, 1)")) --> PO(rows) --> R(("reshape(b * oh * ow, c * kh * kw)"))
      R --> RO(cols)
      K(kernel) --> KR(("reshape(o, c * kh * kw)")) --> KRO(k2) --> KT(("transpose(0, 1)")) --> KTO(kt)
      RO --> M((matmul)) --> MO(out_rows)
      KTO --> M
    """


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 2), (2, 1, 1), ((2, 1), (0, 2), (1, 2))])
def test_rows_output_and_dilation(stride, padding, dilation):
    """No channels-first tail: patch_matmul returns the (b·patches, o) rows; dilation goes through."""
    spec = graphconv.loads(textwrap.dedent(DILATED))
    optimized, _ = passes.optimize(spec)
    [fused_node] = optimized.ops()  # the kernel's reshape → transpose folded in too
    assert fused_node.op.name == "patch_matmul" and "out_shape" not in fused_node.args
    assert "weight_shape" in fused_node.args
    compare_conv(spec, optimized, 3, 4, 5, (9, 8), (3, 2), stride, padding, dilation=dilation)


def test_unfold_then_permute_alone_becomes_im2col():
    spec = graphconv.loads(textwrap.dedent("""\
        ---
        graphconv:
          inputs: {x: [b, c, h, w]}
        ---
        graph LR
          X(x) --> U(("unfold(kernel_size=2, stride=2)")) --> P(("permute(0, 2, 1)")) --> Y(y)
        """))
    optimized, _ = passes.optimize(spec, (im2col,))
    assert [n.op.name for n in optimized.ops()] == ["im2col"] and "shape" not in optimized.ops()[0].args
    x = torch.randn(2, 3, 6, 4, dtype=torch.float64)
    torch.testing.assert_close(CompiledOp(optimized, optimize=False)(x), F.unfold(x, 2, stride=2).permute(0, 2, 1))


def test_no_fusion_when_an_intermediate_is_read_elsewhere_or_the_order_differs():
    spec = graphconv.loads(textwrap.dedent("""\
        ---
        graphconv:
          inputs: {x: [b, c, h, w]}
        ---
        graph LR
          X(x) --> U(("unfold(kernel_size=2)")) --> UO(u) --> P(("permute(0, 2, 1)")) --> Y(y)
          UO --> S((exp)) --> Z(z)
          X --> U2(("unfold(kernel_size=3)")) --> P2(("permute(2, 1, 0)")) --> W(w)
        """))
    assert passes.optimize(spec, (dce, fold_views, im2col, patch_matmul))[1][2].changes == []


def _attrs(batch, cin, cout, size, kernel, stride, padding, dilation=1, channels_first=True, kernel_weight=True):
    """patch_matmul's attrs for a convolution in the usual layout: a kernel (or its matrix) and the image (or the
    rows) out."""
    g = fused.Windows((batch, cin, *size), kernel, dilation, padding, stride)
    attrs = {"kernel_size": kernel, "dilation": dilation, "padding": padding, "stride": stride,
             "shape": (batch * g.patches, g.patch_size)}
    if kernel_weight:
        attrs["weight_shape"] = (cout, g.patch_size)
    if channels_first:
        attrs.update(out_shape=(batch, g.oh, g.ow, cout), out_dims=(0, 3, 1, 2))
    return attrs, g


def _weight(cout, cin, kernel, kernel_weight):
    w = torch.randn(cout, cin, *kernel, dtype=torch.float64)
    return w if kernel_weight else w.reshape(cout, -1).t()  # the matrix as the spec's transpose makes it


@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("kernel_weight", [False, True])
def test_patch_matmul_vjp_gradchecks_on_the_native_path(channels_first, kernel_weight):
    attrs, _ = _attrs(2, 3, 2, (6, 5), (3, 2), (2, 1), (1, 0), (1, 2), channels_first, kernel_weight)
    x, weight = torch.randn(2, 3, 6, 5, dtype=torch.float64), _weight(2, 3, (3, 2), kernel_weight)
    assert isinstance(fused.choose_path(x.shape, weight.shape, fused.PatchMatmulAttrs(**attrs)), fused.NativePath)
    assert gradcheck_op(fused.patch_matmul, (x, weight), attrs) is None


NEEDS = [(True, True), (True, False), (False, True)]


@pytest.mark.parametrize("needs", NEEDS)
@pytest.mark.parametrize("layout", ["image, kernel", "rows, kernel", "image, matrix", "rows, matrix"])
@pytest.mark.parametrize("config", CONFIGS)
def test_the_native_path_matches_the_literal_path(config, layout, needs):
    """The literal composition is the reference: the native path gives its values and the gradients asked for
    (and None for the others), in every layout it takes."""
    channels_first, kernel_weight = layout.startswith("image"), layout.endswith("kernel")
    attrs, g = _attrs(*config, channels_first=channels_first, kernel_weight=kernel_weight)
    attrs = fused.PatchMatmulAttrs(**attrs)
    batch, cin, cout, size, kernel = config[:5]
    x, w = torch.randn(batch, cin, *size, dtype=torch.float64), _weight(cout, cin, kernel, kernel_weight)
    path = fused.choose_path(x.shape, w.shape, attrs)
    assert isinstance(path, fused.NativePath)
    expected = fused.literal_forward(x, w, attrs)
    torch.testing.assert_close(path.forward(x, fused._kernel(w, g)), expected)
    grad = torch.randn_like(expected)
    got = path.vjp(x, fused._kernel(w, g), grad, needs)
    want = fused.literal_vjp(x, w, grad, attrs, needs)
    assert [t is None for t in got] == [not n for n in needs]
    if got[0] is not None:
        torch.testing.assert_close(got[0], want[0])
    if got[1] is not None:
        torch.testing.assert_close(fused._as_weight_grad(got[1], w), want[1])


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 2), ((2, 1), (0, 2), (1, 2)), (3, 1, (2, 1))])
def test_the_native_path_takes_dilations_and_non_contiguous_float32_inputs(stride, padding, dilation):
    attrs, g = _attrs(3, 4, 5, (11, 9), (3, 2), stride, padding, dilation)
    x = torch.randn(3, 9, 4, 11).permute(0, 2, 3, 1)  # (3, 4, 11, 9), not contiguous
    w = torch.randn(5, 4, 3, 2, requires_grad=True)
    x.requires_grad_()
    got = fused.patch_matmul(x, w, **attrs)
    expected = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(expected, (x, w), grad))


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0), (2, 1)])
def test_a_compiled_conv2d_on_non_contiguous_inputs_matches_torch(stride, padding):
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x = torch.randn(2, 7, 6, 3, dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
    w = torch.randn(3, 3, 3, 4, dtype=torch.float64).permute(3, 0, 1, 2).requires_grad_()  # (4, 3, 3, 3)
    got, expected = op(x, w, stride=stride, padding=padding), F.conv2d(x, w, stride=stride, padding=padding)
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(expected, (x, w), grad))


def test_empty_batches_and_integer_tensors_take_the_literal_path():
    attrs, _ = _attrs(0, 2, 3, (5, 5), (3, 3), 1, 1)
    assert fused.choose_path((0, 2, 5, 5), (3, 2, 3, 3), fused.PatchMatmulAttrs(**attrs)) is None
    assert fused.patch_matmul(torch.zeros(0, 2, 5, 5), torch.ones(3, 2, 3, 3), **attrs).shape == (0, 3, 5, 5)
    attrs, _ = _attrs(1, 2, 3, (5, 5), (3, 3), 1, 1)
    x, w = torch.arange(50).reshape(1, 2, 5, 5), torch.ones(3, 2, 3, 3, dtype=torch.long)
    expected = F.conv2d(x.double(), w.double(), padding=1).long()
    torch.testing.assert_close(fused.patch_matmul(x, w, **attrs), expected)


def test_a_minimal_compile_fuses_the_same_op():
    ops = {save: graphconv.compile(SPECS / "conv2d.mmd", save=save) for save in ("all", "minimal")}
    fused_args = [set(op.optimized.ops()[0].args) for op in ops.values()]
    assert fused_args[0] == fused_args[1]
    for op in ops.values():  # --explain says what runs
        [report] = [r for r in op.reports if r.name == "patch_matmul"]
        assert "lowered to torch.convolution" in report.changes[0]
