"""A compiled spec under torch's transforms: double backward, vmap, jacrev, torch.compile, autocast."""
import pytest
import torch
import torch.nn.functional as F

import graphconv
from conftest import SPECS


@pytest.fixture(scope="module")
def conv2d():
    return graphconv.compile(SPECS / "conv2d.mmd")


def rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_gradgradcheck(conv2d, stride, padding):
    torch.manual_seed(0)
    x, w = rand(2, 2, 5, 5), rand(3, 2, 3, 3)
    assert torch.autograd.gradgradcheck(lambda a, b: conv2d(a, b, stride=stride, padding=padding), (x, w))


def test_second_derivatives_match_torch(conv2d):
    torch.manual_seed(1)
    x, w = rand(2, 3, 6, 6), rand(4, 3, 3, 3)

    def hessian_vector(fn):
        y = fn(x, w)
        gx, gw = torch.autograd.grad((y ** 2).sum(), (x, w), create_graph=True)
        return torch.autograd.grad((gx ** 3).sum() + (gw * gw.flip(0)).sum(), (x, w))

    got = hessian_vector(lambda a, b: conv2d(a, b))
    want = hessian_vector(lambda a, b: F.conv2d(a, b, padding=1))
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_vmap_over_a_batch_of_kernels(conv2d):
    torch.manual_seed(2)
    x, ws = torch.randn(2, 3, 6, 6), torch.randn(5, 4, 3, 3, 3)
    got = torch.func.vmap(lambda w: conv2d(x, w))(ws)
    want = torch.stack([F.conv2d(x, w, padding=1) for w in ws])
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("save", ["all", "minimal"])
def test_vmap_of_grad(conv2d, save):
    """vmap of grad through the fused op (torch's convolution_backward has a batching rule), either policy."""
    op = graphconv.compile(SPECS / "conv2d.mmd", save="minimal") if save == "minimal" else conv2d
    torch.manual_seed(3)
    xs, w = torch.randn(4, 1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    grad = torch.func.grad(lambda x, k: op(x, k).square().sum(), argnums=1)
    got = torch.func.vmap(grad, in_dims=(0, None))(xs, w)
    want = torch.stack([torch.func.grad(lambda x, k: F.conv2d(x, k, padding=1).square().sum(), argnums=1)(x, w)
                        for x in xs])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_jacrev_matches_torch(conv2d):
    torch.manual_seed(4)
    x, w = torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(2, 2, 3, 3, dtype=torch.float64)
    got = torch.func.jacrev(lambda a, b: conv2d(a, b), argnums=(0, 1))(x, w)
    want = torch.func.jacrev(lambda a, b: F.conv2d(a, b, padding=1), argnums=(0, 1))(x, w)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_of_a_model(backend):
    torch.manual_seed(5)
    model = torch.nn.Sequential(graphconv.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                graphconv.nn.Conv2d(4, 2, 3, stride=2))
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    compiled = torch.compile(model, backend=backend)
    y_eager, y_compiled = model(x), compiled(x)
    torch.testing.assert_close(y_compiled, y_eager)
    g_eager = torch.autograd.grad(y_eager.sum(), [x, *model.parameters()])
    g_compiled = torch.autograd.grad(y_compiled.sum(), [x, *model.parameters()])
    for got, want in zip(g_compiled, g_eager):
        torch.testing.assert_close(got, want)


def test_autocast_bfloat16_matches_torch(conv2d):
    torch.manual_seed(6)
    x, w = rand(2, 3, 8, 8, dtype=torch.float32), rand(4, 3, 3, 3, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv2d(x, w)
        ref = F.conv2d(x, w, padding=1)
    assert y.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref.float(), rtol=2e-2, atol=5e-2)
    gx, gw = torch.autograd.grad(y.float().sum(), (x, w))
    rx, rw = torch.autograd.grad(ref.float().sum(), (x, w))
    assert gx.dtype == gw.dtype == torch.float32
    torch.testing.assert_close(gx, rx, rtol=2e-2, atol=1e-1)
    torch.testing.assert_close(gw, rw, rtol=2e-2, atol=5e-1)


def test_bfloat16_inputs(conv2d):
    torch.manual_seed(7)
    x, w = rand(2, 3, 8, 8, dtype=torch.bfloat16), rand(4, 3, 3, 3, dtype=torch.bfloat16)
    y = conv2d(x, w)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), F.conv2d(x.float(), w.float(), padding=1), rtol=2e-2, atol=1e-1)


@pytest.mark.slow
def test_torch_compile_does_not_trace_into_graphconvs_set_up():
    """Tracing a model of graphconv layers breaks no graph in graphconv's own machinery: loading and compiling the
    spec (done when the layer is built), the first-call shape check on meta (skipped while tracing), generating
    the backward (done at compile), importing torch lazily."""
    torch._dynamo.reset()
    model = torch.nn.Sequential(graphconv.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                graphconv.nn.Conv2d(4, 2, 3, stride=2))
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 8, 8, requires_grad=True))
    where = {r.user_stack[-1].filename.rsplit("/", 1)[-1] for r in explanation.break_reasons if r.user_stack}
    assert not where & {"functional.py", "compiled.py", "program.py", "interpreter.py", "opgraph.py", "generated.py",
                        "lazy_torch.py", "api.py"}


def test_vmap_without_grad_of_a_spec_that_folds():
    """fold writes into a right-sized result with an out= op, which vmap cannot batch: under vmap it uses F.fold."""
    spec = graphconv.loads("---\ngraphconv:\n  inputs: {x: [b, k, l]}\n---\ngraph LR\n"
                           '  X(x) --> F(("fold(output_size=(4, 4), kernel_size=2)")) --> Y(y)\n')
    xs = torch.randn(3, 2, 12, 9)
    with torch.no_grad():
        got = torch.func.vmap(graphconv.compile(spec))(xs)
    torch.testing.assert_close(got, torch.stack([F.fold(x, (4, 4), 2) for x in xs]))
