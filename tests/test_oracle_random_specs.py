"""Every backend against the autograd oracle on random specs (tests/random_specs.py): value, gradients and second
derivatives (``create_graph=True``) in float64, for the interpreter, the generated code, the exported module and the
spec used as an op inside another spec — each with ``optimize`` on and off, ``save="all"`` and ``"minimal"``.
``export`` may refuse a spec with a clean ExportError, and refuse double backward with a clear error (issue 12).
A failure says whether the same spec written with plain names agrees (then it is a naming bug).

Hypothesis runs derandomized (the same specs on every run) with a small budget for CI;
``GRAPHCONV_ORACLE_EXAMPLES=2000`` runs that many specs per variant, ``GRAPHCONV_ORACLE_SHRINK=1`` also shrinks a
failing spec (fewer ops: a prefix of the same spec; slow, each try compiles). A failing spec's text is printed with
the failure.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, settings

import graphconv
from graphconv.check.oracle import Oracle, derivatives, differences, reference
from graphconv.compiler import interpreter
from graphconv.compiler.codegen.export import ExportError, export_source
from random_specs import RandomSpec, random_specs

EXAMPLES = int(os.environ.get("GRAPHCONV_ORACLE_EXAMPLES", "20"))
PHASES = (Phase.explicit, Phase.generate) + ((Phase.shrink,) if os.environ.get("GRAPHCONV_ORACLE_SHRINK") else ())
RANDOM = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=PHASES,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.filter_too_much])


# --- backends ---------------------------------------------------------------------------------------------------


class InterpreterFunction(torch.autograd.Function):
    """The interpreter (compiler.interpreter) as an autograd.Function: forward op by op, backward through the VJPs
    in reverse — from the saved values, or, when the backward must itself be differentiable, from a forward
    recomputed on the inputs with autograd recording."""

    @staticmethod
    def forward(ctx: Any, program: Any, args: list, *inputs: torch.Tensor) -> Any:
        outputs, saved, _ = interpreter.forward(program, args, inputs)
        ctx.program, ctx.args, ctx.saved = program, args, saved
        ctx.save_for_backward(*inputs)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple:
        saved = ctx.saved
        if torch.is_grad_enabled():
            _, saved, _ = interpreter.forward(ctx.program, ctx.args, ctx.saved_tensors)
        found, _ = interpreter.backward(ctx.program, ctx.args, saved, grads, tuple(ctx.needs_input_grad[2:]))
        return (None, None, *found)


def interpreted(spec: Any, optimize: bool) -> Callable:
    compiled = graphconv.compile(spec, optimize=optimize)
    program, binder = compiled.program, compiled.binder

    def call(*inputs: torch.Tensor, **attrs: Any) -> Any:
        env = binder.bind([tuple(t.shape) for t in inputs], binder.attrs(attrs))
        return InterpreterFunction.apply(program, program.arguments(env), *inputs)

    return call


def exported(spec: Any, optimize: bool, save: str, folder: Path) -> Callable:
    """The module ``graphconv export`` writes, imported; its entry point is its last function."""
    text = export_source(graphconv.compile(spec, optimize=optimize, save=save))
    path = folder / f"exported_{uuid.uuid4().hex}.py"
    path.write_text(text, encoding="utf-8")
    found = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    entry = [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)][-1]
    return getattr(module, entry)


@dataclass
class Written:
    """A random spec written out (with its drawn names, or plain ones) and how to call it."""

    text: str
    input_names: list[str]
    attrs: dict[str, float]
    attr_names: list[str]

    @classmethod
    def of(cls, made: RandomSpec, plain: bool) -> "Written":
        return cls(made.write(plain)[0], made.input_names(plain), made.attrs(plain), made.attr_names(plain))


def used(written: Written, optimize: bool, save: str, folder: Path) -> Callable:
    """The spec called as an op (``uses:``) by a spec that passes its inputs and attrs through."""
    return graphconv.compile(user_spec(written, folder), optimize=optimize, save=save)


def exported_user(written: Written, optimize: bool, save: str, folder: Path) -> Callable:
    """The exported module of that using spec: the used spec travels inside it as a section."""
    return exported(graphconv.load(user_spec(written, folder)), optimize, save, folder)


def user_spec(written: Written, folder: Path) -> Path:
    """A spec file that uses the written spec (saved as inner.mmd beside it) as its one op."""
    (folder / "inner.mmd").write_text(written.text, encoding="utf-8")
    inner = graphconv.load(folder / "inner.mmd")
    lines = ["---", "graphconv:", "  uses: [inner]"]
    if written.attr_names:
        lines.append("  attrs: {" + ", ".join(f"{a}: {inner.attrs[a]!r}" for a in written.attr_names) + "}")
    call = f"inner({', '.join(f'{a}={a}' for a in written.attr_names)})" if written.attr_names else "inner"
    lines += ["---", "graph LR"]
    lines += [f'  i{k}["{name}"] --> U(("{call}"))' for k, name in enumerate(written.input_names)]
    lines += [f'  U --> o{k}["{name if name not in written.input_names else name + " out"}"]'
              for k, name in enumerate(inner.output_names)]  # (a graph input may be an output too)
    (folder / "user_spec.mmd").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "user_spec.mmd"


@dataclass(frozen=True)
class Backend:
    kind: str  # interpreter, generated, export, used, export-used
    optimize: bool
    save: str = "all"

    def __str__(self) -> str:
        return f"{self.kind}-{'opt' if self.optimize else 'noopt'}" + ("" if self.kind == "interpreter" else
                                                                       f"-{self.save}")

    def make(self, written: Written, folder: Path) -> Callable:
        spec = graphconv.loads(written.text)
        if self.kind == "interpreter":
            return interpreted(spec, self.optimize)
        if self.kind == "generated":
            return graphconv.compile(spec, optimize=self.optimize, save=self.save)
        if self.kind == "export":
            return exported(spec, self.optimize, self.save, folder)
        if self.kind == "export-used":
            return exported_user(written, self.optimize, self.save, folder)
        return used(written, self.optimize, self.save, folder)


BACKENDS = [Backend("interpreter", optimize) for optimize in (True, False)] + [
    Backend(kind, optimize, save) for kind in ("generated", "export", "used") for optimize in (True, False)
    for save in ("all", "minimal")] + [Backend("export-used", optimize) for optimize in (True, False)]


# --- the property ---------------------------------------------------------------------------------------------------


def second_order_refused(error: Exception) -> bool:
    """An exported module may refuse double backward (``once_differentiable``), clearly."""
    return isinstance(error, RuntimeError) and "once_differentiable" in str(error)


def check_backend(backend: Backend, made: RandomSpec) -> None:
    """The backend agrees with the oracle on ``made``; when it does not, the message says whether it does on the
    same spec with plain names (a naming bug) or not."""
    note(f"spec:\n{made.text}inputs {dict(zip(made.input_names(), made.input_shapes))}, attrs {made.attrs()}")
    problem = disagreement(backend, made, plain=False)
    if problem is not None:
        with_plain_names = disagreement(backend, made, plain=True)
        naming = " (a naming bug: with plain names it agrees)" if with_plain_names is None else ""
        raise AssertionError(f"{backend}{naming}: {problem}")


def disagreement(backend: Backend, made: RandomSpec, plain: bool) -> str | None:
    """What differs between the backend and the oracle (an error counts), None when nothing does."""
    written = Written.of(made, plain)
    try:
        spec = graphconv.loads(written.text)
        if spec.input_names != written.input_names:
            return f"inputs {spec.input_names}, not in the order of first appearance {written.input_names}"
        found = compare(backend, spec, written, made)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "; ".join(map(str, found)) if found else None


def compare(backend: Backend, spec: Any, written: Written, made: RandomSpec) -> list:
    inputs = made.inputs()
    try:
        probes, want = reference(Oracle(spec), inputs, written.attrs, torch.Generator().manual_seed(made.seed))
    except Exception as error:
        raise AssertionError(f"the oracle cannot run the spec: {type(error).__name__}: {error}") from error
    with tempfile.TemporaryDirectory() as folder:
        sys.dont_write_bytecode = True
        try:
            function = backend.make(written, Path(folder))
        except ExportError as error:  # export may refuse a spec, cleanly (issue 12): nothing to compare
            note(f"export refused it: {error.message}")
            return []
        call = (lambda *xs: function(*xs, **written.attrs))
        try:
            got = derivatives(call, inputs, probes)
        except RuntimeError as error:
            if not backend.kind.startswith("export") or not second_order_refused(error):
                raise
            got = derivatives(call, inputs, probes, order=1)
            want.second = []
    return differences(got, want, spec.output_names, spec.input_names)


@pytest.mark.parametrize("backend", BACKENDS, ids=str)
@RANDOM
@given(made=random_specs())
def test_every_backend_matches_the_oracle_on_random_specs(backend, made):
    check_backend(backend, made)
