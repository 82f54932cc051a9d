"""Specs as ops: a spec lists other spec files under ``uses:`` and calls each one by name, like any op.

    graphconv:
      uses: [conv2d_full]          # the spec file conv2d_full.mmd (or .md, .yaml, .yml) next to this one
      uses: [graphconv:linear]     # the spec linear.mmd of graphconv's own library (graphconv/library)

A used spec becomes an op named after its file: its tensor inputs are that spec's inputs, its attributes that
spec's attrs (with their defaults), its outputs that spec's outputs. Its forward is that spec's compiled forward;
its VJP is that spec's compiled backward — the hand-written VJPs of its ops — run after recomputing its forward
from the saved inputs (an op saves only inputs and outputs, so a spec op trades a second forward for not keeping
its intermediates, like activation checkpointing). Where that backward reads nothing of the forward but its values'
shapes (a convolution lowered to torch's kernel keeps only its inputs), the second forward runs on meta tensors:
no arithmetic, no memory.

Only spec files are read, named without a path (no ``/``, no ``..``) and looked up in the using spec's own
folder (or, with the ``graphconv:`` prefix, in the shipped library) — a link that leads out of that folder is refused
before anything is read; a spec that uses itself,
directly or not, is an error, and so are specs that use specs more than :data:`MAX_DEPTH` levels deep. Within one
load each file is read once, however many specs use it (a DAG of specs loads in time linear in its size). Nothing
is imported or run at load time.
"""
from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

from graphconv.compiler.examples import example_inputs
from graphconv.compiler.infer import spec_rule
from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import Attr, Op
from graphconv.syntax.metadata import Metadata

SUFFIXES = (".mmd", ".md", ".yaml", ".yml")
MAX_DEPTH = 32  # specs using specs: each level nests a whole load on the stack
LIBRARY_PREFIX = "graphconv:"
LIBRARY = Path(__file__).resolve().parents[1] / "library"  # the specs graphconv ships

# The spec files being loaded right now, outermost first: how a cycle of uses is found.
_LOADING: ContextVar[tuple[str, ...]] = ContextVar("graphconv_spec_ops_loading", default=())
# The ops made from spec files during the outermost load, by (resolved file, op name): each file is loaded once.
_MADE: ContextVar[dict[tuple[str, str], Op] | None] = ContextVar("graphconv_spec_ops_made", default=None)


class SpecForward:
    """The forward of a spec op: calls the compiled spec (compiled on first use, so loading needs no torch).

    Its inputs are the spec's inputs and its attributes the spec's attrs, under the spec's own names (any text:
    they reach it as ``**attrs`` keys, never as Python identifiers).
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.input_names, self.attr_names = tuple(spec.input_names), tuple(spec.attrs)  # read once: torch.compile
        self._compiled: Any = None  # cannot trace the op graph (networkx) that ``spec`` reads them from
        self.__name__ = spec.name
        self.__doc__ = f"The spec {spec.path or spec.name} as an op."

    def parameters(self) -> tuple[list[str], list[Attr]]:
        """(input names, attributes with their defaults): what the op takes."""
        return list(self.spec.input_names), [Attr(name, _plain(value)) for name, value in self.spec.attrs.items()]

    def compiled(self) -> Any:
        if self._compiled is None:
            from graphconv.compiler.compiled import CompiledOp  # compiled.py imports torch: only when first run

            self._compiled = CompiledOp(self.spec)
        return self._compiled

    def __call__(self, /, *inputs: Any, **attrs: Any) -> Any:  # an attr may be named self
        return self.compiled()(*inputs, **attrs)

    def vjp(self, ctx: Any, grad: Any) -> tuple:
        """The spec's compiled backward at the saved inputs: its forward again, then its hand-written VJPs.

        Plain torch ops on the saved inputs as they are (not detached), so in a differentiable backward
        (``create_graph=True``, ``torch.func``) the gradients it returns carry their graph: second derivatives
        through a spec op are its VJPs' derivatives, not zeros."""
        compiled = self.compiled()
        inputs = [ctx.saved[name] for name in self.input_names]
        args = compiled.arguments(inputs, {name: ctx.attrs[name] for name in self.attr_names})
        kept, meta = forward_for_backward(compiled, args, inputs)
        grads = grad if isinstance(grad, tuple) else (grad,)
        return compiled.code.backward(args, inputs, kept, meta, ctx.needs, *grads)

    def samples(self) -> Any:
        """Inputs made from the spec's ``example`` dims (float64), with its default attrs."""
        attrs = {name: _plain(value) for name, value in self.spec.attrs.items()}
        generator = torch.Generator().manual_seed(0)
        yield tuple(example_inputs(self.spec, {**self.spec.example_dims, **attrs}, generator)), attrs


def forward_for_backward(compiled: Any, args: tuple, inputs: list) -> tuple[tuple, tuple]:
    """What a used spec's backward reads besides its inputs: the values its forward keeps, and the shapes and dtypes
    of its values. Where it keeps nothing but its inputs (a convolution lowered to torch's kernel), only shapes and
    dtypes are wanted, so they come from its forward on meta tensors — no arithmetic, no memory — in eager calls
    of plain tensors; otherwise (tracing, functorch, an op that reads values) from its forward itself."""
    code = compiled.code
    if not compiled.program.kept and not _tracing() and all(_plain_tensor(t) for t in inputs):
        try:
            with torch.no_grad():
                _, kept, meta = code.forward(args, *(torch.empty_like(t, device="meta") for t in inputs))
            return kept, meta
        except Exception:  # noqa: BLE001  (an op that cannot run on meta: the forward itself says what it needs)
            pass
    _, kept, meta = code.forward(args, *inputs)
    return kept, meta


def _plain_tensor(value: Any) -> bool:
    """A tensor that holds its own data (not a functorch wrapper, a fake or another subclass)."""
    return type(value) in (torch.Tensor, torch.nn.Parameter) and not torch._C._functorch.is_functorch_wrapped_tensor(
        value)


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def spec_op(spec: Spec, name: str | None = None) -> Op:
    """``spec`` as an op named ``name`` (default: the spec's name)."""
    forward = SpecForward(spec)
    made = Op(forward, name=name or spec.name, save=spec.input_names, outputs=len(spec.outputs),
              source=f"spec {spec.path or spec.name}", parameters=forward.parameters())
    made.vjp(forward.vjp)
    made.samples(forward.samples)
    made.shape_rule(spec_rule(spec))  # from its own graph: its ops' rules
    return made


def used_ops(meta: Metadata, path: str | None, source: str, load: Callable[[str], Spec]) -> list[Op]:
    """The ops of the specs a spec ``uses``, each loaded with ``load``. Raises SpecError at the bad entry."""
    if meta.uses is None:
        return []

    def error(message: str, *key: Any) -> SpecError:
        line, column = meta.where("uses", *key)
        return SpecError(f"uses: {message}", path=path, line=line, column=column, source=source)

    entries = [meta.uses] if isinstance(meta.uses, str) else meta.uses
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise error("expected a list of spec names, such as [conv2d_full]")
    local = [entry for entry in entries if not entry.startswith(LIBRARY_PREFIX)]
    if path is None and local:
        raise error(f"a spec read from text has no folder to find {local[0]!r} in; load it from a file, or use a "
                    f"shipped spec ({LIBRARY_PREFIX}{local[0]})")
    loading = _LOADING.get() + ((str(Path(path).resolve()),) if path else ())
    if len(loading) > MAX_DEPTH:
        raise error(f"specs use specs more than {MAX_DEPTH} levels deep: {_chain(loading)}", 0)
    made_here = _MADE.set({}) if _MADE.get() is None else None  # the outermost load keeps what it made
    token = _LOADING.set(loading)
    try:
        return [_used_op(entry, Path(path).parent if path else LIBRARY, load,
                         lambda message, i=index: error(message, i)) for index, entry in enumerate(entries)]
    finally:
        _LOADING.reset(token)
        if made_here is not None:
            _MADE.reset(made_here)


def _used_op(entry: str, folder: Path, load: Callable[[str], Spec], error: Callable[[str], SpecError]) -> Op:
    """The op of the spec file ``entry`` names (in ``folder``, or ``graphconv:NAME`` in the library): made once per
    file within the outermost load."""
    if entry.startswith(LIBRARY_PREFIX):
        entry, folder = entry[len(LIBRARY_PREFIX):], LIBRARY
    found = _find(entry, folder, error)
    key = (str(found.resolve()), found.stem)
    made = _MADE.get()
    if key not in made:
        made[key] = _load_used(found, load, error)
    return made[key]


def _find(entry: str, folder: Path, error: Callable[[str], SpecError]) -> Path:
    suffix = next((s for s in SUFFIXES if entry.endswith(s)), "")
    stem = entry[: len(entry) - len(suffix)]
    if not stem.isidentifier():
        raise error(f"{entry!r} is not a spec name: give the file's name without a folder, such as conv2d_full "
                    "or conv2d_full.mmd (the name is the op's name)")
    candidates = [folder / entry] if suffix else [folder / f"{stem}{s}" for s in SUFFIXES]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise error(f"no spec file {' or '.join(c.name for c in candidates)} in {folder}")
    if found.resolve().parent != folder.resolve():
        raise error(f"{found.name} is a link that leads out of {folder}: a spec uses only spec files in its own "
                    "folder")
    return found


def _load_used(found: Path, load: Callable[[str], Spec], error: Callable[[str], SpecError]) -> Op:
    loading = _LOADING.get()
    key = str(found.resolve())
    if key in loading:
        chain = [Path(p).name for p in loading[loading.index(key):]] + [found.name]
        raise error(f"specs use each other in a cycle: {' → '.join(chain)}")
    return spec_op(load(str(found)), name=found.stem)


def _chain(loading: tuple[str, ...]) -> str:
    """``a.mmd → b.mmd → … → z.mmd``: the first and last files of a long chain of uses."""
    names = [Path(p).name for p in loading]
    return " → ".join(names if len(names) <= 6 else names[:3] + ["…"] + names[-3:])


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value
