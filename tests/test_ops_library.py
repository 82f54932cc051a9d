"""Op library behaviour beyond gradcheck: ties in max/amax, multi-output split, what the op modules import."""
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from graphconv.ops import REGISTRY
from graphconv.ops.registry import Op
from graphconv.check.verify import single_op


def grads(function, x):
    x = x.detach().clone().requires_grad_()
    out = function(x)
    out.backward(torch.arange(1.0, out.numel() + 1, dtype=x.dtype).reshape(out.shape))
    return out.detach(), x.grad


def test_amax_splits_the_gradient_evenly_between_ties_like_torch():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    amax = single_op(REGISTRY.get("amax"), [x], {"dim": 1})
    got, got_grad = grads(lambda t: amax(t, dim=1), x)
    want, want_grad = grads(lambda t: t.amax(1), x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    assert got_grad.tolist() == [[0, 0.5, 0.5, 0], [0.5, 0.5, 0.5, 0.5]]


def test_max_sends_the_gradient_to_the_first_arg_max_like_torch_max():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    max_ = single_op(REGISTRY.get("max"), [x], {"dim": 1})
    got, got_grad = grads(lambda t: max_(t, dim=1), x)
    want, want_grad = grads(lambda t: t.max(1).values, x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    assert got_grad.tolist() == [[0, 1, 0, 0], [2, 0, 0, 0]]


def test_split_gives_a_zero_gradient_to_a_piece_nobody_uses():
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    split = single_op(REGISTRY.get("split"), [x], {"sizes": 2})
    first, second, third = split(x, sizes=2)
    torch.testing.assert_close(torch.cat([first, second, third]), x)
    (second * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0], [0, 0], [3, 3], [3, 3], [0, 0]], dtype=torch.float64))


def test_importing_the_op_library_imports_no_torch():
    code = "import sys, graphconv.ops; assert 'torch' not in sys.modules, 'torch imported'; print(len(graphconv.ops.REGISTRY))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 40


def test_ops_declare_their_index_inputs():
    """Inputs that take indices or conditions are declared on the op (the binder lets their dtype differ)."""
    declared = {op.name: set(op.index_inputs) for op in REGISTRY if op.index_inputs}
    assert declared == {"index_select": {"index"}, "where": {"condition"}, "gather": {"index"},
                        "take_along_dim": {"indices"}, "masked_fill": {"mask"}, "one_hot": {"index", "like"},
                        "type_as": {"like"}}
    with pytest.raises(ValueError, match="index_inputs names 'indices', which is not an input"):
        Op(lambda x, index: x, name="pick", index_inputs=("indices",))
