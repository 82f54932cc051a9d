"""The autograd oracle (graphconv.check.oracle) and how ``graphconv check`` uses it: any spec's value, gradients and
second derivatives from its ops' forwards alone, and the op to blame when a compiled op disagrees."""
import textwrap

import pytest
import torch

import graphconv
from conftest import SPECS, write_spec
from graphconv.check.oracle import Oracle, blame, derivatives, differences, reference
from graphconv.check.verify import check_blame, check_oracle, check_spec, gradcheck
from graphconv.cli import main
from graphconv.compiler.compiled import CompiledOp

WRONG_VJP_OPS = '''\
import torch
import graphconv


@graphconv.op(registry=None)
def scaled_add(a, b):
    """a + 2 b."""
    return a + 2 * b


@scaled_add.vjp
def _(ctx, grad):
    return (grad, grad)  # wrong for b: its gradient is 2 * grad


@scaled_add.samples
def _():
    yield (torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)), {}


@graphconv.op(save=("x",), registry=None)
def square(x):
    """x ** 2."""
    return x * x


@square.vjp
def _(ctx, grad):
    return (2 * ctx.x.detach() * grad,)  # right, but not differentiable: second derivatives are lost


@square.samples
def _():
    yield (torch.randn(3, dtype=torch.float64),), {}
'''

SPEC = """\
---
graphconv:
  inputs: {x: [n], y: [n]}
  example: {n: 3}
---
graph LR
  X(x) --> T((tanh)) --> U(u)
  U -->|a| S((scaled_add))
  Y(y) -->|b| S
  S --> Z(z)
"""


@pytest.fixture
def wrong_ops(tmp_path, monkeypatch):
    (tmp_path / "wrong_vjp_ops.py").write_text(WRONG_VJP_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import wrong_vjp_ops

    yield wrong_vjp_ops
    del __import__("sys").modules["wrong_vjp_ops"]


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def test_the_oracle_runs_the_forwards_under_autograd():
    spec = graphconv.load(SPECS / "layer_norm.mmd")
    oracle = Oracle(spec)
    x, w, b = rand(2, 3, 4), rand(4), rand(4)
    torch.testing.assert_close(oracle(x, w, b), torch.nn.functional.layer_norm(x, (4,), w, b))
    assert oracle(x.requires_grad_(), w, b).grad_fn is not None  # torch's own graph, no hand-written VJP


def test_a_spec_used_as_an_op_is_expanded_into_its_own_ops(monkeypatch):
    spec = graphconv.load(SPECS / "conv1d.mmd")
    used = next(node.op for node in spec.ops() if node.op.source.startswith("spec "))
    monkeypatch.setattr(used.forward, "compiled", lambda: pytest.fail("the oracle ran the compiled used spec"))
    x, w, b = rand(2, 3, 9), rand(4, 3, 3), rand(4)
    torch.testing.assert_close(Oracle(spec)(x, w, b), torch.nn.functional.conv1d(x, w, b))


def test_derivatives_match_torch_along_the_same_probes():
    spec = graphconv.load(SPECS / "layer_norm.mmd")
    inputs = [rand(2, 3, 4), rand(4), rand(4)]
    generator = torch.Generator().manual_seed(0)
    probes, want = reference(Oracle(spec), inputs, {}, generator)
    got = derivatives(lambda x, w, b: torch.nn.functional.layer_norm(x, (4,), w, b), inputs, probes)
    assert not differences(got, want, spec.output_names, spec.input_names)
    assert want.second[0].abs().max() > 0  # (the bias enters linearly: its second derivative is zero)


def test_blame_names_the_op_whose_vjp_is_wrong_and_the_input(tmp_path, wrong_ops):
    spec = graphconv.load(write_spec(tmp_path, SPEC), ops=[wrong_ops])
    oracle, inputs = Oracle(spec), [rand(3), rand(3)]
    found = blame(oracle.program, oracle.arguments(inputs, {}), inputs, torch.Generator().manual_seed(0))
    assert (found.node, found.label, found.line, found.input, found.order) == ("S", "scaled_add", 8, "b", 1)
    assert "op S (scaled_add)" in str(found) and "line 8" in str(found) and "input 'b'" in str(found)


def test_blame_finds_a_vjp_that_is_right_but_not_differentiable(tmp_path, wrong_ops):
    spec = graphconv.load(write_spec(tmp_path, "graph LR\n  X(x) --> T((tanh)) --> Q((square)) --> Y(y)\n"),
                          ops=[wrong_ops])
    oracle, inputs = Oracle(spec), [rand(4)]
    found = blame(oracle.program, oracle.arguments(inputs, {}), inputs, torch.Generator().manual_seed(0))
    assert (found.node, found.input, found.order) == ("Q", "x", 2)


def test_check_blames_the_op_with_a_wrong_vjp_naming_its_line_and_input(tmp_path, wrong_ops):
    rows = check_spec(graphconv.load(write_spec(tmp_path, SPEC), ops=[wrong_ops]))
    failed = {row.what: row for row in rows if not row.ok}
    assert set(failed) == {"op gradcheck", "spec gradcheck", "oracle", "blame"}
    assert failed["spec gradcheck"].detail.startswith("GradcheckError: Jacobian mismatch: the gradient of output 0 "
                                                      "('z') with respect to input 1 ('y') differs from finite "
                                                      "differences (max |Δ| ")
    assert failed["oracle"].detail.startswith("gradient of input 'y' differs: max |Δ|")
    assert failed["blame"].subject == "op S (scaled_add)"
    assert "line 8" in failed["blame"].detail and "for input 'b'" in failed["blame"].detail


def test_the_check_command_prints_the_blame_and_says_nothing_was_compared_with_torch(tmp_path, wrong_ops, capsys):
    status = main(["check", "--ops", "wrong_vjp_ops", "--failures", str(write_spec(tmp_path, SPEC))])
    out = capsys.readouterr().out
    assert status == 1
    [blamed] = [line for line in out.splitlines() if line.startswith("FAIL    blame")]
    assert "op S (scaled_add) at" in blamed and "line 8" in blamed and "input 'b'" in blamed
    assert "nothing was compared with torch" in out


def test_a_gradcheck_failure_is_one_whole_line():
    message = gradcheck(lambda x: x.detach() * x, [rand(3)], input_names=["x"], output_names=["y"])
    assert message.startswith("GradcheckError: Jacobian mismatch: the gradient of output 0 ('y') with respect to "
                              "input 0 ('x') differs")
    assert "\n" not in message and not message.endswith(",")
    slow = gradcheck(lambda x: x.detach() * x, [rand(3)], fast=True)
    assert "\n" not in slow and "max |Δ|" in slow


def test_check_blames_the_compiler_when_every_vjp_is_right(tmp_path, monkeypatch):
    """A compiled op that puts right ops together wrongly: no op to blame, so the check says it is the compiler."""
    path = write_spec(tmp_path, textwrap.dedent("""\
        ---
        graphconv:
          inputs: {x: [n]}
          example: {n: 3}
        ---
        graph LR
          X(x) --> T((tanh)) --> Y(y)
        """))
    original = CompiledOp.__call__
    monkeypatch.setattr(CompiledOp, "__call__", lambda self, *xs, **kw: original(self, *xs, **kw) * 1.5)
    rows = check_spec(graphconv.load(path), ops=False)
    [blamed] = [row for row in rows if row.what == "blame"]
    assert not blamed.ok and "compiler bug" in blamed.detail


def test_check_says_when_only_finite_differences_disagree(tmp_path):
    """relu at 0 (a kink): the VJP and the oracle agree, the finite differences cannot."""
    path = write_spec(tmp_path, textwrap.dedent("""\
        ---
        graphconv:
          inputs: {x: [n]}
          example: {n: 3}
        ---
        graph LR
          X(x) --> R((relu)) --> Y(y)
        """))
    spec = graphconv.load(path)
    zeros = torch.zeros(3, dtype=torch.float64)
    compiled = CompiledOp(spec)
    agreement = check_oracle(compiled, Oracle(spec), [zeros], {}, "at 0", torch.Generator().manual_seed(0))
    assert agreement.ok
    row = check_blame(compiled, [zeros], {}, "at 0", torch.Generator().manual_seed(0), agreement.ok)
    assert "only finite differences differ" in row.detail
