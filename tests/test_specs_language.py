"""The spec-language features the shipped specs need: conditionals, comparisons, subscripts, pair/ntuple, inf."""
import math

import pytest

from graphconv.errors import SpecError
from graphconv.syntax.expr import evaluate, names, parse_expr, to_source

SAME_PAD = "d * (k - 1) if padding == 'same' else (0 if padding == 'valid' else 2 * pair(padding)[0])"


@pytest.mark.parametrize("padding, total", [("same", 4), ("valid", 0), (3, 6), ((1, 2), 2)])
def test_a_dim_can_depend_on_the_form_of_an_attr(padding, total):
    assert evaluate(parse_expr(SAME_PAD), {"d": 2, "k": 3, "padding": padding}) == total


@pytest.mark.parametrize("text, value", [
    ("pair(2)", (2, 2)), ("pair((1, 3))", (1, 3)), ("ntuple(4, 1)", (4,)), ("ntuple((5,), 1)[0]", 5),
    ("pair(s)[-1]", 3), ("1 if n == None else n", 1), ("n != None", False), ("2 <= 3", True), ("-inf", -math.inf),
    ("k ** -0.5", 0.5), ("(1 if 2 > 1 else 3) + 1", 2),
])
def test_new_expression_forms_evaluate_like_python(text, value):
    assert evaluate(parse_expr(text), {"s": (2, 3), "n": None, "k": 4}) == value


def test_only_the_chosen_branch_is_evaluated():
    assert evaluate(parse_expr("0 if padding == 'valid' else pair(padding)[0]"), {"padding": "valid"}) == 0


@pytest.mark.parametrize("text, message", [
    ("pair((1, 2, 3))", "expected 2 values"),
    ("ntuple(1, 1000)", "from 1 to 16"),
    ("s[2]", "out of range"),
    ("k[0]", "not a tuple"),
    ("1 if k else 2", "not True or False"),
    ("padding < 1", "not a number"),
])
def test_bad_uses_are_spec_errors_at_the_spot(text, message):
    with pytest.raises(SpecError, match=message) as caught:
        evaluate(parse_expr(text), {"s": (2, 3), "k": 4, "padding": "same"})
    assert caught.value.line == 1 and caught.value.column >= 1


def test_comparisons_do_not_chain():
    with pytest.raises(SpecError, match="unexpected '=='"):
        parse_expr("a < b == c")


@pytest.mark.parametrize("text", [SAME_PAD, "pair(stride)[0] * 2", "(a if b else c) + 1", "a if (b if c else d) else e",
                                  "(a < b) == c", "-x[0]", "x[0] ** 2"])
def test_to_source_round_trips(text):
    expr = parse_expr(text)
    assert to_source(parse_expr(to_source(expr))) == to_source(expr)
    assert parse_expr(to_source(expr)) == parse_expr(to_source(parse_expr(to_source(expr))))


def test_names_sees_every_branch_and_subscript():
    assert names(parse_expr(SAME_PAD)) == {"d", "k", "padding"}
    assert names(parse_expr("x[i] if t else y")) == {"x", "i", "t", "y"}
