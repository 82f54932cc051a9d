"""The load/compile API: ``load`` reads a spec file (Mermaid, Markdown with a ```mermaid block, or YAML) into a
validated :class:`Spec`; ``compile`` makes it a differentiable callable. Loading imports no torch."""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from graphconv.errors import SpecError
from graphconv.graph.build import build_spec
from graphconv.graph.opgraph import Spec
from graphconv.ops import REGISTRY, Op, Registry
from graphconv.ops.plugins import load_plugins
from graphconv.compiler.used_specs import used_ops
from graphconv.syntax.diagram import Diagram
from graphconv.syntax.mermaid import parse_diagram
from graphconv.syntax.metadata import read_front_matter
from graphconv.syntax.yaml_source import YamlDoc, load_yaml
from graphconv.syntax.yaml_spec import parse_yaml_spec

YAML_SUFFIXES = (".yaml", ".yml")
MAX_SPEC_CHARACTERS = 4 * 2 ** 20  # longer spec text is refused: parsing it would take minutes (about 15 s a MiB)

OpSource = Op | ModuleType


def load(path: str | os.PathLike, *, ops: Iterable[OpSource] = ()) -> Spec:
    """Read and validate the spec at ``path``. ``ops``: extra ops (Op objects or modules that define them)."""
    path = str(path)
    return loads(read_spec(path), path=path, ops=ops)


def read_spec(path: str) -> str:
    """The text of the spec file at ``path`` (UTF-8). Reads at most one character more than
    :data:`MAX_SPEC_CHARACTERS`, so a huge file — or a device of endless data — is refused without reading it."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_SPEC_CHARACTERS + 1)
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read spec: {error}", path=path) from None
    check_size(text, path)
    return text


def check_size(text: str, path: str | None) -> None:
    if len(text) > MAX_SPEC_CHARACTERS:
        raise SpecError(f"the spec is longer than {MAX_SPEC_CHARACTERS} characters (4 MiB of ASCII), the limit on a "
                        "spec's size", path=path)


def loads(text: str, *, path: str | None = None, format: str | None = None, ops: Iterable[OpSource] = ()) -> Spec:
    """Validate spec ``text``; ``format`` is ``"mermaid"`` or ``"yaml"`` (default: from the path's suffix)."""
    check_size(text, path)
    format = format or ("yaml" if path and path.lower().endswith(YAML_SUFFIXES) else "mermaid")
    if format == "yaml":
        diagram, meta = parse_yaml_spec(text, path)
    elif format == "mermaid":
        diagram = parse_diagram(text, path)
        meta = read_front_matter(diagram.front_matter, _front_matter_doc(diagram), path=path, source=text)
    else:
        raise ValueError(f"unknown spec format {format!r}; use 'mermaid' or 'yaml'")
    name = meta.title or (Path(path).stem if path else "spec")
    registry = registry_with(ops)
    used = used_ops(meta, path, text, lambda found: load(found, ops=ops))  # the specs it calls as ops (uses:)
    return build_spec(diagram, meta, registry.extended(used) if used else registry, name)


def registry_with(ops: Iterable[OpSource]) -> Registry:
    """The global registry (with installed plugins' ops), plus ``ops`` (each an Op, or a module whose Op
    attributes are taken)."""
    load_plugins()
    extra: list[Op] = []
    for source in ops:
        if isinstance(source, Op):
            extra.append(source)
        elif isinstance(source, ModuleType):
            extra.extend(v for v in vars(source).values() if isinstance(v, Op))
        else:
            raise TypeError(f"ops: expected an Op or a module, got {source!r}")
    extra = [op for op in extra if REGISTRY.get(op.name) is not op]
    return REGISTRY.extended(extra) if extra else REGISTRY


def _front_matter_doc(diagram: Diagram) -> YamlDoc:
    """Positions of the front matter's entries (the Diagram keeps only its data)."""
    if diagram.front_matter_line is None:
        return YamlDoc(diagram.front_matter)
    lines = diagram.source.splitlines()[diagram.front_matter_line - 1:]
    end = next((i for i, line in enumerate(lines) if line.strip() == "---"), len(lines))
    return load_yaml("\n".join(lines[:end]), path=diagram.path, source=diagram.source,
                     first_line=diagram.front_matter_line)


def compile(spec: Spec | str | os.PathLike, *, ops: Iterable[OpSource] = (), optimize: bool = True,
            save: str = "all", backend: str = "eager") -> Any:
    """A differentiable callable (:class:`~graphconv.compiler.compiled.CompiledOp`) from a spec: a loaded
    :class:`Spec` or a path to load.

    ``optimize=False`` skips the graph passes; ``save`` is the memory policy: ``"all"`` keeps every value a VJP
    reads, ``"minimal"`` keeps the inputs and recomputes cheap values in backward. ``backend="inductor"`` compiles
    the generated forward and backward with torch.compile (fused kernels; eager where there is no C++ compiler).
    """
    from graphconv.compiler.compiled import CompiledOp  # imports torch: only when compiling

    if not isinstance(spec, Spec):
        spec = load(spec, ops=ops)
    return CompiledOp(spec, optimize=optimize, save=save, backend=backend)
