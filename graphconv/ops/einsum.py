"""Einstein summation: ``einsum(equation='bhld,bhsd->bhls')`` over any number of operands.

The VJP for one operand is one more einsum: the output gradient contracted with the other operands onto that
operand's subscripts. Two kinds of letter need a helper operand in it, because a gradient cannot be read off the
other operands for them:

- a letter only that operand carries (summed away in the forward) comes back as a vector of ones over it: the
  gradient is the same at every position along it (and so do the dims of its ``...`` when the output has none);
- a letter repeated within the operand (``'ii->i'``, a diagonal) is renamed at each further occurrence and tied to
  the first by an identity matrix: the gradient lands on the diagonal, zeros elsewhere.

``...`` dims are summed back to the operand's own (broadcast) sizes.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, broadcast_shapes, broadcastable, equal, require
from graphconv.syntax import symbolic

ELLIPSIS = "..."
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # what torch.einsum takes


def parse_equation(equation: str, count: int) -> tuple[list[str], str]:
    """The operands' subscripts and the output's (torch's implicit output when ``->`` is left out: the letters
    that appear once, sorted, after ``...``)."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != count:
        raise ValueError(f"einsum: the equation {equation!r} has {len(terms)} operand(s), got {count} tensor(s)")
    for term in terms + [output]:
        letters = term.replace(ELLIPSIS, "")
        if not all(c in LETTERS for c in letters) or term.count(ELLIPSIS) > 1 or "." in letters:
            raise ValueError(f"einsum: {term!r} is not a term of letters a-z, A-Z and at most one '...'")
    letters = "".join(terms).replace(ELLIPSIS, "")
    if not arrow:
        output = (ELLIPSIS if ELLIPSIS in inputs else "") + "".join(sorted(c for c in set(letters)
                                                                          if letters.count(c) == 1))
    named = output.replace(ELLIPSIS, "")
    if len(set(named)) != len(named):
        raise ValueError(f"einsum: the output {output!r} repeats a letter")
    if set(named) - set(letters):
        raise ValueError(f"einsum: the output names {''.join(sorted(set(named) - set(letters)))!r}, "
                         "which no operand has")
    return terms, output


@library_op(save=("operands",), lower_precision=True)
def einsum(*operands, equation):
    """``torch.einsum(equation, *operands)``: ``einsum(equation='ij,jk->ik')`` is a matrix product,
    ``einsum(equation='ii->i')`` a diagonal."""
    parse_equation(equation, len(operands))
    return torch.einsum(equation, *operands)


@einsum.vjp
def _(ctx, grad):
    terms, output = parse_equation(ctx.equation, len(ctx.operands))
    return tuple(_operand_grad(ctx, grad, terms, output, i) if ctx.needs[i] else None for i in range(len(terms)))


def _operand_grad(ctx, grad, terms, output, index):
    """The gradient of operand ``index``: grad ⊗ the other operands ⊗ ones over its own letters ⊗ identities tying
    its repeated letters, onto its subscripts (repeats renamed)."""
    others = [(term, tensor) for i, (term, tensor) in enumerate(zip(terms, ctx.operands)) if i != index]
    term, shape = terms[index], tuple(ctx.shapes[index])
    sizes = _letter_sizes(term, shape)
    elsewhere = set(output).union(*(set(t) for t, _ in others))
    fresh = iter(c for c in LETTERS if c not in ctx.equation)
    subscripts, helpers, seen = [], [], set()
    for letter in _subscripts(term):
        if letter == ELLIPSIS or letter not in seen:
            seen.add(letter)
            subscripts.append(letter)
            if letter != ELLIPSIS and letter not in elsewhere:
                helpers.append((letter, grad.new_ones(sizes[letter])))
            continue
        twin = next(fresh, None)
        if twin is None:
            raise ValueError(f"einsum VJP: no letter is left to name a repeat of {letter!r} in {term!r}")
        subscripts.append(twin)
        helpers.append((letter + twin, torch.eye(sizes[letter], dtype=grad.dtype, device=grad.device)))
    if ELLIPSIS in term and ELLIPSIS not in output:  # the dims '...' spans were summed away: ones over them
        head, _, tail = term.partition(ELLIPSIS)
        helpers.append((ELLIPSIS, grad.new_ones(shape[len(head):len(shape) - len(tail)])))
    operands = [(output, grad)] + others + helpers
    equation = ",".join(t for t, _ in operands) + "->" + "".join(subscripts)
    return _to_operand(torch.einsum(equation, *(tensor for _, tensor in operands)), term, shape)


def _to_operand(partial, term: str, shape: tuple):
    """An operand's gradient from its einsum: the ``...`` dims it lacks (other operands' ellipses are wider)
    summed away where the ellipsis sits, then every size-1 dim of the operand that was broadcast summed, and a
    letter 1 wide elsewhere but wider here spread along (the same gradient at each position)."""
    head, ellipsis, tail = term.partition(ELLIPSIS)
    extra = partial.dim() - len(shape)
    if ellipsis and extra > 0:
        partial = partial.sum(tuple(range(len(head), len(head) + extra)))
    return sum_to(partial.expand(torch.broadcast_shapes(partial.shape, shape)), shape)


def _subscripts(term: str) -> list[str]:
    """A term's subscripts, one item per letter and ``...`` as one."""
    head, ellipsis, tail = term.partition(ELLIPSIS)
    return list(head) + ([ELLIPSIS] if ellipsis else []) + list(tail)


def _letter_sizes(term: str, shape: tuple) -> dict:
    """Each letter's size in an operand of ``shape`` (the dims ``...`` spans are skipped)."""
    head, _, tail = term.partition(ELLIPSIS)
    sizes = dict(zip(head, shape[:len(head)]))
    sizes.update(zip(tail, shape[len(shape) - len(tail):]))
    return sizes


@einsum.shape_rule
def _(*operands, equation):
    try:
        terms, output = parse_equation(equation, len(operands))
    except ValueError as error:
        raise ShapeRuleError(str(error)) from None
    sizes, ellipses = {}, []
    for term, shape in zip(terms, operands):
        letters = term.replace(ELLIPSIS, "")
        if len(shape) < len(letters) or (ELLIPSIS not in term and len(shape) != len(letters)):
            raise ShapeRuleError(f"einsum: {term!r} does not fit an operand of {len(shape)} dims")
        before = term.index(ELLIPSIS) if ELLIPSIS in term else len(letters)
        spread = len(shape) - len(letters)
        ellipses.append(tuple(shape[before:before + spread]))
        own = {}
        for letter, size in zip(letters, tuple(shape[:before]) + tuple(shape[before + spread:])):
            if letter in own:
                require(equal(own[letter], size), f"einsum: {letter!r} is repeated in {term!r}: its sizes must match")
                continue
            own[letter] = size
            if letter in sizes:
                require(broadcastable(sizes[letter], size), f"einsum: the sizes of {letter!r} must broadcast")
                size = symbolic.call("broadcast", sizes[letter], size)
            sizes[letter] = size
    if ELLIPSIS not in output:
        return tuple(sizes[letter] for letter in output)
    head, tail = output.split(ELLIPSIS)
    return (tuple(sizes[letter] for letter in head) + tuple(broadcast_shapes(*ellipses))
            + tuple(sizes[letter] for letter in tail))


@einsum.samples
def _():
    yield (randn(3, 4), randn(4, 5)), {"equation": "ij,jk->ik"}
    yield (randn(2, 2, 3, 4), randn(2, 2, 5, 4)), {"equation": "bhld,bhsd->bhls"}
    yield (randn(3, 4), randn(4)), {"equation": "ij,j"}
    yield (randn(2, 3, 4), randn(4, 5)), {"equation": "...k,kn->...n"}
    yield (randn(3, 4), randn(5)), {"equation": "ij,k->ik"}
    yield (randn(3, 4), randn(3, 4), randn(3)), {"equation": "ij,ij,i->"}
    yield (randn(3, 3),), {"equation": "ii->i"}
    yield (randn(2, 3, 3, 4), randn(4)), {"equation": "...iij,j->...i"}
    yield (randn(2, 3, 2),), {"equation": "iji->j"}
    yield (randn(2, 4, 5),), {"equation": "...k->..."}
