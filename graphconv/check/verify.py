"""Checking hand-written VJPs against torch autograd, and compiled specs against the autograd oracle and their
reference.

An op is checked the way specs run it: each sample becomes a one-op spec, compiled, and
``torch.autograd.gradcheck`` (float64) compares its hand-written VJP with finite differences — so a wrong
``save=`` declaration or a gradient of the wrong shape fails too. A spec is gradchecked on inputs made from its
``example`` dims and compared in value, gradients and second derivatives with the autograd oracle (its ops'
forwards under torch autograd, see graphconv.check.oracle) — with or without a ``reference:``; when either check
fails, the oracle blames the op whose VJP is wrong. A spec with a ``reference:`` is then compared in value and
gradient with it (see graphconv.check.reference). ``graphconv check`` and tests/test_ops_gradcheck.py are thin
loops over these functions.
"""
from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from graphconv.check.reference import ALLOWED_MODULES, call_reference, read_reference, resolve
from graphconv.compiler.examples import derived_dims, example_inputs
from graphconv.errors import SpecError
from graphconv.graph.build import build_spec
from graphconv.graph.opgraph import Spec
from graphconv.ops.lazy_torch import torch
from graphconv.check.memory import is_out_of_memory
from graphconv.ops.registry import Context, Op, Registry
from graphconv.syntax.diagram import Diagram, Edge, Node
from graphconv.syntax.expr import show_value
from graphconv.syntax.metadata import Metadata

SEED = 0


@dataclass
class Check:
    """One row of ``graphconv check``: what was checked, on what, in which case, and how it went."""

    what: str  # "op gradcheck", "spec gradcheck", "value", "grad <input>"
    subject: str  # an op name, a spec name or a reference function
    case: str
    ok: bool
    detail: str = ""


# --- ops ------------------------------------------------------------------------------------------------------


def samples(op: Op) -> list[tuple[tuple, dict[str, Any]]]:
    """The op's declared sample inputs, as (tensors, attrs) pairs; [] when it declares none."""
    return list(op.sample_inputs()) if op.sample_inputs is not None else []


def single_op(op: Op, tensors: Sequence[Any], attrs: dict[str, Any]) -> Any:
    """A compiled one-op spec that applies ``op`` to graph inputs shaped like ``tensors`` (None: an optional
    input left out), with ``attrs`` as the spec's attrs."""
    from graphconv.compiler.compiled import CompiledOp

    diagram = Diagram("LR")
    diagram.nodes["op"] = Node("op", f"{op.name}({', '.join(f'{a}={a}' for a in attrs)})", "circle", 1, 1)
    params = [f"{op.inputs[0]}{i}" for i in range(len(tensors))] if op.variadic_inputs else list(op.inputs)
    inputs = []
    for line, (param, tensor) in enumerate(zip(params, tensors), start=2):
        if tensor is None:
            continue
        diagram.nodes[param] = Node(param, param, "rect", line, 1)
        diagram.edges.append(Edge(param, "op", None if op.variadic_inputs else param, "arrow", line, 1))
        inputs.append(param)
    outputs = [f"out{i}" for i in range(_output_count(op, tensors, attrs))]
    for line, name in enumerate(outputs, start=len(params) + 2):
        diagram.nodes[name] = Node(name, name, "rect", line, 1)
        diagram.edges.append(Edge("op", name, None, "arrow", line, 1))
    meta = Metadata(inputs={name: None for name in inputs}, outputs=outputs, attrs={a: None for a in attrs})
    return CompiledOp(build_spec(diagram, meta, Registry([op]), f"{op.name}_sample"))


def _output_count(op: Op, tensors: Sequence[Any], attrs: dict[str, Any]) -> int:
    if op.outputs is not None:
        return op.outputs
    result = op.forward(*tensors, **attrs)
    return len(result) if isinstance(result, (tuple, list)) else 1


def gradcheck_op(op: Op, tensors: Sequence[Any], attrs: dict[str, Any]) -> str | None:
    """Gradcheck ``op``'s VJP on one sample; None when it holds, else what went wrong."""
    compiled = single_op(op, tensors, attrs)
    present = [(name, t) for name, t in zip(_input_names(op, tensors), tensors) if t is not None]
    return gradcheck(lambda *xs: compiled(*xs, **attrs), [t for _, t in present],
                     input_names=[name for name, _ in present])


def _input_names(op: Op, tensors: Sequence[Any]) -> list[str]:
    return [f"{op.inputs[0]}[{i}]" for i in range(len(tensors))] if op.variadic_inputs else list(op.inputs)


def gradcheck(function: Any, tensors: Sequence[Any], *, fast: bool = False, input_names: Sequence[str] = (),
              output_names: Sequence[str] = ()) -> str | None:
    """``torch.autograd.gradcheck`` of ``function`` at ``tensors`` (floating ones get gradients); None when it
    holds, else what went wrong, in one line (see :func:`gradcheck_message`). ``fast`` checks random projections
    of the Jacobian instead of every entry (gradcheck's ``fast_mode``): enough for a spec whose ops were each
    checked in full."""
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]
    try:
        with one_thread():
            torch.autograd.gradcheck(lambda *xs: _floating(function(*xs)), tuple(inputs), raise_exception=True,
                                     fast_mode=fast)
    except Exception as error:  # gradcheck's own failure, or the op's: either way the check fails
        return gradcheck_message(error, input_names, output_names)
    return None


def _floating(outputs: Any) -> Any:
    """Bool and integer outputs (a comparison's) as float64: gradcheck then checks that no gradient flows."""
    if isinstance(outputs, (tuple, list)):
        return tuple(_floating(o) for o in outputs)
    return outputs if outputs.is_floating_point() else outputs.to(torch.float64)


JACOBIAN_MISMATCH = re.compile(r"Jacobian mismatch for output (\d+) with respect to input (\d+)")
SLOW_MODE_DIFFERENCE = re.compile(r"max per-element difference \(slow mode\) is: (\S+?)\.?\s*$", re.MULTILINE)


def gradcheck_message(error: Exception, input_names: Sequence[str] = (), output_names: Sequence[str] = ()) -> str:
    """A gradcheck failure in one whole line. A Jacobian mismatch (whose message goes on with both Jacobians in
    full) says which output and input, by name where known, and the largest difference; anything else keeps its
    whole message, its lines joined."""
    text = str(error)
    found = JACOBIAN_MISMATCH.search(text)
    if found is None:
        return f"{type(error).__name__}: {' '.join(text.split())}".rstrip(": ")
    output, input = int(found.group(1)), int(found.group(2))
    message = (f"{type(error).__name__}: Jacobian mismatch: the gradient of output {output}"
               f"{_named(output_names, output)} with respect to input {input}{_named(input_names, input)} differs "
               f"from finite differences")
    largest = SLOW_MODE_DIFFERENCE.search(text)
    return message + (f" (max |Δ| {float(largest.group(1)):.1e})" if largest else "")


def _named(known: Sequence[str], index: int) -> str:
    return f" ({known[index]!r})" if index < len(known) else ""


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread meanwhile: gradcheck makes thousands of calls on tiny tensors, where more threads
    only cost start-up and, on a busy machine, a hundredfold slowdown from oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_op(op: Op) -> list[Check]:
    """One row per sample of ``op``; an op without samples is a failed check."""
    made = samples(op)
    if not made:
        return [Check("op gradcheck", op.name, "-", False, f"op {op.name} declares no samples (@{op.name}.samples)")]
    rows = []
    for index, (tensors, attrs) in enumerate(made, start=1):
        problem = _guarded(lambda: check_sample(op, tensors, attrs))
        rows.append(Check("op gradcheck", op.name, f"sample {index}: {_describe(tensors, attrs)}", problem is None,
                          problem or ""))
    return rows


def check_sample(op: Op, tensors: Sequence[Any], attrs: dict[str, Any]) -> str | None:
    """The gradcheck of ``op``'s VJP on one sample, then the ``fresh_grads`` promise where the op makes it."""
    problem = gradcheck_op(op, tensors, attrs)
    if problem is None and op.fresh_grads:
        problem = fresh_grads_problem(op, tensors, attrs)
    return problem


def fresh_grads_problem(op: Op, tensors: Sequence[Any], attrs: dict[str, Any]) -> str | None:
    """None when the gradients ``op``'s VJP returns on this sample are its own, as its ``fresh_grads`` trait
    promises — no memory shared with an input, an output, the incoming gradient or another returned gradient —
    else which one is not."""
    inputs = [t.detach() if t is not None else None for t in tensors]
    with torch.no_grad():
        out = op.forward(*inputs, **attrs)
        outputs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        grad = tuple(torch.randn_like(o) if o.is_floating_point() else None for o in outputs)
        saved = {name: t for name, t in zip(op.inputs, inputs) if name in op.save}
        if "out" in op.save:
            saved["out"] = out
        context = Context({a.name: a.default for a in op.attrs if not a.required} | dict(attrs), saved,
                          tuple(t.shape if t is not None else None for t in inputs),
                          tuple(t.dtype if t is not None else None for t in inputs),
                          tuple(t is not None and t.is_floating_point() for t in inputs))
        grads = op.backward(context, grad if len(outputs) > 1 else grad[0])
    held = [_memory(t) for t in (*inputs, *outputs, *grad) if t is not None]
    for position, made in enumerate(grads):
        if made is None or made.numel() == 0:
            continue
        if _memory(made) in held:
            return (f"fresh_grads: the gradient for input {position} ({_input_names(op, tensors)[position]}) shares "
                    f"memory with an input, an output, the incoming gradient or another gradient")
        held.append(_memory(made))
    return None


def _memory(tensor: Any) -> int:
    return tensor.untyped_storage().data_ptr()


def _guarded(check: Any) -> str | None:
    """What ``check()`` returns (None: it holds), or the message of what it raised — unless that is an allocation
    that failed, which is no verdict on the op (``graphconv check --max-memory`` reports it)."""
    try:
        return check()
    except Exception as error:  # an op or a spec that cannot even run fails its check
        if is_out_of_memory(error):
            raise
        return _message(error)


def _message(error: Exception) -> str:
    return error.message if isinstance(error, SpecError) else f"{type(error).__name__}: {error}"


def _describe(tensors: Sequence[Any], attrs: dict[str, Any]) -> str:
    shapes = ", ".join("None" if t is None else "x".join(map(str, t.shape)) or "scalar" for t in tensors)
    extra = ", ".join(f"{k}={show_value(v)}" for k, v in attrs.items())
    return f"({shapes}){' ' + extra if extra else ''}"


# --- specs ----------------------------------------------------------------------------------------------------


def cases(spec: Spec, extra: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, attrs and input dims) for the example with default attrs, then for each extra case over it."""
    base = {**spec.example_dims, **{k: _plain(v) for k, v in spec.attrs.items()}}
    found = [("example", base)]
    for case in extra:
        label = ", ".join(f"{k}={show_value(v)}" for k, v in case.items())
        found.append((label, {**base, **{k: _plain(v) for k, v in case.items()}}))
    return found


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def check_spec(spec: Spec, *, allowed: Iterable[str] = ALLOWED_MODULES, ops: bool = True,
               shapes: dict[str, tuple[int, ...]] | None = None) -> list[Check]:
    """Every check of ``graphconv check``: the spec's ops on their samples (unless ``ops`` is False), then per
    case the compiled spec's gradcheck, its agreement with the autograd oracle (with the op to blame when either
    fails), and its value and gradients against the reference. ``shapes``: whole input shapes by name, for inputs
    without a pattern (over the example's). A bad reference raises SpecError."""
    from graphconv.check.oracle import Oracle
    from graphconv.compiler.compiled import CompiledOp

    reference = read_reference(spec)
    function = resolve(spec, reference, allowed) if reference is not None else None
    rows = []
    for op in {node.op.name: node.op for node in spec.ops()}.values() if ops else ():
        rows.extend(check_op(op))
    compiled, oracle = CompiledOp(spec), Oracle(spec)
    for index, (label, values) in enumerate(cases(spec, reference.cases if reference else ())):
        generator = torch.Generator().manual_seed(SEED + index)
        attrs = {k: v for k, v in values.items() if k in spec.attrs}
        try:
            inputs = example_inputs(spec, values, generator, shapes=shapes)
            env = derived_dims(spec, values)
        except SpecError as error:  # a case whose dims do not work out fails; the other cases still run
            rows.append(Check("spec gradcheck", spec.name, label, False, error.message))
            continue
        problem = _guarded(lambda: gradcheck(lambda *xs: compiled(*xs, **attrs), inputs, fast=True,
                                             input_names=spec.input_names, output_names=spec.output_names))
        rows.append(Check("spec gradcheck", spec.name, label, problem is None, problem or ""))
        agreement = check_oracle(compiled, oracle, inputs, attrs, label, generator)
        rows.append(agreement)
        if problem is not None or not agreement.ok:
            rows.append(check_blame(compiled, inputs, attrs, label, generator, agreement.ok))
        if function is not None:
            def call(tensors: list[Any]) -> Any:
                return call_reference(spec, function, reference, {**env, **dict(zip(spec.input_names, tensors))})

            rows.extend(compare(spec, compiled, call, inputs, attrs, reference.function, label, generator))
    return rows


def check_oracle(compiled: Any, oracle: Any, inputs: list[Any], attrs: dict[str, Any], label: str,
                 generator: Any) -> Check:
    """The compiled op's value, gradients and second derivatives against the autograd oracle's (float64)."""
    from graphconv.check.oracle import derivatives, differences, max_error, reference

    spec = compiled.spec
    try:
        probes, want = reference(oracle, inputs, attrs, generator)
        got = derivatives(lambda *xs: compiled(*xs, **attrs), inputs, probes)
    except Exception as error:
        if is_out_of_memory(error):
            raise
        return Check("oracle", spec.name, label, False, _message(error))
    found = differences(got, want, spec.output_names, spec.input_names)
    if found:
        return Check("oracle", spec.name, label, False, "; ".join(map(str, found)))
    error = max(max_error(got.values, want.values), max_error(got.grads, want.grads),
                max_error(got.second, want.second))
    return Check("oracle", spec.name, label, True, f"value, gradients, second derivatives: max |Δ| {error:.1e}")


def check_blame(compiled: Any, inputs: list[Any], attrs: dict[str, Any], label: str, generator: Any,
                agrees: bool) -> Check:
    """The op whose VJP disagrees with autograd of its forward — or, when none does, the compiler (unless the
    compiled op ``agrees`` with the oracle: then only finite differences disagreed)."""
    from graphconv.check.oracle import blame_compiled

    spec = compiled.spec
    try:
        found = blame_compiled(compiled, inputs, attrs, generator)
    except Exception as error:
        if is_out_of_memory(error):
            raise
        return Check("blame", spec.name, label, False, _message(error))
    if found is None and agrees:
        return Check("blame", spec.name, label, False, "every op's VJP and the compiled op agree with autograd: only "
                                                       "finite differences differ (a point where the spec is not "
                                                       "differentiable, or a loss of precision)")
    if found is None:
        return Check("blame", spec.name, label, False, "every op's VJP agrees with autograd of its forward at these "
                                                       "values: the compiled op puts them together wrongly (a "
                                                       "compiler bug)")
    return Check("blame", f"op {found.node} ({found.label})", label, False, str(found))


def compare(spec: Spec, compiled: Any, reference: Any, inputs: list[Any], attrs: dict[str, Any], subject: str,
            label: str, generator: Any) -> list[Check]:
    """Value and input gradients of ``compiled`` and ``reference`` at ``inputs`` under one random output grad.
    Whatever the reference returns — another number of outputs, a shape, a dtype, something not a tensor — is a
    failed row, never an exception. Int and bool inputs (targets, masks) have no gradient to compare."""
    ours = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    theirs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    floating = [i for i, t in enumerate(inputs) if t.is_floating_point()]
    try:
        got = _as_tuple(compiled(*ours, **attrs))
        with warnings.catch_warnings():  # the reference's performance hints are not the spec's business
            warnings.simplefilter("ignore", UserWarning)
            want = _as_tuple(reference(theirs))
    except Exception as error:
        if is_out_of_memory(error):
            raise
        return [Check("value", subject, label, False, _message(error))]
    value = _close("value", subject, label, got, want)
    if not value.ok and _mismatch(got, want):  # no gradients to compare with outputs that do not match
        return [value]
    try:
        upstream = [torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in want]
        got_grads = _input_grads(got, [ours[i] for i in floating], upstream)
        want_grads = _input_grads(want, [theirs[i] for i in floating], upstream)
    except Exception as error:
        if is_out_of_memory(error):
            raise
        return [value, Check("grad", subject, label, False, f"cannot compare the gradients: {_message(error)}")]
    rows = [value]
    for i, g, w in zip(floating, got_grads, want_grads):
        rows.append(_close(f"grad {spec.input_names[i]}", subject, label, [_zeros_if_none(g, w)],
                           [_zeros_if_none(w, g)]))
    return rows


def _input_grads(outputs: Sequence[Any], inputs: Sequence[Any], upstream: Sequence[Any]) -> tuple:
    """The gradients of ``inputs`` through the outputs that have one (a reference may return a constant)."""
    pairs = [(out, grad) for out, grad in zip(outputs, upstream) if out.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    return torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True)


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _zeros_if_none(grad: Any, other: Any) -> Any:
    if grad is not None:
        return grad
    return torch.zeros_like(other) if other is not None else torch.zeros(())


def _mismatch(got: Sequence[Any], want: Sequence[Any]) -> str | None:
    """How the spec's outputs and the reference's differ in kind (count, type, shape, dtype), or None."""
    if len(got) != len(want):
        return f"the spec has {len(got)} output(s), the reference {len(want)}"
    for index, (g, w) in enumerate(zip(got, want)):
        which = f"output {index}: " if len(got) > 1 else ""
        if not isinstance(w, torch.Tensor):
            return f"{which}the reference returned {type(w).__name__} {show_value(w)}, not a tensor"
        if tuple(g.shape) != tuple(w.shape):
            return f"{which}shape {tuple(g.shape)}, reference {tuple(w.shape)}"
        if g.dtype != w.dtype:
            return f"{which}dtype {str(g.dtype).replace('torch.', '')}, reference {str(w.dtype).replace('torch.', '')}"
    return None


def _close(what: str, subject: str, label: str, got: Sequence[Any], want: Sequence[Any]) -> Check:
    problem = _mismatch(got, want)
    if problem is not None:
        return Check(what, subject, label, False, problem)
    pairs = [(_comparable(g), _comparable(w)) for g, w in zip(got, want)]
    error = max((float((g - w).abs().max()) if g.numel() else 0.0 for g, w in pairs), default=0.0)
    ok = all(torch.allclose(g, w, rtol=1e-7, atol=1e-7) for g, w in pairs)
    return Check(what, subject, label, ok, f"max |Δ| {error:.1e}")


def _comparable(tensor: Any) -> Any:
    """``tensor`` detached, in a dtype that subtracts (bool and integers as float64)."""
    return tensor.detach().to(torch.promote_types(tensor.dtype, torch.float64))
