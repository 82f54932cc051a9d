"""The executor's contract on small graphs: fan-out sums gradients, op→op edges, several outputs,
input binding by label / name / order, and a VJP's mistakes named."""
import pytest
import torch

import graphconv
from conftest import write_spec
from graphconv import SpecError


def compile_text(tmp_path, text, name="spec.mmd", **kwargs):
    return graphconv.compile(graphconv.load(write_spec(tmp_path, text, name), **kwargs))


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_fan_out_accumulates_gradients(tmp_path):
    # y = x @ x.T  — x feeds the matmul twice (directly and through a transpose)
    op = compile_text(tmp_path, """\
        graph LR
          X(x) --> T(("transpose(0, 1)")) --> XT(xt)
          X --> M((matmul))
          XT --> M
          M --> Y(y)
        """)
    x = rand(3, 4)
    assert torch.autograd.gradcheck(op, (x,))
    torch.testing.assert_close(op(x), x @ x.T)


def test_same_tensor_twice_into_one_op(tmp_path):
    op = compile_text(tmp_path, """\
        graph LR
          X(x) -->|a| M((matmul)) --> Y(y)
          X -->|b| M
        """)
    x = rand(3, 3)
    torch.testing.assert_close(op(x), x @ x)
    assert torch.autograd.gradcheck(op, (x,))


def test_inputs_bind_by_label_then_name_then_order(tmp_path):
    by_label = compile_text(tmp_path, """\
        graph LR
          B(first) -->|b| M((matmul)) --> Y(y)
          A(second) -->|a| M
        """)
    by_name = compile_text(tmp_path, """\
        graph LR
          B(b) --> M((matmul)) --> Y(y)
          A(a) --> M
        """)
    by_order = compile_text(tmp_path, """\
        graph LR
          B(first) --> M((matmul)) --> Y(y)
          A(second) --> M
        """)
    p, q = rand(2, 3), rand(3, 2)
    torch.testing.assert_close(by_label(q, p), p @ q)  # inputs in order of appearance: first=q, second=p
    assert by_name.spec.input_names == ["b", "a"]
    torch.testing.assert_close(by_name(q, p), p @ q)
    torch.testing.assert_close(by_order(p, q), p @ q)


def test_op_feeding_an_op_directly(tmp_path):
    op = compile_text(tmp_path, """\
        graph LR
          X(x) --> A(("permute(1, 0)")) --> B(("reshape(-1)")) --> Y(y)
        """)
    x = rand(2, 3)
    torch.testing.assert_close(op(x), x.T.reshape(-1))
    assert torch.autograd.gradcheck(op, (x,))
    assert op.spec.output_names == ["y"]


def test_two_outputs_and_an_output_that_is_also_consumed(tmp_path):
    op = compile_text(tmp_path, """\
        ---
        graphconv:
          outputs: [xt, y]
        ---
        graph LR
          X(x) --> T(("transpose(0, 1)")) --> XT(xt)
          XT --> R(("reshape(-1)")) --> Y(y)
        """)
    x = rand(2, 3)
    xt, y = op(x)
    torch.testing.assert_close(xt, x.T)
    torch.testing.assert_close(y, x.T.reshape(-1))
    assert torch.autograd.gradcheck(lambda v: op(v), (x,))


def test_yaml_spec_with_mapping_inputs(tmp_path):
    op = compile_text(tmp_path, """\
        inputs: {p: [n, k], q: [k, m]}
        graph:
          - {op: matmul, inputs: {b: p, a: q}, output: y}
        """, name="spec.yaml")
    p, q = rand(2, 3), rand(3, 2)
    torch.testing.assert_close(op(p, q), q @ p)


def _broken_ops(wrong):
    @graphconv.op(registry=None, name=f"scale_{wrong}")
    def scale(x, *, factor=2.0):
        """x * factor."""
        return x * factor

    @scale.vjp
    def _(ctx, grad):
        if wrong == "count":
            return (grad, grad)
        return (grad.reshape(-1),)

    return scale


@pytest.mark.parametrize("wrong, message", [
    ("count", "returned 2 gradient(s) for 1 input(s) (x)"),
    ("shape", "gradient of shape (6,) for input 'x' of shape (2, 3)"),
])
def test_a_vjp_returning_wrong_gradients_is_named(tmp_path, wrong, message):
    op = compile_text(tmp_path, f"""\
        graph LR
          X(x) --> S((scale_{wrong})) --> Y(y)
        """, ops=[_broken_ops(wrong)])
    y = op(rand(2, 3))
    with pytest.raises(SpecError) as caught:
        y.sum().backward()
    assert f"op S (scale_{wrong})" in str(caught.value) and message in str(caught.value)


def test_user_op_from_python(tmp_path):
    @graphconv.op(registry=None, save=("x",))
    def cube(x):
        """x ** 3."""
        return x ** 3

    @cube.vjp
    def _(ctx, grad):
        return (3 * ctx.x ** 2 * grad,)

    op = compile_text(tmp_path, """\
        graph LR
          X(x) --> C((cube)) --> Y(y)
        """, ops=[cube])
    x = rand(4)
    torch.testing.assert_close(op(x), x ** 3)
    assert torch.autograd.gradcheck(op, (x,))
