"""Symbolic integers (graphconv.syntax.symbolic): the normal form that proves declared shapes for every size, the
spec expressions evaluated over it, and the conditions (claims) ops require. The property tests check soundness: a
normal form, a sign it settles, a condition it decides, agree with plain evaluation at random values."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from graphconv import SpecError
from graphconv.syntax import symbolic
from graphconv.syntax.claims import at_least, divides, equal
from graphconv.syntax.expr import BinOp, Const, Function, Name, Neg, evaluate, parse_expr
from graphconv.syntax.symbolic import Namer, Undecided, assume_at_least, assuming, lower_bound, symbol
from graphconv.syntax.symbolic_expr import evaluate_symbolic
from test_fuzz_specs import FUZZ, SCALE

SIZES = {name: symbol(name, nonnegative=True) for name in ("i", "k", "p", "s", "b")}


def nf(text: str, **values):
    return evaluate_symbolic(parse_expr(text), {**SIZES, **values})


def same(a, b) -> bool:
    return (a.key == b.key) if isinstance(a, symbolic.Dim) and isinstance(b, symbolic.Dim) else a == b


@pytest.mark.parametrize("left, right", [
    ("(i - k + 2 * p) // s + 1", "(i + 2 * p - 1 * (k - 1) - 1) // s + 1"),  # the seed's o_h and unfold's count
    ("(2 * p) // 2", "p"),
    ("(i - 1) // 2", "(i + 1) // 2 - 1"),
    ("(i + 3) % 3", "i % 3"),
    ("(b * i) // i", "b"),
    ("((i + 2 * p - k) // s + 1) * ((i + 2 * p - k) // s + 1)", "((i - k + 2 * p) // s + 1) ** 2"),
    ("ceil_div(i, 2)", "-((-i) // 2)"),
    ("min(i, i + 1)", "i"),
    ("max(i, 0)", "i"),
    ("abs(i)", "i"),
])
def test_ways_of_writing_one_size_meet_in_one_normal_form(left, right):
    assert same(nf(left), nf(right))


@pytest.mark.parametrize("left, right", [("i // 2 * 2", "i"), ("i - k", "k - i"), ("i * k", "i + k")])
def test_different_sizes_keep_different_normal_forms(left, right):
    assert not same(nf(left), nf(right))


def test_questions_the_normal_form_cannot_settle_name_their_symbols():
    with pytest.raises(Undecided) as raised:
        bool(SIZES["b"] == 1)
    assert raised.value.symbols == {"b"}
    assert (SIZES["i"] + 1 > 0) is True and (SIZES["i"] * SIZES["k"] >= 0) is True
    assert (SIZES["i"] == SIZES["i"]) is True and (SIZES["i"] + 1 == SIZES["i"]) is False


def test_what_ops_required_earlier_settles_later_signs():
    fit = SIZES["i"] + 2 * SIZES["p"] - SIZES["k"]
    assert lower_bound(fit // SIZES["s"] + 1) is None
    with assuming():
        assume_at_least(SIZES["i"] + 2 * SIZES["p"], SIZES["k"])
        assume_at_least(SIZES["s"], 1)
        assert lower_bound(fit // SIZES["s"] + 1) == 1
    assert lower_bound(fit // SIZES["s"] + 1) is None  # only inside the block


def test_spec_expressions_compare_symbols_with_strings_and_none():
    padding = symbol("padding")
    assert nf("2 if padding == 'same' else 2 * padding", padding=padding).key == (2 * padding).key
    assert nf("pair(p if s == None else s)[1]", s=None) is SIZES["p"]
    with pytest.raises(Undecided):
        nf("1 if i == 3 else 2")
    with pytest.raises(Undecided):
        nf("i / 2")
    with pytest.raises(SpecError):
        nf("i // 0")


@pytest.mark.parametrize("text, values", [
    ("o_h + 1", {"o_w": 1}),  # unknown name, nearest names suggested
    ("(1 if t else 2) * i", {"t": tuple(range(50))}),  # not a bool: the value cut short (show_value)
    ("1 if i else 2", {}),  # a symbolic condition is not a bool either
    ("(...n, 1)", {"n": 3}),  # a splice of what is not a group
    ("(d, d)", {"d": tuple(range(6000))}),  # a tuple over MAX_VALUE_ITEMS
])
def test_constants_names_tuples_and_conditionals_raise_what_the_plain_evaluator_raises(text, values):
    raised = []
    for evaluator in (evaluate, evaluate_symbolic):
        with pytest.raises(SpecError) as error:
            evaluator(parse_expr(text), {**SIZES, **values})
        raised.append((error.value.message, error.value.line, error.value.column))
    assert raised[0] == raised[1]


def test_a_normal_form_too_big_to_make_is_refused_not_computed():
    with pytest.raises(Undecided):
        nf("(i + k + p + s + b) ** 9")


def test_names_the_spec_gave_are_used_to_write_sizes():
    o_h = nf("(i - k + 2 * p) // s + 1")
    namer = Namer({"o_h": o_h, "patches": o_h * o_h}, order=["i", "k", "p", "s", "b"])
    assert namer.show(o_h * o_h) == "patches" and namer.show(SIZES["b"] * o_h * o_h) == "b * patches"
    assert namer.show(o_h - 1) == "(i + 2 * p - k) // s"
    assert namer.show((SIZES["i"], 3)) == "[i, 3]"


def test_conditions_are_written_as_the_spec_would_and_checked_at_values():
    fits = at_least(SIZES["i"] + 2 * SIZES["p"], SIZES["k"])
    assert fits.show() == "i + 2 * p >= k" and fits.decide() is None
    assert fits.holds({"i": 2, "p": 0, "k": 3}) is False and fits.show_values({"i": 2, "p": 0, "k": 3}) == "2 >= 3"
    groups = symbol("groups")
    counts = equal(SIZES["b"] * SIZES["i"], SIZES["b"] * groups * (SIZES["i"] // groups))
    assert counts.show() == "i % groups == 0"
    assert counts.holds({"b": 2, "i": 6, "groups": 3}) and not counts.holds({"b": 2, "i": 7, "groups": 3})
    assert divides(2, SIZES["i"] * 4).decide() is True and equal(3, 4).decide() is False


# --- soundness, at random values -------------------------------------------------------------------------------

leaves = st.one_of(st.integers(-3, 6).map(lambda v: Const(1, 1, v)), st.sampled_from("ikps").map(lambda n: Name(1, 1, n)))


def branches(inner):
    return st.one_of(
        st.builds(lambda op, l, r: BinOp(1, 1, op, l, r), st.sampled_from(["+", "-", "*", "//", "%"]), inner, inner),
        st.builds(lambda e: Neg(1, 1, e), inner),
        st.builds(lambda e, n: BinOp(1, 1, "**", e, Const(1, 1, n)), inner, st.integers(0, 2)),
        st.builds(lambda name, a, b: Function(1, 1, name, (a, b)), st.sampled_from(["min", "max", "ceil_div"]),
                  inner, inner),
        st.builds(lambda e: Function(1, 1, "abs", (e,)), inner),
    )


integer_expressions = st.recursive(leaves, branches, max_leaves=8)
values = st.fixed_dictionaries({name: st.integers(0, 9) for name in "ikps"})


@settings(FUZZ, max_examples=300 * SCALE)
@given(expression=integer_expressions, at=st.lists(values, min_size=1, max_size=4))
def test_the_normal_form_has_the_value_of_the_expression_wherever_it_has_one(expression, at):
    try:
        normal = evaluate_symbolic(expression, SIZES)
    except (Undecided, SpecError):
        assume(False)
    for point in at:
        try:
            expected = evaluate(expression, point)
        except SpecError:  # division by zero at this point
            continue
        assert symbolic.value(normal, point) == expected


@settings(FUZZ, max_examples=200 * SCALE)
@given(left=integer_expressions, right=integer_expressions, at=st.lists(values, min_size=1, max_size=4))
def test_what_the_normal_form_decides_holds_at_every_value(left, right, at):
    try:
        a, b = evaluate_symbolic(left, SIZES), evaluate_symbolic(right, SIZES)
    except (Undecided, SpecError):
        assume(False)
    claims = [equal(a, b), at_least(a, b)]
    bound = lower_bound(a)
    for point in at:
        try:
            concrete = symbolic.value(a, point), symbolic.value(b, point)
        except ZeroDivisionError:
            continue
        for claim in claims:
            if claim.decide() is not None:
                assert claim.holds(point) == claim.decide()
        if bound is not None:
            assert concrete[0] >= bound
