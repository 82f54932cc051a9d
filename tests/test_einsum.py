"""einsum against torch.einsum over random equations: diagonals (a letter repeated within an operand), letters
summed within one operand, ``...`` (summed away or kept, broadcast), letters broadcast from size 1 — the value, the
gradient of every operand, and the gradient of that gradient."""
import string

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphconv.check.verify import single_op
from graphconv.ops import REGISTRY
from graphconv.ops.einsum import parse_equation

EINSUM = REGISTRY.get("einsum")


@st.composite
def equations(draw):
    """(equation, operand shapes): 1–3 operands over up to 4 letters, some repeated, maybe ``...``."""
    letters = string.ascii_letters[:draw(st.integers(1, 4))]
    size = {c: draw(st.integers(1, 3)) for c in letters}
    ellipsis = draw(st.lists(st.integers(1, 2), max_size=2))
    terms, shapes = [], []
    for _ in range(draw(st.integers(1, 3))):
        term = draw(st.lists(st.sampled_from(letters), min_size=0, max_size=4))
        dims = [size[c] if draw(st.booleans()) or term.count(c) > 1 else 1 for c in term]
        dims = [size[c] if term.count(c) > 1 else d for c, d in zip(term, dims)]  # a diagonal's sizes match
        if draw(st.booleans()):
            at = draw(st.integers(0, len(term)))
            spread = ellipsis[len(ellipsis) - draw(st.integers(0, len(ellipsis))):]
            term, dims = term[:at] + ["..."] + term[at:], dims[:at] + spread + dims[at:]
        terms.append("".join(term))
        shapes.append(tuple(dims))
    used = sorted(set("".join(terms).replace("...", "")))
    output = draw(st.lists(st.sampled_from(used), unique=True)) if used else []
    if any("..." in t for t in terms) and draw(st.booleans()):
        output.insert(draw(st.integers(0, len(output))), "...")
    return ",".join(terms) + "->" + "".join(output), shapes


def _broadcast_consistent(equation, shapes):
    """Whether torch.einsum accepts these shapes (each letter's sizes equal or 1)."""
    try:
        torch.einsum(equation, *(torch.zeros(s) for s in shapes))
        return True
    except RuntimeError:
        return False


@settings(max_examples=60, deadline=None)
@given(equations())
def test_einsum_matches_torch_in_value_gradient_and_second_gradient(case):
    equation, shapes = case
    if not _broadcast_consistent(equation, shapes):
        return
    compiled = single_op(EINSUM, [torch.randn(s) for s in shapes], {"equation": equation})
    ours_in = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    theirs_in = [t.detach().clone().requires_grad_() for t in ours_in]
    ours, theirs = compiled(*ours_in, equation=equation), torch.einsum(equation, *theirs_in)
    torch.testing.assert_close(ours, theirs)
    upstream = torch.randn_like(theirs)
    first = torch.autograd.grad(ours, ours_in, upstream, create_graph=True)
    expected = torch.autograd.grad(theirs, theirs_in, upstream, create_graph=True)
    for got, want in zip(first, expected):
        torch.testing.assert_close(got, want)
    weights = [torch.randn_like(g) for g in expected]
    second = _grad_of(first, ours_in, weights)
    second_expected = _grad_of(expected, theirs_in, weights)
    for got, want, like in zip(second, second_expected, ours_in):
        torch.testing.assert_close(torch.zeros_like(like) if got is None else got,
                                   torch.zeros_like(like) if want is None else want)


def _grad_of(outputs, inputs, weights):
    """d(Σ weights·outputs)/d inputs, over the outputs that depend on the inputs at all (a lone operand's
    gradient is a constant)."""
    pairs = [(o, w) for o, w in zip(outputs, weights) if o.requires_grad]
    if not pairs:
        return [None] * len(inputs)
    return torch.autograd.grad([o for o, _ in pairs], inputs, [w for _, w in pairs], allow_unused=True)


@pytest.mark.parametrize("equation, why", [
    ("i->ii", "repeats a letter"), ("i->j", "which no operand has"), ("i1->i", "letters a-z"),
    ("i....->i", "letters a-z"), ("...i...->i", "letters a-z"),
])
def test_equations_einsum_cannot_take_are_refused_with_the_reason(equation, why):
    with pytest.raises(ValueError, match=why):
        parse_equation(equation, 1)
