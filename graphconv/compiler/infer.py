"""Shapes through a spec by its ops' shape rules — concretely (ints: the first call of a compiled op, ``graphconv
run``'s table) or symbolically (every size at once: what ``graphconv run`` proves). Imports no torch, except to run
an op without a shape rule on the meta device.

Concretely, :func:`concrete_shapes` gives every tensor's shape from the input shapes and the binding of the spec's
names, in microseconds: rules are plain arithmetic on ints.

Symbolically, :func:`infer_symbolic` makes every input dim a symbol (a size, ``>= 0``) and every integer attr a
symbol too, computes the derived dims and then each op's output shape as normal forms, and collects what the ops
require that the normal form cannot settle (``i_h + 2 * padding >= kernel_h``). Where a spec needs an attr's value
— ``dim=axis`` of a softmax, ``padding if padding == 'same' else …`` settled both ways — that attr takes its value
and inference starts again (the attr is then *fixed*: the proofs hold for that value). An op whose rule needs
concrete sizes, or that has no rule, makes its outputs *concrete only*: no proof goes through them.

A used spec's op (``uses:``) gets its shape rule here: :func:`spec_rule` binds its inputs' patterns to the shapes
it is given and runs its own ops' rules — on ints or symbols alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from graphconv.compiler.binding import is_wildcard, show_shape
from graphconv.errors import ShapeError, SpecError
from graphconv.graph.opgraph import OpNode, Spec
from graphconv.ops.shapes import ShapeRuleError, collecting, equal, require
from graphconv.syntax.claims import Claim
from graphconv.syntax.expr import Name, evaluate, to_source
from graphconv.syntax.symbolic import Dim, Namer, Undecided, assume_at_least, assuming, symbol
from graphconv.syntax.symbolic_expr import evaluate_symbolic

Shape = tuple  # of int | Dim


# --- concrete ---------------------------------------------------------------------------------------------------


def concrete_shapes(spec: Spec, env: dict[str, Any], input_shapes: Sequence[tuple[int, ...]], *,
                    into: dict[str, tuple] | None = None, dtype: Any = None) -> dict[str, tuple]:
    """Every tensor's shape (by tensor id) at these input shapes, with ``env`` the binding of the spec's names
    (``Binder.bind``). Raises ShapeError naming the op, its line and the input shapes where an op refuses its
    inputs; the shapes found before it are in ``into`` (when given). An op without a shape rule runs on the meta
    device (``dtype``: its inputs' dtype there; default float32)."""
    shapes = {} if into is None else into
    shapes.update(zip(spec.inputs, map(tuple, input_shapes)))
    for node in spec.ops():
        inputs = [shapes[t] if t is not None else None for t in node.inputs]
        attrs = {name: _argument(spec, node, expr, env) for name, expr in node.args.items()}
        if node.op.rule is None:
            outputs = _meta_shapes(spec, node, inputs, attrs, dtype)
        else:
            try:
                outputs = node.op.infer_shapes(inputs, attrs)
            except ShapeRuleError as error:
                raise op_shape_error(spec, node, str(error), inputs) from None
            except Exception as error:  # attrs the rule cannot read (a string for a size…), as the op would fail
                raise op_shape_error(spec, node, f"{type(error).__name__}: {error}", inputs) from None
        shapes.update(zip(node.outputs, _check_outputs(spec, node, outputs)))
    return shapes


def _argument(spec: Spec, node: OpNode, expr: Any, env: dict[str, Any]) -> Any:
    try:
        return _plain(evaluate(expr, env))
    except SpecError as error:
        raise SpecError(f"op {node.id} ({node.label}): {error.message}", path=spec.path, line=node.line,
                        column=node.column, source=spec.source) from None


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def op_shape_error(spec: Spec, node: OpNode, message: str, inputs: Sequence[Any]) -> ShapeError:
    """``op L (unfold) at line 40: <message> (inputs: input_batch (4, 3, 2, 2))``, placed at the op node."""
    given = ", ".join(f"{spec.tensor(t).name} {show_shape(shape)}" for t, shape in zip(node.inputs, inputs)
                      if t is not None and shape is not None)
    return ShapeError(f"op {node.id} ({node.label}) at line {node.line}: {message} (inputs: {given})",
                      path=spec.path, line=node.line, column=node.column, source=spec.source)


def _check_outputs(spec: Spec, node: OpNode, outputs: list) -> list:
    if len(outputs) != len(node.outputs):
        raise op_shape_error(spec, node, f"it makes {len(outputs)} output(s) but the diagram draws "
                                         f"{len(node.outputs)}", [])
    return outputs


def _meta_shapes(spec: Spec, node: OpNode, inputs: list, attrs: dict[str, Any], dtype: Any) -> list[tuple]:
    """The op's output shapes from running it on the meta device (an op without a shape rule: a plugin's)."""
    from graphconv.ops.lazy_torch import torch

    dtype = dtype or torch.float32
    tensors = [None if shape is None else torch.empty(shape, dtype=torch.int64 if name in node.op.index_inputs
                                                      else dtype, device="meta")
               for name, shape in zip(_input_names(node), inputs)]
    defaults = {a.name: a.default for a in node.op.attrs if not a.required}
    try:
        result = node.op.forward(*tensors, **{**defaults, **attrs})
    except SpecError:
        raise
    except Exception as error:
        raise op_shape_error(spec, node, f"{type(error).__name__}: {error}", inputs) from error
    return [tuple(t.shape) for t in (result if len(node.outputs) > 1 else (result,))]


def _input_names(node: OpNode) -> list[str]:
    op = node.op
    return [op.inputs[0]] * len(node.inputs) if op.variadic_inputs else list(op.inputs)


# --- a used spec's shape rule --------------------------------------------------------------------------------------


def spec_rule(spec: Spec) -> Callable[..., list[Shape]]:
    """The shape rule of ``spec`` called as an op (``uses:``): its outputs' shapes from its inputs' and its attrs,
    on ints or symbolic sizes. What it needs — its patterns, its ops' conditions, its declared shapes — it
    requires (``graphconv.ops.shapes.require``) of the caller's sizes."""

    def rule(*shapes: Shape, **attrs: Any) -> list[Shape]:
        env = _bind_patterns(spec, shapes, {**spec.meta.attrs, **attrs})
        found = dict(zip(spec.inputs, shapes))
        for node in spec.ops():
            inputs = [found[t] if t is not None else None for t in node.inputs]
            args = {name: _plain(_evaluate_in(spec, expr, env)) for name, expr in node.args.items()}
            if node.op.rule is None:
                raise Undecided(f"{spec.name}: op {node.id} ({node.op.name}) has no shape rule")
            try:
                outputs = node.op.infer_shapes(inputs, args)
            except ShapeRuleError as error:
                raise ShapeRuleError(f"{spec.name}, op {node.id} ({node.label}): {error}") from None
            found.update(zip(node.outputs, outputs))
        _require_declared(spec, env, found)
        outputs = [found[t] for t in spec.outputs]
        return outputs[0] if len(outputs) == 1 else outputs

    return rule


def _bind_patterns(spec: Spec, shapes: Sequence[Shape], attrs: dict[str, Any]) -> dict[str, Any]:
    """The spec's names from its inputs' shapes: a bare name binds at its first use, every later use and every
    literal or expression entry is required equal."""
    env = {k: _plain(v) for k, v in attrs.items()}
    patterns = spec.meta.inputs or {}
    later: list[tuple[str, Any, Any]] = []
    for name, shape in zip(spec.input_names, shapes):
        pattern = patterns.get(name)
        if pattern is None:
            continue
        if len(pattern) != len(shape):
            raise ShapeRuleError(f"{spec.name}: input {name} takes {len(pattern)} dims, got {len(shape)}")
        for entry, size in zip(pattern, shape):
            if isinstance(entry, Name) and not is_wildcard(entry) and entry.id not in env:
                env[entry.id] = size
            elif not is_wildcard(entry):
                later.append((name, entry, size))
    for dim in spec.dim_order:
        env[dim] = _evaluate_in(spec, spec.meta.dims[dim], env)
    for name, entry, size in later:
        require(equal(size, _evaluate_in(spec, entry, env)), f"{spec.name}: input {name} must fit "
                                                             f"{to_source(entry)}")
    return env


def _evaluate_in(spec: Spec, expr: Any, env: dict[str, Any]) -> Any:
    try:
        return evaluate_symbolic(expr, env)
    except SpecError as error:
        raise ShapeRuleError(f"{spec.name}: {to_source(expr)}: {error.message}") from None


def _require_declared(spec: Spec, env: dict[str, Any], found: dict[str, Shape]) -> None:
    for name, declared in spec.meta.shapes.items():
        shape = found.get(spec.tensor_id(name))
        if shape is None:
            continue
        if len(shape) != len(declared):
            raise ShapeRuleError(f"{spec.name}: tensor {name} has {len(shape)} dims but is declared with "
                                 f"{len(declared)}")
        for entry, size in zip(declared, shape):
            if not is_wildcard(entry):
                require(equal(size, _evaluate_in(spec, entry, env)), f"{spec.name}: tensor {name} must have its "
                                                                     "declared shape")


# --- symbolic -----------------------------------------------------------------------------------------------------


@dataclass
class Requirement:
    """A condition an op needs of the sizes that holds for some and not for others."""

    claim: Claim
    why: str
    node: OpNode

    def show(self, namer: Namer) -> str:
        return self.claim.show(namer)


@dataclass
class Inference:
    """The symbolic shapes of a spec. ``shapes``: tensor id → shape of normal forms, None where only concrete sizes
    are known (after ``concrete_only`` ops); ``env``: the spec's names as symbolic values."""

    shapes: dict[str, Shape | None]
    env: dict[str, Any]
    dims: list[str]  # input dims: symbols
    attrs: dict[str, int | None]  # integer attrs kept symbolic → the least value the proofs cover (None: any)
    fixed: list[str]  # integer attrs given their values (the spec needs them)
    opaque: list[str]  # derived dims without a normal form: symbols in their own right
    requirements: list[Requirement] = field(default_factory=list)
    concrete_only: dict[str, str] = field(default_factory=dict)  # op id → why its outputs have no normal form
    namer: Namer = field(default_factory=Namer)


class _Fix(Exception):
    """Inference needs these attrs' values: start again with them fixed."""

    def __init__(self, attrs: set[str]) -> None:
        self.attrs = attrs


def infer_symbolic(spec: Spec, attrs: dict[str, Any], ranks: dict[str, int] | None = None) -> Inference:
    """Symbolic shapes of every tensor, with ``attrs`` the attr values (integer ones become symbols where the spec
    lets them) and ``ranks`` the number of dims of the inputs without a pattern (their sizes become symbols named
    ``x[0]``, ``x[1]``…)."""
    symbolic_attrs = {k for k, v in attrs.items() if isinstance(v, int) and not isinstance(v, bool)}
    while True:
        try:
            with assuming():
                return _infer(spec, attrs, symbolic_attrs, ranks or {})
        except _Fix as fix:
            symbolic_attrs -= fix.attrs


def _infer(spec: Spec, attrs: dict[str, Any], symbolic_attrs: set[str], ranks: dict[str, int]) -> Inference:
    env = {k: symbol(k) if k in symbolic_attrs else _plain(v) for k, v in attrs.items()}
    dims = [name for name in spec.meta.symbols() if name not in env]
    env.update((name, symbol(name, nonnegative=True)) for name in dims)
    least = {name: _least(attrs[name]) for name in attrs if name in symbolic_attrs}
    for name, bound in least.items():
        if bound is not None:
            assume_at_least(env[name], bound)
    opaque = _derive(spec, env, symbolic_attrs)
    fixed = sorted(set(attrs) - symbolic_attrs - _non_integers(attrs))
    result = Inference({}, env, dims, least, fixed, opaque)
    result.shapes.update(zip(spec.inputs, _input_shapes(spec, env, ranks, symbolic_attrs)))
    for node in spec.ops():
        _infer_op(spec, node, env, symbolic_attrs, result)
    derived = [(dim, env[dim]) for dim in spec.dim_order]
    order = dims + [name for name in attrs if name in symbolic_attrs] + opaque
    result.namer = Namer(dict(reversed(derived)), order)  # of two dims with one normal form, the one derived last
    return result


def _least(value: int) -> int | None:
    """What the proofs assume of an integer attr, from its value: one >= 0 stands for every value >= 0 (what an
    op needs beyond that — ``stride >= 1`` — it requires); a negative one for any value."""
    return 0 if value >= 0 else None


def _non_integers(attrs: dict[str, Any]) -> set[str]:
    return {k for k, v in attrs.items() if not isinstance(v, int) or isinstance(v, bool)}


def _derive(spec: Spec, env: dict[str, Any], symbolic_attrs: set[str]) -> list[str]:
    """The derived dims into ``env``; one without a normal form becomes a symbol of its own name."""
    opaque = []
    for dim in spec.dim_order:
        try:
            env[dim] = evaluate_symbolic(spec.meta.dims[dim], env)
        except Undecided as error:
            _fix_attrs(error, symbolic_attrs)
            env[dim] = symbol(dim)
            opaque.append(dim)
        except Exception:  # fails for every value (the concrete binding reports it), or is not an integer
            env[dim] = symbol(dim)
            opaque.append(dim)
    return opaque


def _fix_attrs(error: Undecided, symbolic_attrs: set[str]) -> None:
    needed = error.symbols & symbolic_attrs
    if needed:
        raise _Fix(needed)


def _input_shapes(spec: Spec, env: dict[str, Any], ranks: dict[str, int], symbolic_attrs: set[str]) -> list:
    patterns = spec.meta.inputs or {}
    shapes = []
    for name in spec.input_names:
        pattern = patterns.get(name)
        if pattern is None:
            rank = ranks.get(name)
            shapes.append(None if rank is None else tuple(symbol(f"{name}[{axis}]", True) for axis in range(rank)))
            continue
        shape = []
        for axis, entry in enumerate(pattern):
            if is_wildcard(entry):
                shape.append(symbol(f"{name}[{axis}]", True))
                continue
            try:
                shape.append(evaluate_symbolic(entry, env))
            except Exception as error:  # no normal form: the size stands for itself
                if isinstance(error, Undecided):
                    _fix_attrs(error, symbolic_attrs)
                shape.append(symbol(f"{name}[{axis}]", True))
        shapes.append(tuple(shape))
    return shapes


def _infer_op(spec: Spec, node: OpNode, env: dict[str, Any], symbolic_attrs: set[str], result: Inference) -> None:
    inputs = [result.shapes.get(t) if t is not None else None for t in node.inputs]
    if any(shape is None for t, shape in zip(node.inputs, inputs) if t is not None):
        return _concrete_only(result, node, "an input has concrete sizes only")
    if node.op.rule is None:
        return _concrete_only(result, node, f"op {node.op.name} has no shape rule")
    try:
        args = {name: _symbolic_argument(expr, env, symbolic_attrs) for name, expr in node.args.items()}
        with collecting() as found:
            outputs = node.op.infer_shapes(inputs, args)
    except Undecided as error:
        _fix_attrs(error, symbolic_attrs)
        return _concrete_only(result, node, str(error))
    except _Fix:
        raise
    except Exception as error:  # fails for every size, or reads what has no normal form: the concrete pass says
        return _concrete_only(result, node, f"{type(error).__name__}: {error}")
    if len(outputs) != len(node.outputs):
        return _concrete_only(result, node, "its number of outputs depends on the sizes")
    shown = {r.claim.show() for r in result.requirements}
    for claim, why in found:  # one line per condition: the first op that needs it
        if claim.show() not in shown:
            shown.add(claim.show())
            result.requirements.append(Requirement(claim, why, node))
    result.shapes.update(zip(node.outputs, outputs))
    for shape in outputs:
        for size in shape:
            assume_at_least(size, 0)  # a tensor that exists has sizes >= 0


class Opaque:
    """An op argument that has no normal form (``e ** -0.5``): fine for a rule that does not read it (a scale); a
    rule that computes with it fails (TypeError), and the op's outputs are then concrete only."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: Any) -> bool:
        raise TypeError(f"{self.text} has no normal form")

    __hash__ = None

    def __repr__(self) -> str:
        return self.text


def _symbolic_argument(expr: Any, env: dict[str, Any], symbolic_attrs: set[str]) -> Any:
    try:
        return _plain(evaluate_symbolic(expr, env))
    except Exception as error:  # no normal form (the concrete pass evaluates it, or reports why it cannot)
        if isinstance(error, Undecided):
            _fix_attrs(error, symbolic_attrs)
        return Opaque(to_source(expr))


def _concrete_only(result: Inference, node: OpNode, why: str) -> None:
    result.concrete_only[node.id] = why
    result.shapes.update((t, None) for t in node.outputs)


ANY = object()  # a wildcard entry of a declared shape


def declared_symbolic(spec: Spec, name: str, env: dict[str, Any]) -> list | None:
    """A tensor's declared shape (``shapes:``, or an input's pattern) as normal forms: :data:`ANY` for a wildcard
    entry, None for one without a normal form."""
    declared = spec.meta.shapes.get(name) or (spec.meta.inputs or {}).get(name)
    if declared is None:
        return None
    values = []
    for entry in declared:
        try:
            values.append(ANY if is_wildcard(entry) else evaluate_symbolic(entry, env))
        except (Undecided, SpecError):
            values.append(None)
    return values


def proved(declared: list | None, inferred: Shape | None) -> bool:
    """Whether a declared shape equals the inferred one for every size: same rank, the same normal form in each
    entry (a wildcard matches any)."""
    if declared is None or inferred is None or len(declared) != len(inferred):
        return False
    return all(d is ANY or (d is not None and _same(d, i)) for d, i in zip(declared, inferred))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Dim) and isinstance(b, Dim):
        return a.key == b.key
    return not isinstance(a, Dim) and not isinstance(b, Dim) and a == b

