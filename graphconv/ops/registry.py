"""Ops: a forward, a hand-written VJP, and what the VJP needs saved — registered by name in one place.

An op's forward reads like plain torch code; its signature says what the op takes:
positional parameters are tensor inputs (``*tensors`` for a variable number), keyword-only parameters are
attributes (``reshape(x, *, shape)``). This module imports no torch, so a spec can be loaded without it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from graphconv.errors import OpClashError
from graphconv.syntax.expr import suggest

REQUIRED = inspect.Parameter.empty
# Tensors one op may make. An op whose number of outputs depends on its arguments (``outputs=None``, such as
# split) checks it with check_output_count before making them: on the meta device a split of a dim of 10**9 into
# pieces of 1 would otherwise make 10**9 tensors, far more than any diagram draws.
MAX_OUTPUTS = 10_000


def check_output_count(op_name: str, count: int) -> None:
    """Refuse (ValueError) to make more than :data:`MAX_OUTPUTS` tensors in one op."""
    if count > MAX_OUTPUTS:
        raise ValueError(f"{op_name} would make {count} tensors, more than one op may make ({MAX_OUTPUTS}); a "
                         "diagram draws one output per tensor")


@dataclass(frozen=True)
class Attr:
    """A keyword-only parameter of an op's forward."""

    name: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Op:
    """A registered op. Call it to run its forward; ``op.vjp`` decorates its VJP.

    The VJP is ``vjp(ctx, grad) -> tuple`` with one gradient (or None) per tensor input. ``ctx`` is a
    :class:`Context`: the op's attribute values and the tensors named in ``save`` (inputs by parameter name,
    ``out`` for the output) read as ``ctx.<name>``, plus ``ctx.shapes`` (the input shapes, always), ``ctx.dtypes``
    and ``ctx.needs`` (which inputs want a gradient). For an op with several outputs, ``grad`` is a tuple with one
    tensor per output (None for an output that received no gradient).

    ``index_inputs`` names the inputs that take integer or bool tensors — indices, conditions — whose values pick
    the result's values rather than flow into it (a compiled op's input checks let such a tensor differ in dtype).

    ``op.shape_rule`` decorates its shape rule: ``rule(*input_shapes, **attrs)`` gives the output shape (one per
    output for an op with several), on ints or symbolic sizes — see :mod:`graphconv.ops.shapes`. An op without one
    is run on torch's meta device to learn its shapes.

    Traits the compiler reads (an op declares them; the compiler keeps no lists of op names):
    ``float_inputs`` — every other input takes a floating-point tensor (a compiled op refuses an integer or bool
    one there; ops that do not say are not judged); ``cheap`` — its outputs cost no more to recompute in backward
    than to keep (views, window copies: ``save="minimal"`` recomputes them); ``lower_precision`` — torch's autocast
    runs it in lower precision (the conv and matmul family); ``shape_attr`` — the attribute that is the whole
    output shape (as ``reshape``'s ``shape``); ``lean_attr`` — a boolean attribute that, when true, keeps the op
    from kernels that hold more memory than torch's own would for the call (``save="minimal"`` sets it true
    wherever the graph leaves it unbound); ``fresh_grads`` — its VJP returns gradients made for the call alone
    (sharing no memory with its inputs, its outputs, the incoming gradient or each other), so backward may sum a
    value's other gradients into them in place (``graphconv.check.verify`` checks the promise on every sample).
    """

    def __init__(
        self,
        forward: Callable,
        *,
        name: str | None = None,
        save: Iterable[str] = (),
        variadic: str | None = None,
        outputs: int | None = 1,
        source: str | None = None,
        index_inputs: Iterable[str] = (),
        float_inputs: bool = False,
        cheap: bool = False,
        lower_precision: bool = False,
        shape_attr: str | None = None,
        lean_attr: str | None = None,
        fresh_grads: bool = False,
        parameters: tuple[Sequence[str], Sequence[Attr]] | None = None,
    ) -> None:
        """``parameters`` — (input names, attributes) — stands in for the forward's signature where the names are
        not Python identifiers (a spec used as an op: its names are its author's)."""
        self.forward = forward
        self.name = name or forward.__name__
        self.doc = " ".join(inspect.cleandoc(forward.__doc__ or "").split("\n\n")[0].split())  # first paragraph
        self.source = source or forward.__module__
        if parameters is None:
            self.inputs, self.variadic_inputs, self.attrs, self.optional_inputs = _read_signature(forward, self.name)
        else:
            self.inputs, self.attrs = tuple(parameters[0]), tuple(parameters[1])
            self.variadic_inputs, self.optional_inputs = False, frozenset()
        self.save = tuple(save)
        self.variadic = variadic
        self.outputs = outputs
        self.index_inputs = frozenset(index_inputs)
        self.float_inputs, self.cheap, self.lower_precision = float_inputs, cheap, lower_precision
        self.shape_attr, self.lean_attr, self.fresh_grads = shape_attr, lean_attr, fresh_grads
        self.backward: Callable | None = None
        self.sample_inputs: Callable | None = None
        self.rule: Callable | None = None
        self._check_declarations()

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<op {self.signature()} from {self.source}>"

    def vjp(self, backward: Callable) -> Callable:
        """Attach the hand-written VJP (used as a decorator)."""
        self.backward = backward
        return backward

    def shape_rule(self, rule: Callable) -> Callable:
        """Attach the shape rule (used as a decorator): ``rule(*input_shapes, **attrs) -> shape``."""
        self.rule = rule
        return rule

    def infer_shapes(self, shapes: Iterable[tuple], attrs: dict[str, Any]) -> list[tuple]:
        """The output shapes its shape rule gives (one per output) for these input shapes and attribute values
        (sizes are ints or symbolic; attributes not given take the op's defaults). Raises ShapeRuleError
        (graphconv.ops.shapes) when the shapes do not fit; the op must have a rule."""
        defaults = {a.name: a.default for a in self.attrs if not a.required}
        result = self.rule(*shapes, **{**defaults, **attrs})
        return [tuple(shape) for shape in ([result] if self.outputs == 1 else result)]

    def samples(self, make: Callable) -> Callable:
        """Attach sample inputs for the registry-wide gradcheck: ``make()`` yields ``(tensors, attrs)`` pairs."""
        self.sample_inputs = make
        return make

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)

    def signature(self) -> str:
        tensors = [f"*{self.inputs[0]}" if self.variadic_inputs else t for t in self.inputs]
        attrs = [a.name if a.required else f"{a.name}={a.default!r}" for a in self.attrs]
        star = ["*"] if attrs and not self.variadic_inputs else []  # after *tensors, attrs are keyword-only already
        return f"{self.name}({', '.join(tensors + star + attrs)})"

    @property
    def saved_inputs(self) -> tuple[str, ...]:
        """The inputs its VJP reads (a name in ``save`` that is an input's means the input, even ``out``)."""
        return tuple(name for name in self.inputs if name in self.save)

    @property
    def saves_output(self) -> bool:
        return "out" in self.save and "out" not in self.inputs

    def _check_declarations(self) -> None:
        known = set(self.inputs) | {"out"}
        for name in self.save:
            if name not in known:
                raise ValueError(f"op {self.name}: save names {name!r}, which is neither an input nor 'out'")
        if self.shape_attr is not None and self.attr(self.shape_attr) is None:
            raise ValueError(f"op {self.name}: shape_attr names {self.shape_attr!r}, which is not an attribute")
        if self.lean_attr is not None and self.attr(self.lean_attr) is None:
            raise ValueError(f"op {self.name}: lean_attr names {self.lean_attr!r}, which is not an attribute")
        for name in self.index_inputs:
            if name not in self.inputs:
                raise ValueError(f"op {self.name}: index_inputs names {name!r}, which is not an input")
        if self.variadic is not None and self.attr(self.variadic) is None:
            raise ValueError(f"op {self.name}: variadic names {self.variadic!r}, which is not an attribute")


def _read_signature(forward: Callable, name: str) -> tuple[tuple[str, ...], bool, tuple[Attr, ...], frozenset]:
    """Tensor inputs (positional), whether they are ``*variadic``, attributes (keyword-only), optional inputs."""
    inputs, attrs, variadic_inputs, optional = [], [], False, set()
    for param in inspect.signature(forward).parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            inputs.append(param.name)
            if param.default is not REQUIRED:
                if param.default is not None:
                    raise ValueError(f"op {name}: optional tensor input {param.name} must default to None")
                optional.add(param.name)
        elif param.kind == param.VAR_POSITIONAL:
            inputs.append(param.name)
            variadic_inputs = True
        elif param.kind == param.KEYWORD_ONLY:
            attrs.append(Attr(param.name, param.default))
        else:
            raise ValueError(f"op {name}: **{param.name} is not allowed; name each attribute")
    if variadic_inputs and len(inputs) > 1:
        raise ValueError(f"op {name}: *{inputs[-1]} must be the only tensor parameter")
    return tuple(inputs), variadic_inputs, tuple(attrs), frozenset(optional)


class Registry:
    """Ops by name. Registering a taken name is an error naming both sources."""

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self._ops: dict[str, Op] = {}
        for op in ops:
            self.add(op)

    def add(self, op: Op) -> Op:
        taken = self._ops.get(op.name)
        if taken is not None and taken is not op:
            raise OpClashError(f"op {op.name!r} from {op.source} clashes with op {op.name!r} from {taken.source}")
        self._ops[op.name] = op
        return op

    def get(self, name: str) -> Op | None:
        return self._ops.get(name)

    def nearest(self, name: str) -> str:
        return suggest(name, self._ops)

    def names(self) -> list[str]:
        return sorted(self._ops)

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def __iter__(self):
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)

    def extended(self, ops: Iterable[Op]) -> "Registry":
        """A new registry with these ops added (clashes are errors)."""
        registry = Registry(self)
        for op in ops:
            registry.add(op)
        return registry


REGISTRY = Registry()


def op(
    forward: Callable | None = None,
    *,
    name: str | None = None,
    save: Iterable[str] = (),
    variadic: str | None = None,
    outputs: int | None = 1,
    index_inputs: Iterable[str] = (),
    registry: Registry | None = REGISTRY,
    **traits: Any,
) -> Any:
    """Register ``forward`` as an op (usable as ``@op`` or ``@op(save=("x",))``); attach its VJP with ``.vjp``.
    ``traits``: ``float_inputs``, ``cheap``, ``lower_precision``, ``shape_attr`` (see :class:`Op`)."""

    def register(function: Callable) -> Op:
        made = Op(function, name=name, save=save, variadic=variadic, outputs=outputs, index_inputs=index_inputs,
                  **traits)
        return registry.add(made) if registry is not None else made

    return register(forward) if forward is not None else register


def library_op(forward: Callable | None = None, **options: Any) -> Any:
    """``@op`` for graphconv's own ops: every input that is not an index takes a floating-point tensor."""
    return op(forward, float_inputs=True, **options)


def register_op(
    name: str,
    forward: Callable,
    vjp: Callable,
    *,
    save: Iterable[str] = (),
    variadic: str | None = None,
    outputs: int | None = 1,
    index_inputs: Iterable[str] = (),
    shape_rule: Callable | None = None,
    registry: Registry = REGISTRY,
    **traits: Any,
) -> Op:
    """Register an op from a forward and its VJP (and optionally its shape rule) in one call."""
    made = Op(forward, name=name, save=save, variadic=variadic, outputs=outputs, index_inputs=index_inputs,
              **traits)
    made.vjp(vjp)
    made.rule = shape_rule
    return registry.add(made)


class Context:
    """What a VJP reads. ``ctx.shapes``, ``ctx.dtypes`` and ``ctx.needs`` (one entry per input), ``ctx.attrs``
    (the op's attribute values by name) and ``ctx.saved`` (the tensors named in ``save``: inputs, ``out``).
    Any other ``ctx.<name>`` reads a saved tensor or an attribute — so an op whose input or attribute is called
    ``shapes``, ``attrs`` … reads it from ``ctx.saved`` or ``ctx.attrs``. The compiler builds one per VJP call
    with positional fields, so no name of a user's can collide with the generated code's."""

    __slots__ = ("attrs", "saved", "shapes", "dtypes", "needs")

    def __init__(self, attrs: dict[str, Any], saved: dict[str, Any], shapes: tuple, dtypes: tuple,
                 needs: tuple) -> None:
        self.attrs, self.saved, self.shapes, self.dtypes, self.needs = attrs, saved, shapes, dtypes, needs

    def __getattr__(self, name: str) -> Any:  # called only for names that are not fields
        if name in type(self).__slots__:  # a field not yet set (a copy being made): no recursion through self.saved
            raise AttributeError(name)
        if name in self.saved:
            return self.saved[name]
        if name in self.attrs:
            return self.attrs[name]
        raise AttributeError(f"the VJP context has no {name!r}: saved {sorted(self.saved)}, attrs {sorted(self.attrs)}")
