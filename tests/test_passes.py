"""The graph passes: each fires where it should, and the optimized op equals the unoptimized one in value and
gradient on random inputs of several shapes (float64)."""
import textwrap

import pytest
import torch

import graphconv
from graphconv.cli import main
from graphconv.compiler import passes
from graphconv.compiler.compiled import CompiledOp
from graphconv.compiler.passes import cse, dce, fold_views

SPECS = __import__("conftest").SPECS


def load(text: str):
    return graphconv.loads(textwrap.dedent(text).lstrip("\n"))


def op_names(spec) -> list[str]:
    return [node.op.name for node in spec.ops()]


def assert_equivalent(before, after, inputs, **attrs) -> None:
    """Two specs compiled without further passes agree in value and in every input's gradient."""
    plain, optimized = CompiledOp(before, optimize=False), CompiledOp(after, optimize=False)
    inputs = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    expected, got = plain(*inputs, **attrs), optimized(*inputs, **attrs)
    expected, got = (expected if isinstance(expected, tuple) else (expected,)), (got if isinstance(got, tuple) else (got,))
    torch.testing.assert_close(got, expected)
    grads = [torch.randn_like(t) for t in expected]
    wanted = [t for t in inputs if t.requires_grad]
    torch.testing.assert_close(torch.autograd.grad(got, wanted, grads), torch.autograd.grad(expected, wanted, grads))


def run_pass(spec, module):
    optimized, [report] = passes.optimize(spec, (module,))
    return optimized, report.changes


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


# --- view-chain folding ----------------------------------------------------------------------------------------

RESHAPES = """\
    ---
    graphconv:
      inputs: {x: [a, b, c]}
    ---
    graph LR
      X(x) --> R1(("reshape(a * b, c)")) --> R2(("reshape(c, a * b)")) --> R3(("reshape(-1)")) --> E((exp)) --> Y(y)
    """


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 5, 2), (3, 1, 7)])
def test_a_reshape_chain_collapses_to_its_last_reshape(shape):
    spec = load(RESHAPES)
    optimized, changes = run_pass(spec, fold_views)
    assert op_names(optimized) == ["reshape", "exp"] and len(changes) == 2
    assert_equivalent(spec, optimized, [rand(*shape)])


PERMUTES = """\
    ---
    graphconv:
      inputs: {x: [a, b, c]}
    ---
    graph LR
      X(x) --> P1(("permute(1, 0, 2)")) --> P2(("permute(2, 0, 1)")) --> P3(("permute(2, 1, 0)")) --> E((exp))
      E --> Y(y)
    """


@pytest.mark.parametrize("shape", [(2, 3, 4), (4, 1, 3)])
def test_permutes_compose_and_cancel(shape):
    spec = load(PERMUTES)  # (1, 0, 2) then (2, 0, 1) then (2, 1, 0) is the identity
    optimized, changes = run_pass(spec, fold_views)
    assert op_names(optimized) == ["exp"], changes
    assert_equivalent(spec, optimized, [rand(*shape)])


def test_transposes_of_known_rank_fold_with_permutes():
    spec = load("""\
        ---
        graphconv:
          inputs: {x: [a, b, c]}
        ---
        graph LR
          X(x) --> T1(("transpose(0, 2)")) --> P(("permute(1, 0, 2)")) --> T2(("transpose(-1, 1)")) --> E((exp))
          E --> Y(y)
        """)
    optimized, _ = run_pass(spec, fold_views)
    assert op_names(optimized) == ["permute", "exp"]
    assert_equivalent(spec, optimized, [rand(2, 3, 4)])


def test_a_reshape_back_to_the_declared_shape_is_dropped():
    spec = load("""\
        ---
        graphconv:
          inputs: {x: [a, b]}
        ---
        graph LR
          X(x) --> F(("reshape(a * b)")) --> B(("reshape(a, b)")) --> E((exp)) --> Y(y)
        """)
    optimized, changes = run_pass(spec, fold_views)
    assert op_names(optimized) == ["exp"] and "already has" in changes[-1]
    assert_equivalent(spec, optimized, [rand(3, 5)])


def test_folding_keeps_outputs_views_and_other_readers():
    spec = load("""\
        ---
        graphconv:
          inputs: {x: [a, b]}
          outputs: [same, v, y]
        ---
        graph LR
          X(x) --> I(("permute(0, 1)")) --> S(same)
          X --> R(("reshape(a * b)")) --> RO(r)
          RO --> V(("view(b, a)")) --> VO(v)
          RO --> E((exp)) --> Y(y)
        """)
    optimized, changes = run_pass(spec, fold_views)
    assert op_names(optimized) == op_names(spec) and changes == []  # an output stays; view is never widened
    assert_equivalent(spec, optimized, [rand(2, 3)])


# --- dead code, common subexpressions ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 2), (1, 7), (3, 3, 2)])
def test_dead_branches_are_removed(shape):
    spec = load("""\
        ---
        graphconv:
          outputs: [y]
        ---
        graph LR
          X(x) --> E((exp)) --> Y(y)
          X --> T((tanh)) --> D(d) --> R(("reshape(-1)")) --> Z(z)
        """)
    optimized, changes = run_pass(spec, dce)
    assert op_names(optimized) == ["exp"] and len(changes) == 2
    assert_equivalent(spec, optimized, [rand(*shape)])


@pytest.mark.parametrize("size", [1, 3, 5])
def test_repeated_applications_are_computed_once(size):
    spec = load("""\
        graph LR
          X(x) --> P1(("permute(1, 0)")) --> A(a)
          X --> P2(("permute(dims=(1, 0))")) --> B(b)
          X --> P3(("permute(0, 1)")) --> C(c)
          A --> M((matmul)) --> Y(y)
          B --> M
          C --> N((matmul)) --> Z(z)
          B --> N
        """)
    optimized, changes = run_pass(spec, cse)
    assert op_names(optimized) == ["permute", "permute", "matmul", "matmul"] and len(changes) == 1
    assert_equivalent(spec, optimized, [rand(size, size)])


# --- the pipeline, and how to see it ------------------------------------------------------------------------


def test_the_pipeline_on_the_seed_spec_and_optimize_false():
    fast, plain = graphconv.compile(SPECS / "conv2d.mmd"), graphconv.compile(SPECS / "conv2d.mmd", optimize=False)
    assert [s.op.name for s in fast.program.steps] == ["patch_matmul"]
    assert len(plain.program.steps) == 9 and plain.reports == []
    assert [r.name for r in fast.reports] == [m.NAME for m in passes.PIPELINE]
    assert fast.spec.order == plain.spec.order == ["L", "M", "N", "O", "T", "P", "Q", "R", "S"]  # spec untouched


def test_compile_explain_lists_every_pass_and_its_changes(capsys):
    assert main(["compile", "--explain", str(SPECS / "conv2d.mmd")]) == 0
    out = capsys.readouterr().out
    assert f"conv2d: 9 ops → 1 after {len(passes.PIPELINE)} passes" in out
    for module in passes.PIPELINE:
        assert f"{module.NAME}" in out and module.SUMMARY in out
    assert "L (unfold) → M (permute_U) → N (reshape_U_permuted) → L+M+N (im2col)" in out
    assert "backward keeps input_batch, kernel;" in out
    assert main(["compile", "--no-optimize", "--save", "minimal", "--code", str(SPECS / "conv2d.mmd")]) == 0
    out = capsys.readouterr().out
    assert "9 ops → 9 after no passes" in out and "def backward(A, saved, meta, needs, g_v_output):" in out
