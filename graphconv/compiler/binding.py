"""Call-time binding: a call's input shapes and attrs → the value of every spec name (input dims, derived dims,
attrs), and the checks that come with it.

Unification against the ``inputs`` patterns: a bare name binds a symbol on its first use and must agree on every
later one (``kernel: in_channels is 4 but input_batch says 3``), a literal must match exactly, ``_`` matches
anything, ``...group`` takes any number of dims (the tuple of their sizes binds ``group``), and an expression entry
(``2 * c``) must equal its value once the symbols and derived dims are known. Derived dims are then computed once per binding, in dependency order. An input with no pattern binds nothing:
its dims come only from its actual shape. Imports no torch: it works on shape tuples (``check_inputs``, the
per-call guards on the tensors themselves, reaches torch through the tensors it is given).
"""
from __future__ import annotations

import math
import operator
import sys
from functools import cached_property
from typing import Any, Sequence

from graphconv.errors import CallError, ShapeError, SpecError
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import (Const, Expr, Name, Splice, evaluate, group_value, names, show_value, suggest,
                                   to_source)
from graphconv.syntax.metadata import WILDCARD

MAX_ELEMENTS = 2 ** 60  # a tensor's size in bytes must fit in 64 bits (torch's limit), at 8 bytes an element


def is_wildcard(entry: Expr) -> bool:
    return isinstance(entry, Name) and entry.id == WILDCARD


def show_pattern(pattern: Sequence[Expr]) -> str:
    """``[b, in_channels, i_h, i_w]``: a shape pattern as the spec writes it."""
    return "[" + ", ".join(to_source(e) for e in pattern) + "]"


def show_shape(shape: Sequence[Any]) -> str:
    """``(4, 3, 8, 8)``; an unknown size (a wildcard) shows as ``_``, a tuple cut short."""
    sizes = ["_" if size is None else show_value(size) if isinstance(size, tuple) else str(size) for size in shape]
    return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"


class Binder:
    """Binds calls of one spec; ``bind(shapes, attrs)`` returns the environment of spec names."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.names = spec.input_names
        self.position = {name: index for index, name in enumerate(self.names)}
        patterns = spec.meta.inputs or {}
        self.patterns = [patterns.get(name) for name in self.names]
        self.attr_names = list(spec.meta.attrs)
        types = spec.meta.input_types
        self.typed = [(index, types[name].dtype) for index, name in enumerate(self.names) if name in types]
        self.check_pattern_names()
        self.sizes = self.sized_dims()  # not a cached_property: torch.compile cannot trace its lock (Python 3.11)

    def error(self, cls: type, message: str, *key: Any) -> SpecError:
        line, column = self.spec.meta.where(*key) if key else (None, None)
        return cls(message, path=self.spec.path, line=line, column=column, source=self.spec.source)

    def check_pattern_names(self) -> None:
        """An expression entry can only read names something binds: a symbol, an attr or a derived dim."""
        known = set(self.spec.meta.symbols()) | set(self.spec.meta.attrs) | set(self.spec.meta.dims)
        for name, pattern in zip(self.names, self.patterns):
            for axis, entry in enumerate(pattern or ()):
                for used in sorted(names(entry) - known - {WILDCARD}):
                    raise self.error(SpecError, f"inputs.{name}: {to_source(entry)} reads {used!r}, which no input "
                                                f"dim, attr or derived dim binds{suggest(used, known)}",
                                     "inputs", name, axis)

    def check_inputs(self, inputs: Sequence[Any]) -> None:
        """The guards a call passes before anything runs, each a CallError naming the spec input: the number of
        inputs, each a tensor, each of the dtype class its declaration says (``dtype: int``), all on one device, the floating-point ones of one dtype, and no integer or bool
        input that meets a floating-point one in an op that declares float_inputs (other than as an index or a condition).

        Runs on every call: when every input has the first one's dtype and device, it costs a few attribute reads
        per input (well under a microsecond for two inputs).
        """
        if len(inputs) != len(self.names):
            self.check_arity(len(inputs))
        tensor = _tensor_type()
        for index, value in enumerate(inputs):
            if not isinstance(value, tensor):
                raise self.input_error(index, f"must be a torch.Tensor, got {type(value).__name__}")
        for index, kind in self.typed:
            if dtype_class(inputs[index].dtype) != kind:
                raise self.input_error(index, f"is {_dtype(inputs[index].dtype)} but the spec declares it {kind}; "
                                              f"convert it, e.g. {self.names[index]}.{_CONVERSION[kind]}()")
        if inputs:
            device, dtype = inputs[0].device, inputs[0].dtype
            for value in inputs:
                if value.dtype is not dtype or value.device != device:
                    self.check_mixed_inputs(inputs)
                    return

    def check_mixed_inputs(self, inputs: Sequence[Any]) -> None:
        """Inputs of several dtypes or devices: one device, one floating-point dtype, integers only as indices."""
        device, floating = inputs[0].device, None
        for index, value in enumerate(inputs):
            if value.device != device:
                raise self.input_error(index, f"is on {value.device} but {self.names[0]!r} is on {device}; "
                                              f"move them to one device")
            if _computes(value.dtype):
                if floating is None:
                    floating = index
                elif value.dtype is not inputs[floating].dtype:
                    raise self.input_error(index, f"is {_dtype(value.dtype)} but {self.names[floating]!r} is "
                                                  f"{_dtype(inputs[floating].dtype)}; convert one, e.g. "
                                                  f"{self.names[index]}.to({inputs[floating].dtype})")
        if floating is not None:
            self.check_integer_inputs(inputs)

    def check_integer_inputs(self, inputs: Sequence[Any]) -> None:
        """An integer or bool input may not meet a floating-point input in an op with float_inputs (a matmul, an add ...)."""
        for index, value in enumerate(inputs):
            if _computes(value.dtype):
                continue
            for other, op_id in self.meetings[index].items():
                dtype = inputs[other].dtype
                if _computes(dtype):
                    op = self.spec.op(op_id)
                    raise self.input_error(index, f"is {_dtype(value.dtype)}, but op {op.id} ({op.label}) at line "
                                                  f"{op.line} computes it with {self.names[other]!r}, which is "
                                                  f"{_dtype(dtype)}; convert it: {self.names[index]}.to({dtype})")

    @cached_property
    def meetings(self) -> list[dict[int, str]]:
        """Per input: another input's position → the first op (in execution order) where their values meet, this
        input's not arriving as an index or a condition (an op's ``index_inputs``). Found on first need only."""
        reached = [self.reached(tensor_id) for tensor_id in self.spec.inputs]
        meetings: list[dict[int, str]] = []
        for mine in reached:
            found: dict[int, str] = {}
            for other, theirs in enumerate(reached):
                op_id = next((op_id for op_id in self.spec.order if theirs is not mine and op_id in theirs and any(
                    name not in self.spec.op(op_id).op.index_inputs for name in mine.get(op_id, ()))), None)
                if op_id is not None:
                    found[other] = op_id
            meetings.append(found)
        return meetings

    def reached(self, tensor_id: str) -> dict[str, set[str]]:
        """Op id → the names of its inputs through which ``tensor_id``'s values arrive, along any path, for the ops
        that declare ``float_inputs`` (graphconv's own).

        Values flow on through such an op's outputs unless they arrive only as an index or a condition (an index
        picks values, it does not become one); an op that does not declare it (a plugin, an ``--ops`` module, a
        used spec) is not looked into: what it makes of an integer input is its own business.
        """
        reached: dict[str, set[str]] = {}
        stack, seen = [tensor_id], {tensor_id}
        while stack:
            tensor = stack.pop()
            for op_id in self.spec.consumers(tensor):
                node = self.spec.op(op_id)
                if not node.op.float_inputs:
                    continue
                names = [node.op.inputs[0]] * len(node.inputs) if node.op.variadic_inputs else node.op.inputs
                arriving = {name for name, t in zip(names, node.inputs) if t == tensor}
                reached.setdefault(op_id, set()).update(arriving)
                if any(name not in node.op.index_inputs for name in arriving):
                    stack.extend(t for t in node.outputs if t not in seen)
                    seen.update(node.outputs)
        return reached

    def input_error(self, index: int, message: str) -> CallError:
        """``spec: input 'name' <message>``, placed at the input's node."""
        node = self.spec.tensor(self.spec.inputs[index])
        return CallError(f"{self.spec.name}: input {self.names[index]!r} {message}", path=self.spec.path,
                         line=node.line, column=node.column, source=self.spec.source)

    def check_arity(self, count: int) -> None:
        if count != len(self.names):
            raise self.error(CallError, f"{self.spec.name} takes {len(self.names)} input(s) "
                                        f"({', '.join(self.names)}) but {count} were given")

    def attrs(self, given: dict[str, Any]) -> dict[str, Any]:
        """The spec's attr defaults overridden by the call's keywords."""
        for key in given:
            if key not in self.spec.meta.attrs:
                raise self.error(CallError, f"{self.spec.name} has no attr {key!r}"
                                            f"{suggest(key, self.attr_names)}; its attrs are: "
                                            f"{', '.join(self.attr_names) or 'none'}")
        values = {**self.spec.meta.attrs, **given}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    def bind(self, shapes: Sequence[Sequence[int]], attrs: dict[str, Any]) -> dict[str, Any]:
        """Unify ``shapes`` (one per input, in call order) with the patterns, then compute the derived dims."""
        shapes = [tuple(as_size(size) for size in shape) for shape in shapes]
        self.check_sizes(shapes)
        env = dict(attrs)
        bound_at: dict[str, tuple[str, int]] = {}  # symbol → (input, axis) that bound it
        expressions = []
        for name, pattern, shape in zip(self.names, self.patterns, shapes):
            if pattern is None:
                continue
            for index, axis, entry, size in self.align(name, pattern, shape):
                if isinstance(entry, (Name, Splice)) and not is_wildcard(entry):
                    if entry.id in env:
                        self.check_symbol(name, index, axis, entry.id, size, shapes, env, bound_at)
                    else:
                        env[entry.id], bound_at[entry.id] = size, (name, axis)
                elif isinstance(entry, Const) and entry.value != size:
                    raise self.mismatch(name, index, shapes, f"dim {axis} is {size} but the pattern says "
                                                             f"{to_source(entry)}")
                elif not isinstance(entry, (Name, Const)):
                    expressions.append((name, index, axis, entry, size))
        self.derive(env)
        for name, index, axis, entry, size in expressions:
            self.check_expression(name, index, axis, entry, size, shapes, env)
        return env

    def align(self, name: str, pattern: Sequence[Expr], shape: tuple) -> list[tuple[int, int, Expr, Any]]:
        """(pattern index, first axis, entry, size) per pattern entry; a ``...group`` takes the sizes between the
        entries before and after it, as a tuple (any number of them, none included)."""
        group = next((i for i, entry in enumerate(pattern) if isinstance(entry, Splice)), None)
        if group is None:
            if len(shape) != len(pattern):
                raise self.error(ShapeError, f"{name}: expected {len(pattern)} dims {show_pattern(pattern)}, got "
                                             f"shape {show_shape(shape)} ({len(shape)} dims)", "inputs", name)
            return [(i, i, entry, shape[i]) for i, entry in enumerate(pattern)]
        fixed = len(pattern) - 1
        if len(shape) < fixed:
            raise self.error(ShapeError, f"{name}: expected at least {fixed} dims {show_pattern(pattern)}, got "
                                         f"shape {show_shape(shape)} ({len(shape)} dims)", "inputs", name)
        width = len(shape) - fixed
        aligned = [(i, i, entry, shape[i]) for i, entry in enumerate(pattern[:group])]
        aligned.append((group, group, pattern[group], shape[group:group + width]))
        aligned += [(group + 1 + i, group + width + i, entry, shape[group + width + i])
                    for i, entry in enumerate(pattern[group + 1:])]
        return aligned

    def check_sizes(self, shapes: list[tuple]) -> None:
        """Every size an integer ≥ 0, and no tensor of more than :data:`MAX_ELEMENTS` elements (torch would raise
        an overflow deep inside an op, or try to allocate it)."""
        for name, shape in zip(self.names, shapes):
            for axis, size in enumerate(shape):
                if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                    raise self.error(SpecError, f"{name}: dim {axis} of shape {show_shape(shape)} is "
                                                 f"{show_value(size)}, not a size (an integer ≥ 0)", "inputs", name)
            count = math.prod(shape)
            if count > MAX_ELEMENTS:
                raise self.error(SpecError, f"{name}: shape {show_shape(shape)} has {count} elements, more than a "
                                             f"tensor can hold (2**60)", "inputs", name)

    def check_symbol(self, name: str, index: int, axis: int, symbol: str, size: Any, shapes: list[tuple], env: dict,
                     bound_at: dict[str, tuple[str, int]]) -> None:
        expected = env[symbol]
        if size == expected:
            return
        if symbol not in bound_at:
            message = f"{symbol} is {size} but the attr {symbol} is {show_value(expected)}"
            raise self.mismatch(name, index, shapes, message)
        other, other_axis = bound_at[symbol]
        shown = f"...{symbol}" if isinstance(size, tuple) else symbol
        if other == name:
            raise self.mismatch(name, index, shapes, f"{shown} is {size} at dim {axis} but {expected} at dim "
                                                     f"{other_axis}")
        raise self.mismatch(name, index, shapes, f"{shown} is {size} but {other} says {expected}", other)

    def check_expression(self, name: str, index: int, axis: int, entry: Expr, size: int, shapes: list[tuple],
                         env: dict) -> None:
        expected = self.evaluate(entry, env, "inputs", name, index)
        if size != expected:
            values = ", ".join(f"{n}={show_value(env[n])}" for n in sorted(names(entry)))
            raise self.mismatch(name, index, shapes, f"dim {axis} is {size} but {to_source(entry)} is "
                                                     f"{show_value(expected)} ({values})")

    def mismatch(self, name: str, index: int, shapes: list[tuple], message: str, other: str | None = None) -> ShapeError:
        """``name: <message>``, then the shapes involved against their patterns; the caret under pattern entry
        ``index``."""
        involved = [name] + ([other] if other else [])
        context = "; ".join(f"{n} has shape {show_shape(shapes[self.position[n]])} for "
                            f"{show_pattern(self.patterns[self.position[n]])}" for n in involved)
        return self.error(ShapeError, f"{name}: {message} ({context})", "inputs", name, index)

    def derive(self, env: dict[str, Any]) -> None:
        """Compute every derived dim into ``env``, once, in dependency order. A dim may be a float (a scale, an
        epsilon) unless it sizes something: a float size is a SpecError that says where it is used."""
        for dim in self.spec.dim_order:
            expr = self.spec.meta.dims[dim]
            value = self.evaluate(expr, env, "dims", dim)
            if isinstance(value, float) and dim in self.sizes:
                raise self.error(SpecError, f"dims.{dim}: {to_source(expr)} is {value}, a float, but {dim} is a size "
                                            f"(used in {self.sizes[dim]}), and sizes are integers: use // for integer "
                                            f"division. A float value is fine where only op arguments read it (an "
                                            f"attention scale, an epsilon)", "dims", dim)
            env[dim] = value

    def sized_dims(self) -> dict[str, str]:
        """Derived dims that size something → where: an input pattern, a declared shape, or the shape argument of
        a reshape-like op (its ``shape_attr``)."""
        found: dict[str, str] = {}
        meta = self.spec.meta
        patterns = [(f"inputs.{n}", p) for n, p in (meta.inputs or {}).items()]
        patterns += [(f"shapes.{n}", p) for n, p in meta.shapes.items()]
        for where, pattern in patterns:
            for entry in pattern or ():
                for name in names(entry) & set(meta.dims):
                    found.setdefault(name, where)
        for node in self.spec.ops():
            shape = node.args.get(node.op.shape_attr) if node.op.shape_attr else None
            for name in (names(shape) & set(meta.dims)) if shape is not None else ():
                found.setdefault(name, f"op {node.id} ({node.label})")
        return found

    def evaluate(self, expr: Expr, env: dict, *key: Any) -> Any:
        try:
            return evaluate(expr, env)
        except SpecError as error:
            where = ".".join(str(k) for k in key[:2])
            values = ", ".join(f"{n}={show_value(env[n])}" for n in sorted(names(expr)) if n in env)
            raise self.error(ShapeError, f"{where}: {error.message}{f' ({values})' if values else ''}",
                             *key) from None


def as_size(size: Any) -> Any:
    """A size as a Python int. ``torch.jit.trace`` hands sizes over as 0-dim integer tensors (so that it can record
    them); reading them as ints specialises the trace to these shapes, as torch.nn's own layers do when they read a
    size. Anything that is no integer stays as it is, for ``check_sizes`` to refuse."""
    if isinstance(size, int):
        return size
    try:
        return operator.index(size)
    except TypeError:
        return size


def _tensor_type() -> type | tuple:
    """``torch.Tensor`` — or, while torch is not imported (no tensor can exist then), no type at all. A lookup,
    not an import: this module imports no torch, and ``graphconv.ops.lazy_torch`` costs microseconds per use."""
    torch = sys.modules.get("torch")
    return torch.Tensor if torch is not None else ()


_CONVERSION = {"float": "float", "int": "long", "bool": "bool"}


def dtype_class(dtype: Any) -> str:
    """``float``, ``int`` or ``bool``: the dtype class an input may declare (complex counts as float)."""
    if dtype.is_floating_point or dtype.is_complex:
        return "float"
    return "bool" if str(dtype) == "torch.bool" else "int"


def _computes(dtype: Any) -> bool:
    """A floating-point (or complex) dtype: what ops compute in; integer and bool tensors index and select."""
    return dtype.is_floating_point or dtype.is_complex


def _dtype(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def expected_shape(pattern: Sequence[Expr], env: dict[str, Any]) -> tuple:
    """A shape pattern's sizes in ``env`` (``...group`` spliced in); None for a wildcard."""
    sizes: list[Any] = []
    for entry in pattern:
        if isinstance(entry, Splice):
            sizes.extend(group_value(entry, env))
        else:
            sizes.append(None if is_wildcard(entry) else evaluate(entry, env))
    return tuple(sizes)


def shape_mismatch(spec: Spec, name: str, actual: Sequence[int], env: dict[str, Any]) -> ShapeError | None:
    """A ShapeError if tensor ``name`` has a declared shape (under ``shapes``) that ``actual`` does not fit.

    The message names the tensor, the op that produced it and that op's line, the declared shape both symbolic
    and evaluated, and the actual shape; the error points at the declaration.
    """
    declared = spec.meta.shapes.get(name)
    if declared is None:
        return None
    actual = tuple(actual)
    line, column = spec.meta.where("shapes", name)
    try:
        expected = expected_shape(declared, env)
    except SpecError as error:
        return ShapeError(f"shapes.{name}: {error.message}", path=spec.path, line=line, column=column,
                          source=spec.source)
    if len(expected) == len(actual) and all(e is None or e == a for e, a in zip(expected, actual)):
        return None
    tensor = spec.tensor(spec.tensor_id(name))
    if tensor.producer is None:
        made_by = f"graph input at line {tensor.line}"
    else:
        op = spec.op(tensor.producer)
        made_by = f"produced by op {op.id} ({op.label}) at line {op.line}"
    return ShapeError(f"tensor {name!r} ({made_by}) has shape {show_shape(actual)} but is declared "
                      f"{show_pattern(declared)} = {show_shape(expected)}", path=spec.path, line=line, column=column,
                      source=spec.source)
