"""Specs as ops: a spec ``uses:`` other spec files next to it and calls each by name; the called spec's compiled
forward and backward run inside — checked against torch in value and gradient, and the ways it can go wrong."""
import subprocess
import sys

import pytest
import torch

import graphconv
from conftest import ROOT, SPECS, write_spec
from graphconv.cli import main
from graphconv.errors import OpClashError
from graphconv.check.verify import check_op

SCALE_BY = """\
---
graphconv:
  inputs: {x: [n, m], w: [m]}
  attrs: {alpha: 2.0}
  example: {n: 2, m: 3}
  ops:
    scale: mul_scalar(value=alpha)
---
graph LR
  X(x) -->|a| M((mul))
  W(w) -->|b| M
  M --> P(product)
  P --> S((scale)) --> Y(y)
"""

OUTER = """\
---
graphconv:
  uses: [scale_by]
  inputs: {x: [n, m], w: [m]}
  example: {n: 2, m: 3}
  ops:
    first: scale_by(alpha=3.0)
    second: scale_by(alpha=0.5)
---
graph LR
  X(x) -->|x| F((first))
  W(w) -->|w| F
  F --> H(h)
  H --> T((tanh)) --> HT(h_tanh)
  HT -->|x| S((second))
  W -->|w| S
  S --> Y(y)
"""


def outer_reference(x, w):
    return torch.tanh(x * w * 3.0) * w * 0.5


def grads(output, inputs, upstream):
    wanted = [t for t in inputs if t.requires_grad]
    return torch.autograd.grad(output, wanted, upstream)


@pytest.fixture
def outer(tmp_path):
    write_spec(tmp_path, SCALE_BY, "scale_by.mmd")
    return write_spec(tmp_path, OUTER, "outer.mmd")


@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
def test_a_spec_calling_a_spec_twice_matches_torch_in_value_and_gradient(outer, needs):
    op = graphconv.compile(outer)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=needs[0])
    w = torch.randn(5, dtype=torch.float64, requires_grad=needs[1])
    y = op(x, w)
    torch.testing.assert_close(y, outer_reference(x, w))
    upstream = torch.randn_like(y)
    for got, want in zip(grads(y, (x, w), upstream), grads(outer_reference(x, w), (x, w), upstream)):
        torch.testing.assert_close(got, want)


def test_a_spec_op_takes_the_used_specs_signature_and_passes_its_gradcheck(outer):
    spec = graphconv.load(outer)
    scale_by = spec.op("F").op
    assert scale_by.signature() == "scale_by(x, w, *, alpha=2.0)"
    assert scale_by.source.startswith("spec ") and scale_by.source.endswith("scale_by.mmd")
    assert [row.ok for row in check_op(scale_by)] == [True]


def test_a_used_spec_with_two_outputs_gets_a_gradient_only_for_the_one_consumed(tmp_path):
    write_spec(tmp_path, """\
        ---
        graphconv:
          inputs: {x: [n]}
          example: {n: 4}
          ops: {halve: split(sizes=2)}
        ---
        graph LR
          X(x) --> S((halve))
          S --> A(front)
          S --> B(back)
        """, "halves.mmd")
    path = write_spec(tmp_path, """\
        ---
        graphconv:
          uses: [halves.mmd]
          inputs: {x: [n]}
          outputs: [y]
        ---
        graph LR
          X(x) --> H((halves))
          H --> A(front)
          H --> B(back)
          A --> E((exp)) --> Y(y)
        """)
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = graphconv.compile(path)(x)
    torch.testing.assert_close(y, x[:2].exp())
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.cat([x[:2].exp(), torch.zeros(2, dtype=torch.float64)]).detach())


def test_the_shipped_conv1d_calls_conv2d_full(capsys):
    spec = graphconv.load(SPECS / "conv1d.mmd")
    assert spec.op("C").op.name == "conv2d_full"
    assert main(["ops", str(SPECS / "conv1d.mmd")]) == 0
    out = capsys.readouterr().out
    assert "conv2d_full.mmd:\n  conv2d_full(input, weight, bias, *, stride=1, padding=0, dilation=1, groups=1)" in out


def uses_error(tmp_path, uses, name="outer.mmd"):
    path = write_spec(tmp_path, OUTER.replace("uses: [scale_by]", f"uses: {uses}"), name)
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.load(path)
    return caught.value


@pytest.mark.parametrize("uses, message", [
    ("[../scale_by]", "'../scale_by' is not a spec name"),
    ("[/etc/passwd]", "'/etc/passwd' is not a spec name"),
    ("[sub/scale_by.mmd]", "is not a spec name"),
    ("[scale_by.py]", "'scale_by.py' is not a spec name"),
    ("[missing]", "no spec file missing.mmd or missing.md or missing.yaml or missing.yml in"),
    ("{scale_by: 1}", "expected a list of spec names"),
])
def test_uses_reads_only_spec_files_named_next_to_the_spec(tmp_path, uses, message):
    write_spec(tmp_path, SCALE_BY, "scale_by.mmd")
    error = uses_error(tmp_path, uses)
    assert message in error.message
    assert error.line == 3 and str(error).splitlines()[-2].strip().startswith("uses:")


def test_specs_that_use_each_other_in_a_cycle_are_an_error(tmp_path):
    write_spec(tmp_path, SCALE_BY.replace("graphconv:\n", "graphconv:\n  uses: [outer]\n"), "scale_by.mmd")
    error = uses_error(tmp_path, "[scale_by]")
    assert "specs use each other in a cycle: outer.mmd → scale_by.mmd → outer.mmd" in str(error)


def test_a_spec_that_uses_itself_is_an_error(tmp_path):
    assert "cycle: outer.mmd → outer.mmd" in str(uses_error(tmp_path, "[outer]"))


def test_a_used_spec_named_like_a_registered_op_clashes_naming_both(tmp_path):
    write_spec(tmp_path, SCALE_BY, "relu.mmd")
    with pytest.raises(OpClashError, match=r"op 'relu' from spec .*relu.mmd clashes with op 'relu' from graphconv.ops.nn"):
        graphconv.load(write_spec(tmp_path, OUTER.replace("uses: [scale_by]", "uses: [relu]")))


def test_a_spec_from_text_cannot_use_files(tmp_path):
    with pytest.raises(graphconv.SpecError, match="has no folder"):
        graphconv.loads(OUTER)


def test_an_error_in_a_used_spec_points_into_that_spec(tmp_path):
    write_spec(tmp_path, SCALE_BY.replace("((mul))", "((mull))"), "scale_by.mmd")
    error = uses_error(tmp_path, "[scale_by]")
    assert error.path.endswith("scale_by.mmd") and "unknown op 'mull'" in error.message


def test_loading_a_spec_that_uses_another_imports_no_torch():
    code = ("import sys, graphconv; s = graphconv.load('specs/conv1d.mmd'); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(s.op('C').op.signature())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("conv2d_full(input, weight, bias, *")
