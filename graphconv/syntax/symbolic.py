"""Symbolic integers: the spec language's integer arithmetic over named sizes, in a normal form that decides
equality for every value of the names.

A :class:`Dim` is a polynomial with integer coefficients over *atoms*: symbols (``b``, ``stride``), floor divisions
``num // den`` whose operands are themselves normal forms, and the calls ``min``, ``max``, ``abs`` (and
``broadcast``, torch's rule for two sizes). Arithmetic on Dims and ints gives a Dim — or a plain int when the
result is constant, so a rule written for ints runs unchanged on Dims. The normal form is canonical for
polynomials, and floor divisions are normalised so that the usual ways of writing one window count meet:

- ``(c·q + r) // c`` with a constant ``c > 0``: the part of the numerator that is a multiple of ``c`` comes out,
  ``q + r // c`` with every coefficient of ``r`` in ``[0, c)`` (exact for integers: ``c·q / c`` is an integer), then
  ``r`` and ``c`` are divided by their common factor; ``(2·p) // 2`` is ``p``, ``(i - 1) // 2`` is
  ``(i + 1) // 2 - 1`` — one form whichever way a spec wrote it;
- ``(d·q + r) // d`` for a monomial ``d``: ``q + r // d`` likewise; an exact polynomial quotient is that quotient;
- ``a % b`` is ``a - b * (a // b)`` (Python's floor semantics, which torch's sizes follow).

So two expressions with the same normal form are equal for *all* values of their symbols: that is a proof. Two
different normal forms may still be equal (``(i + 1) // 2 * 2`` against ``i + i % 2``): the normaliser is sound,
not complete, and callers then check concrete values instead. Questions the normal form cannot settle —
``b == 1`` for a symbolic ``b``, ``int(b)`` — raise :class:`Undecided`, naming the symbols involved.

Signs: a symbol made with ``nonnegative=True`` (an input dim: a size) is known to be ``>= 0``; then a polynomial
whose terms are all products of such atoms with coefficients ``>= 0`` is ``>=`` its constant term — enough to
settle ``i_h + 2 >= 0`` or ``b * patches != -1`` without asking for values.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

class Undecided(Exception):
    """A question about symbolic integers that needs values: ``symbols`` names the ones it depends on."""

    def __init__(self, question: str, symbols: Iterable[str] = ()) -> None:
        super().__init__(question)
        self.symbols = frozenset(symbols)


# --- atoms ------------------------------------------------------------------------------------------------------


class _Atom:
    """Atoms are equal when their keys are (a key spells out the normal forms inside: comparing the Dims themselves
    would ask questions, see Dim.__eq__)."""

    key: str

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Atom) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True, eq=False)
class Symbol(_Atom):
    """A named integer. ``nonnegative``: a size (an input dim), known to be ``>= 0``."""

    name: str
    nonnegative: bool = False
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"s{self.name}")

    def value(self, env: Mapping[str, int]) -> int:
        return env[self.name]

    def symbols(self) -> set[str]:
        return {self.name}

    def lower_bound(self) -> int | None:
        return 0 if self.nonnegative else None

    def show(self, namer: "Namer") -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Floor(_Atom):
    """``num // den``, with Python's floor semantics (``den`` is not a constant 0)."""

    num: Any  # int | Dim
    den: Any
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"f({_key(self.num)})({_key(self.den)})")

    def value(self, env: Mapping[str, int]) -> int:
        den = value(self.den, env)
        if den == 0:
            raise ZeroDivisionError(f"division by zero in {self.show(Namer())}")
        return value(self.num, env) // den

    def symbols(self) -> set[str]:
        return symbols_of(self.num) | symbols_of(self.den)

    def lower_bound(self) -> int | None:
        num, den = lower_bound(self.num), lower_bound(self.den)
        if not isinstance(self.den, Dim) and self.den > 0:
            return None if num is None else num // self.den
        return 0 if num is not None and num >= 0 and den is not None and den >= 0 else None  # (den is not 0)

    def show(self, namer: "Namer") -> str:
        num, den = namer.show(self.num), namer.show(self.den)
        if isinstance(self.num, Dim) and len(self.num.terms) > 1:
            num = f"({num})"
        if isinstance(self.den, Dim) and (len(self.den.terms) > 1 or not _is_single_atom(self.den)):
            den = f"({den})"
        return f"{num} // {den}"


CALLS: dict[str, Callable[..., int]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "broadcast": lambda a, b: b if a == 1 else a,  # torch's size of two broadcast sizes (once they agree)
}


@dataclass(frozen=True, eq=False)
class Apply(_Atom):
    """``min(a, b, …)``, ``max(…)``, ``abs(a)`` or ``broadcast(a, b)`` where the operands do not settle it."""

    name: str
    args: tuple
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"a{self.name}({','.join(_key(a) for a in self.args)})")

    def value(self, env: Mapping[str, int]) -> int:
        return CALLS[self.name](*(value(a, env) for a in self.args))

    def symbols(self) -> set[str]:
        return set().union(*(symbols_of(a) for a in self.args))

    def lower_bound(self) -> int | None:
        bounds = [lower_bound(a) for a in self.args]
        known = [b for b in bounds if b is not None]
        if self.name == "abs":
            return 0
        if self.name == "max":
            return max(known) if known else None
        return min(bounds) if len(known) == len(bounds) else None  # min, broadcast (of sizes that agree)

    def show(self, namer: "Namer") -> str:
        return f"{self.name}({', '.join(namer.show(a) for a in self.args)})"


Atom = Symbol | Floor | Apply
Monomial = tuple  # ((atom, power), ...) sorted by atom key; () is the constant monomial


def _at_least(x: Any, least: int) -> bool:
    bound = lower_bound(x)
    return bound is not None and bound >= least


def _key(x: Any) -> str:
    return x.key if isinstance(x, Dim) else str(x)


def _is_single_atom(x: Dim) -> bool:
    if len(x.terms) != 1:
        return False
    (mono, coefficient), = x.terms
    return coefficient == 1 and len(mono) == 1 and mono[0][1] == 1


def _is_symbol(x: Dim) -> bool:
    return _is_single_atom(x) and isinstance(x.terms[0][0][0][0], Symbol)


def _mono_key(mono: Monomial) -> str:
    return "*".join(f"{atom.key}^{power}" for atom, power in mono)


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    powers: dict = {}
    for atom, power in a + b:
        powers[atom] = powers.get(atom, 0) + power
    return tuple(sorted(powers.items(), key=lambda item: item[0].key))


def _mono_div(a: Monomial, b: Monomial) -> Monomial | None:
    """``a / b`` when ``b`` divides ``a``; else None."""
    powers = dict(a)
    for atom, power in b:
        if powers.get(atom, 0) < power:
            return None
        powers[atom] -= power
    return tuple(sorted(((k, v) for k, v in powers.items() if v), key=lambda item: item[0].key))


def _mono_order(mono: Monomial) -> tuple:
    """A monomial order (graded, then by exponents in atom order): what polynomial division and display sort by."""
    return (sum(p for _, p in mono), tuple((atom.key, -power) for atom, power in mono))


# --- Dim --------------------------------------------------------------------------------------------------------


class Dim:
    """A non-constant symbolic integer in normal form (constants are plain ints). Immutable."""

    __slots__ = ("terms", "key")

    def __init__(self, terms: Mapping[Monomial, int]) -> None:
        """Use :func:`make` (which gives an int for a constant); ``terms`` maps monomials to coefficients."""
        items = sorted(((m, c) for m, c in terms.items() if c), key=lambda item: _mono_key(item[0]))
        self.terms: tuple[tuple[Monomial, int], ...] = tuple(items)
        self.key = "+".join(f"{c}:{_mono_key(m)}" for m, c in items)

    # arithmetic
    def __add__(self, other: Any) -> Any:
        return add(self, other) if _is_scalar(other) else NotImplemented

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        return add(self, negate(other)) if _is_scalar(other) else NotImplemented

    def __rsub__(self, other: Any) -> Any:
        return add(other, negate(self)) if _is_scalar(other) else NotImplemented

    def __neg__(self) -> Any:
        return negate(self)

    def __pos__(self) -> Dim:
        return self

    def __mul__(self, other: Any) -> Any:
        return multiply(self, other) if _is_scalar(other) else NotImplemented

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> Any:
        return floor_divide(self, other) if _is_scalar(other) else NotImplemented

    def __rfloordiv__(self, other: Any) -> Any:
        return floor_divide(other, self) if _is_scalar(other) else NotImplemented

    def __mod__(self, other: Any) -> Any:
        return modulo(self, other) if _is_scalar(other) else NotImplemented

    def __rmod__(self, other: Any) -> Any:
        return modulo(other, self) if _is_scalar(other) else NotImplemented

    def __pow__(self, exponent: Any) -> Any:
        if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 0:
            raise Undecided(f"{self} ** {exponent} is not an integer polynomial", self.symbols())
        result: Any = 1
        for _ in range(exponent):
            result = multiply(result, self)
        return result

    # questions: answered when the normal form settles them, else Undecided
    def __eq__(self, other: Any) -> bool:
        if not _is_scalar(other):
            return NotImplemented  # a size is never a string, None or a tuple
        return is_zero(self - other, f"{self} == {other}")

    def __ne__(self, other: Any) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __ge__(self, other: Any) -> bool:
        return _decide_at_least(self - other, 0, f"{self} >= {other}")

    def __gt__(self, other: Any) -> bool:
        return _decide_at_least(self - other, 1, f"{self} > {other}")

    def __le__(self, other: Any) -> bool:
        return _decide_at_least(other - self, 0, f"{self} <= {other}")

    def __lt__(self, other: Any) -> bool:
        return _decide_at_least(other - self, 1, f"{self} < {other}")

    def __bool__(self) -> bool:
        return not is_zero(self, f"{self} != 0")

    def __index__(self) -> int:
        raise Undecided(f"{self} is not a number until its symbols have values", self.symbols())

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Dim({Namer().show(self)})"

    def __str__(self) -> str:
        return Namer().show(self)

    def symbols(self) -> set[str]:
        found: set[str] = set()
        for mono, _ in self.terms:
            for atom, _ in mono:
                found |= atom.symbols()
        return found

    def value(self, env: Mapping[str, int]) -> int:
        total = 0
        for mono, coefficient in self.terms:
            term = coefficient
            for atom, power in mono:
                term *= atom.value(env) ** power
            total += term
        return total


def _is_scalar(x: Any) -> bool:
    return isinstance(x, Dim) or (isinstance(x, int) and not isinstance(x, bool))


def is_constant(x: Any, c: int) -> bool:
    """Whether ``x`` is the constant ``c`` (asks no question of a Dim: a Dim is never constant)."""
    return not isinstance(x, Dim) and x == c


MAX_TERMS = 256  # a normal form with more terms is not made (``(a + b + c + d) ** 60`` would take hours)


def make(terms: Mapping[Monomial, int]) -> int | Dim:
    """The normal form of a polynomial: a plain int when it is constant. Raises Undecided past MAX_TERMS terms."""
    nonzero = {m: c for m, c in terms.items() if c}
    if len(nonzero) > MAX_TERMS:
        raise Undecided(f"a polynomial of more than {MAX_TERMS} terms", {a.name for m in nonzero for a, _ in m
                                                                           if isinstance(a, Symbol)})
    if not nonzero:
        return 0
    if list(nonzero) == [()]:
        return nonzero[()]
    return Dim(nonzero)


def atom(item: Atom) -> Dim:
    return Dim({((item, 1),): 1})


def symbol(name: str, nonnegative: bool = False) -> Dim:
    """A fresh symbolic integer named ``name`` (``nonnegative``: a size)."""
    return atom(Symbol(name, nonnegative))


def terms_of(x: int | Dim) -> dict[Monomial, int]:
    if isinstance(x, Dim):
        return dict(x.terms)
    return {(): x} if x else {}


def add(a: int | Dim, b: int | Dim) -> int | Dim:
    if not isinstance(a, Dim) and not isinstance(b, Dim):
        return a + b
    terms = terms_of(a)
    for mono, coefficient in terms_of(b).items():
        terms[mono] = terms.get(mono, 0) + coefficient
    return make(terms)


def negate(a: int | Dim) -> int | Dim:
    return make({m: -c for m, c in terms_of(a).items()})


def multiply(a: int | Dim, b: int | Dim) -> int | Dim:
    if not isinstance(a, Dim) and not isinstance(b, Dim):
        return a * b
    terms: dict[Monomial, int] = {}
    for ma, ca in terms_of(a).items():
        for mb, cb in terms_of(b).items():
            mono = _mono_mul(ma, mb)
            terms[mono] = terms.get(mono, 0) + ca * cb
    return make(terms)


def floor_divide(a: int | Dim, b: int | Dim) -> int | Dim:
    """``a // b`` in normal form (see the module's docstring). Raises ZeroDivisionError for a constant 0."""
    if not isinstance(b, Dim):
        if b == 0:
            raise ZeroDivisionError(f"division by zero: {a} // 0")
        if not isinstance(a, Dim):
            return a // b
        if b < 0:
            a, b = negate(a), -b
        return _floor_by_constant(a, b)
    if is_constant(a, 0):
        return 0
    quotient = exact_quotient(a, b)
    if quotient is not None:
        return quotient
    return _floor_by_dim(a, b)


def _floor_by_constant(a: Dim, c: int) -> int | Dim:
    whole, rest = {}, {}
    for mono, coefficient in a.terms:
        whole[mono], rest[mono] = divmod(coefficient, c)
    remainder = make(rest)
    if not isinstance(remainder, Dim):
        return make(whole)  # 0 <= remainder < c
    common = math.gcd(c, *(coefficient for _, coefficient in remainder.terms))
    reduced = make({m: k // common for m, k in remainder.terms})
    return add(make(whole), _floor_atom(reduced, c // common))


def _floor_by_dim(a: int | Dim, b: Dim) -> int | Dim:
    """Pull the terms of ``a`` that are multiples of a monomial ``b`` out of the floor."""
    if len(b.terms) != 1:
        return _floor_atom(a, b)
    (mono_b, coefficient_b), = b.terms
    whole, rest = {}, {}
    for mono, coefficient in terms_of(a).items():
        divided = _mono_div(mono, mono_b)
        if divided is not None and coefficient % coefficient_b == 0:
            whole[divided] = whole.get(divided, 0) + coefficient // coefficient_b
        else:
            rest[mono] = coefficient
    remainder = make(rest)
    return make(whole) if is_constant(remainder, 0) else add(make(whole), _floor_atom(remainder, b))


def _floor_atom(num: int | Dim, den: int | Dim) -> Dim:
    return atom(Floor(num, den))


def modulo(a: int | Dim, b: int | Dim) -> int | Dim:
    """``a % b`` with Python's semantics: ``a - b * (a // b)``."""
    if not isinstance(a, Dim) and not isinstance(b, Dim):
        if b == 0:
            raise ZeroDivisionError(f"division by zero: {a} % 0")
        return a % b
    return add(a, negate(multiply(b, floor_divide(a, b))))


def exact_quotient(a: int | Dim, b: int | Dim) -> int | Dim | None:
    """``q`` with ``q * b == a`` as polynomials, when there is one (polynomial long division by a monomial order:
    over the integers it finds a quotient whenever one exists); else None."""
    if is_constant(b, 0):
        return None
    quotient: dict[Monomial, int] = {}
    rest = terms_of(a)
    lead_b = max(terms_of(b).items(), key=lambda item: _mono_order(item[0]))
    while rest:
        lead_mono, lead_coefficient = max(rest.items(), key=lambda item: _mono_order(item[0]))
        mono = _mono_div(lead_mono, lead_b[0])
        if mono is None or lead_coefficient % lead_b[1]:
            return None
        step = lead_coefficient // lead_b[1]
        quotient[mono] = quotient.get(mono, 0) + step
        for mb, cb in terms_of(b).items():
            product = _mono_mul(mono, mb)
            rest[product] = rest.get(product, 0) - step * cb
            if not rest[product]:
                del rest[product]
    return make(quotient)


def call(name: str, *args: int | Dim) -> int | Dim:
    """``min``, ``max``, ``abs`` or ``broadcast`` of symbolic integers, settled where the normal form can."""
    if not any(isinstance(a, Dim) for a in args):
        return CALLS[name](*args)
    if name == "abs":
        (x,) = args
        if _at_least(x, 0):
            return x
        if _at_least(negate(x), 0):
            return negate(x)
    elif name in ("min", "max"):
        return _min_max(name, args)
    elif name == "broadcast":
        a, b = args
        if is_constant(a, 1):
            return b
        if is_constant(b, 1) or is_constant(add(a, negate(b)), 0):
            return a
    return atom(Apply(name, tuple(args)))


def _min_max(name: str, args: tuple) -> int | Dim:
    """Drop every operand that another one settles (``min(a, a + 1)`` is ``a``); one left is the result."""
    kept: list = []
    for arg in args:
        if any(_settled(name, other, arg) for other in kept):
            continue
        kept = [other for other in kept if not _settled(name, arg, other)] + [arg]
    if len(kept) == 1:
        return kept[0]
    return atom(Apply(name, tuple(sorted(kept, key=_key))))


def _settled(name: str, winner: Any, loser: Any) -> bool:
    """Whether ``winner`` is never worse than ``loser`` for ``min`` (<=) or ``max`` (>=)."""
    return _at_least(add(loser, negate(winner)) if name == "min" else add(winner, negate(loser)), 0)


# --- signs and questions ------------------------------------------------------------------------------------------


_facts: ContextVar[dict[str, int] | None] = ContextVar("graphconv_symbolic_facts", default=None)


@contextmanager
def assuming() -> Iterator[None]:
    """Within the block, what :func:`assume_at_least` is told is taken as known when signs are decided — the
    conditions that ops earlier in a graph require (a later op only runs where they hold)."""
    token = _facts.set({})
    try:
        yield
    finally:
        _facts.reset(token)


def assume_at_least(x: int | Dim, least: int | Dim) -> None:
    """Take ``x >= least`` as known inside :func:`assuming` (elsewhere: nothing)."""
    facts = _facts.get()
    if facts is None:
        return
    difference = add(x, negate(least))
    if not isinstance(difference, Dim):
        return
    variable, constant = _split_constant(difference)
    facts[variable.key] = max(facts.get(variable.key, -constant), -constant)


def _split_constant(x: Dim) -> tuple[Dim, int]:
    terms = dict(x.terms)
    constant = terms.pop((), 0)
    return Dim(terms), constant


def lower_bound(x: int | Dim) -> int | None:
    """A constant the value is always ``>=``, or None: from the terms (each a product of atoms with known lower
    bounds ``>= 0``, with a coefficient ``>= 0``) and from what is assumed (:func:`assuming`)."""
    if not isinstance(x, Dim):
        return x
    variable, constant = _split_constant(x)
    facts = _facts.get() or {}
    bounds = [b for b in (facts.get(variable.key), _terms_bound(variable)) if b is not None]
    return constant + max(bounds) if bounds else None


def _terms_bound(x: Dim) -> int | None:
    total = 0
    for mono, coefficient in x.terms:
        bound = _monomial_bound(mono)
        if coefficient < 0 or bound is None:
            return None
        total += coefficient * bound
    return total


def _monomial_bound(mono: Monomial) -> int | None:
    product = 1
    for item, power in mono:
        bound = _atom_bound(item)
        if bound is None or bound < 0:
            if power % 2:
                return None
            bound = 0  # an even power of anything
        product *= bound ** power
    return product


def _atom_bound(item: Atom) -> int | None:
    known = (_facts.get() or {}).get(f"1:{item.key}^1")  # the key of the Dim that is this atom alone
    own = item.lower_bound()
    bounds = [b for b in (known, own) if b is not None]
    return max(bounds) if bounds else None


def is_zero(x: int | Dim, question: str, *, default: bool | None = None) -> bool:
    """Whether ``x == 0``: True for the normal form 0, False where a sign settles it; else ``default``, or
    Undecided when there is none."""
    if not isinstance(x, Dim):
        return x == 0
    for sign in (x, negate(x)):
        bound = lower_bound(sign)
        if bound is not None and bound >= 1:
            return False
    if default is not None:
        return default
    raise Undecided(question, x.symbols())


def _decide_at_least(x: int | Dim, least: int, question: str) -> bool:
    """Whether ``x >= least``, where the normal form settles it; else Undecided."""
    if not isinstance(x, Dim):
        return x >= least
    bound = lower_bound(x)
    if bound is not None and bound >= least:
        return True
    upper = lower_bound(negate(x))
    if upper is not None and -upper < least:
        return False
    raise Undecided(question, x.symbols())


def value(x: int | Dim, env: Mapping[str, int]) -> int:
    """The concrete value of ``x`` with its symbols' values from ``env``."""
    return x.value(env) if isinstance(x, Dim) else x


def symbols_of(x: Any) -> set[str]:
    """The symbols a value (a symbolic integer, or a tuple of them) depends on."""
    if isinstance(x, Dim):
        return x.symbols()
    if isinstance(x, tuple):
        return set().union(*(symbols_of(item) for item in x))
    return set()


def has_symbols(x: Any) -> bool:
    return isinstance(x, Dim) or (isinstance(x, tuple) and any(has_symbols(item) for item in x))


# --- display -------------------------------------------------------------------------------------------------------


class Namer:
    """Writes symbolic integers as spec expressions, calling a value by a name the spec gave it where one has that
    normal form (``o_h * o_w`` shows as ``patches``, ``b * o_h * o_w`` as ``b * patches``)."""

    def __init__(self, named: Mapping[str, Any] | None = None, order: Iterable[str] = ()) -> None:
        """``named``: the spec's names for values; ``order``: symbols in the order terms should be written."""
        self.rank = {name: index for index, name in enumerate(order)}
        self.names: dict[str, str] = {}
        self.factors: list[tuple[str, Dim]] = []
        for name, x in (named or {}).items():
            if not isinstance(x, Dim) or x.key in self.names or _is_symbol(x):  # a symbol keeps its own name
                continue
            self.names[x.key] = name
            if len(x.terms) > 1 or not _is_single_atom(x):
                self.factors.append((name, x))
        self.factors.sort(key=lambda item: -len(item[1].terms))  # the biggest first

    def show(self, x: Any) -> str:
        if isinstance(x, tuple):
            return "[" + ", ".join(self.show(item) for item in x) + "]"
        if not isinstance(x, Dim):
            return str(x)
        if x.key in self.names:
            return self.names[x.key]
        for name, factor in self.factors:
            quotient = exact_quotient(x, factor)
            if quotient is not None and _simpler(quotient, x):
                if is_constant(quotient, 1):
                    return name
                return f"{_parenthesized(quotient, self.show(quotient))} * {name}"
        return self._polynomial(x)

    def _polynomial(self, x: Dim) -> str:
        """Terms by degree, the positive ones first, symbols before floor divisions and calls in a product."""
        ordered = sorted(x.terms, key=lambda item: (item[1] < 0, -_mono_order(item[0])[0], self._place(item[0])))
        text = ""
        for mono, coefficient in ordered:
            mono = sorted(mono, key=lambda item: self._place(((item[0], 1),)))
            factors = [self._factor(item, power, len(mono) > 1 or abs(coefficient) != 1) for item, power in mono]
            magnitude = abs(coefficient)
            if magnitude != 1 or not factors:
                factors.insert(0, str(magnitude))
            term = " * ".join(factors)
            if not text:
                text = term if coefficient > 0 else f"-{term}"
            else:
                text += f" + {term}" if coefficient > 0 else f" - {term}"
        return text

    def _place(self, mono: Monomial) -> tuple:
        """Where a monomial goes: by its symbols' places in ``order`` (then by name); floors and calls last."""
        return tuple((0, self.rank.get(a.name, len(self.rank)), a.name) if isinstance(a, Symbol) else (1, 0, a.key)
                     for a, _ in mono)

    def _factor(self, item: Atom, power: int, in_product: bool) -> str:
        text = item.show(self)
        if isinstance(item, Floor) and (in_product or power > 1):
            text = f"({text})"
        return text if power == 1 else f"{text} ** {power}"


def _simpler(quotient: Any, x: Dim) -> bool:
    return not isinstance(quotient, Dim) or len(quotient.terms) < len(x.terms) or len(x.terms) == 1


def _parenthesized(x: Any, text: str) -> str:
    return f"({text})" if isinstance(x, Dim) and len(x.terms) > 1 else text
