"""Bad specs and bad calls: a SpecError that says what and where (line, column, caret), never a traceback."""
import pytest
import torch

import graphconv
from conftest import SPECS, write_spec
from graphconv import SpecError

CHAIN = """\
graph LR
  X(x) --> P((permute_1)) --> Y(y)
"""


def load_error(tmp_path, text, name="spec.mmd") -> SpecError:
    path = write_spec(tmp_path, text, name)
    with pytest.raises(SpecError) as caught:
        graphconv.load(path)
    error = caught.value
    assert error.path == str(path)
    return error


def test_syntax_error_has_line_column_and_caret(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> B((relu))
          B --> C(y
        """)
    assert error.line == 3
    assert error.column is not None
    text = str(error)
    assert text.startswith(f"{error.path}:3:")
    lines = text.splitlines()
    assert lines[-2].strip() == "B --> C(y"
    assert lines[-1].strip() == "^"


def test_unknown_op_suggests_the_nearest(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> B((permut)) --> C(y)
        """)
    assert error.line == 2
    assert "unknown op 'permut'" in error.message and "'permute'" in error.message


def test_unknown_spec_local_op_names_its_definition(tmp_path):
    error = load_error(tmp_path, """\
        ---
        graphconv:
          ops: {flip: "permutee(1, 0)"}
        ---
        graph LR
          A(x) --> B((flip)) --> C(y)
        """)
    assert error.line == 6 and "unknown op 'permutee'" in error.message and "permute" in error.message


def test_cycle_names_the_nodes_on_it(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          X(x) --> A((matmul)) --> Y(y)
          Y --> B(("permute(1, 0)")) --> Z(z)
          Z --> A
        """)
    assert "cycle" in error.message
    for node in ("A", "Y", "B", "Z"):
        assert node in error.message
    assert error.line in (2, 3)


def test_unbound_parameter_says_how_to_bind_it(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> U((unfold)) --> B(cols)
        """)
    assert error.line == 2
    assert "'kernel_size' is not bound" in error.message
    assert "graphconv.attrs" in error.message


def test_undeclared_name_in_a_label(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> R(("reshape(b * n, -1)")) --> B(y)
        """)
    assert error.line == 2 and "'b' is not declared" in error.message


def test_tensor_produced_twice(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> P(("permute(1, 0)")) --> C(y)
          A --> Q(("permute(0, 1)")) --> C
        """)
    assert "produced twice" in error.message and "P" in error.message and "Q" in error.message


def test_two_tensors_with_one_name(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> P((matmul)) --> C(y)
          B(x) --> P
        """)
    assert error.line == 3 and "two tensors are named 'x'" in error.message


def test_edge_between_tensors(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> B(y)
        """)
    assert error.line == 2 and "joins two tensors" in error.message


def test_edge_label_naming_no_input(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) -->|c| P((matmul)) --> C(y)
          B(w) --> P
        """)
    assert error.line == 2 and "names no input; its inputs are a, b" in error.message


def test_too_many_and_too_few_inputs(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> P(("permute(1, 0)")) --> C(y)
          B(w) --> P
        """)
    assert "takes 1 input" in error.message
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> P((matmul)) --> C(y)
        """)
    assert "input 'b' has no edge" in error.message


def test_wrong_attribute_name_in_a_label(tmp_path):
    error = load_error(tmp_path, """\
        graph LR
          A(x) --> P(("transpose(dim0=0, dim2=1)")) --> C(y)
        """)
    assert "no parameter 'dim2'" in error.message and "dim1" in error.message


def test_unknown_front_matter_key(tmp_path):
    error = load_error(tmp_path, """\
        ---
        graphconv:
          inputs: {x: [n, m]}
          atrs: {stride: 1}
        ---
        graph LR
          A(x) --> P(("permute(1, 0)")) --> C(y)
        """)
    assert error.line == 4 and "unknown key 'atrs'" in error.message and "'attrs'" in error.message


def test_metadata_outside_the_graphconv_block(tmp_path):
    error = load_error(tmp_path, """\
        ---
        inputs: {x: [n, m]}
        ---
        graph LR
          A(x) --> P(("permute(1, 0)")) --> C(y)
        """)
    assert error.line == 2 and "under 'graphconv:'" in error.message


def test_bad_dim_expression_points_into_the_front_matter(tmp_path):
    error = load_error(tmp_path, """\
        ---
        graphconv:
          inputs: {x: [n, m]}
          dims: {k: "n * / 2"}
        ---
        graph LR
          A(x) --> P(("permute(1, 0)")) --> C(y)
        """)
    assert error.line == 4


def test_dims_in_a_cycle(tmp_path):
    error = load_error(tmp_path, """\
        ---
        graphconv:
          inputs: {x: [n, m]}
          dims: {p: q + 1, q: p + 1}
        ---
        graph LR
          A(x) --> P(("permute(1, 0)")) --> C(y)
        """)
    assert "cycle" in error.message and error.line == 4


def test_yaml_python_tags_are_refused(tmp_path):
    error = load_error(tmp_path, """\
        graph: !!python/object/apply:os.system ["echo owned"]
        """, name="spec.yaml")
    assert error.line == 1 and "constructor" in error.message


def test_yaml_spec_errors_point_at_the_application(tmp_path):
    error = load_error(tmp_path, """\
        inputs: {x: [n, m]}
        graph:
          - {op: "permute(1, 0)", inputs: [x], output: y}
          - {op: frobnicate, inputs: [y], output: z}
        """, name="spec.yaml")
    assert error.line == 4 and "unknown op 'frobnicate'" in error.message


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        graphconv.load(tmp_path / "nope.mmd")


# --- call-time errors ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conv2d():
    return graphconv.compile(SPECS / "conv2d.mmd")


def test_wrong_number_of_inputs(conv2d):
    with pytest.raises(TypeError) as caught:
        conv2d(torch.randn(1, 3, 8, 8))
    assert isinstance(caught.value, SpecError)
    assert "takes 2 input(s) (input_batch, kernel) but 1 were given" in str(caught.value)


def test_input_of_wrong_rank_names_the_spec_input(conv2d):
    with pytest.raises(ValueError) as caught:
        conv2d(torch.randn(3, 8, 8), torch.randn(3, 3, 3, 3))
    error = caught.value
    assert isinstance(error, SpecError)
    assert "input_batch: expected 4 dims [b, in_channels, i_h, i_w], got shape (3, 8, 8)" in str(error)
    assert error.line == 5  # the pattern's line in specs/conv2d.mmd


def test_conflicting_dims_name_both_inputs(conv2d):
    with pytest.raises(SpecError) as caught:
        conv2d(torch.randn(1, 3, 8, 8), torch.randn(2, 4, 3, 3))
    assert "kernel: in_channels is 4 but input_batch says 3" in str(caught.value)


def test_unknown_attr_and_non_tensor_input(conv2d):
    with pytest.raises(TypeError, match="no attr 'strid'; did you mean 'stride'"):
        conv2d(torch.randn(1, 3, 8, 8), torch.randn(2, 3, 3, 3), strid=2)
    with pytest.raises(TypeError, match="input 'kernel' must be a torch.Tensor, got list"):
        conv2d(torch.randn(1, 3, 8, 8), [[1.0]])


def test_torch_errors_inside_an_op_name_the_node_and_line(tmp_path):
    path = write_spec(tmp_path, """\
        graph LR
          A(a) --> M((matmul)) --> C(c)
          B(b) --> M
        """)
    op = graphconv.compile(path)
    with pytest.raises(SpecError) as caught:
        op(torch.randn(2, 3), torch.randn(4, 5))
    assert "while executing op M (matmul)" in str(caught.value) and caught.value.line == 2
