"""The im2col and patch_matmul passes on convolution specs, and the fused ops they produce: same values and
gradients as the unfused graph over kernel sizes, strides, paddings and dilations — whole (small problems: unfold's
layout or the literal composition), in chunks of whole images and of bands of rows, and (low memory, as a
save="minimal" compile asks) in groups of images."""
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
    (5, 16, 12, (12, 10), (3, 3), 1, 1),  # big enough for the chunked path
]
BUDGETS = {"whole": (1 << 40, 1), "whole images": (0, 1 << 40), "bands of rows": (0, 1)}  # whole, chunk bytes
LOW_MEMORY_BUDGETS = {  # the low-memory budget, from one image's patch bytes
    "low memory: one group": lambda image: 1 << 40,
    "low memory: groups of one image": lambda image: image,
    "low memory: bands of rows": lambda image: 1,
}
PATHS = list(BUDGETS) + list(LOW_MEMORY_BUDGETS)


def take_path(monkeypatch, path: str) -> bool:
    """Make patch_matmul take a path: whole, or chunks of whole images, or of single rows; or with low_memory, one
    group of the whole batch, groups of one image, or single rows. True for the low-memory paths: the op must
    then be given low_memory=True."""
    if path in LOW_MEMORY_BUDGETS:
        budget = LOW_MEMORY_BUDGETS[path]
        monkeypatch.setattr(fused, "_low_memory_budget",
                            lambda g, out_channels, itemsize: budget(g.patches * g.patch_size * itemsize))
        return True
    whole, chunk = BUDGETS[path]
    monkeypatch.setattr(fused, "WHOLE_BYTES", whole)
    monkeypatch.setattr(fused, "CHUNK_BYTES_MIN", chunk)
    monkeypatch.setattr(fused, "CHUNK_BYTES_MAX", chunk)
    return False


@pytest.fixture(params=PATHS)
def chunking(request, monkeypatch):
    """Whether the path taken needs low_memory."""
    return take_path(monkeypatch, request.param)


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
def test_patch_matmul_pass_keeps_values_and_gradients(config, chunking):
    spec = graphconv.load(SPECS / "conv2d.mmd")
    optimized, reports = passes.optimize(spec, low_memory=chunking)
    assert [n.op.name for n in optimized.ops()] == ["patch_matmul"]
    assert ("low_memory" in optimized.ops()[0].args) == chunking
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
def test_rows_output_and_dilation(stride, padding, dilation, chunking):
    """No channels-first tail: patch_matmul returns the (b·patches, o) rows; dilation goes through."""
    spec = graphconv.loads(textwrap.dedent(DILATED))
    optimized, _ = passes.optimize(spec, low_memory=chunking)
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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("channels_first", [False, True])
def test_patch_matmul_vjp_gradchecks_on_every_path(path, channels_first, monkeypatch):
    low_memory = take_path(monkeypatch, path)
    b, c, o, h, w = 2, 3, 2, 6, 5
    attrs = {"kernel_size": (3, 2), "padding": (1, 0), "stride": (2, 1), "dilation": (1, 2), "low_memory": low_memory}
    oh, ow = (h + 2 - 2 - 1) // 2 + 1, (w - 2 - 1) // 1 + 1
    attrs["shape"] = (b * oh * ow, c * 6)
    if channels_first:
        attrs.update(out_shape=(b, oh, ow, o), out_dims=(0, 3, 1, 2))
    x, weight = torch.randn(b, c, h, w, dtype=torch.float64), torch.randn(c * 6, o, dtype=torch.float64)
    assert gradcheck_op(fused.patch_matmul, (x, weight), attrs) is None
    with torch.no_grad():  # as in a compiled op's forward and backward
        path_taken = fused.choose_path(x.shape, weight.shape, 8, fused.PatchMatmulAttrs(**attrs))
    if path == "whole":  # the literal composition, or unfold's layout
        assert (path_taken is None) if not channels_first else isinstance(path_taken, fused.WholePath)
        return
    parts = {"whole images": 1, "low memory: one group": 1, "low memory: groups of one image": b}.get(path, b * oh)
    if channels_first and path in ("low memory: one group", "low memory: groups of one image"):
        assert isinstance(path_taken, fused.GroupedPath) and len(path_taken.groups()) == parts
    else:  # in chunks (low memory with a rows output too)
        assert isinstance(path_taken, fused.ChunkedPath) and len(path_taken.chunks(8)) == parts


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("config", CONFIGS)
def test_every_path_matches_the_literal_path(path, config, monkeypatch):
    """The literal composition is the reference: each fast path gives its values and gradients."""
    low_memory = take_path(monkeypatch, path)
    batch, cin, cout, size, kernel, stride, padding = config
    g = fused.Windows((batch, cin, *size), kernel, 1, padding, stride)
    attrs = fused.PatchMatmulAttrs(kernel_size=kernel, padding=padding, stride=stride, shape=(batch * g.patches,
                                   g.patch_size), weight_shape=(cout, g.patch_size),
                                   out_shape=(batch, g.oh, g.ow, cout), out_dims=(0, 3, 1, 2), low_memory=low_memory)
    x = torch.randn(batch, cin, *size, dtype=torch.float64)
    w = torch.randn(cout, cin, *kernel, dtype=torch.float64)
    with torch.no_grad():
        path_taken = fused.choose_path(x.shape, w.shape, 8, attrs)
        assert path_taken is not None
        grad = torch.randn(batch, cout, g.oh, g.ow, dtype=torch.float64)
        torch.testing.assert_close(path_taken.forward(x, w), fused.literal_forward(x, w, attrs))
        got = path_taken.vjp(x, w, grad, (True, True))
        torch.testing.assert_close(got, fused.literal_vjp(x, w, grad, attrs, (True, True)))


def test_a_minimal_compile_asks_for_low_memory():
    ops = {save: graphconv.compile(SPECS / "conv2d.mmd", save=save) for save in ("all", "minimal")}
    assert "low_memory" not in ops["all"].optimized.ops()[0].args
    assert ops["minimal"].optimized.ops()[0].args["low_memory"].value is True
    reports = [next(r for r in op.reports if r.name == "patch_matmul") for op in ops.values()]
    assert ["low memory" in report.changes[0] for report in reports] == [False, True]  # --explain says so


def test_the_kernel_gradient_comes_out_in_the_kernel_layout(monkeypatch):
    """With the kernel branch fused in, the kernel's gradient is made in its own (o, c, kh, kw) layout."""
    take_path(monkeypatch, "bands of rows")
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = torch.randn(2, 4, 6, 6, requires_grad=True), torch.randn(5, 4, 3, 3, requires_grad=True)
    op(x, w).sum().backward()
    assert w.grad.is_contiguous() and x.grad.is_contiguous()
    torch.testing.assert_close(w.grad, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), w)[0])


@pytest.mark.parametrize("save", ["all", "minimal"])
def test_an_empty_batch_takes_the_literal_composition(save):
    """No image to chunk or group: the fused op computes what the unfused graph does, an empty result."""
    op = graphconv.compile(SPECS / "conv2d.mmd", save=save)
    x, w = torch.randn(0, 3, 8, 8, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    y = op(x, w)
    assert y.shape == (0, 4, 8, 8)
    grad_x, grad_w = torch.autograd.grad(y, (x, w), torch.randn_like(y))
    assert grad_x.shape == x.shape and torch.equal(grad_w, torch.zeros_like(w))
