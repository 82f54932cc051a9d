"""Einstein summation: ``einsum(equation='bhld,bhsd->bhls')`` over any number of operands.

The VJP for one operand is another einsum: the output gradient contracted with the other operands onto that
operand's subscripts. A letter only that operand carries (summed away in the forward) comes back by broadcasting;
``...`` dims are summed back to the operand's own (broadcast) sizes. A letter repeated within one operand (a
diagonal) is not supported.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, broadcast_shapes, broadcastable, require
from graphconv.syntax import symbolic

ELLIPSIS = "..."


def parse_equation(equation: str, count: int) -> tuple[list[str], str]:
    """The operands' subscripts and the output's (torch's implicit output when ``->`` is left out: the letters
    that appear once, sorted, after ``...``)."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != count:
        raise ValueError(f"einsum: the equation {equation!r} has {len(terms)} operand(s), got {count} tensor(s)")
    for term in terms:
        letters = term.replace(ELLIPSIS, "")
        if len(set(letters)) != len(letters):
            raise ValueError(f"einsum: {term!r} repeats a letter (a diagonal), which is not supported")
    if not arrow:
        letters = "".join(terms).replace(ELLIPSIS, "")
        output = (ELLIPSIS if ELLIPSIS in inputs else "") + "".join(sorted(c for c in set(letters)
                                                                          if letters.count(c) == 1))
    return terms, output


@library_op(save=("operands",), lower_precision=True)
def einsum(*operands, equation):
    """``torch.einsum(equation, *operands)``: ``einsum(equation='ij,jk->ik')`` is a matrix product."""
    parse_equation(equation, len(operands))
    return torch.einsum(equation, *operands)


@einsum.vjp
def _(ctx, grad):
    terms, output = parse_equation(ctx.equation, len(ctx.operands))
    return tuple(_operand_grad(ctx, grad, terms, output, i) if ctx.needs[i] else None for i in range(len(terms)))


def _operand_grad(ctx, grad, terms, output, index):
    """The gradient of operand ``index``: grad ⊗ the other operands, onto its subscripts."""
    others = [(term, tensor) for i, (term, tensor) in enumerate(zip(terms, ctx.operands)) if i != index]
    term = terms[index]
    elsewhere = set(output).union(*(set(t) for t, _ in others))
    kept = "".join(c for c in term.replace(ELLIPSIS, "\0") if c == "\0" or c in elsewhere).replace("\0", ELLIPSIS)
    equation = ",".join([output] + [t for t, _ in others]) + "->" + kept
    partial = torch.einsum(equation, grad, *(tensor for _, tensor in others))
    if kept != term:  # letters summed within this operand alone: broadcast back over them
        if ELLIPSIS in term:
            raise ValueError(f"einsum VJP: {term!r} sums a letter of its own next to '...', which is not supported")
        for axis, letter in enumerate(term):
            if letter not in kept:
                partial = partial.unsqueeze(axis)
        partial = partial.expand(ctx.shapes[index])
    return sum_to(partial, ctx.shapes[index])


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
        for letter, size in zip(letters, tuple(shape[:before]) + tuple(shape[before + spread:])):
            if letter in sizes:
                require(broadcastable(sizes[letter], size), f"einsum: the sizes of {letter!r} must broadcast")
                size = symbolic.call("broadcast", sizes[letter], size)
            sizes[letter] = size
    unknown = set(output.replace(ELLIPSIS, "")) - set(sizes)
    if unknown:
        raise ShapeRuleError(f"einsum: the output names {''.join(sorted(unknown))!r}, which no operand has")
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
