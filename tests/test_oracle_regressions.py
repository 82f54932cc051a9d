"""Each case named under *Why* in issue 12, checked against the autograd oracle (value, gradients, second
derivatives in float64) on the backends it broke: the generated code, the exported module, a spec used as an op."""
from __future__ import annotations

import ast
import importlib.util
import sys

import pytest
import torch

import graphconv
from conftest import SPECS, write_spec
from graphconv.check.oracle import Oracle, derivatives, differences, reference
from graphconv.compiler.codegen.export import export_source

VARIANTS = [dict(optimize=o, save=s) for o in (True, False) for s in ("all", "minimal")]
VARIANT_IDS = ["opt-all", "opt-minimal", "noopt-all", "noopt-minimal"]


def rand(*shape, generator=None):
    return torch.randn(*shape, dtype=torch.float64, generator=generator)


def assert_matches_oracle(function, spec, inputs, attrs=None, *, order=2, oracle_spec=None):
    """``function``'s value, gradients and (with ``order=2``) second derivatives equal the oracle's."""
    attrs = attrs or {}
    probes, want = reference(Oracle(oracle_spec or spec), inputs, attrs, torch.Generator().manual_seed(0))
    got = derivatives(lambda *xs: function(*xs, **attrs), inputs, probes, order=order)
    if order < 2:
        want.second = []
    found = differences(got, want, spec.output_names, spec.input_names)
    assert not found, "; ".join(map(str, found))


def load_text(tmp_path, text, name="spec.mmd"):
    return graphconv.load(write_spec(tmp_path, text, name))


def exported_function(tmp_path, spec, **options):
    """The module ``graphconv export`` writes, imported; its entry point is its last function."""
    text = export_source(graphconv.compile(spec, **options))
    path = tmp_path / "exported.py"
    path.write_text(text, encoding="utf-8")
    found = importlib.util.spec_from_file_location("exported", path)
    module = importlib.util.module_from_spec(found)
    sys.dont_write_bytecode = True
    found.loader.exec_module(module)
    return getattr(module, [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)][-1])


def exported_matches_oracle(tmp_path, spec, inputs, attrs=None, **options):
    """Called with and without gradients (an exported module may refuse double backward: values and gradients)."""
    function = exported_function(tmp_path, spec, **options)
    assert_matches_oracle(function, spec, inputs, attrs, order=1)
    assert_matches_oracle(function, spec, inputs, attrs, order=0)


# --- names that collide with generated code ---------------------------------------------------------------------

RESIDUAL = """\
    graph LR
      X(x) -->|a| M((matmul)) --> H(h)
      W(w) -->|b| M
      H --> R((relu)) --> R1(r1)
      R1 -->|a| A((add))
      X -->|b| A
      A --> Y(y)
    """


@pytest.mark.parametrize("options", VARIANTS, ids=VARIANT_IDS)
def test_a_relu_output_named_r1_in_a_residual_block(tmp_path, options):
    spec = load_text(tmp_path, RESIDUAL)
    assert_matches_oracle(graphconv.compile(spec, **options), spec, [rand(3, 3), rand(3, 3)])


# --- input order --------------------------------------------------------------------------------------------------

REDECLARED = """\
    graph LR
      X(x) -->|a| M((sub))
      W(w) -->|b| M
      M --> Y(y)
      X(x) --> T((tanh)) --> Z(z)
    """


def test_an_input_declared_again_later_keeps_its_place(tmp_path):
    spec = load_text(tmp_path, REDECLARED)
    assert spec.input_names == ["x", "w"]
    x, w = rand(3), rand(3)
    torch.testing.assert_close(graphconv.compile(spec)(x, w)[0], x - w)


# --- torch.func and a no-op flatten ---------------------------------------------------------------------------------


FLATTEN_NOOP = "graph LR\n  X(x) --> F((\"flatten(start_dim=1, end_dim=1)\")) --> Y(y)\n"


@pytest.mark.parametrize("transform", ["grad", "vjp"])
def test_a_flatten_that_changes_nothing_works_under_torch_func(tmp_path, transform):
    op = graphconv.compile(load_text(tmp_path, FLATTEN_NOOP))
    x = rand(2, 3, 4)
    if transform == "grad":
        found = torch.func.grad(lambda v: (op(v) * v).sum())(x)
    else:
        _, pullback = torch.func.vjp(op, x)
        (found,) = pullback(x)
    torch.testing.assert_close(found, 2 * x if transform == "grad" else x)


# --- pow(exponent=0) ----------------------------------------------------------------------------------------------


def test_pow_with_exponent_zero_has_gradient_zero_at_zero(tmp_path):
    spec = load_text(tmp_path, "graph LR\n  X(x) --> P((\"pow(exponent=0)\")) --> Y(y)\n")
    x = torch.tensor([0.0, 1.5, -2.0], dtype=torch.float64)
    assert_matches_oracle(graphconv.compile(spec), spec, [x])


# --- double backward through a spec used as an op -------------------------------------------------------------------

INNER = """\
    ---
    graphconv:
      inputs: {x: [n]}
    ---
    graph LR
      X(x) --> T((tanh)) --> Y(y)
      Y -->|a| M((mul))
      X -->|b| M
      M --> Z(z)
    """
OUTER = """\
    ---
    graphconv:
      uses: [inner]
    ---
    graph LR
      X(x) --> U((inner)) --> Y(y)
    """

def test_second_derivatives_through_a_spec_used_as_an_op(tmp_path):
    inner = load_text(tmp_path, INNER, "inner.mmd")
    outer = load_text(tmp_path, OUTER, "outer.mmd")
    assert_matches_oracle(graphconv.compile(outer), outer, [rand(4)], oracle_spec=inner)


def conv1d_pair():
    torch.manual_seed(0)
    ours = graphconv.nn.Conv1d(2, 3, 3, padding=1).double()
    torch.manual_seed(0)
    theirs = torch.nn.Conv1d(2, 3, 3, padding=1).double()
    return ours, theirs


def gradient_penalty(layer, x):
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(layer(x).tanh().sum(), x, create_graph=True)
    return torch.autograd.grad(grad.pow(2).sum(), layer.weight)[0]


def test_a_gradient_penalty_through_graphconv_nn_conv1d():
    ours, theirs = conv1d_pair()
    x = rand(2, 2, 7)
    torch.testing.assert_close(gradient_penalty(ours, x), gradient_penalty(theirs, x))


@pytest.mark.parametrize("transform", ["grad", "jacrev"])
def test_torch_func_through_graphconv_nn_conv1d(transform):
    ours, theirs = conv1d_pair()
    x = rand(2, 2, 7)

    def through(layer):
        loss = lambda v: layer(v).tanh().sum()  # noqa: E731
        if transform == "grad":
            return torch.func.grad(lambda v: torch.func.grad(loss)(v).pow(2).sum())(x)
        return torch.func.jacrev(torch.func.grad(loss))(x)

    torch.testing.assert_close(through(ours), through(theirs))


# --- export -------------------------------------------------------------------------------------------------------

BINARY = """\
    ---
    graphconv:
      inputs: {{x: [n], w: [n]}}
    ---
    graph LR
      X(x) -->|a| B(({op})) --> Y(y)
      W(w) -->|b| B
    """


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_export_of_an_elementwise_binary_op(tmp_path, op):
    spec = load_text(tmp_path, BINARY.format(op=op))
    exported_matches_oracle(tmp_path, spec, [rand(3), rand(3).exp()])


def test_export_of_the_shipped_avg_pool_2x2(tmp_path):
    spec = graphconv.load(SPECS / "avg_pool_2x2.mmd")
    exported_matches_oracle(tmp_path, spec, [rand(2, 3, 4, 6)])


EXPORT_NAMES = {
    "an input named ctx": ("---\ngraphconv:\n  inputs: {ctx: [n]}\n---\ngraph LR\n  X(ctx) --> T((tanh)) --> Y(y)\n",
                          [(3,)]),
    "an input named forward": ("---\ngraphconv:\n  inputs: {forward: [n]}\n---\ngraph LR\n"
                               "  X(forward) --> T((tanh)) --> Y(y)\n", [(3,)]),
    "an input named like its own dim": ("---\ngraphconv:\n  inputs: {n: [n, m]}\n---\ngraph LR\n"
                                        "  X(n) --> T((tanh)) --> Y(y)\n", [(2, 3)]),
    "a dim named isinstance": ("---\ngraphconv:\n  inputs: {x: [isinstance, m]}\n  attrs: {scale: 2.0}\n---\n"
                               "graph LR\n  X(x) --> R((\"reshape(isinstance * m)\")) --> S((\"mul_scalar(value=scale)\"))"
                               " --> Y(y)\n", [(2, 3)]),
    **{f"the title {title!r}": (f"---\ntitle: {title!r}\ngraphconv:\n  inputs: {{x: [n]}}\n---\ngraph LR\n"
                                "  X(x) --> T((tanh)) --> Y(y)\n", [(3,)])
       for title in ["forward", "backward", "forward_nograd", 'has """ quotes']},
}
@pytest.mark.parametrize("case", EXPORT_NAMES)
def test_export_with_names_the_module_uses(tmp_path, case):
    text, shapes = EXPORT_NAMES[case]
    spec = graphconv.loads(text)
    exported_matches_oracle(tmp_path, spec, [rand(*s) for s in shapes])


# --- specs used as ops, with names the generated code or Python treats specially --------------------------------

USED_NAMES = {  # the used spec's inner text, given the name of its input (and attr)
    "an input named shapes": ("shapes", None),
    "an input named dtypes": ("dtypes", None),
    "an input named needs": ("needs", None),
    "an attr named shapes": ("x", "shapes"),
    "an attr named needs": ("x", "needs"),
    "an attr named self": ("x", "self"),
    "an input named with a space": ("a b", None),
    "an input named None": ("None", None),
    "an input named __init__": ("__init__", None),
    "an input named é (e + U+0301)": ("e\u0301", None),
    "an input named ﬁ": ("ﬁ", None),
}


def used_spec_text(input_name, attr):
    front = "" if attr is None else f"---\ngraphconv:\n  attrs: {{{attr}: 2.0}}\n---\n"
    label = "tanh" if attr is None else f"mul_scalar(value={attr})"
    return f'{front}graph LR\n  X["{input_name}"] --> T(("{label}")) --> Y(y)\n'


@pytest.mark.parametrize("case", USED_NAMES)
def test_a_spec_used_as_an_op_with_names_python_treats_specially(tmp_path, case):
    input_name, attr = USED_NAMES[case]
    (tmp_path / "inner.mmd").write_text(used_spec_text(input_name, attr), encoding="utf-8")
    inner = graphconv.load(tmp_path / "inner.mmd")
    outer = load_text(tmp_path, "---\ngraphconv:\n  uses: [inner]\n---\ngraph LR\n  X(v) --> U((inner)) --> Y(y)\n",
                      "outer.mmd")
    assert_matches_oracle(graphconv.compile(outer), outer, [rand(3)], order=1, oracle_spec=inner)


def test_an_attr_named_self_can_be_given_at_the_call(tmp_path):
    spec = load_text(tmp_path, """\
        ---
        graphconv:
          attrs: {self: 2.0}
        ---
        graph LR
          X(x) --> M(("mul_scalar(value=self)")) --> Y(y)
        """)
    assert_matches_oracle(graphconv.compile(spec), spec, [rand(3)], {"self": 3.0})


IMPLICIT_NAME = """\
    ---
    graphconv:
      inputs: {o1_out: [n]}
    ---
    graph LR
      X["o1_out"] --> o1((tanh))
      o1 --> o2((neg)) --> Y(y)
    """


def test_a_tensor_named_like_an_unnamed_op_output(tmp_path):
    spec = load_text(tmp_path, IMPLICIT_NAME)
    assert spec.input_names == ["o1_out"]
    assert_matches_oracle(graphconv.compile(spec), spec, [rand(3)])


# --- edge labels ----------------------------------------------------------------------------------------------------


def test_a_shape_annotation_only_annotates(tmp_path):
    """The README's annotation, quoted; unquoted, ``[`` is refused with a hint to quote it (as Mermaid reads it)."""
    spec = load_text(tmp_path, """\
        graph LR
          X(x) -->|"[b, c]"| T((tanh)) --> Y(y)
        """)
    assert_matches_oracle(graphconv.compile(spec), spec, [rand(2, 3)])
    with pytest.raises(graphconv.SpecError, match="put the label in quotes"):
        graphconv.loads("graph LR\n  X(x) -->|[b, c]| T((tanh)) --> Y(y)\n")


def test_a_label_with_a_name_then_an_annotation_binds_the_name(tmp_path):
    spec = load_text(tmp_path, """\
        graph LR
          P(p) -->|b 3x4| M((matmul)) --> Y(y)
          Q(q) --> M
        """)
    p, q = rand(3, 4), rand(2, 3)
    torch.testing.assert_close(graphconv.compile(spec)(p, q), q @ p)
