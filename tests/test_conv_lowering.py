"""The convolution-lowering passes (grouped_conv, depthwise_conv, transposed_conv) and their fused ops
(graphconv.ops.convolution): on the shipped conv2d_full, conv1d, depthwise_conv2d and conv_transpose2d specs the
fused program gives the unfused chain's values and gradients and torch's, across strides, paddings (symmetric,
'same' with an even kernel, valid), dilations, groups, odd sizes, empty batches and non-contiguous inputs; the
native path (torch's kernels) is what runs there, the literal chain where the shapes are not a convolution's; and
neither policy holds more memory than torch."""
import importlib.util
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import graphconv
from conftest import SPECS
from graphconv.ops import convolution


def rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


def strided(*shape):
    """A float64 tensor of ``shape`` whose memory is laid out channels-last (not contiguous)."""
    b, c, *rest = shape
    return torch.randn(b, *rest, c, dtype=torch.float64).movedim(-1, 1).requires_grad_()


def grads(y, inputs, grad):
    return torch.autograd.grad(y, inputs, grad, allow_unused=True)


def assert_same_as_unfused_and_torch(spec: str, inputs: tuple, attrs: dict, reference) -> None:
    fused, plain = graphconv.compile(SPECS / spec), graphconv.compile(SPECS / spec, optimize=False)
    got, unfused, expected = fused(*inputs, **attrs), plain(*inputs, **attrs), reference(*inputs)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, unfused)
    grad = torch.randn_like(expected)
    want = grads(expected, inputs, grad)
    torch.testing.assert_close(grads(got, inputs, grad), want)
    torch.testing.assert_close(grads(unfused, inputs, grad), want)


def fused_ops(spec: str) -> list[str]:
    return [node.op.name for node in graphconv.compile(SPECS / spec).optimized.ops()]


def test_the_passes_fuse_each_shipped_drawing():
    assert fused_ops("conv2d_full.mmd") == ["grouped_conv"]  # its bias too (the conv_bias pass)
    assert fused_ops("depthwise_conv2d.mmd") == ["depthwise_conv"]
    assert fused_ops("conv_transpose2d.mmd") == ["transposed_conv"]


class CountedOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("spec, inputs, attrs", [
    ("conv2d_full.mmd", ((2, 4, 9, 9), (6, 2, 3, 3), (6,)), {"groups": 2, "padding": 1}),
    ("conv_transpose2d.mmd", ((2, 4, 5, 4), (4, 3, 3, 2), (3,)), {"stride": 2, "padding": 1}),
])
def test_the_kernel_adds_the_bias_and_sums_its_gradient(spec, inputs, attrs):
    """With the bias fused in, forward + backward run one convolution and one convolution_backward, and no add or
    sum beside them."""
    op, args = graphconv.compile(SPECS / spec), tuple(rand(*shape) for shape in inputs)
    with CountedOps() as counted:
        y = op(*args, **attrs)
        got = grads(y, args, torch.ones_like(y))
    assert counted.names.count("convolution") == 1 and counted.names.count("convolution_backward") == 1
    assert not {"add", "sum"} & set(counted.names)
    reference = F.conv2d if spec == "conv2d_full.mmd" else F.conv_transpose2d
    expected = reference(*args, **attrs)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(got, grads(expected, args, torch.ones_like(y)))


# --- conv2d_full (and conv1d through it) ----------------------------------------------------------------------

CONV2D_FULL = [
    # input, (out, kernel_h, kernel_w), attrs
    ((2, 4, 7, 6), (6, 3, 2), {"stride": 2, "padding": 1}),
    ((2, 4, 9, 8), (6, 3, 2), {"stride": (2, 1), "padding": (2, 0), "dilation": (1, 2)}),
    ((1, 4, 7, 6), (6, 3, 3), {"padding": "same", "dilation": 2}),
    ((2, 4, 7, 6), (6, 4, 4), {"padding": "same"}),  # an even kernel: asymmetric padding, applied before the kernel
    ((2, 4, 7, 6), (6, 3, 2), {"padding": "valid", "groups": 2}),
    ((3, 8, 9, 9), (8, 3, 3), {"groups": 4, "padding": 1, "stride": 2, "dilation": 2}),
    ((2, 3, 5, 7), (3, 1, 1), {"groups": 3}),
    ((0, 4, 7, 6), (6, 3, 3), {"padding": 1}),  # an empty batch
]


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("x_shape, w_shape, attrs", CONV2D_FULL)
def test_conv2d_full_matches_the_unfused_chain_and_torch(x_shape, w_shape, attrs, contiguous):
    groups = attrs.get("groups", 1)
    o, kh, kw = w_shape
    x = rand(*x_shape) if contiguous else strided(*x_shape)
    inputs = (x, rand(o, x_shape[1] // groups, kh, kw), rand(o))
    assert_same_as_unfused_and_torch("conv2d_full.mmd", inputs, attrs, lambda x, w, b: F.conv2d(x, w, b, **attrs))


@pytest.mark.parametrize("attrs", [{"padding": 1}, {"stride": 2, "padding": 2, "dilation": 2}, {"groups": 4},
                                   {"padding": "same", "dilation": 2}])
def test_conv1d_follows_through_conv2d_full(attrs):
    x, w, b = rand(2, 8, 11), rand(8, 8 // attrs.get("groups", 1), 3), rand(8)
    assert_same_as_unfused_and_torch("conv1d.mmd", (x, w, b), attrs, lambda x, w, b: F.conv1d(x, w, b, **attrs))


# --- depthwise_conv2d -------------------------------------------------------------------------------------------

DEPTHWISE = [
    ((2, 3, 7, 6), 6, (3, 3), {"stride": 2, "padding": 1}),
    ((2, 3, 8, 9), 3, (3, 2), {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1)}),
    ((1, 4, 5, 5), 8, (1, 1), {}),
    ((0, 3, 6, 6), 3, (3, 3), {"padding": 1}),
]


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("x_shape, out, kernel, attrs", DEPTHWISE)
def test_depthwise_conv2d_matches_the_unfused_chain_and_torch(x_shape, out, kernel, attrs, contiguous):
    x = rand(*x_shape) if contiguous else strided(*x_shape)
    inputs = (x, rand(out, 1, *kernel))
    groups = x_shape[1]
    assert_same_as_unfused_and_torch("depthwise_conv2d.mmd", inputs, attrs,
                                     lambda x, w: F.conv2d(x, w, groups=groups, **attrs))


# --- conv_transpose2d -------------------------------------------------------------------------------------------

TRANSPOSED = [
    ((2, 4, 5, 4), (4, 3, 3, 2), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((2, 4, 5, 4), (4, 3, 3, 2), {"stride": (2, 3), "padding": (0, 1), "output_padding": (1, 2), "dilation": (2, 1)}),
    ((2, 4, 5, 4), (4, 2, 3, 2), {"groups": 2, "stride": 2, "dilation": 2}),
    ((2, 4, 5, 4), (4, 3, 3, 2), {"stride": 2, "output_padding": 2, "dilation": 3}),  # output padding ≥ stride
    ((1, 4, 6, 5), (4, 3, 3, 2), {"stride": (1, 2), "padding": (2, 1), "output_padding": (1, 3), "dilation": (2, 4)}),
    ((2, 8, 7, 7), (8, 8, 4, 4), {"stride": 2, "padding": 1}),
    ((0, 4, 5, 4), (4, 3, 3, 2), {"stride": 2}),
]


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("x_shape, w_shape, attrs", TRANSPOSED)
def test_conv_transpose2d_matches_the_unfused_chain_and_torch(x_shape, w_shape, attrs, contiguous):
    x = rand(*x_shape) if contiguous else strided(*x_shape)
    inputs = (x, rand(*w_shape), rand(w_shape[1] * attrs.get("groups", 1)))
    assert_same_as_unfused_and_torch("conv_transpose2d.mmd", inputs, attrs,
                                     lambda x, w, b: F.conv_transpose2d(x, w, b, **attrs))


# --- which path runs ------------------------------------------------------------------------------------------

LITERAL_FORWARDS = ["grouped_literal_forward", "depthwise_literal_forward", "transposed_literal_forward"]
LITERAL_VJPS = ["grouped_literal_vjp", "depthwise_literal_vjp", "transposed_literal_vjp"]


def refuse(*args, **kwargs):
    raise AssertionError("the literal chain ran where the native kernel should")


@pytest.mark.parametrize("spec, inputs, attrs", [
    ("conv2d_full.mmd", lambda: (rand(2, 8, 9, 9), rand(8, 2, 3, 3), rand(8)), {"groups": 4, "padding": 1}),
    ("conv2d_full.mmd", lambda: (rand(2, 4, 7, 6), rand(6, 4, 4, 4), rand(6)), {"padding": "same"}),
    ("depthwise_conv2d.mmd", lambda: (rand(2, 3, 7, 6), rand(6, 1, 3, 3)), {"stride": 2, "padding": 1}),
    ("conv_transpose2d.mmd", lambda: (rand(2, 4, 5, 4), rand(4, 3, 3, 2), rand(3)),
     {"stride": 2, "output_padding": 2, "dilation": 3}),
    ("conv_transpose2d.mmd", lambda: (rand(2, 4, 5, 4), rand(4, 3, 3, 2), rand(3)),
     {"stride": 2, "padding": 1, "output_padding": 1}),
])
def test_the_shipped_specs_run_on_torch_kernels(spec, inputs, attrs, monkeypatch):
    for name in LITERAL_FORWARDS + LITERAL_VJPS:
        monkeypatch.setattr(convolution, name, refuse)
    op, args = graphconv.compile(SPECS / spec), inputs()
    y = op(*args, **attrs)
    assert all(g is not None for g in torch.autograd.grad(y, args, torch.randn_like(y)))


GROUPS_SPLIT_A_CHANNEL = """\
    ---
    graphconv:
      inputs: {x: [b, c, h, w], weight: [o, k]}
      attrs: {groups: 2}
      dims:
        oh: h - 1
        ow: w - 1
    ---
    graph LR
      X(x) --> U(("unfold(kernel_size=2)")) --> C(columns)
      C --> G(("reshape(b, groups, c * 4 // groups, oh * ow)")) --> CG(group_columns)
      W(weight) --> K(("reshape(groups, o // groups, k)")) --> WG(kernels)
      WG -->|a| M((matmul))
      CG -->|b| M
      M --> Y(products)
      Y --> I(("reshape(b, o, oh, ow)")) --> O(output)
    """


def test_a_chain_that_is_not_a_convolution_runs_as_written(monkeypatch):
    """Two groups of 3 channels' patches split a channel: fused, but each call takes the literal chain — the same
    values and gradients as the unfused graph."""
    spec = graphconv.loads(textwrap.dedent(GROUPS_SPLIT_A_CHANNEL))
    fused, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    assert [n.op.name for n in fused.optimized.ops()] == ["grouped_conv"]
    monkeypatch.setattr(convolution.Convolution, "forward", refuse)
    monkeypatch.setattr(convolution.Convolution, "vjp", refuse)
    x, w = rand(2, 3, 5, 4), rand(4, 6)
    got, expected = fused(x, w), plain(x, w)
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(grads(got, (x, w), grad), grads(expected, (x, w), grad))


BIASED = GROUPS_SPLIT_A_CHANNEL.replace("weight: [o, k]}", "weight: [o, k], bias: BIAS}") + """\
  O --> A((add)) --> Z(z)
      B(bias) --> R(("reshape(SHAPE)")) --> BR(bias_shaped) --> A
    """


@pytest.mark.parametrize("bias, shape, fused", [
    ("[o]", "o, 1, 1", True),  # one per channel
    ("[n]", "1, n", True),  # one per column: the op adds it after the kernel
    ("[b, o, p, q]", "b, o, p, q", False),  # as large as the output: left to the add
])
def test_conv_bias_fuses_a_bias_of_at_most_three_dims(bias, shape, fused):
    spec = graphconv.loads(textwrap.dedent(BIASED.replace("BIAS", bias).replace("SHAPE", shape)))
    op, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    names = [n.op.name for n in op.optimized.ops()]
    assert names[0] == "grouped_conv" and (names == ["grouped_conv"]) == fused
    sizes = {"[o]": (4,), "[n]": (4,), "[b, o, p, q]": (2, 4, 4, 4)}[bias]
    for x in (rand(2, 4, 5, 5), rand(2, 3, 5, 5)):  # 2 groups of 2 channels: the kernel; of 1.5: the literal chain
        inputs = (x, rand(4, 2 * x.shape[1]), rand(*sizes))
        got, expected = op(*inputs), plain(*inputs)
        torch.testing.assert_close(got, expected)
        grad = torch.randn_like(expected)
        torch.testing.assert_close(grads(got, inputs, grad), grads(expected, inputs, grad))


def test_a_nonzero_pad_is_not_folded_in():
    spec = graphconv.loads(textwrap.dedent(GROUPS_SPLIT_A_CHANNEL.replace(
        'X(x) --> U((', 'X(x) --> P(("pad(pad=(1, 1, 1, 1), value=1.0)")) --> XP(padded) --> U((')))
    assert [n.op.name for n in graphconv.compile(spec).optimized.ops()] == ["pad", "grouped_conv"]


# --- transforms and memory ------------------------------------------------------------------------------------

TRANSFORM_CASES = [
    ("conv2d_full.mmd", (8, 4, 3, 3), lambda x, w: F.conv2d(x, w, padding=1, groups=2), {"groups": 2, "padding": 1},
     True),
    ("depthwise_conv2d.mmd", (16, 1, 3, 3), lambda x, w: F.conv2d(x, w, padding=1, groups=8), {"padding": 1}, False),
    ("conv_transpose2d.mmd", (8, 3, 2, 2), lambda x, w: F.conv_transpose2d(x, w, stride=2), {"stride": 2}, True),
]


@pytest.mark.parametrize("spec, w_shape, reference, attrs, bias", TRANSFORM_CASES)
def test_vmap_of_grad_matches_torch(spec, w_shape, reference, attrs, bias):
    op = graphconv.compile(SPECS / spec)
    torch.manual_seed(5)
    xs, w = torch.randn(3, 2, 8, 5, 5), torch.randn(*w_shape)
    b = (torch.zeros(w_shape[1] * attrs.get("groups", 1) if spec.startswith("conv_t") else w_shape[0]),) if bias else ()
    grad = torch.func.grad(lambda x, k: op(x, k, *b, **attrs).square().sum(), argnums=1)
    want = torch.stack([torch.func.grad(lambda x, k: reference(x, k).square().sum(), argnums=1)(x, w) for x in xs])
    torch.testing.assert_close(torch.func.vmap(grad, in_dims=(0, None))(xs, w), want, rtol=1e-4, atol=1e-4)


def _peak_bytes():
    spec = importlib.util.spec_from_file_location("measure", SPECS.parent / "benchmarks" / "measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.peak_bytes


@pytest.mark.parametrize("spec, inputs, attrs, reference", [
    ("conv2d_full.mmd", ((4, 16, 20, 20), (16, 4, 3, 3), (16,)), {"groups": 4, "padding": 1},
     lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=4)),
    ("depthwise_conv2d.mmd", ((4, 16, 20, 20), (16, 1, 3, 3)), {"stride": 2, "padding": 1},
     lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=16)),
    ("conv_transpose2d.mmd", ((4, 16, 10, 10), (16, 8, 4, 4), (8,)), {"stride": 2, "padding": 1},
     lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1)),
])
def test_no_policy_holds_more_than_torch(spec, inputs, attrs, reference):
    """The fused ops hold what torch's kernels hold, their bias included."""
    peak_bytes = _peak_bytes()
    torch.manual_seed(0)
    args = tuple(torch.randn(*shape, requires_grad=True) for shape in inputs)
    expected = reference(*args)
    grad = torch.randn_like(expected)
    torch_peak = peak_bytes(lambda: torch.autograd.grad(reference(*args), args, grad))
    for save in ("all", "minimal"):
        op = graphconv.compile(SPECS / spec, save=save)
        op(*args, **attrs)  # the first call checks the shapes on the meta device
        peak = peak_bytes(lambda: torch.autograd.grad(op(*args, **attrs), args, grad))
        assert peak <= torch_peak, save


def random_convs(count: int, seed: int) -> list:
    """(spec, input, kernel, bias or None, attrs, torch's function) for small random convolutions of every shipped
    conv spec: strides, paddings, dilations, groups."""
    import random

    rng, found = random.Random(seed), []
    for _ in range(count):
        groups, k, stride = rng.choice([1, 1, 2]), rng.choice([1, 2, 3]), rng.choice([1, 2])
        b, c, o = rng.randint(1, 4), groups * rng.randint(1, 6), groups * rng.randint(1, 6)
        h, w = rng.randint(k, 11), rng.randint(k, 11)
        spec = rng.choice(["conv2d.mmd", "conv2d_full.mmd", "conv_transpose2d.mmd"])
        if spec == "conv2d.mmd":
            found.append((spec, (b, c, h, w), (o, c, k, k), None, {"stride": stride, "padding": k // 2}, F.conv2d))
        elif spec == "conv2d_full.mmd":
            attrs = {"stride": stride, "padding": rng.randint(0, 2), "dilation": rng.choice([1, 2]), "groups": groups}
            if min(h, w) + 2 * attrs["padding"] <= attrs["dilation"] * (k - 1):
                continue  # no window fits
            found.append((spec, (b, c, h, w), (o, c // groups, k, k), (o,), attrs, F.conv2d))
        else:
            attrs = {"stride": stride, "padding": rng.randint(0, k - 1), "groups": groups}
            found.append((spec, (b, c, h, w), (c, o // groups, k, k), (o,), attrs, F.conv_transpose2d))
    return found


@pytest.mark.parametrize("save", ["all", "minimal"])
def test_save_minimal_never_holds_more_than_torch(save):
    """Random small convolutions of each conv spec: under save="minimal" the peak of forward + backward is never
    above torch's; under save="all" the small-call im2col kernel may hold its patch matrix more (at most
    SMALL_CONV_COLUMNS entries), nothing else."""
    peak_bytes = _peak_bytes()
    ops = {}
    for spec, x_shape, w_shape, bias_shape, attrs, reference in random_convs(24, seed=3):
        torch.manual_seed(0)
        args = tuple(torch.randn(*shape, requires_grad=True) for shape in (x_shape, w_shape, bias_shape) if shape)
        grad = torch.randn_like(reference(*args, **attrs))
        op = ops.setdefault(spec, graphconv.compile(SPECS / spec, save=save))
        op(*args, **attrs)
        theirs = min(peak_bytes(lambda: torch.autograd.grad(reference(*args, **attrs), args, grad)) for _ in range(2))
        ours = peak_bytes(lambda: torch.autograd.grad(op(*args, **attrs), args, grad))
        allowance = convolution.SMALL_CONV_COLUMNS * 4 if save == "all" else 0
        assert ours <= theirs + allowance, (spec, x_shape, w_shape, attrs)


class ConvolutionInputs(TorchDispatchMode):
    """The number of dims of each convolution's (and convolution_backward's) input, on real tensors (a used spec's
    VJP runs its forward on meta ones for the shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.dims: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("convolution", "convolution_backward") and args[0].device.type != "meta":
            self.dims.append((name, args[1 if name == "convolution_backward" else 0].dim()))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("spec, inputs, attrs, reference, dims", [
    ("conv1d.mmd", lambda: (rand(4, 6, 40), rand(8, 3, 3), rand(8)), {"stride": 2, "padding": 1, "groups": 2},
     lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, groups=2), 3),
    ("conv2d_full.mmd", lambda: (rand(2, 4, 1, 30), rand(6, 4, 1, 5), rand(6)), {"padding": (0, 2), "dilation": 2},
     lambda x, w, b: F.conv2d(x, w, b, padding=(0, 2), dilation=2), 3),
    ("conv_transpose2d.mmd", lambda: (rand(2, 4, 1, 30), rand(4, 3, 1, 4), rand(3)), {"stride": (1, 2)},
     lambda x, w, b: F.conv_transpose2d(x, w, b, stride=(1, 2)), 3),
    ("conv2d_full.mmd", lambda: (rand(2, 16, 1, 300), rand(16, 16, 1, 5), rand(16)), {"padding": (1, 2)},
     lambda x, w, b: F.conv2d(x, w, b, padding=(1, 2)), 4),  # padded rows (and not small): a 2-d convolution
])
def test_a_one_row_convolution_runs_as_a_1d_one(spec, inputs, attrs, reference, dims):
    """One-row images with one-row kernels and no padding across rows go to torch's kernel as 1-d tensors (under
    torch.compile, inductor then keeps their layout instead of copying them to channels-last and back)."""
    op, args = graphconv.compile(SPECS / spec), inputs()
    with ConvolutionInputs() as seen:
        y = op(*args, **attrs)
        grad = torch.randn_like(y)
        got = grads(y, args, grad)
    assert seen.dims == [("convolution", dims), ("convolution_backward", dims)]
    expected = reference(*args)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(got, grads(expected, args, grad))
