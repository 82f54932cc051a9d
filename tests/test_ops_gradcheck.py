"""Every registered op's hand-written VJP against torch autograd (gradcheck, float64), on every sample it declares.

The list of ops comes from the registry itself, so a new op is checked the moment it is registered — and an op
that declares no samples fails here.
"""
import pytest
import torch

from graphconv.ops import REGISTRY, Op
from graphconv.check.verify import check_op, gradcheck_op, samples


@pytest.mark.parametrize("name", REGISTRY.names())
def test_vjp_matches_autograd_on_every_sample(name):
    rows = check_op(REGISTRY.get(name))
    failed = [f"{row.case}: {row.detail}" for row in rows if not row.ok]
    assert not failed, f"op {name}:\n" + "\n".join(failed)
    assert len(rows) == len(samples(REGISTRY.get(name))) >= 1


def _twice(x):
    """2x (with a deliberately wrong VJP below)."""
    return 2 * x


def test_an_op_without_samples_fails():
    bare = Op(_twice, name="twice")
    bare.vjp(lambda ctx, grad: (2 * grad,))
    [row] = check_op(bare)
    assert not row.ok and "declares no samples" in row.detail


def test_a_wrong_vjp_fails_its_gradcheck():
    wrong = Op(_twice, name="twice")
    wrong.vjp(lambda ctx, grad: (grad,))
    wrong.samples(lambda: iter([((torch.randn(3, dtype=torch.float64),), {})]))
    [row] = check_op(wrong)
    assert not row.ok and "Jacobian mismatch" in row.detail


def test_a_vjp_reading_an_undeclared_saved_tensor_fails():
    mul = REGISTRY.get("mul")
    forgetful = Op(mul.forward, name="mul_forgetful", save=("a",))  # its VJP also reads b
    forgetful.vjp(mul.backward)
    forgetful.samples(mul.sample_inputs)
    rows = check_op(forgetful)
    assert rows and not any(row.ok for row in rows)
    assert "the VJP context has no 'b'" in rows[0].detail


def test_a_vjp_that_hands_on_its_gradient_is_not_fresh():
    """An op promising ``fresh_grads`` (backward may sum into its gradients in place) is checked on its samples:
    one whose VJP returns the incoming gradient itself breaks the promise, though its gradient is right."""
    liar = Op(lambda x: x + 1, name="shift", fresh_grads=True)
    liar.vjp(lambda ctx, grad: (grad,))
    liar.samples(lambda: iter([((torch.randn(3, dtype=torch.float64),), {})]))
    [row] = check_op(liar)
    assert not row.ok and "fresh_grads: the gradient for input 0 (x) shares memory" in row.detail


def test_the_library_covers_the_primitives_the_specs_are_built_from():
    wanted = {"view", "reshape", "permute", "transpose", "flatten", "squeeze", "unsqueeze", "expand", "matmul", "bmm",
              "add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "pow", "sum", "mean", "max", "amax", "softmax",
              "log_softmax", "relu", "sigmoid", "tanh", "pad", "unfold", "fold", "slice", "select", "index_select",
              "cat", "split", "stack", "where", "add_scalar", "mul_scalar", "full_like"}
    assert wanted <= set(REGISTRY.names())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", REGISTRY.names())
def test_vjp_matches_autograd_on_cuda(name):
    op = REGISTRY.get(name)
    for tensors, attrs in samples(op):
        on_device = [t.cuda() if t is not None else None for t in tensors]
        assert gradcheck_op(op, on_device, attrs) is None
