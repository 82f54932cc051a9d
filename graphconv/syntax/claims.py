"""Conditions on sizes — what an op requires of its inputs (``i_h + 2 * padding >= kernel_h``): decided from the
normal form where it can be (for every size), else checked on concrete values, and written as spec expressions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from graphconv.syntax import symbolic
from graphconv.syntax.symbolic import Dim, Floor, Namer, Symbol, Undecided, value

KINDS = ("==", ">=", "divides", "broadcast", "expands")


@dataclass(frozen=True)
class Claim:
    """``left == right``, ``left >= right``, ``left % right == 0`` (divides), ``left == right or either is 1``
    (broadcast), ``left == right or left is 1`` (expands: a size broadcast to a target)."""

    kind: str
    left: Any  # int | Dim
    right: Any

    def decide(self) -> bool | None:
        """True or False when it holds or fails for every value of the symbols; None when that depends on them."""
        try:
            return self.test(_same)
        except Undecided:
            return None

    def holds(self, env: Mapping[str, int]) -> bool:
        """Whether it holds with the symbols' values from ``env``."""
        return self.test(lambda x: value(x, env))

    def test(self, at: Any) -> bool:
        left, right = at(self.left), at(self.right)
        if self.kind == "==":
            return left == right
        if self.kind == ">=":
            return left >= right
        if self.kind == "divides":
            return right != 0 and symbolic.modulo(left, right) == 0
        if self.kind == "broadcast":
            return _one(left) or _one(right) or left == right
        return _one(left) or left == right

    def assume(self) -> None:
        """Take it as known when later signs are decided (inside ``symbolic.assuming``)."""
        if self.kind in (">=", "=="):
            symbolic.assume_at_least(self.left, self.right)
        if self.kind == "==":
            symbolic.assume_at_least(self.right, self.left)

    def show(self, namer: Namer | None = None) -> str:
        """The condition as a spec expression, each side written with the spec's names (concrete values as they
        are: ``12 == 10``)."""
        namer = namer or Namer()
        left, right = namer.show(self.left), namer.show(self.right)
        if self.kind == "divides":
            return f"{_operand(namer, self.left)} % {_operand(namer, self.right)} == 0"
        if self.kind == "broadcast":
            return f"{left} == {right} (or either is 1)"
        if self.kind == "expands":
            return f"{left} == {right} (or {left} is 1)"
        difference = symbolic.add(self.left, symbolic.negate(self.right))
        if not isinstance(difference, Dim):
            return f"{left} {self.kind} {right}"
        if self.kind == "==":
            difference = _without_common_factors(difference, namer)
            divisible = _divisibility(difference)
            if divisible is not None:
                return divisible.show(namer)
            product = _common_factor(difference)
            if product is not None:
                return f"{_operand(namer, product[0])} * {_operand(namer, product[1])} == 0"
        high, low = _sides(difference)
        if self.kind == "==" and not isinstance(high, Dim):
            high, low = low, high  # the sizes first: w[0] == 6
        return f"{namer.show(high)} {self.kind} {namer.show(low)}"

    def show_values(self, env: Mapping[str, int]) -> str:
        """The condition with the values of its sides: ``10 >= 3``, ``35 % 6 == 0``, ``3 == 4 (or either is 1)``."""
        left, right = value(self.left, env), value(self.right, env)
        return Claim(self.kind, left, right).show()


def _same(x: Any) -> Any:
    return x


def _one(x: Any) -> bool:
    return symbolic.is_constant(x, 1) if isinstance(x, Dim) else x == 1


def _operand(namer: Namer, x: Any) -> str:
    text = namer.show(x)
    return text if text.isidentifier() or text.lstrip("-").isdigit() else f"({text})"


def _without_common_factors(x: Dim, namer: Namer) -> Any:
    """``x == 0`` said of what is left once the sizes every term shares cancel: input dims (``b * c * x - b * c * y``
    → ``x - y``) and the spec's named products (``patches``). The condition shown is then the one that matters
    (strictly, the original also holds when a cancelled size is 0)."""
    monos = [dict(mono) for mono, _ in x.terms]
    shared = {a: min(m.get(a, 0) for m in monos) for a in monos[0] if isinstance(a, Symbol) and a.nonnegative}
    common = tuple(sorted(((a, p) for a, p in shared.items() if p), key=lambda item: item[0].key))
    if common:
        x = symbolic.exact_quotient(x, symbolic.make({common: 1}))
    for _, factor in namer.factors:
        quotient = symbolic.exact_quotient(x, factor) if isinstance(x, Dim) else None
        if quotient is not None and not symbolic.is_constant(quotient, 0):
            x = quotient
    return x


def _common_factor(x: Any) -> tuple[Any, Any] | None:
    """``x`` as ``factor * rest`` when every term shares atoms (``f * f + i * f`` → ``f * (f + i)``)."""
    if not isinstance(x, Dim) or len(x.terms) < 2:
        return None
    monos = [dict(mono) for mono, _ in x.terms]
    shared = tuple(sorted(((a, min(m.get(a, 0) for m in monos)) for a in monos[0] if all(a in m for m in monos)),
                          key=lambda item: item[0].key))
    if not shared:
        return None
    factor = symbolic.make({shared: 1})
    rest = symbolic.exact_quotient(x, factor)
    negative = all(c < 0 for _, c in symbolic.terms_of(rest).items())
    return factor, symbolic.negate(rest) if negative else rest  # (== 0 either way)


def _divisibility(x: Any) -> Claim | None:
    """``num % den == 0`` when ``x`` is a multiple of ``num - den * (num // den)`` (so ``x == 0`` once it is 0)."""
    if not isinstance(x, Dim):
        return None
    for mono, _ in x.terms:
        for item, _ in mono:
            if isinstance(item, Floor):
                remainder = symbolic.add(item.num, symbolic.negate(symbolic.multiply(item.den, symbolic.atom(item))))
                if symbolic.exact_quotient(x, remainder) is not None:
                    return Claim("divides", item.num, item.den)
    return None


def _sides(x: Any) -> tuple[Any, Any]:
    """``x`` as ``high - low`` with the positive terms in ``high`` and the negated negative ones in ``low``."""
    terms = symbolic.terms_of(x)
    high = symbolic.make({m: c for m, c in terms.items() if c > 0})
    low = symbolic.make({m: -c for m, c in terms.items() if c < 0})
    return high, low


def equal(a: Any, b: Any) -> Claim:
    return Claim("==", a, b)


def at_least(a: Any, b: Any) -> Claim:
    return Claim(">=", a, b)


def divides(divisor: Any, x: Any) -> Claim:
    """``x % divisor == 0`` (and ``divisor != 0``)."""
    return Claim("divides", x, divisor)


def broadcastable(a: Any, b: Any) -> Claim:
    return Claim("broadcast", a, b)


def expandable(size: Any, target: Any) -> Claim:
    return Claim("expands", size, target)
