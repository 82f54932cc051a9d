"""Generated code: a compiled op runs straight-line source (no interpreter), readable and in tracebacks, with
errors naming the op node and its spec line; the eager and the transform-ready autograd.Function agree."""
import linecache
import textwrap
import traceback

import pytest
import torch
import torch.nn.functional as F

import graphconv
from graphconv import SpecError
from graphconv.compiler import function, interpreter
from graphconv.compiler.codegen import generated

SPECS = __import__("conftest").SPECS


def compile_text(text, **kwargs):
    ops = kwargs.pop("ops", ())
    return graphconv.compile(graphconv.loads(textwrap.dedent(text).lstrip("\n"), ops=ops), **kwargs)


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_the_source_is_readable_straight_line_code():
    op = graphconv.compile(SPECS / "conv2d.mmd", optimize=False)
    source = op.source
    assert source.startswith("def forward(A, v_input_batch, v_kernel):\n")
    assert "def forward_nograd(A, v_input_batch, v_kernel):" in source
    assert "def backward(A, saved, meta, needs, g_v_output):" in source
    assert "    # M: permute_U (line " in source and "v_U_permuted = op_permute(v_U, dims=(0, 2, 1))" in source
    assert "reshape(v_U_permuted, shape=A[" in source  # a binding-dependent argument; (0, 2, 1) is a literal
    forward = source[: source.index("def forward_nograd")]
    assert forward.index("v_U = None") > forward.index("v_U_permuted = op_permute(v_U")  # freed after its last use
    assert "for " not in source and "while " not in source  # no interpreter loop


def test_the_source_is_registered_with_linecache_and_a_big_program_makes_backward_on_first_use(monkeypatch):
    op = graphconv.compile(SPECS / "conv2d.mmd")  # small: backward at once (torch.compile cannot trace making it)
    assert linecache.getline(op.code.filename("forward"), 1) == "def forward(A, v_input_batch, v_kernel):\n"
    assert linecache.getline(op.code.filename("backward"), 1).startswith("def backward(A, saved, meta, needs,")
    monkeypatch.setattr(generated, "EAGER_BACKWARD_STEPS", 0)  # as for a program of thousands of ops
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = rand(1, 2, 4, 4), rand(2, 2, 3, 3)
    with torch.no_grad():
        op(x, w)
    assert op.code._backward is None and linecache.getline(op.code.filename("backward"), 1) == ""
    op(x, w).sum().backward()
    assert linecache.getline(op.code.filename("backward"), 1).startswith("def backward(A, saved, meta, needs,")


def test_calls_run_the_generated_code_not_the_interpreter(monkeypatch):
    op = graphconv.compile(SPECS / "conv2d.mmd", optimize=False)
    x, w = rand(2, 3, 6, 6), rand(4, 3, 3, 3)
    op(x, w)  # the first call with these shapes checks the declared shapes (with the executor, on meta)

    def refuse(*args, **kwargs):
        raise AssertionError("the executor ran")

    for name in ("forward", "backward", "run_op"):
        monkeypatch.setattr(interpreter, name, refuse)
    y = op(x, w)
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1))
    grads = torch.autograd.grad(y.sum(), (x, w))
    torch.testing.assert_close(grads, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), (x, w)))


def _failing_op(where):
    @graphconv.op(registry=None, name=f"fails_in_{where}")
    def fails(x):
        """x, or an error."""
        if where == "forward":
            raise RuntimeError("forward went wrong")
        return x * 1

    @fails.vjp
    def _(ctx, grad):
        raise RuntimeError("vjp went wrong")

    return fails


@pytest.mark.parametrize("where, expected", [("forward", "RuntimeError: forward went wrong"),
                                             ("vjp", "in its VJP: RuntimeError: vjp went wrong")])
def test_errors_name_the_op_node_and_its_line_and_the_traceback_shows_generated_lines(where, expected):
    op = compile_text(f"""\
        graph LR
          X(x) --> E((exp)) --> Y(y)
          Y --> B((fails_in_{where})) --> Z(z)
        """, ops=[_failing_op(where)])
    with pytest.raises(SpecError) as caught:
        op(rand(3)).sum().backward()
    error = caught.value
    assert f"while executing op B (fails_in_{where}): {expected}" in str(error)
    assert error.line == 3 and "Y --> B((fails_in" in str(error)  # the spec line, with a caret
    shown = "".join(traceback.format_exception(error.__cause__))
    call = "op_fails_in_forward(v_y)" if where == "forward" else "vjp_fails_in_vjp(_gc_Ctx("
    assert f'File "{op.code.filename("forward" if where == "forward" else "backward")}"' in shown and call in shown


def test_tensor_names_that_are_not_identifiers_are_renamed():
    op = compile_text("""\
        graph LR
          X["my input"] --> P(("permute(1, 0)")) --> C["class"] --> E((exp)) --> G["g_my input"]
          G --> M((matmul)) --> A["A"]
          C --> M
        """)
    assert op.spec.input_names == ["my input"] and "class" not in op.source.split()
    x = rand(3, 3)
    torch.testing.assert_close(op(x), torch.exp(x.T) @ x.T)
    assert torch.autograd.gradcheck(op, (x,))


def test_the_eager_and_the_transform_ready_functions_agree(monkeypatch):
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = rand(2, 3, 5, 5), rand(2, 3, 3, 3)
    y = op(x, w, stride=2)
    assert type(y.grad_fn).__name__ == "EagerFunctionBackward"
    grads = torch.autograd.grad(y.sum(), (x, w))
    monkeypatch.setattr(function, "_transformed", lambda: True)
    y2 = op(x, w, stride=2)
    assert type(y2.grad_fn).__name__ == "GraphFunctionBackward"
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(torch.autograd.grad(y2.sum(), (x, w)), grads)


def test_functorch_grad_uses_the_new_style_function():
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    got = torch.func.grad(lambda k: op(x, k).sum())(w)
    torch.testing.assert_close(got, torch.func.grad(lambda k: F.conv2d(x, k, padding=1).sum())(w))


@pytest.mark.parametrize("transformed", [False, True])
@pytest.mark.parametrize("save", ["all", "minimal"])
@pytest.mark.parametrize("optimize", [False, True])
def test_double_backward_is_right_on_every_path(monkeypatch, transformed, save, optimize):
    """Never silently wrong: second derivatives equal torch's, whichever Function, policy and program run."""
    monkeypatch.setattr(function, "_transformed", lambda: transformed)
    op = graphconv.compile(SPECS / "conv2d.mmd", save=save, optimize=optimize)
    x, w = rand(2, 3, 6, 5), rand(4, 3, 3, 3)

    def second(conv):
        gx, gw = torch.autograd.grad((conv(x, w) ** 2).sum(), (x, w), create_graph=True)
        return torch.autograd.grad((gx ** 2).sum() + (gw ** 3).sum(), (x, w))

    torch.testing.assert_close(second(op), second(lambda a, b: F.conv2d(a, b, padding=1)))


def test_bindings_are_cached_per_shapes_and_attrs():
    op = graphconv.compile(SPECS / "conv2d.mmd")
    x, w = torch.randn(1, 2, 7, 7), torch.randn(3, 2, 3, 3)
    for stride, padding in [(1, 1), (2, 0), (1, 1)]:
        torch.testing.assert_close(op(x, w, stride=stride, padding=padding),
                                   F.conv2d(x, w, stride=stride, padding=padding))
    assert len(op._bindings) == 2
    torch.testing.assert_close(op(x[:, :, :5], w), F.conv2d(x[:, :, :5], w, padding=1))
    assert len(op._bindings) == 3
