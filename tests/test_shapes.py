"""Symbolic dims: unifying input shapes with their patterns, derived dims, declared shapes — checked at call time."""
import textwrap

import pytest
import torch
import yaml

import graphconv
from conftest import SPECS
from graphconv import SpecError
from graphconv.compiler.binding import Binder, shape_mismatch
from graphconv.errors import ShapeError

CONV2D = SPECS / "conv2d.yaml"


def yaml_spec(text: str, **kwargs) -> graphconv.graph.opgraph.Spec:
    return graphconv.loads(textwrap.dedent(text).lstrip("\n"), path="spec.yaml", **kwargs)


def binder(inputs: str, dims: str = "{}", attrs: str = "{}") -> Binder:
    """A Binder for a spec whose inputs have these patterns (a YAML mapping), each flattened by one op."""
    graph = "".join(f'  - {{op: "reshape(-1)", inputs: [{name}], output: {name}_flat}}\n'
                    for name in yaml.safe_load(inputs))
    return Binder(graphconv.loads(f"inputs: {inputs}\nattrs: {attrs}\ndims: {dims}\ngraph:\n{graph}",
                                  path="spec.yaml"))


def shape_error(binder: Binder, *shapes, **attrs) -> ShapeError:
    with pytest.raises(ShapeError) as caught:
        binder.bind(shapes, binder.attrs(attrs))
    return caught.value


# --- unification ---------------------------------------------------------------------------------------------


def test_symbols_bind_from_shapes_and_agree_across_inputs():
    env = Binder(graphconv.load(CONV2D)).bind([(2, 3, 8, 9), (5, 3, 3, 2)], {"stride": 1, "padding": 1})
    assert {k: env[k] for k in ("b", "in_channels", "i_h", "i_w", "out_channels", "kernel_h", "kernel_w")} == {
        "b": 2, "in_channels": 3, "i_h": 8, "i_w": 9, "out_channels": 5, "kernel_h": 3, "kernel_w": 2}


def test_conflicting_symbol_names_both_inputs_the_symbol_and_both_sizes():
    spec = graphconv.load(CONV2D)
    with pytest.raises(ShapeError) as caught:
        Binder(spec).bind([(2, 3, 8, 8), (5, 4, 3, 3)], {"stride": 1, "padding": 1})
    error = caught.value
    assert error.message.startswith("kernel: in_channels is 4 but input_batch says 3 (")
    assert "kernel has shape (5, 4, 3, 3) for [out_channels, in_channels, kernel_h, kernel_w]" in error.message
    assert "input_batch has shape (2, 3, 8, 8)" in error.message
    assert (error.line, error.column) == (5, 26)  # under `in_channels` in kernel's pattern
    assert str(error).splitlines()[-1] == " " * 4 + " " * 25 + "^"


def test_a_symbol_used_twice_in_one_input_must_agree():
    square = binder("{x: [n, n]}")
    assert square.bind([(3, 3)], {})["n"] == 3
    error = shape_error(square, (3, 4))
    assert error.message.startswith("x: n is 4 at dim 1 but 3 at dim 0")


def test_literals_must_match_exactly():
    rgb = binder("{x: [b, 3, h, w]}")
    assert rgb.bind([(2, 3, 5, 5)], {})["b"] == 2
    error = shape_error(rgb, (2, 4, 5, 5))
    assert error.message.startswith("x: dim 1 is 4 but the pattern says 3")


def test_wildcard_matches_any_size_and_binds_nothing():
    any_batch = binder("{x: [_, n]}")
    for shape in [(7, 2), (1, 2), (0, 2)]:
        env = any_batch.bind([shape], {})
        assert env["n"] == 2 and "_" not in env


def test_a_wrong_rank_names_the_input_its_pattern_and_shape():
    error = shape_error(binder("{x: [b, c, h]}"), (2, 3))
    assert error.message == "x: expected 3 dims [b, c, h], got shape (2, 3) (2 dims)"


def test_a_pattern_symbol_that_is_an_attr_must_equal_it():
    grouped = binder("{x: [b, groups]}", attrs="{groups: 2}")
    assert grouped.bind([(5, 2)], grouped.attrs({}))["b"] == 5
    assert shape_error(grouped, (5, 3)).message.startswith("x: groups is 3 but the attr groups is 2")
    assert grouped.bind([(5, 3)], grouped.attrs({"groups": 3}))["groups"] == 3


def test_expression_entries_are_checked_against_symbols_attrs_and_derived_dims():
    check = binder("{x: [n, k], y: [2 * n + 1, m - 1]}", dims="{m: k * 3}")
    env = check.bind([(3, 4), (7, 11)], {})
    assert (env["n"], env["k"], env["m"]) == (3, 4, 12)
    assert shape_error(check, (3, 4), (6, 11)).message.startswith("y: dim 0 is 6 but 2 * n + 1 is 7 (n=3)")
    assert shape_error(check, (3, 4), (7, 12)).message.startswith("y: dim 1 is 12 but m - 1 is 11 (m=12)")


def test_an_expression_reading_an_unbound_name_is_a_spec_error_at_its_place():
    with pytest.raises(SpecError) as caught:
        binder("{x: [n, 2 * q]}")  # refused when the spec loads
    assert "inputs.x: unknown name 'q'" in caught.value.message
    assert (caught.value.line, caught.value.column) == (1, 17)


def test_inputs_without_patterns_take_any_shape():
    spec = yaml_spec("""
        graph:
          - {op: matmul, inputs: {a: x, b: w}, output: y}
        """)
    assert Binder(spec).bind([(2, 3), (3, 4)], {}) == {}


# --- derived dims ----------------------------------------------------------------------------------------------

DERIVED = [
    ("n + m", 10), ("n - m", 4), ("n * m", 21), ("n // m", 2), ("n % m", 1), ("n ** 2", 49), ("-n + 20", 13),
    ("(n + 2 * m) // m - 1", 3), ("min(n, m)", 3), ("max(n, m, 5)", 7), ("abs(m - n)", 4), ("ceil_div(n, m)", 3),
    ("(n - m + 2 * 1) // 2 + 1", 4), ("n", 7), ("12", 12),
    ("n if n > m else m", 7), ("1 if n == m else 0", 0), ("m if n <= m else n - m", 4), ("(n, m)[1]", 3),
    ("pair(n)[1]", 7), ("ntuple(m, 3)[2] * 2", 6), ("pair((n, m))[0] + 1", 8),
]


@pytest.mark.parametrize("expression, value", DERIVED)
def test_every_derived_dim_expression_form(expression, value):
    check = binder("{x: [n, m]}", dims=f'{{d: "{expression}"}}')
    assert check.bind([(7, 3)], {})["d"] == value


def test_derived_dims_are_computed_in_dependency_order_and_read_attrs():
    check = binder("{x: [i_h, k]}", dims='{o_h: "(i_h - k + 2 * padding) // stride + 1", twice: "o_h * 2"}',
                   attrs="{stride: 1, padding: 0}")
    assert check.bind([(8, 3)], check.attrs({}))["twice"] == 12
    assert check.bind([(8, 3)], check.attrs({"stride": 2, "padding": 1}))["o_h"] == 4
    reordered = binder("{x: [n]}", dims='{c: "a + 1", a: "n * 2"}')
    assert reordered.bind([(5,)], {})["c"] == 11


def test_derived_dims_may_depend_on_an_attrs_form():
    pad = binder("{x: [n]}", dims="""{pad: "0 if padding == 'valid' else 2 * pair(padding)[0]", o: n + pad}""",
                 attrs="{padding: valid}")
    assert pad.bind([(5,)], pad.attrs({}))["o"] == 5
    assert pad.bind([(5,)], pad.attrs({"padding": 2}))["o"] == 9
    assert pad.bind([(5,)], pad.attrs({"padding": (3, 1)}))["o"] == 11


def test_true_division_in_a_dim_that_sizes_something_is_a_spec_error_that_says_where():
    check = binder("{x: [n], y: [2 * half]}", dims='{half: "n / 2"}')
    with pytest.raises(SpecError) as caught:
        check.bind([(6,), (6,)], {})
    assert not isinstance(caught.value, ShapeError)
    assert caught.value.message.startswith("dims.half: n / 2 is 3.0, a float, but half is a size (used in inputs.y)")
    assert "use // for integer division" in caught.value.message


def test_a_float_dim_that_sizes_nothing_is_a_value():
    assert binder("{x: [d]}", dims='{scale: "1 / d ** 0.5"}').bind([(4,)], {})["scale"] == 0.5


def test_division_by_zero_in_a_derived_dim_names_the_dim():
    error = shape_error(binder("{x: [n]}", dims='{o: "n // stride"}', attrs="{stride: 1}"), (6,), stride=0)
    assert error.message == "dims.o: division by zero in n // stride (n=6, stride=0)"
    assert error.line == 3


# --- declared shapes -------------------------------------------------------------------------------------------

WRONG_U = CONV2D.read_text().replace("U: [b, patch_size, patches]", "U: [b, patch_size, patches + 1]")


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_a_declared_shape_mismatch_names_tensor_op_line_and_both_shapes():
    spec = graphconv.loads(WRONG_U, path="wrong.yaml")
    env = Binder(spec).bind([(4, 3, 8, 8), (3, 3, 3, 3)], {"stride": 1, "padding": 1})
    assert shape_mismatch(spec, "U_permuted", (4, 64, 27), env) is None
    error = shape_mismatch(spec, "U", (4, 27, 64), env)
    op_line = line_of(WRONG_U, "{id: L, op: unfold")
    assert error.message == (f"tensor 'U' (produced by op L (unfold) at line {op_line}) has shape (4, 27, 64) but "
                             "is declared [b, patch_size, patches + 1] = (4, 27, 65)")
    assert error.line == line_of(WRONG_U, "U: [b, patch_size, patches + 1]") and error.path == "wrong.yaml"


def test_a_declared_shape_with_a_wildcard_checks_the_other_dims():
    spec = yaml_spec("""
        inputs: {x: [n, k]}
        shapes: {y: [_, n]}
        graph:
          - {op: "permute(1, 0)", inputs: [x], output: y}
        """)
    assert shape_mismatch(spec, "y", (9, 2), {"n": 2, "k": 9}) is None
    error = shape_mismatch(spec, "y", (9, 3), {"n": 2, "k": 9})
    assert "declared [_, n] = (_, 2)" in error.message
    assert "declared [_, n] = (_, 2)" in shape_mismatch(spec, "y", (9, 2, 1), {"n": 2, "k": 9}).message


# --- call-time checks in a compiled op -------------------------------------------------------------------------


def test_inputs_are_unified_before_any_op_runs():
    ran = []

    def spy(x):
        ran.append((x.device.type, tuple(x.shape)))
        return x

    op = graphconv.register_op("spy_identity", spy, lambda ctx, grad: (grad,), registry=graphconv.ops.Registry())
    spec = graphconv.loads(CONV2D.read_text().replace("- {id: L, op: unfold, inputs: [input_batch], output: U}",
                                                      "- {id: X, op: spy_identity, inputs: [input_batch], output: x2}\n"
                                                      "  - {id: L, op: unfold, inputs: [x2], output: U}"),
                           path="spy.yaml", ops=[op])
    conv2d = graphconv.compile(spec)
    with pytest.raises(ShapeError, match="kernel: in_channels is 4 but input_batch says 3"):
        conv2d(torch.randn(2, 3, 8, 8), torch.randn(5, 4, 3, 3))
    assert ran == []
    conv2d(torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3))
    assert ran[-1] == ("cpu", (2, 3, 8, 8))  # (the first call with a new binding also runs it on meta)


def test_derived_dims_are_bound_once_per_new_binding_not_per_op_or_call(monkeypatch):
    derived = []
    original = Binder.derive
    monkeypatch.setattr(Binder, "derive", lambda self, env: (derived.append(1), original(self, env))[1])
    conv2d = graphconv.compile(CONV2D)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    for _ in range(3):
        conv2d(x, w)
    assert len(derived) == 1
    conv2d(torch.randn(1, 3, 8, 8), w)
    conv2d(x, w, stride=2)
    assert len(derived) == 3


def test_a_compiled_op_checks_declared_shapes_on_the_first_call():
    conv2d = graphconv.compile(graphconv.loads(WRONG_U, path="wrong.yaml"))
    with pytest.raises(ShapeError) as caught:
        conv2d(torch.randn(4, 3, 8, 8), torch.randn(3, 3, 3, 3))
    assert caught.value.message.startswith("tensor 'U' (produced by op L (unfold) at line ")
    assert "has shape (4, 27, 64) but is declared [b, patch_size, patches + 1] = (4, 27, 65)" in caught.value.message
