"""Fuzzing the spec reader: every shipped spec (also inside a Markdown file), mutated as text (characters, tokens and lines deleted, duplicated,
swapped; truncation; random unicode; hostile snippets; very long labels; deep subgraph nesting), goes through
``graphconv.loads``. The only exception allowed is ``SpecError``, with a line inside the text. A spec that still
loads must be internally consistent: it traces on the meta device (forward and backward) and its compiled op runs
on meta tensors of those shapes, raising nothing but ``SpecError``.

Hypothesis runs derandomized (the same examples on every run, so CI is reproducible) with a fixed budget of
examples; ``GRAPHCONV_FUZZ_SCALE=20`` multiplies the budget for a deeper local run. The regression tests at the
end hold the smallest inputs that once crashed the reader, one per fix.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import graphconv
from conftest import SPECS
from graphconv import SpecError
from graphconv.check.trace import trace

SCALE = int(os.environ.get("GRAPHCONV_FUZZ_SCALE", "1"))
SPEC_FILES = sorted(p for p in SPECS.iterdir() if p.suffix in (".mmd", ".md", ".yaml", ".yml"))
TOKEN = re.compile(r"\w+|\s+|[^\w\s]+")

# Pieces of the three languages a spec mixes (Mermaid, YAML, expressions), and of what attacks them.
SNIPPETS = [
    "((", "))", "(", ")", "[", "]", "{", "}", "-->", "---", "==>", "-.->", "<-->", "~~~", "|", "|x|", "&", ":::",
    "@{", "@{ shape: circle }", "subgraph s", "subgraph", "end", "graph LR", "flowchart", "%%", "%%{init: {}}%%",
    "\n", "\r", "\r\n", "\t", "\x00", "\ufeff", "\u2028", "\x85", "'", '"', "#quot;", ":", ": ", "- ", "? ",
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "&a [1]", "*a", "<<: *a", "!!binary x",
    "9" * 400, "2 ** 64", "10 ** 100", "**", "//", "% 0", "// 0", "-", "1e308 * 1e308", "inf", "nan", "pair(",
    "ntuple(", "min()", "if", "else", "==", "_", "None", "__import__('os')", "lambda: 0", "x" * 5000, "é", "∑", "😀", "\u202e",
]


def _edit(draw, text: str) -> str:
    """One random edit of ``text``."""
    kind = draw(st.sampled_from(["delete", "duplicate", "insert", "unicode", "truncate", "swap_tokens",
                                 "replace_token", "delete_token", "swap_lines", "delete_line", "duplicate_line"]))
    start = draw(st.integers(0, len(text)))
    end = min(len(text), start + draw(st.integers(0, 40)))
    if kind == "delete":
        return text[:start] + text[end:]
    if kind == "duplicate":
        return text[:end] + text[start:end] + text[end:]
    if kind == "insert":
        return text[:start] + draw(st.sampled_from(SNIPPETS)) + text[start:]
    if kind == "unicode":
        return text[:start] + draw(st.text(min_size=1, max_size=6)) + text[start:]
    if kind == "truncate":
        return text[:start]
    tokens, lines = TOKEN.findall(text), text.split("\n")
    if kind in ("swap_tokens", "replace_token", "delete_token") and tokens:
        i, j = draw(st.integers(0, len(tokens) - 1)), draw(st.integers(0, len(tokens) - 1))
        if kind == "swap_tokens":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "replace_token":
            tokens[i] = tokens[j]
        else:
            del tokens[i]
        return "".join(tokens)
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    if kind == "swap_lines":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "delete_line":
        del lines[i]
    else:
        lines.insert(j, lines[i])
    return "\n".join(lines)


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` after one to four random edits."""
    for _ in range(draw(st.integers(1, 4))):
        text = _edit(draw, text)
    return text


@st.composite
def long_label(draw, text: str) -> str:
    """A word of ``text`` (often a node id, a label or an op name) replaced by a very long one."""
    words = [m for m in re.finditer(r"\w+", text)]
    word = draw(st.sampled_from(words))
    long = draw(st.sampled_from(["x", "ab_", "9", "é"])) * draw(st.sampled_from([1000, 20_000, 200_000]))
    return text[:word.start()] + long + text[word.end():]


@st.composite
def nested(draw, text: str) -> tuple[str, int, bool]:
    """The diagram's statements wrapped in ``depth`` nested subgraphs; the innermost is sometimes left unclosed."""
    lines = text.split("\n")
    header = next(i for i, line in enumerate(lines) if line.split()[:1] in (["graph"], ["flowchart"]))
    depth = draw(st.sampled_from([1, 2, 50, 99, 101, 150, 1000]))  # the specs' own subgraphs nest one level
    closed = draw(st.booleans())
    lines = lines[:header + 1] + [f"subgraph s{i}" for i in range(depth)] + lines[header + 1:]
    return "\n".join(lines + ["end"] * (depth if closed else depth - 1)) + "\n", depth, closed


def check_load(text: str, path: Path) -> graphconv.graph.opgraph.Spec | None:
    """Load ``text`` as if read from ``path``: a Spec, or None after a SpecError that points inside the text."""
    try:
        spec = graphconv.loads(text, path=str(path))
    except SpecError as error:
        lines = max(len(text.splitlines()), 1)
        assert error.line is not None and 1 <= error.line <= lines, f"line {error.line} of {lines}: {error}"
        event("SpecError")
        return None
    event("loads")
    return spec


def check_consistent(spec: graphconv.graph.opgraph.Spec, backward: bool) -> None:
    """A spec that loads runs: traced on the meta device, then compiled and called on meta tensors of the traced
    input shapes (forward and, when asked, backward) — raising nothing but SpecError."""
    if not spec.meta.example:
        return
    try:
        result = trace(spec, backward=backward)
    except SpecError:
        event("trace: SpecError")
        return
    if not result.ok:
        event("trace: shapes do not fit")
        return
    event("trace: ok")
    shapes = [row.shape for row in result.rows[:len(spec.inputs)]]
    try:
        op = graphconv.compile(spec)
        inputs = [torch.empty(shape, device="meta", requires_grad=backward) for shape in shapes]
        outputs = op(*inputs)
        if backward:
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
        event("compiled: ok")
    except SpecError:
        event("compiled: SpecError")


FUZZ = settings(max_examples=60 * SCALE, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
@FUZZ
@given(data=st.data())
def test_mutated_specs_load_or_raise_spec_error_inside_the_text(path, data):
    text = path.read_text(encoding="utf-8")
    spec = check_load(data.draw(mutated(text)), path)
    if spec is not None:
        check_consistent(spec, backward=data.draw(st.booleans()))


@settings(FUZZ, max_examples=40 * SCALE)
@given(data=st.data())
def test_mutated_markdown_specs_load_or_raise_spec_error_inside_the_text(data):
    path = data.draw(st.sampled_from([p for p in SPEC_FILES if p.suffix == ".mmd"]))
    text = f"# {path.stem}\n\nProse.\n\n```mermaid\n{path.read_text(encoding='utf-8')}```\n\nMore prose.\n"
    spec = check_load(data.draw(mutated(text)), path.with_suffix(".md"))
    if spec is not None:
        check_consistent(spec, backward=data.draw(st.booleans()))

@settings(FUZZ, max_examples=30 * SCALE)
@given(data=st.data())
def test_very_long_labels_load_or_raise_spec_error(data):
    path = data.draw(st.sampled_from(SPEC_FILES))
    check_load(data.draw(long_label(path.read_text(encoding="utf-8"))), path)


@settings(FUZZ, max_examples=20 * SCALE)
@given(data=st.data())
def test_deep_subgraph_nesting_loads_or_raises_spec_error(data):
    path = data.draw(st.sampled_from([p for p in SPEC_FILES if p.suffix == ".mmd"]))
    text, depth, closed = data.draw(nested(path.read_text(encoding="utf-8")))
    spec = check_load(text, path)
    if closed and depth < 100:
        assert spec is not None  # nesting up to the limit is fine
    elif closed:
        with pytest.raises(SpecError, match="subgraphs nested more than 100 levels deep"):
            graphconv.loads(text, path=str(path))
    else:
        assert spec is None


# --- regression tests: the smallest inputs that once crashed the reader, one per fix -----------------------------


def load_error(text: str, path: str = "spec.mmd") -> SpecError:
    with pytest.raises(SpecError) as caught:
        graphconv.loads(text, path=path)
    return caught.value


def test_a_nul_character_in_a_yaml_spec_is_a_spec_error_at_its_place():
    # was: yaml.reader.ReaderError, raised by yaml.SafeLoader(text) outside the try (graphconv/syntax/yaml_source.py)
    error = load_error("title: t\ngraph: [\x00]\n", "spec.yaml")
    assert (error.line, error.column) == (2, 9)
    assert "character U+0000 is not allowed" in error.message


def test_yaml_that_ends_too_early_points_at_its_last_line():
    # was: line 3 of a 2-line text (YAML marks the end of the stream after the final line break)
    error = load_error("title: t\ngraph: {a: 1\n", "spec.yaml")
    assert (error.line, error.column) == (2, 13)
    assert "expected ',' or '}'" in error.message
    assert error.source_line == "graph: {a: 1"


def test_an_expression_function_with_the_wrong_number_of_arguments_is_a_spec_error():
    # was: TypeError from min() at trace time (graphconv/syntax/expr.py now checks the count when parsing)
    error = load_error("---\ngraphconv:\n  attrs: {k: 1}\n  dims: {d: min()}\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    assert (error.line, error.message) == (4, "min() takes at least 2 argument(s), got 0")
    error = load_error("---\ngraphconv:\n  attrs: {k: 1}\n  dims: {d: 'abs(k, k)'}\n---\n"
                       "graph LR\n  x --> R((relu)) --> y\n")
    assert error.message == "abs() takes 1 argument(s), got 2"


@pytest.mark.parametrize("expression, message", [
    ("ceil_div(k, 0)", "division by zero in ceil_div(k, 0)"),  # was: ZeroDivisionError
    ("0.0 ** -1.5", "division by zero in 0.0 ** -1.5"),  # was: ZeroDivisionError
    ("1e300 ** 2", "1e+300 ** 2 is too large"),  # was: OverflowError
    ("(-8) ** 0.5", "(-8) ** 0.5 is not a real number"),  # was: a complex number handed on as a dim
])
def test_arithmetic_that_python_refuses_is_a_spec_error_at_the_dim(expression, message):
    spec = graphconv.loads(f"---\ngraphconv:\n  inputs: {{x: [n]}}\n  attrs: {{k: 1}}\n  dims: {{d: '{expression}'}}\n"
                           f"  example: {{n: 2}}\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    with pytest.raises(SpecError) as caught:
        trace(spec)
    assert caught.value.line == 5
    assert message in caught.value.message


def test_a_negated_power_base_keeps_its_parentheses_when_written_back():
    # was: (-8) ** 2 written as -8 ** 2, which Python and the grammar read as -(8 ** 2): `graphconv show` changed a dim
    from graphconv.syntax.expr import evaluate, parse_expr, to_source

    for text, value in [("(-a) ** 2", 9), ("-a ** 2", -9), ("(-a) ** 3 + (-a) ** 2", -18)]:
        written = to_source(parse_expr(text))
        assert evaluate(parse_expr(written), {"a": 3}) == evaluate(parse_expr(text), {"a": 3}) == value
    assert to_source(parse_expr("(-t)[0]")) == "(-t)[0]"
