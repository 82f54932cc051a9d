"""Fuzzing expressions (op labels and dims): random expression trees written back as text (``to_source``, which
``graphconv show`` uses) parse to the same value, and text written back is written the same way again; where no
name is symbolic, the symbolic evaluator gives the plain one's value (or also raises SpecError); random text parses
or raises SpecError; evaluation with any values raises nothing but SpecError.
"""
from __future__ import annotations

import math

from hypothesis import event, given, settings
from hypothesis import strategies as st

from graphconv import SpecError
from graphconv.syntax.expr import (BINARY, COMPARE, BinOp, Compare, Conditional, Const, Function, Name, Neg, Subscript,
                                 Tuple, evaluate, parse_call, parse_expr, to_source)
from graphconv.syntax.symbolic_expr import evaluate_symbolic
from test_fuzz_specs import FUZZ, SCALE

ENV = {"a": 3, "b": 0, "c": 2.5, "t": (1, 2, 3), "s": "same", "f": False}

leaves = st.one_of(
    st.integers(0, 12).map(lambda v: Const(1, 1, v)),
    st.sampled_from([0.5, 2.0, 1e-3, 1e300, math.inf]).map(lambda v: Const(1, 1, v)),
    st.sampled_from([True, False, None, "same", "valid", ""]).map(lambda v: Const(1, 1, v)),
    st.sampled_from(sorted(ENV)).map(lambda n: Name(1, 1, n)),
)


def branches(inner):
    return st.one_of(
        st.builds(lambda op, l, r: BinOp(1, 1, op, l, r), st.sampled_from(sorted(BINARY)), inner, inner),
        st.builds(lambda e: Neg(1, 1, e), inner),
        st.builds(lambda op, l, r: Compare(1, 1, op, l, r), st.sampled_from(sorted(COMPARE)), inner, inner),
        st.builds(lambda t, a, b: Conditional(1, 1, t, a, b), inner, inner, inner),
        st.builds(lambda t, i: Subscript(1, 1, t, i), inner, inner),
        st.builds(lambda items: Tuple(1, 1, tuple(items)), st.lists(inner, max_size=3)),
        st.builds(lambda args: Function(1, 1, "min", tuple(args)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda args: Function(1, 1, "max", tuple(args)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda e: Function(1, 1, "abs", (e,)), inner),
        st.builds(lambda a, b: Function(1, 1, "ceil_div", (a, b)), inner, inner),
        st.builds(lambda e: Function(1, 1, "pair", (e,)), inner),
        st.builds(lambda a, b: Function(1, 1, "ntuple", (a, b)), inner, inner),
    )


expressions = st.recursive(leaves, branches, max_leaves=12)

number_leaves = st.one_of(st.integers(0, 12).map(lambda v: Const(1, 1, v)),
                          st.sampled_from([0.5, 2.0]).map(lambda v: Const(1, 1, v)),
                          st.sampled_from(["a", "b", "c"]).map(lambda n: Name(1, 1, n)))


def number_branches(inner):
    return st.one_of(
        st.builds(lambda op, l, r: BinOp(1, 1, op, l, r), st.sampled_from(sorted(BINARY)), inner, inner),
        st.builds(lambda e: Neg(1, 1, e), inner),
        st.builds(lambda base, e: BinOp(1, 1, "**", base, Const(1, 1, e)),  # where precedence is subtle
                  st.one_of(inner, inner.map(lambda e: Neg(1, 1, e))), st.integers(0, 3)),
        st.builds(lambda op, l, r, a, b: Conditional(1, 1, Compare(1, 1, op, l, r), a, b),
                  st.sampled_from(sorted(COMPARE)), inner, inner, inner, inner),
        st.builds(lambda e, i: Subscript(1, 1, Function(1, 1, "pair", (e,)), Const(1, 1, i)), inner, st.integers(0, 1)),
        st.builds(lambda name, a, b: Function(1, 1, name, (a, b)), st.sampled_from(["min", "max", "ceil_div"]),
                  inner, inner),
    )


numbers = st.recursive(number_leaves, number_branches, max_leaves=6)  # mostly valid: they evaluate to numbers


def outcome(expression, evaluator=evaluate):
    """The value of ``expression`` in ENV, or the SpecError it raises (as the marker ``"error"``)."""
    try:
        value = evaluator(expression, ENV)
    except SpecError:
        return "error"
    return "nan" if isinstance(value, float) and math.isnan(value) else value


@settings(FUZZ, max_examples=300 * SCALE)
@given(st.one_of(numbers, expressions))
def test_an_expression_written_back_means_the_same(expression):
    text = to_source(expression)
    parsed = parse_expr(text)
    assert to_source(parsed) == text
    expected = outcome(expression)
    event("error" if expected == "error" else type(expected).__name__)
    assert outcome(parsed) == expected, text
    assert repr(outcome(parsed, evaluate_symbolic)) == repr(expected), text  # repr: 1, 1.0 and True differ


ALPHABET = list("abcst01289 ()[],.+-*/%<>=!'\"_") + ["**", "//", " if ", " else ", "min", "pair", "ntuple",
                                                    "ceil_div", "inf", "True", "None", "é", "\n", "\t", "\x00"]


@settings(FUZZ, max_examples=300 * SCALE)
@given(st.lists(st.sampled_from(ALPHABET), max_size=25).map("".join))
def test_random_text_parses_or_raises_spec_error_and_evaluates_or_raises_spec_error(text):
    for parse in (parse_expr, parse_call):
        try:
            parsed = parse(text)
        except SpecError as error:
            assert error.line is not None and error.line >= 1
            continue
        if parse is parse_expr:
            event("parsed")
            outcome(parsed)
