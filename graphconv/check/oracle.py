"""The autograd oracle: any spec's value, first and second derivatives, with no hand-written VJP involved.

Every op's forward is plain torch code, so running the forwards of a spec as written (no passes) in topological
order under torch autograd gives its outputs as a differentiable function of its inputs; torch's derivatives of
that function are the reference every backend (generated code, interpreter, exported module, spec used as an op)
must match. A spec used as an op (``uses:``) is expanded into its own ops' forwards, so its compiled backward is
not involved either.

When a backend disagrees, :func:`blame` says which op is wrong: it replays the graph on the actual inputs and, op
by op, compares the hand-written VJP — called with the context the compiler builds — with autograd of that op's
own forward at the actual intermediate values: the gradients first, then the second derivatives (the VJP
differentiated once more). When no op disagrees, the ops are right and the way they are put together is not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from graphconv.compiler import interpreter
from graphconv.compiler.binding import Binder
from graphconv.compiler.codegen.generated import Errors
from graphconv.compiler.program import Program, Step
from graphconv.compiler.used_specs import SpecForward
from graphconv.graph.opgraph import Spec


class Oracle:
    """``oracle(*inputs, **attrs)``: the spec's outputs computed by its ops' forwards alone, differentiable by
    torch autograd. Called like the compiled op (one tensor, or a tuple for several outputs)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.program = Program(spec)
        self.binder = Binder(spec)
        self.forwards = [plain_forward(step) for step in self.program.steps]

    def arguments(self, inputs: Sequence[torch.Tensor], attrs: dict[str, Any]) -> list[dict[str, Any]]:
        """Each step's attribute values for these inputs' shapes and these attrs (as a compiled op binds them)."""
        env = self.binder.bind([tuple(t.shape) for t in inputs], self.binder.attrs(attrs))
        return self.program.arguments(env)

    def values(self, inputs: Sequence[torch.Tensor], attrs: dict[str, Any]) -> list[Any]:
        """Every value of the program (by slot), computed under autograd from ``inputs``."""
        values: list[Any] = [None] * len(self.program.slot)
        for slot, tensor in zip(self.program.input_slots, inputs):
            values[slot] = tensor
        for step, forward, args in zip(self.program.steps, self.forwards, self.arguments(inputs, attrs)):
            result = forward(*[values[s] if s is not None else None for s in step.inputs], **args)
            for slot, value in zip(step.outputs, as_tuple(result) if len(step.outputs) > 1 else (result,)):
                values[slot] = value
        return values

    def __call__(self, /, *inputs: torch.Tensor, **attrs: Any) -> Any:  # an attr may be named self
        values = self.values(inputs, attrs)
        outputs = tuple(values[s] for s in self.program.output_slots)
        return outputs[0] if len(outputs) == 1 else outputs


def plain_forward(step: Step) -> Callable:
    """The step's forward as plain torch: a spec used as an op runs its own ops' forwards (its oracle)."""
    forward = step.op.forward
    return Oracle(forward.spec) if isinstance(forward, SpecForward) else forward


def as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


# --- derivatives ----------------------------------------------------------------------------------------------


@dataclass
class Probes:
    """The random vectors derivatives are taken along: one upstream gradient per output (first derivatives are
    ⟨upstream, f(x)⟩'s gradient), one direction per input (second derivatives are ⟨direction, gradient⟩'s)."""

    upstream: list[torch.Tensor]
    directions: list[torch.Tensor | None]

    @classmethod
    def draw(cls, outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
             generator: torch.Generator) -> "Probes":
        return cls([_randn_like(t, generator) for t in outputs],
                   [_randn_like(t, generator) if t.is_floating_point() else None for t in inputs])


def _randn_like(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype).to(tensor.device)


@dataclass
class Derivatives:
    """A function's outputs at some inputs, its gradients and second derivatives along :class:`Probes` (a
    gradient that does not depend on an input counts as zeros)."""

    values: tuple[torch.Tensor, ...]
    grads: list[torch.Tensor | None] = field(default_factory=list)
    second: list[torch.Tensor | None] = field(default_factory=list)


def derivatives(function: Callable, inputs: Sequence[torch.Tensor], probes: Probes, *, order: int = 2
                ) -> Derivatives:
    """``function(*inputs)``'s values, and its derivatives up to ``order`` (0, 1 or 2) along ``probes``."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point() and order > 0) for t in inputs]
    with torch.enable_grad():
        values = as_tuple(function(*leaves))
        found = Derivatives(tuple(v.detach() for v in values))
        if order == 0:
            return found
        grads = _grad(values, leaves, probes.upstream, create_graph=order > 1)
        found.grads = [g.detach() if g is not None else None for g in grads]
        if order > 1:
            contraction = [(g * d).sum() for g, d in zip(grads, probes.directions) if g is not None and d is not None]
            found.second = [g.detach() if g is not None else None for g in _grad(contraction, leaves, None)]
    return found


def reference(oracle: Oracle, inputs: Sequence[torch.Tensor], attrs: dict[str, Any], generator: torch.Generator,
              *, order: int = 2) -> tuple[Probes, Derivatives]:
    """The oracle's derivatives at ``inputs`` along probes drawn from ``generator`` (to take a backend's along)."""
    with torch.no_grad():
        outputs = as_tuple(oracle(*inputs, **attrs))
    probes = Probes.draw(outputs, inputs, generator)
    return probes, derivatives(lambda *xs: oracle(*xs, **attrs), inputs, probes, order=order)


def _grad(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], upstream: Sequence[Any] | None, *,
          create_graph: bool = False, retain_graph: bool | None = None) -> list[torch.Tensor | None]:
    """``torch.autograd.grad`` that leaves out outputs no input reaches and gives None for inputs that get none."""
    upstream = upstream if upstream is not None else [None] * len(outputs)
    pairs = [(o, u) for o, u in zip(outputs, upstream) if isinstance(o, torch.Tensor) and o.requires_grad]
    wanted = [t for t in inputs if t.requires_grad]
    if not pairs or not wanted:
        return [None] * len(inputs)
    found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [u for _, u in pairs], allow_unused=True,
                                     create_graph=create_graph, retain_graph=retain_graph))
    return [next(found) if t.requires_grad else None for t in inputs]


@dataclass
class Difference:
    """One quantity on which a backend and the oracle disagree."""

    what: str  # "value of output y", "gradient of input x", "second derivative of input x"
    error: float  # max |Δ| (inf for a shape mismatch or a NaN on one side only)

    def __str__(self) -> str:
        return f"{self.what} differs: max |Δ| {self.error:.1e}"


def differences(got: Derivatives, want: Derivatives, output_names: Sequence[str],
                input_names: Sequence[str]) -> list[Difference]:
    """Every value, gradient and second derivative on which ``got`` and ``want`` disagree."""
    found = []
    quantities = [(f"value of output {name!r}", g, w) for name, g, w in zip(output_names, got.values, want.values)]
    quantities += [(f"gradient of input {name!r}", g, w) for name, g, w in zip(input_names, got.grads, want.grads)]
    quantities += [(f"second derivative of input {name!r}", g, w)
                   for name, g, w in zip(input_names, got.second, want.second)]
    for what, g, w in quantities:
        error = mismatch(g, w)
        if error is not None:
            found.append(Difference(what, error))
    return found


def max_error(got: Sequence[Any], want: Sequence[Any]) -> float:
    """The largest |Δ| over pairs of tensors (None counting as zeros), 0 when there are none."""
    errors = [_error(*_fill(g, w)) for g, w in zip(got, want)]
    return max([e for e in errors if e is not None], default=0.0)


def mismatch(got: torch.Tensor | None, want: torch.Tensor | None) -> float | None:
    """None when ``got`` and ``want`` agree (a relative 1e-7, NaN where both are NaN), else their max |Δ|."""
    got, want = _fill(got, want)
    if got is None:
        return None
    if got.shape != want.shape:
        return float("inf")
    scale = max(1.0, float(want.abs().nan_to_num(posinf=0.0, neginf=0.0).max()) if want.numel() else 1.0)
    if torch.allclose(got, want, rtol=1e-7, atol=1e-7 * scale, equal_nan=True):
        return None
    return _error(got, want)


def _fill(got: Any, want: Any) -> tuple[Any, Any]:
    """A missing gradient is zeros."""
    if got is None and want is not None:
        return torch.zeros_like(want), want
    if want is None and got is not None:
        return got, torch.zeros_like(got)
    return got, want


def _error(got: torch.Tensor | None, want: torch.Tensor | None) -> float | None:
    if got is None:
        return None
    if got.shape != want.shape:
        return float("inf")
    if not got.numel():
        return 0.0
    delta = (got.double() - want.double()).abs()
    one_sided_nan = got.isnan() ^ want.isnan()
    return float("inf") if bool(one_sided_nan.any()) else float(delta.nan_to_num(nan=0.0).max())


# --- blame ----------------------------------------------------------------------------------------------------


@dataclass
class Blame:
    """The op whose hand-written VJP disagrees with autograd of its own forward."""

    node: str
    label: str
    line: int | None
    input: str  # the input whose gradient differs
    order: int  # 1: the gradient differs; 2: the VJP's own derivative (a second derivative) differs
    error: float
    path: str | None = None
    inner: "Blame | None" = None  # for a spec used as an op: the op inside it that is wrong

    def __str__(self) -> str:
        what = "gradient" if self.order == 1 else "second derivative (its VJP differentiated)"
        where = f"{self.path}, line {self.line}" if self.path else f"line {self.line}"
        text = (f"op {self.node} ({self.label}) at {where}: its VJP's {what} for input {self.input!r} differs from "
                f"autograd of its forward by max |Δ| {self.error:.1e}")
        return text + (f"; inside it, {self.inner}" if self.inner else "")


def blame(program: Program, args: list[dict[str, Any]], inputs: Sequence[torch.Tensor],
          generator: torch.Generator) -> Blame | None:
    """The first op (in execution order) whose VJP disagrees with autograd of its forward at the values the
    graph computes from ``inputs``; None when every op's VJP agrees."""
    with torch.no_grad():
        _, _, values = interpreter.forward(program, args, [t.detach() for t in inputs], save=False, keep=True)
    for index in range(len(program.steps)):
        found = blame_step(program, index, args[index], values, generator)
        if found is not None:
            return found
    return None


def blame_step(program: Program, index: int, args: dict[str, Any], values: Sequence[Any],
               generator: torch.Generator) -> Blame | None:
    """Step ``index``'s VJP against autograd of its forward at ``values`` (by slot): gradients, then second
    derivatives. A value the op reads twice is one leaf: its gradient is the sum over the inputs it feeds."""
    step = program.steps[index]
    leaves = {slot: _leaf(values[slot]) for slot in step.read_slots()}
    wanted = [slot for slot, leaf in leaves.items() if isinstance(leaf, torch.Tensor) and leaf.requires_grad]
    if not wanted:
        return None
    inputs = [leaves[slot] if slot is not None else None for slot in step.inputs]
    with torch.enable_grad():
        outputs = as_tuple(plain_forward(step)(*inputs, **args))
        probes = Probes.draw(outputs, [leaves[slot] for slot in wanted], generator)
        want = _grad(outputs, [leaves[slot] for slot in wanted], probes.upstream, create_graph=True)
        by_position = run_vjp(program, index, args, inputs, outputs, probes.upstream)
        got = [_sum([g for g, s in zip(by_position, step.inputs) if s == slot]) for slot in wanted]
        for slot, g, w in zip(wanted, got, want):
            error = mismatch(_detached(g), _detached(w))
            if error is not None:
                return _blame(program, index, slot, 1, error, args, inputs, generator)
        second_got = _grad([(g * d).sum() for g, d in zip(got, probes.directions) if g is not None],
                           [leaves[slot] for slot in wanted], None, retain_graph=True)
        second_want = _grad([(w * d).sum() for w, d in zip(want, probes.directions) if w is not None],
                            [leaves[slot] for slot in wanted], None)
    for slot, g, w in zip(wanted, second_got, second_want):
        error = mismatch(g, w)
        if error is not None:
            return _blame(program, index, slot, 2, error, args, inputs, generator)
    return None


def run_vjp(program: Program, index: int, args: dict[str, Any], inputs: Sequence[Any],
            outputs: Sequence[torch.Tensor], upstream: Sequence[torch.Tensor]) -> Sequence[Any]:
    """Step ``index``'s hand-written VJP, called as the interpreter calls it: its context laid out by the program
    from these inputs and outputs, with the input shapes and dtypes and which inputs need a gradient."""
    step = program.steps[index]
    values: list[Any] = [None] * len(program.names)
    meta: dict[int, tuple] = {}
    for slot, value in zip(step.inputs, inputs):
        if slot is not None:
            values[slot], meta[slot] = value, (value.shape, value.dtype)
    for slot, value in zip(step.outputs, outputs):
        values[slot] = value
    needs = tuple(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)
    return interpreter.run_vjp(program, Errors(program), index, args, values, meta, needs, list(upstream))


def _leaf(value: Any) -> Any:
    """A fresh leaf with ``value``'s entries, wanting a gradient when it is floating point."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.detach().clone().requires_grad_(value.is_floating_point())


def _sum(grads: Sequence[Any]) -> Any:
    present = [g for g in grads if g is not None]
    return sum(present[1:], present[0]) if present else None


def _detached(tensor: Any) -> Any:
    return tensor.detach() if isinstance(tensor, torch.Tensor) else tensor


def _blame(program: Program, index: int, slot: int, order: int, error: float, args: dict[str, Any],
           inputs: Sequence[Any], generator: torch.Generator) -> Blame:
    step = program.steps[index]
    node = step.node
    names = "/".join(name for name, s in zip(step.input_names(), step.inputs) if s == slot)
    found = Blame(node.id, node.label, node.line, names, order, error, program.spec.path)
    forward = step.op.forward
    if isinstance(forward, SpecForward):  # a spec used as an op: which of its own ops is wrong, if one is
        inner = Oracle(forward.spec)
        found.inner = blame(inner.program, inner.arguments(inputs, args), inputs, generator)
    return found


def blame_compiled(compiled: Any, inputs: Sequence[torch.Tensor], attrs: dict[str, Any],
                   generator: torch.Generator) -> Blame | None:
    """The op to blame for a compiled op's wrong derivatives: among the spec's ops as written, else among the ops
    its passes made (a fused op's VJP); None when every op's VJP agrees with autograd of its forward."""
    written = Oracle(compiled.spec)
    found = blame(written.program, written.arguments(inputs, attrs), inputs, generator)
    if found is not None or compiled.optimized is compiled.spec:
        return found
    binder = compiled.binder
    env = binder.bind([tuple(t.shape) for t in inputs], binder.attrs(attrs))
    return blame(compiled.program, compiled.program.arguments(env), inputs, generator)
