"""The expression grammar of op labels and dims: parsed, evaluated without eval, errors located."""
import pytest

from graphconv.errors import SpecError
from graphconv.syntax.expr import evaluate, names, parse_call, parse_expr, to_source

ENV = {"i_h": 8, "kernel_h": 3, "padding": 1, "stride": 2, "o_h": 4, "o_w": 5, "b": 2}


@pytest.mark.parametrize(
    "text, value",
    [
        ("(i_h - kernel_h + 2 * padding) // stride + 1", 4),
        ("o_h * o_w", 20),
        ("-o_h + 10", 6),
        ("2 ** 3 ** 2", 512),
        ("i_h % 3", 2),
        ("i_h / 4", 2.0),
        ("min(o_h, o_w) + max(1, b)", 6),
        ("ceil_div(i_h, 3)", 3),
        ("abs(1 - i_h)", 7),
        ("(b, o_h * 2)", (2, 8)),
        ("[1, 2, 3]", (1, 2, 3)),
        ("(b,)", (2,)),
        ("()", ()),
        ("'same'", "same"),
        ("True", True),
        ("1.5e1", 15.0),
    ],
)
def test_expressions_evaluate_like_python(text, value):
    assert evaluate(parse_expr(text), ENV) == value


@pytest.mark.parametrize("text", ["(i_h - kernel_h + 2 * padding) // stride + 1", "a - (b - c)", "-(a + b) * c",
                                  "a // b * c", "(a, b * 2)", "max(a, 3)"])
def test_to_source_round_trips(text):
    expr = parse_expr(text)
    assert parse_expr(to_source(expr)) == parse_expr(to_source(parse_expr(to_source(expr))))
    assert to_source(parse_expr(to_source(expr))) == to_source(expr)


def test_call_with_positional_and_keyword_arguments():
    call = parse_call("unfold(kernel_size=(kernel_h, 3), stride=stride)")
    assert call.name == "unfold" and call.args == ()
    assert [k for k, _ in call.kwargs] == ["kernel_size", "stride"]
    assert names(call) == {"kernel_h", "stride"}
    assert to_source(parse_call("reshape(b * patches, patch_size)")) == "reshape(b * patches, patch_size)"
    assert parse_call("  matmul ").name == "matmul"


@pytest.mark.parametrize(
    "text, message, column",
    [
        ("reshape(b *, 2)", "unexpected ','", 12),
        ("permute(0, 2", "unexpected end", None),
        ("f(a=1, 2)", "positional argument after a keyword", 8),
        ("f(__import__('os'))", "unknown function __import__", 3),
        ("f(x.y)", "unexpected character '.'", 4),
    ],
)
def test_bad_labels_are_spec_errors_with_a_column(text, message, column):
    with pytest.raises(SpecError) as caught:
        parse_call(text)
    assert message in str(caught.value)
    assert caught.value.line == 1
    if column is not None:
        assert caught.value.column == column
        assert caught.value.source_line == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("o_hh + 1", "unknown name 'o_hh'; did you mean 'o_h'?"),
        ("b // (o_h - 4)", "division by zero"),
        ("2 ** 100000", "exponent 100000 out of range"),
        ("(2 ** 64) ** 64", "too large"),
        ("(1, 2) + 1", "not a number"),
    ],
)
def test_evaluation_errors(text, message):
    with pytest.raises(SpecError) as caught:
        evaluate(parse_expr(text), ENV)
    assert message in caught.value.message
