"""Limits that keep a hostile spec from hanging the tool or exhausting its stack: each gets a clear SpecError at the
spot, or finishes in time that grows linearly with the spec.

- numbers: integer literals over 256 bits (in an expression or in YAML), arithmetic that grows past it, exponents
  over 64, expressions longer than 10 000 characters or nested more than 100 levels;
- YAML: aliases (``*a``: a few lines can expand to billions of items, or to a list that holds itself), nesting
  deeper than 100 levels;
- diagrams: subgraphs nested more than 100 levels;
- shapes: a size that is not an integer ≥ 0, or a tensor of more than 2**60 elements (its bytes would overflow
  int64) — while a dim of 2**58 on the meta device is fine;
- size: loading and tracing do work linear in the graph's size, measured by counting the operations graphconv's own
  code executes at sizes n, 2n and 4n (no clocks: the counts are the same on every machine). A slow-marked test
  loads a 100 000-node graph under a generous time bound.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import graphconv
from conftest import SPECS
from graphconv import SpecError
from graphconv.cli import main
from graphconv.check.trace import trace

PACKAGE = str(Path(graphconv.__file__).parent)
RELU = "graph LR\n  x --> R((relu)) --> y\n"


def load_error(text: str, path: str = "spec.mmd") -> SpecError:
    with pytest.raises(SpecError) as caught:
        graphconv.loads(text, path=path)
    return caught.value


def with_dims(dims: str, example: str = "") -> str:
    """A one-op spec whose front matter declares the dims ``dims`` (a YAML mapping) for an input ``x: [n]``."""
    return (f"---\ngraphconv:\n  inputs: {{x: [n]}}\n  attrs: {{k: 1}}\n  dims: {dims}\n{example}---\n"
            "graph LR\n  x --> R((relu)) --> y\n")


def trace_error(text: str) -> SpecError:
    spec = graphconv.loads(text)
    with pytest.raises(SpecError) as caught:
        trace(spec)
    return caught.value


# --- numbers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [78, 400, 5000, 9990])
def test_an_integer_literal_over_256_bits_in_a_dim_is_refused(digits):
    error = load_error(with_dims(f"{{d: '{'9' * digits} + n'}}"))
    assert error.line == 5 and "is too large (more than 256 bits)" in error.message


def test_an_integer_literal_over_256_bits_in_an_op_label_is_refused():
    error = load_error(f'graph LR\n  x --> R(("reshape({"9" * 5000})")) --> y\n')
    assert error.line == 2 and "is too large (more than 256 bits)" in error.message


@pytest.mark.parametrize("value", ["9" * 78, "9" * 5000, "0b" + "1" * 257, "0x" + "f" * 65])
def test_a_yaml_integer_over_256_bits_is_refused_where_it_stands(value):
    error = load_error(f"---\ngraphconv:\n  attrs:\n    k: {value}\n---\n{RELU}")
    assert (error.line, error.column) == (4, 8) and "is too large (more than 256 bits)" in error.message
    error = load_error(f"title: t\nexample: {{n: {value}}}\ngraph: [{{op: relu, inputs: x, output: y}}]\n", "s.yaml")
    assert (error.line, error.column) == (2, 14)


def test_a_256_bit_integer_is_still_a_number():
    spec = graphconv.loads(with_dims(f"{{d: '{2 ** 256 - 1} - {2 ** 256 - 3}'}}", "  example: {n: 2}\n"))
    assert trace(spec).dims["d"] == 2


@pytest.mark.parametrize("expression, message", [
    ("2 ** 64 * 2 ** 64 * 2 ** 64 * 2 ** 64 * 2 ** 64",
     "2 ** 64 * 2 ** 64 * 2 ** 64 * 2 ** 64 is too large (257 bits)"),
    ("n ** 65", "exponent 65 out of range"),
    ("(n + 1) ** 64 ** 2", "exponent 4096 out of range"),
])
def test_arithmetic_that_grows_past_the_bounds_is_refused_at_the_dim(expression, message):
    error = trace_error(with_dims(f"{{d: '{expression}'}}", "  example: {n: 7}\n"))
    assert error.line == 5 and message in error.message


def test_deep_and_long_expressions_are_refused_before_they_cost_anything():
    nested = "-" * 101 + "n"
    assert "nested more than 100 levels deep" in load_error(with_dims(f"{{d: '{nested}'}}")).message
    chained = " + ".join(["n"] * 102)
    assert "nested more than 100 levels deep" in load_error(with_dims(f"{{d: '{chained}'}}")).message
    long = "(" * 6000 + "n" + ")" * 6000
    assert "expression longer than 10000 characters (12001)" in load_error(with_dims(f"{{d: '{long}'}}")).message
    fine = "-" * 99 + "n"
    assert graphconv.loads(with_dims(f"{{d: '{fine}'}}")).meta.dims["d"] is not None


# --- YAML ---------------------------------------------------------------------------------------------------------

BILLION_LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


@pytest.mark.parametrize("yaml_text, line", [
    ("l0: &l0 [lol]\n" + BILLION_LAUGHS + "graph: *l9\n", 2),  # 9**9 items if expanded
    ("graph: &g [*g]\n", 1),  # a list that contains itself
    ("base: &b {op: relu}\ngraph: [{<<: *b, inputs: x, output: y}]\n", 2),  # a merge key reads an alias too
])
def test_yaml_aliases_are_refused(yaml_text, line):
    error = load_error(yaml_text, "spec.yaml")
    assert error.line == line and "aliases (*name) are not allowed in a spec" in error.message


def test_yaml_aliases_are_refused_in_the_front_matter_and_in_node_data():
    error = load_error("---\ntitle: &t conv\ngraphconv:\n  attrs: {k: *t}\n---\n" + RELU)
    assert error.line == 4 and "aliases" in error.message
    error = load_error("graph LR\n  x --> R@{ shape: circle, label: &l relu } --> y\n  S@{ label: *l }\n")
    assert error.line == 3 and "aliases" in error.message


@pytest.mark.parametrize("depth", [101, 10_000])
def test_deeply_nested_yaml_is_refused(depth):
    error = load_error("graph: " + "[" * depth + "]" * depth + "\n", "spec.yaml")
    assert error.line == 1 and "nested more than 100 levels deep" in error.message
    error = load_error("---\ngraphconv:\n  attrs: {k: " + "[" * depth + "]" * depth + "}\n---\n" + RELU)
    assert error.line == 3 and "nested more than 100 levels deep" in error.message


def test_yaml_nested_50_levels_is_read():
    spec = graphconv.loads("---\ngraphconv:\n  attrs: {k: " + "[" * 50 + "1" + "]" * 50 + "}\n---\n" + RELU)
    value = spec.meta.attrs["k"]
    for _ in range(50):
        value = value[0]
    assert value == 1


# --- diagrams -----------------------------------------------------------------------------------------------------


def nested_subgraphs(depth: int) -> str:
    return ("graph LR\n" + "".join(f"subgraph s{i}\n" for i in range(depth)) + "x --> R((relu)) --> y\n"
            + "end\n" * depth)


def test_subgraphs_nested_100_levels_are_read_and_101_refused_at_the_101st():
    diagram = graphconv.parse_diagram(nested_subgraphs(100))
    assert len(diagram.subgraphs) == 100 and diagram.subgraphs[-1].parent == "s98"
    for depth in (101, 20_000):
        error = load_error(nested_subgraphs(depth))
        assert (error.line, error.message) == (102, "subgraphs nested more than 100 levels deep")


# --- shapes -------------------------------------------------------------------------------------------------------


def test_a_dim_of_2_to_the_58_runs_on_the_meta_device():
    result = trace(graphconv.load(SPECS / "linear.mmd"), {"b": 2 ** 58, "in_features": 4})
    assert result.ok and result.rows[-1].shape == (2 ** 58, 3)


@pytest.mark.parametrize("dims, elements", [
    ({"b": 2 ** 60}, 2 ** 60 * 3 * 8 * 8),
    ({"b": 2 ** 31, "i_h": 2 ** 31, "i_w": 2 ** 31}, 2 ** 93 * 3),
    ({"b": 10 ** 70}, 10 ** 70 * 3 * 8 * 8),
])
def test_a_tensor_of_more_than_2_to_the_60_elements_is_a_spec_error_not_an_overflow(dims, elements):
    with pytest.raises(SpecError) as caught:
        trace(graphconv.load(SPECS / "conv2d.mmd"), dims)
    assert caught.value.line == 5  # the input's pattern
    assert f"has {elements} elements, more than a tensor can hold (2**60)" in caught.value.message


@pytest.mark.parametrize("pattern, message", [
    ("[n - 10]", "dim 0 of shape (-8,) is -8, not a size (an integer ≥ 0)"),
    ("[n / 4]", "dim 0 of shape (0.5,) is 0.5, not a size"),
    ("[\"'a'\"]", "dim 0 of shape (a,) is 'a', not a size"),
    ("['(n, n)']", "dim 0 of shape ((2, 2),) is (2, 2), not a size"),
])
def test_a_pattern_that_evaluates_to_no_size_is_a_spec_error(pattern, message):
    spec = graphconv.loads(f"---\ngraphconv:\n  inputs: {{x: {pattern}, z: [n]}}\n  example: {{n: 2}}\n---\n"
                           "graph LR\n  x --> A((add))\n  z --> A --> y\n")
    with pytest.raises(SpecError, match="x: ") as caught:
        trace(spec)
    assert message in caught.value.message and caught.value.line == 3


def test_the_cli_reports_an_overflowing_shape_in_one_paragraph_with_exit_2(capsys):
    assert main(["run", str(SPECS / "conv2d.mmd"), "--dims", "b=2**62"]) == 2
    err = capsys.readouterr().err
    assert "more than a tensor can hold" in err and "Traceback" not in err and "\n\n" not in err.strip()


# --- size: work linear in the graph ------------------------------------------------------------------------------


def chain(n: int) -> str:
    """n relu ops in a row: 2n + 1 nodes."""
    lines = ["---", "graphconv:", "  inputs: {t0: [b, c]}", "  example: {b: 2, c: 3}", "---", "graph LR"]
    lines += [f"  T{i}(t{i}) --> R{i}((relu)) --> T{i + 1}(t{i + 1})" for i in range(n)]
    return "\n".join(lines) + "\n"


def fan(n: int) -> str:
    """One input read by n ops, each making an output of its own."""
    lines = ["---", "graphconv:", "  inputs: {x: [b, c]}", "  example: {b: 2, c: 3}", "---", "graph LR"]
    lines += [f"  X(x) --> R{i}((relu)) --> T{i}(t{i})" for i in range(n)]
    return "\n".join(lines) + "\n"


def fan_in(n: int) -> str:
    """n inputs, each with a pattern sharing dims, into one cat."""
    lines = ["---", "graphconv:", "  inputs:"] + [f"    x{i}: [b, c]" for i in range(n)]
    lines += ["  example: {b: 2, c: 3}", "---", "graph LR"] + [f"  X{i}(x{i}) --> C((cat))" for i in range(n)]
    return "\n".join(lines + ["  C --> Y(y)"]) + "\n"


def operations(function) -> int:
    """How many bytecode operations graphconv's own code executes while ``function()`` runs (torch, networkx and
    lark are not counted: their cost per node is fixed). The count is the same on every run and machine."""
    count = 0

    def count_operations(frame, event, arg):
        nonlocal count
        count += event == "opcode"
        return count_operations

    def on_call(frame, event, arg):
        if frame.f_code.co_filename.startswith(PACKAGE):
            frame.f_trace_opcodes = True
            return count_operations
        return None

    sys.settrace(on_call)
    try:
        function()
    finally:
        sys.settrace(None)
    return count


def growth(cost) -> float:
    """(cost(4n) - cost(2n)) / (cost(2n) - cost(n)) at n = 100: 2 for linear work, towards 4 for quadratic."""
    small, medium, large = cost(100), cost(200), cost(400)
    return (large - medium) / (medium - small)


@pytest.mark.parametrize("shape", [chain, fan, fan_in])
def test_loading_does_work_linear_in_the_graph(shape):
    assert growth(lambda n: operations(lambda: graphconv.loads(shape(n)))) < 2.2


@pytest.mark.parametrize("shape", [chain, fan_in])
def test_tracing_does_work_linear_in_the_graph(shape):
    # was 3.3 for the chain: every row looked its tensor up by name through all the graph's nodes (Spec.tensor_id)
    trace(graphconv.loads(shape(2)))  # the first meta run imports torch's meta kernels
    assert growth(lambda n: operations(lambda spec=graphconv.loads(shape(n)): trace(spec))) < 2.2


@pytest.mark.slow
def test_a_100k_node_graph_loads_in_bounded_time():
    text = chain(50_000)  # 100 001 nodes
    start = time.perf_counter()
    spec = graphconv.loads(text)
    elapsed = time.perf_counter() - start
    assert len(spec.graph) == 100_001 and len(spec.order) == 50_000
    assert elapsed < 600, f"{elapsed:.0f} s"  # about 30 s on a loaded 2-core machine


def test_a_text_link_label_ends_before_the_whitespace_of_its_arrow():
    # the label terminals of mermaid.lark now take whitespace a run at a time (they were quadratic in a long run)
    diagram = graphconv.parse_diagram("graph LR\n  a -- x  y \t --> b\n  c == p q  ==> d\n  e -. r s  .-> f\n")
    assert [edge.label for edge in diagram.edges] == ["x  y", "p q", "r s"]


@pytest.mark.slow
@pytest.mark.parametrize("text", [
    "graph LR\n  x --> R((relu)) --> y\n  " + "\u2028" * 100_000 + "\n",  # was 2 minutes: NORMAL_TEXT's lookahead
    "graph LR\n  subgraph " + "\n" * 100_000 + "x --> R((relu)) --> y\n end\n",  # the same
    "graph LR\n" + "%%{" * 100_000 + "\n  x --> R((relu)) --> y\n",  # was minutes: the regex %%\{.*?\}%%
])
def test_text_that_once_took_quadratic_time_is_refused_in_bounded_time(text):
    start = time.perf_counter()
    with pytest.raises(SpecError):
        graphconv.loads(text)
    assert time.perf_counter() - start < 20  # about 0.3 s now


# --- values: every expression result, every message that shows one -----------------------------------------------


def tuple_dims(levels: int, width: int, extra: str = "") -> str:
    """Dims d1 … d<levels>, each a tuple of ``width`` copies of the one before: width**levels numbers from a few
    lines (each level shares its items, so building it is cheap; printing it is not)."""
    dims = "".join(f"\n    d{i}: ({', '.join([f'd{i - 1}'] * width)})" for i in range(1, levels + 1))
    return (f"---\ngraphconv:\n  inputs: {{x: [n]}}\n  dims:\n    d0: (n, n){dims}{extra}\n  example: {{n: 2}}\n---\n"
            "graph LR\n  x --> R((relu)) --> y\n")


def test_a_tuple_of_tuples_past_the_item_limit_is_refused_at_its_dim():
    error = trace_error(tuple_dims(31, 8))  # 8**31 numbers: run hung printing them, or a MemoryError
    assert error.line == 9 and "dims.d4: (d3, d3, d3, d3, d3, d3, d3, d3) holds more than 10000 items" in error.message
    assert len(str(error)) < 600


def test_a_tuple_built_in_an_op_label_is_held_to_the_item_limit_too():
    text = tuple_dims(5, 4).replace("x --> R((relu))", 'x --> R(("reshape(shape=(d5, d5, d5))"))')
    error = trace_error(text)
    assert error.line == 14 and "(d5, d5, d5) holds more than 10000 items" in error.message


def test_a_message_shows_a_big_value_cut_short():
    error = trace_error(tuple_dims(5, 4, "\n    bad: d5 + 1"))  # 2 * 4**5 numbers: allowed, too many to print
    assert error.message.startswith("dims.bad: d5 is ((((") and "not a number" in error.message
    assert len(error.message) < 600  # was the whole value, twice


def test_a_compiled_op_reports_a_later_dim_that_fails_on_a_big_value_in_a_short_message():
    torch = pytest.importorskip("torch")
    op = graphconv.compile(graphconv.loads(tuple_dims(5, 4, "\n    bad: d5 + 1")))
    with pytest.raises(SpecError, match="dims.bad: d5 is") as caught:
        op(torch.ones(2))
    assert len(str(caught.value)) < 800


def test_show_value_cuts_a_value_that_shares_its_items_short():
    from graphconv.syntax.expr import MAX_SHOWN, show_value

    value: tuple = (1,)
    for _ in range(60):  # 8**60 items, if walked
        value = (value,) * 8
    assert len(show_value(value)) <= MAX_SHOWN
    assert show_value("x" * 10 ** 6).startswith("'xxx") and len(show_value("x" * 10 ** 6)) <= MAX_SHOWN
    assert show_value((1, 2, 3)) == "(1, 2, 3)" and show_value(2 ** 255) == str(2 ** 255)


# --- ops that make many tensors -----------------------------------------------------------------------------------


def test_a_split_into_more_tensors_than_an_op_may_make_is_refused_before_making_them():
    spec = graphconv.loads("---\ngraphconv:\n  inputs: {x: [n]}\n  example: {n: 1000000000}\n"
                           "  ops: {cut: split(sizes=1)}\n---\ngraph LR\n  X(x) --> S((cut))\n  S --> A(a)\n"
                           "  S --> B(b)\n")
    result = trace(spec)  # made 10**9 meta tensors: 17.7 GB in a minute
    assert not result.ok and result.failure.line == 8
    assert "split would make 1000000000 tensors, more than one op may make (10000)" in result.failure.message


# --- YAML numbers, spec size --------------------------------------------------------------------------------------


def test_a_long_base_60_integer_is_refused_before_pyyaml_converts_it(monkeypatch):
    import yaml

    converted = []
    original = yaml.constructor.SafeConstructor.construct_yaml_int
    monkeypatch.setattr(yaml.constructor.SafeConstructor, "construct_yaml_int",
                        lambda self, node: converted.append(node.value) or original(self, node))
    sexagesimal = "1:" + ":".join(["00"] * 20_000)  # quadratic in PyYAML: 2.4 MB took 95 s
    error = load_error(f"---\ngraphconv:\n  attrs: {{k: {sexagesimal}}}\n---\n{RELU}")
    assert (error.line, error.column) == (3, 14) and "is too large (more than 256 bits)" in error.message
    assert converted == []
    assert graphconv.loads(f"---\ngraphconv:\n  attrs: {{k: '1:00:00'}}\n---\n{RELU}").meta.attrs["k"] == "1:00:00"
    assert graphconv.loads(f"---\ngraphconv:\n  attrs: {{k: 1:00:00}}\n---\n{RELU}").meta.attrs["k"] == 3600


def test_long_number_text_in_yaml_is_refused():
    error = load_error(f"---\ngraphconv:\n  attrs: {{k: {'1' * 400}.5}}\n---\n{RELU}")
    assert error.line == 3 and "is longer than 300 characters" in error.message
    assert graphconv.loads(f"---\ngraphconv:\n  attrs: {{k: 0b{'1' * 256}}}\n---\n{RELU}").meta.attrs["k"] == 2 ** 256 - 1


def test_spec_text_over_the_size_limit_is_refused_before_it_is_parsed(monkeypatch):
    from graphconv import api

    monkeypatch.setattr(api, "parse_diagram", lambda *args: pytest.fail("parsed"))
    error = load_error("graph LR\n" + " " * api.MAX_SPEC_CHARACTERS)
    assert f"the spec is longer than {api.MAX_SPEC_CHARACTERS} characters" in error.message


def test_a_spec_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path):
    from graphconv.api import MAX_SPEC_CHARACTERS

    big = tmp_path / "big.mmd"
    big.write_text("graph LR\n  x --> R((relu)) --> y\n" + "%%" * MAX_SPEC_CHARACTERS)
    with pytest.raises(SpecError, match="longer than") as caught:
        graphconv.load(big)
    assert caught.value.path == str(big)
    with pytest.raises(SpecError, match="longer than"):
        graphconv.load("/dev/zero")  # endless: only MAX_SPEC_CHARACTERS + 1 characters are read
