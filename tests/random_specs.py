"""Random well-formed specs, as Mermaid text, for the oracle's property test (tests/test_oracle_random_specs.py).

A spec is a DAG of 3–30 registered primitives on small float64 tensors whose shapes the generator tracks: unary
and binary elementwise ops (with broadcasting), scalar ops, matmul and bmm, reductions, softmax, views and view
chains (reshape, view, flatten, squeeze, unsqueeze, permute, transpose, expand, slice, select), pad, cat, stack,
split (several outputs), the im2col convolution the passes fuse, and repeated applications the passes merge. It
has fan-out (a value read by 2–4 ops, or by both inputs of one op through two labelled edges), fan-in, op → op
edges with no tensor between them, several outputs (some listed in the front matter, one of them also read by
an op, or a graph input), long chains. Values are kept finite and away from the points where an op's derivative is not
defined (log and sqrt of positive values only, a denominator bounded away from 0, no max over ties) — except
``pow(exponent=0)``, whose derivative at 0 is 0 as in torch.

Names come from an adversarial pool: every identifier generated code uses (``r0``, ``g_x``, ``A``, ``Ctx``,
``_grads``, ``ctx``, ``self``, ``forward``…), builtins, dunders, keywords, unicode that Python normalises (``ﬁ``,
e + U+0301), names that differ only in case, names with spaces or punctuation. Dims and attrs are named from
the same pool (the names an expression can read), titles too.
"""
from __future__ import annotations

import json
import keyword
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from hypothesis import strategies as st

# Every identifier the generated code, the exported module or the VJP context uses, and names that trip Python.
NAMES = [
    "r0", "r1", "r2", "r10", "g_x", "g_r1", "q_x", "q_r0", "sh_x", "dt_x", "v_x", "v_class", "A", "K", "Ctx", "NODES",
    "_grads", "_bind", "saved", "meta", "needs", "shapes", "dtypes", "ctx", "self", "forward", "backward",
    "forward_nograd", "outputs", "inputs", "grads", "grad", "out", "torch", "op_add", "vjp_mul", "op_tanh",
    "once_differentiable", "annotations", "isinstance", "len", "tuple", "print", "range", "sum", "None", "True",
    "__init__", "__class__", "__builtins__", "__name__", "_", "__", "class", "def", "return", "lambda", "if", "import",
    "x", "X", "a", "B", "b", "y", "Y", "é", "e\u0301", "ﬁ", "fi", "Ω", "ℌ", "H", "x_1", "o1_out",
    "a b", "g x", "r 1", "1x", "x-y", "x.y",
]
# Dims and attrs: names an expression can read (ASCII identifiers, no keywords, no literals, no wildcard).
SYMBOLS = [n for n in NAMES if n.isidentifier() and n.isascii() and not keyword.iskeyword(n)
           and n not in ("None", "True", "_")]
TITLES = ["forward", "backward", "forward_nograd", 'has """ quotes', "my op", "class", "torch", "K", "ﬁ"]

MAX_ELEMENTS = 48
MAX_MAGNITUDE = 1e4
UNARY = ("neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu")
BINARY = ("add", "sub", "mul", "div")


@dataclass
class Value:
    """A tensor of the spec: its shape and what is known of its entries."""

    node: str  # its Mermaid node id (an op's id for an op's unnamed output)
    name: str | None
    shape: tuple[int, ...]
    high: float  # a bound on |entry|
    low: float | None = None  # a positive lower bound on every entry, when there is one
    ties: bool = False  # entries may repeat (relu, expand, pad…): no max over it
    contiguous: bool = True  # so that ``view`` works on it
    producer: int | None = None  # the application that makes it (None: a graph input)
    internal: bool = False  # inside a fused pattern: later ops do not read it
    readers: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Application:
    """One op node: its label and the values it reads (with the edge label, if any) and makes."""

    node: str
    label: str
    inputs: list[tuple[int, str | None]]
    outputs: list[int]


class Builder:
    """Draws a spec op by op, keeping every value's shape and bounds."""

    def __init__(self, rng: random.Random, front_matter: bool) -> None:
        self.rng = rng
        self.front_matter = front_matter
        self.values: list[Value] = []
        self.applications: list[Application] = []
        self.taken: set[str] = set()
        self.dims: dict[str, int] = {}  # input-pattern symbols and derived dims → size
        self.derived: dict[str, str] = {}  # derived dim → expression
        self.attrs: dict[str, Any] = {}
        self.patterns: dict[int, list[Any]] = {}  # input value → its shape pattern
        self.unnamed: set[int] = set()  # values drawn as op → op edges (when they can be)

    # --- drawing helpers ------------------------------------------------------------------------------------

    def pick(self, options: list) -> Any:
        return self.rng.choice(options)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def fresh_name(self) -> str:
        pool = [n for n in NAMES if n not in self.taken and n not in self.attrs]
        name = self.pick(pool) if pool and self.chance(0.8) else f"t{len(self.taken)}"
        self.taken.add(name)
        return name

    def fresh_symbol(self, attr: bool = False) -> str:
        """A name for a dim (which may also name a tensor) or an attr (which may not: attrs and inputs are both
        parameters of the compiled op)."""
        pool = [n for n in SYMBOLS if n not in self.dims and n not in self.attrs and not (attr and n in self.taken)]
        return self.pick(pool) if pool else f"{'s' if attr else 'd'}{len(self.dims) + len(self.attrs)}"

    def random_shape(self, min_rank: int = 0, max_rank: int = 3) -> tuple[int, ...]:
        while True:
            shape = tuple(self.integer(1, 4) for _ in range(self.integer(min_rank, max_rank)))
            if math.prod(shape) <= MAX_ELEMENTS:
                return shape

    # --- values ---------------------------------------------------------------------------------------------

    def new_input(self, shape: tuple[int, ...]) -> int:
        index = len(self.values)
        name = self.fresh_name()
        self.values.append(Value(f"t{index}", name, shape, high=4.0))
        if self.front_matter:
            self.patterns[index] = [self.pattern_entry(size) for size in shape]
        return index

    def pattern_entry(self, size: int) -> Any:
        """A symbol bound to ``size`` (reused or new), the literal size, or the wildcard."""
        same = [s for s, v in self.dims.items() if v == size and s not in self.derived]
        kind = self.pick(["reuse", "new", "literal", "wildcard"] if same else ["new", "literal", "wildcard"])
        if kind == "reuse":
            return self.pick(same)
        if kind == "new":
            symbol = self.fresh_symbol()
            self.dims[symbol] = size
            return symbol
        return size if kind == "literal" else "_"

    def size(self, size: int) -> str:
        """``size`` in a label: a literal, or a dim (or a product of two) that has that value."""
        named = [_ref(s) for s, v in self.dims.items() if v == size]
        if named and self.chance(0.4):
            return self.pick(named)
        products = [f"{_ref(s)} * {_ref(t)}" for s, v in self.dims.items() for t, w in self.dims.items()
                    if v * w == size and v > 1]
        if products and self.chance(0.3):
            product = self.pick(products)
            if not self.chance(0.5):
                return product
            derived = self.fresh_symbol()  # a derived dim (front matter dims:) with that value
            self.dims[derived], self.derived[derived] = size, product
            return _ref(derived)
        return str(size)

    def operand(self, accept: Callable[[Value], bool] = lambda v: True, make: Callable[[], int] | None = None) -> int:
        """A value to read: the latest acceptable one (chains) or any (fan-out), else a new one from ``make``."""
        found = [i for i, v in enumerate(self.values) if not v.internal and accept(v)]
        inputs = sum(1 for v in self.values if v.producer is None)
        if found and (inputs >= 4 or self.chance(0.85)):
            return found[-1] if self.chance(0.5) else self.pick(found)
        return make() if make is not None else self.new_input(self.random_shape())

    def positive(self, accept: Callable[[Value], bool] = lambda v: True) -> int:
        """A value whose entries are bounded away from 0 (a sigmoid of a new input when there is none)."""
        def make() -> int:
            source = self.new_input(self.random_shape())
            return self.apply("sigmoid", [source], [self.like(source, high=1.0, low=0.01)])

        return self.operand(lambda v: v.low is not None and v.low >= 0.01 and v.high <= 100 and accept(v), make)

    def like(self, index: int, **changes: Any) -> Value:
        """A new value like ``index``'s (same shape and flags) with ``changes``."""
        v = self.values[index]
        base = dict(shape=v.shape, high=v.high, low=v.low, ties=v.ties, contiguous=v.contiguous)
        return Value("", None, **{**base, **changes})

    def apply(self, label: str, inputs: list, outputs: list[Value], *, internal: bool = False) -> int:
        """Add an op node reading ``inputs`` (value indices, or (index, edge label) pairs); returns its first output."""
        node = f"o{len(self.applications)}"
        pairs = [i if isinstance(i, tuple) else (i, None) for i in inputs]
        made = []
        for value in outputs:
            index = len(self.values)
            value.node, value.producer, value.internal = f"t{index}", len(self.applications), internal
            value.name = self.fresh_name()
            self.values.append(value)
            made.append(index)
        for index, _ in pairs:
            self.values[index].readers += 1
        self.applications.append(Application(node, label, pairs, made))
        if len(made) == 1 and self.chance(0.25):
            self.unnamed.add(made[0])
        return made[0]

    # --- ops ------------------------------------------------------------------------------------------------

    def unary(self) -> None:
        name = self.pick(list(UNARY))
        if name in ("log", "sqrt"):
            x = self.positive()
            v = self.values[x]
            high = max(abs(math.log(v.low)), abs(math.log(v.high))) if name == "log" else math.sqrt(v.high)
            low = math.sqrt(v.low) if name == "sqrt" else None
            self.apply(name, [x], [self.like(x, high=high, low=low)])
            return
        x = self.operand(lambda v: name != "exp" or v.high <= 5)
        v = self.values[x]
        if name == "exp" and v.high > 5:
            return
        if name == "exp":
            self.apply(name, [x], [self.like(x, high=math.exp(v.high), low=math.exp(-v.high))])
        elif name == "neg":
            self.apply(name, [x], [self.like(x, low=None)])
        elif name == "tanh":
            self.apply(name, [x], [self.like(x, high=1.0, low=math.tanh(v.low) if v.low else None)])
        elif name == "sigmoid":
            self.apply(name, [x], [self.like(x, high=1.0, low=1 / (1 + math.exp(min(v.high, 50))))])
        else:
            self.apply(name, [x], [self.like(x, low=None, ties=True)])

    def power(self) -> None:
        exponent = self.pick([2, 3, 1, 0, 0.5, -1, 1.5])
        if exponent in (0.5, -1, 1.5):
            x = self.positive(lambda v: v.low >= 0.1)
        else:
            x = self.operand(lambda v: v.high <= 100)
        v = self.values[x]
        high = v.high ** exponent if exponent > 0 else (1 / v.low if exponent < 0 else 1.0)
        if high > MAX_MAGNITUDE:
            return
        low = v.low ** exponent if v.low is not None and exponent != 0 else (1.0 if exponent == 0 else None)
        written = self.attr_or_literal(exponent) if exponent not in (0, 1) or self.chance(0.5) else exponent
        self.apply(f"pow(exponent={written})", [x], [self.like(x, high=high, low=low, ties=v.ties or exponent == 0)])

    def attr_or_literal(self, value: Any) -> str:
        """A number in a label: the literal, or a spec attr with that default."""
        if not self.chance(0.3):
            return repr(value)
        name = self.fresh_symbol(attr=True)
        self.attrs[name] = value
        return _ref(name)

    def scalar(self) -> None:
        kind = self.pick(["add_scalar", "mul_scalar", "full_like"])
        x = self.operand(lambda v: v.high <= 1000)
        v = self.values[x]
        value = self.pick([0.5, -1.25, 2.0, 3.0])
        if kind == "add_scalar":
            low = v.low + value if v.low is not None and value > 0 else None
            out = self.like(x, high=v.high + abs(value), low=low)
        elif kind == "mul_scalar":
            out = self.like(x, high=v.high * abs(value), low=v.low * value if v.low and value > 0 else None)
        else:
            out = self.like(x, high=abs(value), low=value if value > 0 else None, ties=True)
        self.apply(f"{kind}(value={self.attr_or_literal(value)})", [x], [out])

    def binary(self) -> None:
        name = self.pick(list(BINARY))
        a = self.operand(lambda v: v.high <= 100)
        if name == "div":
            b = self.positive(lambda v: _broadcasts(self.values[a].shape, v.shape))
        elif self.chance(0.2):
            b = a
        else:
            b = self.operand(lambda v: v.high <= 100 and _broadcasts(self.values[a].shape, v.shape),
                             lambda: self.new_input(self.broadcastable(self.values[a].shape)))
        if not _broadcasts(self.values[a].shape, self.values[b].shape):
            return
        va, vb = self.values[a], self.values[b]
        shape = _broadcast(va.shape, vb.shape)
        if math.prod(shape) > MAX_ELEMENTS:
            return
        high = {"add": va.high + vb.high, "sub": va.high + vb.high, "mul": va.high * vb.high,
                "div": va.high / (vb.low or 1.0)}[name]
        both = va.low is not None and vb.low is not None
        low = {"add": va.low + vb.low if both else None, "mul": va.low * vb.low if both else None,
               "div": va.low / vb.high if both else None}.get(name)
        self.apply(name, self.two_inputs(a, b, ("a", "b")),
                   [Value("", None, shape, high, low, va.ties or vb.ties, va.contiguous and vb.contiguous)])

    def two_inputs(self, a: int, b: int, params: tuple[str, str]) -> list:
        """Edges for the two inputs: labelled (in either order, the name maybe followed by the shape, ``|b 3x4|``),
        or by order of appearance when the tensors' names cannot bind by name; the same value into both inputs
        always takes two labelled edges."""
        names = {self.values[a].name, self.values[b].name}
        if a == b or names & set(params) or self.chance(0.6):
            pairs = [(a, self.edge_label(params[0], a)), (b, self.edge_label(params[1], b))]
            return pairs if self.chance(0.5) else pairs[::-1]
        return [a, b]

    def edge_label(self, param: str, index: int) -> str:
        shape = self.values[index].shape
        return f"{param} {'x'.join(map(str, shape)) or 'scalar'}" if self.chance(0.2) else param

    def broadcastable(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts with ``shape``: a suffix of it, some sizes made 1, maybe a new leading dim."""
        suffix = list(shape[self.integer(0, len(shape)):])
        made = [1 if self.chance(0.3) else size for size in suffix]
        if self.chance(0.2) and len(made) < 4:
            made.insert(0, self.integer(1, 3))
        return tuple(made)

    def matmul(self) -> None:
        a = self.operand(lambda v: 1 <= len(v.shape) <= 3 and v.high <= 30)
        va = self.values[a]
        if not 1 <= len(va.shape) <= 3:
            return
        k = va.shape[-1]
        batch = va.shape[:-2]
        options = [(k,), (k, self.integer(1, 4))]
        if len(va.shape) >= 2:
            options.append((self.integer(1, 3), *va.shape[:-2], k, self.integer(1, 4))[-3:] if not batch else
                           (*batch, k, self.integer(1, 4)))
        wanted = self.pick(options)
        if len(va.shape) == 3 and len(wanted) == 3 and self.chance(0.3):
            name = "bmm"
        else:
            name = "matmul"
        if name == "matmul" and len(va.shape) == 2 and len(wanted) == 3:
            wanted = (wanted[0], k, wanted[-1])
        b = self.operand(lambda v: v.shape == wanted and v.high <= 30, lambda: self.new_input(wanted))
        try:
            shape = tuple(torch.matmul(torch.empty(va.shape), torch.empty(self.values[b].shape)).shape)
        except RuntimeError:
            return
        if math.prod(shape) > MAX_ELEMENTS:
            return
        high = va.high * self.values[b].high * k
        self.apply(name, self.two_inputs(a, b, ("a", "b")), [Value("", None, shape, high)])

    def reduction(self) -> None:
        name = self.pick(["sum", "mean", "amax", "max"])
        x = self.operand(lambda v: (name in ("sum", "mean") or not v.ties) and (name != "max" or len(v.shape) >= 1))
        v = self.values[x]
        if name in ("amax", "max") and v.ties or name == "max" and not v.shape:
            return
        rank = len(v.shape)
        dims = sorted(self.rng.sample(range(rank), self.integer(1, rank))) if rank else []
        keepdim = self.chance(0.4)
        if name == "max" or (dims and len(dims) == 1 and self.chance(0.5)):
            dims = dims[:1]
            dim: Any = self.signed(dims[0], rank)
        elif dims and self.chance(0.7):
            dim = tuple(self.signed(d, rank) for d in dims)
        else:
            dim, dims = None, list(range(rank))
        shape = tuple(1 if i in dims else s for i, s in enumerate(v.shape) if keepdim or i not in dims)
        count = math.prod(v.shape[i] for i in dims)
        high = v.high * count if name == "sum" else v.high
        low = v.low * (count if name == "sum" else 1) if v.low is not None else None
        args = ([] if dim is None else [f"dim={_literal(dim)}"]) + (["keepdim=True"] if keepdim else [])
        label = f"{name}({', '.join(args)})" if args else name
        self.apply(label, [x], [Value("", None, shape, high, low, contiguous=v.contiguous)])

    def signed(self, dim: int, rank: int) -> int:
        return dim - rank if self.chance(0.3) else dim

    def softmax(self) -> None:
        name = self.pick(["softmax", "log_softmax"])
        x = self.operand(lambda v: len(v.shape) >= 1 and v.high <= 30)
        v = self.values[x]
        if not v.shape or v.high > 30:
            return
        axis = self.integer(0, len(v.shape) - 1)
        dim = self.signed(axis, len(v.shape))
        size = v.shape[axis]
        label = f"{name}({dim})" if self.chance(0.5) else f"{name}(dim={self.attr_or_literal(dim)})"
        if name == "softmax":
            out = self.like(x, high=1.0, low=math.exp(-2 * v.high) / size)
        else:
            out = self.like(x, high=2 * v.high + math.log(size), low=None)
        self.apply(label, [x], [out])

    def movement(self) -> None:
        kind = self.pick(["reshape", "view", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "expand",
                          "slice", "select", "pad"])
        getattr(self, f"move_{kind}")()

    def move_reshape(self, name: str = "reshape") -> None:
        x = self.operand(lambda v: name == "reshape" or v.contiguous)
        v = self.values[x]
        if name == "view" and not v.contiguous:
            return
        shape = self.factorization(v.numel)
        written = [self.size(s) for s in shape]
        if written and self.chance(0.3):
            written[self.integer(0, len(written) - 1)] = "-1"
        label = f"{name}({', '.join(written)})" if self.chance(0.8) or len(written) != 1 else \
            f"{name}(shape=({written[0]},))"
        if not written:
            label = f"{name}(shape=())"
        self.apply(label, [x], [self.like(x, shape=shape, contiguous=True)])

    def move_view(self) -> None:
        self.move_reshape("view")

    def factorization(self, numel: int) -> tuple[int, ...]:
        """A random shape of ``numel`` elements, rank 0 to 4."""
        shape, left = [], numel
        for _ in range(self.integer(0, 3)):
            size = self.pick([d for d in range(1, left + 1) if left % d == 0])
            shape.append(size)
            left //= size
        if left > 1 or not shape and numel != 1 or self.chance(0.3):
            shape.append(left)
        return tuple(shape) if math.prod(shape) == numel else (numel,)

    def move_flatten(self) -> None:
        x = self.operand(lambda v: len(v.shape) >= 1)
        v = self.values[x]
        rank = len(v.shape)
        if not rank:
            return
        start = self.integer(0, rank - 1)
        end = self.integer(start, rank - 1)
        shape = v.shape[:start] + (math.prod(v.shape[start:end + 1]),) + v.shape[end + 1:]
        form = self.pick(["keywords", "positional", "start only"])
        if form == "start only" and end == rank - 1:
            label = f"flatten(start_dim={self.signed(start, rank)})"
        elif form == "positional":
            label = f"flatten({self.signed(start, rank)}, {self.signed(end, rank)})"
        else:
            label = f"flatten(start_dim={self.signed(start, rank)}, end_dim={self.signed(end, rank)})"
        self.apply(label, [x], [self.like(x, shape=shape)])

    def move_squeeze(self) -> None:
        x = self.operand(lambda v: 1 in v.shape)
        v = self.values[x]
        ones = [i for i, s in enumerate(v.shape) if s == 1]
        if not ones or self.chance(0.3):
            shape, label = tuple(s for s in v.shape if s != 1), "squeeze"
        else:
            axis = self.pick(ones)
            shape = v.shape[:axis] + v.shape[axis + 1:]
            label = f"squeeze(dim={self.signed(axis, len(v.shape))})"
        self.apply(label, [x], [self.like(x, shape=shape)])

    def move_unsqueeze(self) -> None:
        x = self.operand(lambda v: len(v.shape) <= 3)
        v = self.values[x]
        if len(v.shape) > 3:
            return
        axis = self.integer(0, len(v.shape))
        dim = axis - len(v.shape) - 1 if self.chance(0.3) else axis
        self.apply(f"unsqueeze({dim})", [x], [self.like(x, shape=v.shape[:axis] + (1,) + v.shape[axis:])])

    def move_permute(self) -> None:
        x = self.operand(lambda v: len(v.shape) >= 2)
        v = self.values[x]
        if not v.shape:
            return
        order = self.rng.sample(range(len(v.shape)), len(v.shape))
        shape = tuple(v.shape[i] for i in order)
        label = f"permute({', '.join(map(str, order))})" if self.chance(0.7) else f"permute(dims={_literal(tuple(order))})"
        self.apply(label, [x], [self.like(x, shape=shape, contiguous=False)])

    def move_transpose(self) -> None:
        x = self.operand(lambda v: len(v.shape) >= 2)
        v = self.values[x]
        if len(v.shape) < 2:
            return
        i, j = self.integer(0, len(v.shape) - 1), self.integer(0, len(v.shape) - 1)
        shape = list(v.shape)
        shape[i], shape[j] = shape[j], shape[i]
        rank = len(v.shape)
        label = f"transpose({self.signed(i, rank)}, {self.signed(j, rank)})"
        self.apply(label, [x], [self.like(x, shape=tuple(shape), contiguous=False)])

    def move_expand(self) -> None:
        x = self.operand(lambda v: len(v.shape) <= 3)
        v = self.values[x]
        if len(v.shape) > 3:
            return
        lead = (self.integer(1, 3),) if self.chance(0.4) else ()
        sizes = [self.integer(2, 3) if s == 1 and self.chance(0.7) else s for s in v.shape]
        shape = lead + tuple(sizes)
        if math.prod(shape) > MAX_ELEMENTS:
            return
        written = [str(s) for s in lead] + ["-1" if s == o and self.chance(0.3) else self.size(s)
                                            for s, o in zip(sizes, v.shape)]
        label = f"expand({', '.join(written)})" if written else "expand(shape=())"
        self.apply(label, [x], [self.like(x, shape=shape, ties=True, contiguous=False)])

    def move_slice(self) -> None:
        x = self.operand(lambda v: any(s >= 2 for s in v.shape))
        v = self.values[x]
        axes = [i for i, s in enumerate(v.shape) if s >= 2]
        if not axes:
            return
        axis = self.pick(axes)
        size = v.shape[axis]
        start, end, step = self.integer(0, size - 1), self.integer(1, size + 1), self.integer(1, 2)
        length = len(range(*slice(start, end, step).indices(size)))
        if not length:
            return
        shape = v.shape[:axis] + (length,) + v.shape[axis + 1:]
        label = f"slice(dim={self.signed(axis, len(v.shape))}, start={start}, end={end}" + \
                (f", step={step})" if step != 1 else ")")
        self.apply(label, [x], [self.like(x, shape=shape, contiguous=False)])

    def move_select(self) -> None:
        x = self.operand(lambda v: len(v.shape) >= 1)
        v = self.values[x]
        if not v.shape:
            return
        axis = self.integer(0, len(v.shape) - 1)
        index = self.integer(-v.shape[axis], v.shape[axis] - 1)
        self.apply(f"select({self.signed(axis, len(v.shape))}, {index})", [x],
                   [self.like(x, shape=v.shape[:axis] + v.shape[axis + 1:], contiguous=False)])

    def move_pad(self) -> None:
        x = self.operand(lambda v: 1 <= len(v.shape))
        v = self.values[x]
        if not v.shape:
            return
        dims = min(len(v.shape), self.integer(1, 2))
        pad, shape = [], list(v.shape)
        for axis in range(len(shape) - 1, len(shape) - 1 - dims, -1):
            left, right = self.integer(-1 if shape[axis] > 2 else 0, 2), self.integer(0, 1)
            pad += [left, right]
            shape[axis] += left + right
        if math.prod(shape) > MAX_ELEMENTS:
            return
        value = self.pick([0.0, 0.5])
        label = f"pad(pad={_literal(tuple(pad))}" + (f", value={value})" if value else ")")
        low = min(v.low, value) if v.low is not None and value > 0 else None
        self.apply(label, [x], [self.like(x, shape=tuple(shape), low=low, ties=True, contiguous=True)])

    def join(self) -> None:
        name = self.pick(["cat", "stack"])
        first = self.operand(lambda v: len(v.shape) >= (1 if name == "cat" else 0) and len(v.shape) <= 3)
        v = self.values[first]
        if name == "cat" and not v.shape or len(v.shape) > 3:
            return
        rank = len(v.shape)
        axis = self.integer(0, rank - 1 if name == "cat" else rank)
        parts = [first]
        for _ in range(self.integer(1, 2)):
            if self.chance(0.3):
                parts.append(first)  # the same tensor twice into a variadic op
                continue
            if name == "cat":
                wanted = v.shape[:axis] + (self.integer(1, 3),) + v.shape[axis + 1:]
                parts.append(self.operand(lambda u: u.shape[:axis] + u.shape[axis + 1:] == wanted[:axis] + wanted[axis + 1:]
                                          and len(u.shape) == rank, lambda: self.new_input(wanted)))
            else:
                parts.append(self.operand(lambda u: u.shape == v.shape, lambda: self.new_input(v.shape)))
        if name == "cat":
            shape = v.shape[:axis] + (sum(self.values[p].shape[axis] for p in parts),) + v.shape[axis + 1:]
        else:
            shape = v.shape[:axis] + (len(parts),) + v.shape[axis:]
        if math.prod(shape) > MAX_ELEMENTS:
            return
        joined = [self.values[p] for p in parts]
        high = max(u.high for u in joined)
        low = min(u.low for u in joined) if all(u.low is not None for u in joined) else None
        dim = self.signed(axis, rank if name == "cat" else rank + 1)
        label = f"{name}(dim={dim})" if dim or self.chance(0.5) else name
        self.apply(label, parts, [Value("", None, shape, high, low, any(u.ties for u in joined) or len(set(parts)) < len(parts))])

    def split(self) -> None:
        x = self.operand(lambda v: any(s >= 2 for s in v.shape))
        v = self.values[x]
        axes = [i for i, s in enumerate(v.shape) if s >= 2]
        if not axes:
            return
        axis = self.pick(axes)
        length = v.shape[axis]
        if self.chance(0.5):
            sizes: Any = self.integer(1, length - 1)
            pieces = [sizes] * (length // sizes) + ([length % sizes] if length % sizes else [])
        else:
            cut = self.integer(1, length - 1)
            sizes = pieces = [cut, length - cut]
            sizes = tuple(sizes)
        outputs = [self.like(x, shape=v.shape[:axis] + (p,) + v.shape[axis + 1:], contiguous=v.contiguous and axis == 0)
                   for p in pieces]
        self.apply(f"split(sizes={_literal(sizes)}, dim={self.signed(axis, len(v.shape))})", [x], outputs)

    def convolution(self) -> None:
        """The im2col convolution the passes fuse into one patch_matmul: kernel reshape → transpose, unfold →
        permute → reshape → matmul → reshape → permute."""
        b, c, h, w = self.integer(1, 2), self.integer(1, 2), self.integer(3, 5), self.integer(3, 5)
        o, kh, kw = self.integer(1, 3), self.integer(1, 3), self.integer(1, 2)
        padding, stride = self.integer(0, 1), self.integer(1, 2)
        oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
        x = self.operand(lambda v: v.shape == (b, c, h, w) and v.high <= 10, lambda: self.new_input((b, c, h, w)))
        kernel = self.new_input((o, c, kh, kw))
        patch, patches = c * kh * kw, oh * ow
        flat = self.apply(f"reshape({self.size(o)}, {self.size(patch)})", [kernel], [self.like(kernel, shape=(o, patch))],
                          internal=True)
        weight = self.apply("permute(1, 0)", [flat], [self.like(flat, shape=(patch, o), contiguous=False)], internal=True)
        cols = self.apply(f"unfold(kernel_size=({kh}, {kw}), padding={padding}, stride={stride})", [x],
                          [self.like(x, shape=(b, patch, patches), ties=True)], internal=True)
        rows = self.apply("permute(0, 2, 1)", [cols], [self.like(cols, shape=(b, patches, patch), contiguous=False)],
                          internal=True)
        matrix = self.apply(f"reshape({self.size(b * patches)}, {self.size(patch)})", [rows],
                            [self.like(rows, shape=(b * patches, patch), contiguous=True)], internal=True)
        high = self.values[x].high * 4.0 * patch
        product = self.apply("matmul", [(matrix, "a"), (weight, "b")], [Value("", None, (b * patches, o), high)],
                             internal=True)
        image = self.apply(f"reshape({b}, {oh}, {ow}, {o})", [product], [self.like(product, shape=(b, oh, ow, o))],
                           internal=True)
        self.apply("permute(0, 3, 1, 2)", [image], [self.like(image, shape=(b, o, oh, ow), contiguous=False)])

    def repeat(self) -> None:
        """An application made again on the same inputs (common-subexpression elimination merges them)."""
        candidates = [a for a in self.applications if not any(self.values[o].internal for o in a.outputs)]
        if not candidates:
            return
        app = self.pick(candidates)
        outputs = [self.like(o) for o in app.outputs]
        self.apply(app.label, list(app.inputs), outputs)

    # --- the whole spec -------------------------------------------------------------------------------------

    KINDS = (["unary"] * 3 + ["power"] + ["scalar"] * 2 + ["binary"] * 4 + ["matmul"] * 2 + ["reduction"] * 2
             + ["softmax"] + ["movement"] * 5 + ["join"] + ["split"] + ["repeat"])

    def build(self, ops: int) -> None:
        for _ in range(self.integer(1, 2)):
            self.new_input(self.random_shape())
        while len(self.applications) < ops:
            kind = "convolution" if ops - len(self.applications) >= 8 and self.chance(0.015) else self.pick(self.KINDS)
            getattr(self, kind)()
        for index, value in enumerate(self.values):  # an input drawn for an op that then could not use it
            if value.producer is None and not value.readers:
                self.apply("tanh", [index], [self.like(index, high=1.0, low=None)])


def _ref(symbol: str) -> str:
    """A dim or attr in a label, named when the spec is written (see :meth:`RandomSpec.names`)."""
    return f"⟨{symbol}⟩"


def _fill(text: str, symbol: Callable[[str], str]) -> str:
    """A label or expression with each dim and attr named by ``symbol``."""
    return re.sub(r"⟨(\w+)⟩", lambda found: symbol(found.group(1)), text)


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(a[::-1], b[::-1]))


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(torch.broadcast_shapes(a, b))


def _literal(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + "".join(f"{_literal(v)}, " for v in value).rstrip(" ") + ")" if len(value) == 1 else \
            "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


# --- writing the spec -------------------------------------------------------------------------------------------


@dataclass
class RandomSpec:
    """A generated spec, written with its drawn names or (``plain=True``) with plain ones — the same graph with
    tensors t0, t1…, dims d0…, attrs s0… and no title, to tell a naming bug from another."""

    builder: Builder
    input_order: list[int] | None  # value indices in the front matter's order (None: no front matter inputs)
    outputs: list[int] | None  # listed outputs (None: the unconsumed tensors)
    redeclare: bool  # an input declared again later in the file
    title: str | None
    graph: str  # "graph LR", "flowchart TD"
    overrides: dict[str, float]  # attr values to call with (by drawn attr name)
    seed: int

    def names(self, plain: bool) -> tuple[Callable[[int], str], Callable[[str], str]]:
        """Tensor names by value index, and dim and attr names by drawn name."""
        if not plain:
            return (lambda index: self.builder.values[index].name), (lambda symbol: symbol)
        symbols = {name: f"d{k}" for k, name in enumerate(self.builder.dims)}
        symbols.update({name: f"s{k}" for k, name in enumerate(self.builder.attrs)})
        return (lambda index: f"t{index}"), symbols.__getitem__

    def write(self, plain: bool = False) -> tuple[str, list[int]]:
        """The spec's text, and its inputs (value indices) in call order."""
        tensor, symbol = self.names(plain)
        writer = Writer(self.builder, tensor, symbol)
        body = writer.write(self.redeclare)
        values = self.builder.values
        inputs = self.input_order or sorted((i for i, v in enumerate(values) if v.producer is None),
                                            key=lambda i: writer.mentions.index(values[i].node))
        meta: dict[str, Any] = {}
        if self.input_order is not None:
            meta["inputs"] = {tensor(i): [symbol(e) if isinstance(e, str) and e != "_" else e
                                          for e in self.builder.patterns[i]] for i in inputs}
        if self.outputs is not None:
            meta["outputs"] = [tensor(i) for i in self.outputs]
        if self.builder.attrs:
            meta["attrs"] = {symbol(name): value for name, value in self.builder.attrs.items()}
        if self.builder.derived:
            meta["dims"] = {symbol(name): _fill(expr, symbol) for name, expr in self.builder.derived.items()}
        header = []
        if meta or self.title:
            title = None if plain else self.title
            header = ["---"] + ([f"title: {json.dumps(title, ensure_ascii=False)}"] if title else []) + ["graphconv:"]
            header += [f"  {key}: {json.dumps(value, ensure_ascii=False)}" for key, value in meta.items()] + ["---"]
        return "\n".join(header + [self.graph] + body) + "\n", inputs

    @property
    def text(self) -> str:
        return self.write()[0]

    def input_names(self, plain: bool = False) -> list[str]:
        tensor, _ = self.names(plain)
        return [tensor(i) for i in self.write(plain)[1]]

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [self.builder.values[i].shape for i in self.write()[1]]

    def attrs(self, plain: bool = False) -> dict[str, float]:
        """The attr values to call it with."""
        _, symbol = self.names(plain)
        return {symbol(name): value for name, value in self.overrides.items()}

    def attr_names(self, plain: bool = False) -> list[str]:
        _, symbol = self.names(plain)
        return [symbol(name) for name in self.builder.attrs]

    def inputs(self) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        return [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in self.input_shapes]

    def __repr__(self) -> str:
        return f"RandomSpec(seed={self.seed}, text=\n{self.text})"


class Writer:
    """The Mermaid body of a built spec; each node is declared (with its label) where it is first mentioned."""

    def __init__(self, builder: Builder, tensor: Callable[[int], str], symbol: Callable[[str], str]) -> None:
        self.b = builder
        self.tensor_name, self.symbol = tensor, symbol
        self.declared: set[str] = set()
        self.mentions: list[str] = []  # node ids in order of first mention
        self.lines: list[str] = []

    def named(self, index: int) -> bool:
        """A value is drawn as a tensor node unless it was drawn as an op → op edge and can be one (read by an op,
        its op's only output)."""
        v = self.b.values[index]
        app = self.b.applications[v.producer] if v.producer is not None else None
        return not (index in self.b.unnamed and v.readers and app is not None and len(app.outputs) == 1)

    def mention(self, node: str, text: str) -> str:
        if node in self.declared:
            return node
        self.declared.add(node)
        self.mentions.append(node)
        return f"{node}{text}"

    def tensor(self, index: int) -> str:
        v = self.b.values[index]
        if not self.named(index):
            return self.op(self.b.applications[v.producer])
        return self.mention(v.node, f'["{self.tensor_name(index)}"]')

    def op(self, app: Application) -> str:
        return self.mention(app.node, f'(("{_fill(app.label, self.symbol)}"))')

    def write(self, redeclare: bool) -> list[str]:
        for app in self.b.applications:
            for index, label in app.inputs:
                arrow = f"-->|{label}|" if label else "-->"
                self.lines.append(f"  {self.tensor(index)} {arrow} {self.op(app)}")
            for index in app.outputs:
                if self.named(index):
                    self.lines.append(f"  {self.op(app)} --> {self.tensor(index)}")
        inputs = [i for i, v in enumerate(self.b.values) if v.producer is None]
        if redeclare and inputs:  # a tensor declared again later keeps its place (its first mention)
            index = inputs[0]
            reader = next(a for a in self.b.applications if any(i == index for i, _ in a.inputs))
            self.lines.append(f'  {self.b.values[index].node}["{self.tensor_name(index)}"] ~~~ {reader.node}')
        return self.lines


@st.composite
def random_specs(draw: Callable, min_ops: int = 3, max_ops: int = 30) -> RandomSpec:
    """Hypothesis draws the seed, the number of ops and whether there is front matter; the seed draws the rest.
    (Shrinking the number of ops then keeps a prefix of the same spec.)"""
    seed = draw(st.integers(0, 2 ** 31 - 1))
    front_matter = draw(st.sampled_from([True, True, False]))
    rng = random.Random(seed)
    builder = Builder(rng, front_matter)
    builder.build(draw(st.integers(min_ops, max_ops)))
    values = builder.values
    inputs = [i for i, v in enumerate(values) if v.producer is None]
    outputs = None
    if front_matter and rng.random() < 0.4:
        writer = Writer(builder, str, str)
        consumed = [i for i, v in enumerate(values) if v.producer is not None and v.readers and writer.named(i)
                    and not v.internal]
        outputs = [i for i, v in enumerate(values) if v.producer is not None and not v.readers]
        rng.shuffle(outputs)
        if consumed and rng.random() < 0.5:
            outputs.insert(rng.randint(0, len(outputs)), rng.choice(consumed))
        if rng.random() < 0.2:  # a graph input listed as an output too
            outputs.insert(rng.randint(0, len(outputs)), rng.choice(inputs))
    return RandomSpec(
        builder,
        input_order=rng.sample(inputs, len(inputs)) if front_matter else None,
        outputs=outputs,
        redeclare=not front_matter and rng.random() < 0.3,
        title=rng.choice([None] * 3 + TITLES) if front_matter or builder.attrs else None,
        graph=rng.choice(["graph LR", "flowchart TD"]),
        overrides={name: value + 0.25 for name, value in builder.attrs.items()
                   if isinstance(value, float) and rng.random() < 0.5},
        seed=seed,
    )
