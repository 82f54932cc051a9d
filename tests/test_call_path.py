"""The per-call path of a compiled op (issue 13, small calls): what a call keeps for backward, and the binding as a
constant of a torch.compile trace — its guards, its checks."""
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import graphconv
from graphconv.errors import ShapeError

SPECS = Path(__file__).parent.parent / "specs"


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def stored(output: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return output.grad_fn.saved_tensors


@pytest.mark.parametrize("save", ["all", "minimal"])
@pytest.mark.parametrize("spec", ["conv2d", "layer_norm", "scaled_dot_product_attention"])
def test_a_call_keeps_each_input_once_and_the_plan_beyond_them(spec, save):
    op = graphconv.compile(SPECS / f"{spec}.mmd", save=save)
    dims = {"conv2d": [(2, 3, 6, 5), (4, 3, 3, 3)], "layer_norm": [(2, 3, 8), (8,), (8,)],
            "scaled_dot_product_attention": [(2, 2, 5, 4)] * 3}[spec]
    inputs = [rand(*shape) for shape in dims]
    output = op(*inputs)
    kept = stored(output)
    assert len(kept) == len(inputs) + len(op.program.kept)
    assert all(a is not b for i, a in enumerate(inputs) for b in inputs[i + 1:])
    assert [t.data_ptr() for t in kept[:len(inputs)]] == [t.data_ptr() for t in inputs]
    assert not set(op.program.kept) & set(op.program.input_slots)
    grads = torch.autograd.grad(output.sum(), inputs)
    oracle = graphconv.compile(SPECS / f"{spec}.mmd", optimize=False)
    torch.testing.assert_close(grads, torch.autograd.grad(oracle(*inputs).sum(), inputs))


def test_a_noncontiguous_input_and_an_empty_batch_go_the_same_way():
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x = rand(3, 5, 6, 2).permute(3, 0, 2, 1)  # (2, 3, 6, 5), not contiguous
    w = rand(4, 3, 3, 3)
    torch.testing.assert_close(op(x, w, stride=2), F.conv2d(x, w, stride=2, padding=1))
    torch.testing.assert_close(torch.autograd.grad(op(x, w).sum(), (x, w)),
                               torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), (x, w)))
    empty = rand(0, 3, 6, 5)
    assert op(empty, w).shape == (0, 4, 6, 5)


def test_attrs_given_and_defaulted_bind_to_the_same_values():
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = rand(1, 3, 7, 7), rand(2, 3, 3, 3)
    for attrs in [{}, {"padding": 1}, {"stride": 1, "padding": 1}, {"padding": 0}, {}]:
        want = F.conv2d(x, w, stride=attrs.get("stride", 1), padding=attrs.get("padding", 1))
        torch.testing.assert_close(op(x, w, **attrs), want)


def binding_guards(op, inputs: tuple, attrs: dict) -> list:
    """The guards torch.compile installs for a function calling ``op`` that come from binding the spec's names
    (evaluating its dims and op arguments); the input checks, which stay in the trace, aside."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda *xs: op(*xs, **attrs))(*inputs)
    assert explained.graph_break_count == 0

    def from_binding(frame) -> bool:
        if frame.filename.endswith("graphconv/compiler/binding.py"):
            return frame.name not in ("check_inputs", "_tensor_type")
        return frame.filename.endswith(("graphconv/syntax/expr.py", "graphconv/compiler/program.py",
                                        "graphconv/compiler/codegen/source.py"))

    return [guard for guard in explained.out_guards if guard.user_stack and from_binding(guard.user_stack[-1])]


def test_under_torch_compile_the_binding_is_a_constant_not_guards():
    op = graphconv.compile(SPECS / "conv2d_full.mmd")
    x, w, b = torch.randn(2, 4, 9, 9), torch.randn(6, 2, 3, 3), torch.randn(6)
    assert binding_guards(op, (x, w, b), {"stride": 2, "padding": 1, "groups": 2}) == []
    compiled = torch.compile(lambda *xs: op(*xs, stride=2, padding=1, groups=2), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, w, b), F.conv2d(x, w, b, stride=2, padding=1, groups=2))
    x2 = torch.randn(3, 4, 11, 8)  # other shapes: traced again, bound again
    torch.testing.assert_close(compiled(x2, w, b), F.conv2d(x2, w, b, stride=2, padding=1, groups=2))


def shape_error(error: BaseException) -> ShapeError:
    """The ShapeError raised, or the one dynamo's error was raised while handling (its message leads with it)."""
    if not isinstance(error, ShapeError):
        assert str(error).startswith("ShapeError: ")
        error = error.__cause__ or error.__context__
    assert isinstance(error, ShapeError)
    return error


def test_under_torch_compile_a_shape_error_still_names_the_spec_input():
    torch._dynamo.reset()
    op = graphconv.compile(SPECS / "conv2d.mmd")
    compiled = torch.compile(lambda a, b: op(a, b), fullgraph=True, backend="eager")
    with pytest.raises(Exception) as raised:
        compiled(torch.randn(2, 3, 8, 8), torch.randn(4, 5, 3, 3))
    error = shape_error(raised.value)
    assert "in_channels is 5 but input_batch says 3" in str(error) and error.line == 6


def test_under_torch_compile_the_declared_shapes_are_checked_too():
    """The binding runs for real while dynamo traces, so the first-call check of every declared shape runs there
    as in eager mode."""
    torch._dynamo.reset()
    spec = graphconv.loads("""---
graphconv:
  inputs: {x: [n, m]}
  shapes: {y: [m, n]}
---
graph LR
  X(x) --> R(("reshape(n, m)")) --> Y(y)
""")
    op = graphconv.compile(spec)
    compiled = torch.compile(lambda a: op(a), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(torch.ones(3, 3)), torch.ones(3, 3))
    with pytest.raises(Exception) as raised:
        compiled(torch.ones(2, 3))
    assert "tensor 'y'" in str(shape_error(raised.value))


@pytest.mark.parametrize("dynamic", [None, True])
def test_under_torch_compile_dynamic_sizes_are_bound_at_their_values(dynamic):
    """A symbolic size (dynamic=True, or torch's automatic dynamic shapes after a new batch size) is read as its
    value: each new size recompiles, and every call is right."""
    torch._dynamo.reset()
    op = graphconv.compile(SPECS / "conv2d_full.mmd")
    w, b = torch.randn(6, 4, 3, 3), torch.randn(6)
    compiled = torch.compile(lambda x: op(x, w, b, stride=2, padding=1), fullgraph=True, backend="eager",
                             dynamic=dynamic)
    for batch, size in [(2, 9), (3, 9), (5, 8), (3, 9)]:
        x = torch.randn(batch, 4, size, size)
        torch.testing.assert_close(compiled(x), F.conv2d(x, w, b, stride=2, padding=1))


class CountedOps(TorchDispatchMode):
    """How often each aten op ran on real (not meta) tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in args):
            self.calls[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def test_a_used_spec_that_keeps_only_its_inputs_computes_its_forward_once():
    """conv1d uses conv2d_full, which keeps nothing but its inputs: its VJP reads the shapes of its values from a
    forward on meta tensors, so forward + backward run one convolution and one convolution_backward."""
    conv1d = graphconv.compile(SPECS / "conv1d.mmd")
    x, w, b = rand(2, 4, 9), rand(6, 2, 3), rand(6)
    with CountedOps() as counted:
        y = conv1d(x, w, b, padding=1, groups=2)
        grads = torch.autograd.grad(y, (x, w, b), torch.ones_like(y))
    assert counted.calls["convolution"] == 1 and counted.calls["convolution_backward"] == 1
    expected = F.conv1d(x, w, b, padding=1, groups=2)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(grads, torch.autograd.grad(expected, (x, w, b), torch.ones_like(y)))


def test_a_used_spec_whose_forward_needs_values_runs_it_again(tmp_path):
    """A used dropout draws its mask from its seed, which a meta tensor cannot: its VJP runs the forward itself,
    and the gradient is masked where the output was."""
    (tmp_path / "masked.mmd").write_text("---\ngraphconv:\n  inputs: {x: [n]}\n---\n"
                                         "graph LR\n  X(x) --> D((\"dropout(p=0.5, seed=3)\")) --> Y(y)\n")
    (tmp_path / "outer.mmd").write_text("---\ngraphconv:\n  uses: [masked]\n  inputs: {x: [n]}\n---\n"
                                        "graph LR\n  X(x) --> D((masked)) --> Y(y)\n")
    outer, x = graphconv.compile(tmp_path / "outer.mmd"), rand(64)
    y = outer(x)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    torch.testing.assert_close(grad, (y != 0).double() * 2.0)


# --- small calls: torch's im2col kernel, the memoised plans -------------------------------------------------------

SMALL_CONVS = [  # spec, input, kernel, attrs: each with a patch matrix of at most SMALL_CONV_COLUMNS entries
    ("conv2d.mmd", (4, 3, 8, 8), (8, 3, 3, 3), {"padding": 1}),  # the seed's
    ("conv2d.mmd", (3, 2, 9, 9), (4, 2, 5, 5), {"stride": 2, "padding": 2}),
    ("conv2d.mmd", (1, 4, 5, 5), (6, 4, 1, 1), {"padding": 0}),
    ("conv2d_full.mmd", (2, 5, 7, 6), (3, 5, 3, 2), {"stride": (2, 1), "padding": (1, 0)}),  # through grouped_conv
]


@pytest.mark.parametrize("spec, x_shape, w_shape, attrs", SMALL_CONVS)
@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
def test_a_small_conv_runs_torchs_im2col_kernel_and_matches_torch(spec, x_shape, w_shape, attrs, needs):
    op = graphconv.compile(SPECS / spec)
    x, w = rand(*x_shape).requires_grad_(needs[0]), rand(*w_shape).requires_grad_(needs[1])
    bias = (torch.zeros(w_shape[0], dtype=torch.float64),) if spec == "conv2d_full.mmd" else ()
    x_strided = x.detach().movedim(1, -1).contiguous().movedim(-1, 1).requires_grad_(needs[0])  # channels-last
    for input in (x, x_strided):
        wanted = [t for t in (input, w) if t.requires_grad]
        with CountedOps() as counted:
            y = op(input, w, *bias, **attrs)
            grad = torch.randn_like(y)
            got = torch.autograd.grad(y, wanted, grad)
        assert counted.calls["_slow_conv2d_forward"] == 1 and counted.calls["_slow_conv2d_backward"] == 1
        assert counted.calls["convolution"] == 0 and counted.calls["convolution_backward"] == 0
        expected = F.conv2d(input, w, **attrs)
        torch.testing.assert_close(y, expected)
        torch.testing.assert_close(got, torch.autograd.grad(expected, wanted, grad))


@pytest.mark.parametrize("spec, x_shape, w_shape, attrs", SMALL_CONVS)
def test_save_minimal_keeps_a_small_conv_on_torchs_convolution(spec, x_shape, w_shape, attrs):
    """save="minimal" sets the fused ops' ``lean``: no patch matrix beyond what torch's own choice holds."""
    op = graphconv.compile(SPECS / spec, save="minimal")
    assert all(step.defaults.get("lean") for step in op.program.steps if step.op.lean_attr)
    x, w = rand(*x_shape), rand(*w_shape)
    bias = (torch.zeros(w_shape[0], dtype=torch.float64),) if spec == "conv2d_full.mmd" else ()
    with CountedOps() as counted:
        y = op(x, w, *bias, **attrs)
        grad = torch.randn_like(y)
        got = torch.autograd.grad(y, (x, w), grad)
    assert counted.calls["convolution"] == 1 and counted.calls["convolution_backward"] == 1
    assert counted.calls["_slow_conv2d_forward"] == 0 and counted.calls["_slow_conv2d_backward"] == 0
    expected = F.conv2d(x, w, **attrs)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(got, torch.autograd.grad(expected, (x, w), grad))


def test_a_lean_bound_in_the_graph_outranks_the_policy(tmp_path):
    """A graph that binds ``lean`` itself keeps its value under either policy."""
    spec = tmp_path / "explicit.mmd"
    spec.write_text("---\ngraphconv:\n  inputs: {x: [b, c, h, w], k: [c*9, o]}\n---\ngraph LR\n"
                    "  X(x) --> P((\"patch_matmul(kernel_size=3, padding=1, shape=(b*h*w, c*9), lean=False)\"))\n"
                    "  K(k) --> P --> Y(y)\n")
    for save in ("all", "minimal"):
        op = graphconv.compile(spec, save=save)
        x, k = rand(2, 3, 5, 5), rand(27, 4)
        with CountedOps() as counted:
            y = op(x, k)
        assert counted.calls["_slow_conv2d_forward"] == 1, save
        torch.testing.assert_close(y, F.conv2d(x, k.t().reshape(4, 3, 3, 3), padding=1).permute(0, 2, 3, 1)
                                   .reshape(-1, 4))


def test_a_small_conv_has_second_derivatives():
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = rand(2, 3, 5, 5), rand(4, 3, 3, 3)
    assert torch.autograd.gradgradcheck(lambda a, b: op(a, b, stride=2, padding=1), (x, w))


@pytest.mark.parametrize("spec, x_shape, w_shape, attrs", [
    ("conv2d.mmd", (4, 16, 16, 16), (8, 16, 3, 3), {"padding": 1}),  # 147,456 patch entries: torch's convolution
    ("conv2d_full.mmd", (4, 3, 8, 8), (8, 3, 3, 3), {"padding": 2, "dilation": 2}),  # the im2col kernel has none
    ("conv2d_full.mmd", (4, 4, 8, 8), (8, 2, 3, 3), {"padding": 1, "groups": 2}),  # nor groups
])
def test_other_convs_run_torchs_convolution(spec, x_shape, w_shape, attrs):
    op = graphconv.compile(SPECS / spec)
    x, w = rand(*x_shape), rand(*w_shape)
    bias = (torch.zeros(w_shape[0], dtype=torch.float64),) if spec == "conv2d_full.mmd" else ()
    with CountedOps() as counted:
        y = op(x, w, *bias, **attrs)
        torch.autograd.grad(y, (x, w), torch.ones_like(y))
    assert counted.calls["convolution"] == 1 and counted.calls["convolution_backward"] == 1
    assert counted.calls["_slow_conv2d_forward"] == 0
    torch.testing.assert_close(y, F.conv2d(x, w, **attrs))


def test_a_small_conv_under_vmap_runs_torchs_convolution():
    """The im2col kernel has no batching rule: under vmap the call takes torch.convolution, and matches torch."""
    op = graphconv.compile(SPECS / "conv2d.mmd")
    xs, w = torch.randn(3, 2, 3, 6, 6), torch.randn(4, 3, 3, 3)
    got = torch.func.vmap(lambda x: op(x, w, padding=1))(xs)
    torch.testing.assert_close(got, torch.stack([F.conv2d(x, w, padding=1) for x in xs]))


def test_a_fused_ops_plan_is_chosen_once_per_shapes_and_attrs(monkeypatch):
    from graphconv.ops import fused, helpers

    chosen = []
    choose = fused.choose_path
    monkeypatch.setattr(fused, "choose_path", lambda *args: chosen.append(args) or choose(*args))
    monkeypatch.setattr(fused.PatchMatmulAttrs, "plans", {})
    op = graphconv.compile(SPECS / "conv2d.mmd")
    for _ in range(3):
        for shape in [(2, 3, 6, 6), (2, 3, 7, 6)]:
            x, w = rand(*shape), rand(4, 3, 3, 3)
            y = op(x, w, padding=1)
            torch.autograd.grad(y, (x, w), torch.ones_like(y))
    assert len(chosen) == 2  # one per input shape, shared by forward and VJP
    attrs = fused.PatchMatmulAttrs(kernel_size=[3, 3], padding=1, shape=(-1, 27))  # an unhashable value
    assert isinstance(helpers.planned(choose, (2, 3, 6, 6), (27, 4), attrs), fused.NativePath)
    assert len(chosen) == 2 and len(fused.PatchMatmulAttrs.plans) == 2
