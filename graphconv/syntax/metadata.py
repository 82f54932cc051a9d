"""The ``graphconv:`` metadata of a spec (Mermaid front matter, or the top level of a YAML spec), checked.

Keys: ``inputs`` (name → shape pattern, in call order), ``outputs``, ``attrs`` (name → default), ``dims``
(derived dims: name → expression), ``shapes`` (declared shapes of any tensor), ``ops`` (spec-local ops:
name → op call), ``example`` (dims for ``graphconv run``), ``reference``, ``params`` (the inputs that are a
module's parameters: a list of names, or name → initialiser call such as ``uniform_fan_in(weight)``; used by
graphconv.nn.from_spec), ``uses`` (spec files next to this one, each callable as an op; read by
graphconv.compiler.used_specs).
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Any

from graphconv.errors import SpecError
from graphconv.syntax.expr import NAME as EXPRESSION_NAME
from graphconv.syntax.expr import Call, Expr, Name, as_expr, parse_call, show_value, suggest
from graphconv.syntax.yaml_source import YamlDoc

KEYS = ("inputs", "outputs", "attrs", "dims", "shapes", "ops", "example", "reference", "params", "uses")
WILDCARD = "_"


@dataclass
class Metadata:
    title: str | None = None
    inputs: dict[str, list[Expr] | None] | None = None
    outputs: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, Expr] = field(default_factory=dict)
    shapes: dict[str, list[Expr]] = field(default_factory=dict)
    ops: dict[str, Call] = field(default_factory=dict)
    example: dict[str, int] = field(default_factory=dict)
    reference: Any = None
    params: list[str] = field(default_factory=list)
    param_init: dict[str, Call] = field(default_factory=dict)  # param → initialiser, where params gives one
    uses: Any = None
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def where(self, *key: Any) -> tuple[int, int]:
        """Line and column of a metadata entry (``where("dims", "o_h")``), else of its nearest parent."""
        while key and key not in self.positions:
            key = key[:-1]
        return self.positions.get(key, (1, 1))

    def symbols(self) -> list[str]:
        """Names bound by the input patterns, in order of first appearance."""
        found: list[str] = []
        for pattern in (self.inputs or {}).values():
            for entry in pattern or ():
                if isinstance(entry, Name) and entry.id != WILDCARD and entry.id not in found:
                    found.append(entry.id)
        return found


class _Reader:
    """Reads one metadata block, raising SpecError at the offending entry."""

    def __init__(self, doc: YamlDoc, at: tuple, path: str | None, source: str) -> None:
        self.doc, self.at, self.path, self.source = doc, at, path, source

    def error(self, message: str, *key: Any) -> SpecError:
        line, column = self.doc.where(*self.at, *key)
        return SpecError(message, path=self.path, line=line, column=column, source=self.source)

    def expr(self, value: Any, *key: Any) -> Expr:
        line, column = self.doc.where(*self.at, *key, "<value>")  # a list item has no "<value>": its own place
        try:
            return as_expr(value, line, column)
        except SpecError as error:
            raise error.located(path=self.path, source=self.source) from None

    def mapping(self, value: Any, key: str, *, tensors: bool = False) -> dict:
        """A mapping keyed by names: tensor names (``tensors``: any text, as a diagram labels a tensor) or names
        that expressions use (attrs, dims, ops: the expression grammar's ``[A-Za-z_][A-Za-z_0-9]*``)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(f"{key}: expected a mapping (name: value), got {type(value).__name__}", key)
        for name in value:
            if tensors and not (isinstance(name, str) and name.strip()):
                raise self.error(f"{key}: {name!r} is not a tensor name (any text that is not blank)", key, name)
            if not tensors and not (isinstance(name, str) and EXPRESSION_NAME.fullmatch(name)):
                raise self.error(f"{key}: {name!r} is not a valid name: attrs, dims and ops are named as "
                                 "expressions read them, [A-Za-z_][A-Za-z_0-9]*", key, name)
        return value

    def names(self, value: Any, key: str) -> list[str]:
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise self.error(f"{key}: expected a list of tensor names", key)
        return list(items)

    def pattern(self, value: Any, *key: Any) -> list[Expr] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(f"{key[0]}.{key[1]}: expected a list of dims such as [b, channels, 8]", *key)
        return [self.expr(entry, *key, i) for i, entry in enumerate(value)]

    def read(self, block: dict) -> Metadata:
        for key in block:
            if key not in KEYS:
                raise self.error(f"unknown key {key!r} in graphconv metadata{suggest(str(key), KEYS)}", key)
        meta = Metadata(positions={k[len(self.at):]: v for k, v in self.doc.positions.items() if k[: len(self.at)] == self.at})
        inputs = block.get("inputs")
        if isinstance(inputs, list):
            meta.inputs = {name: None for name in self.names(inputs, "inputs")}
        elif inputs is not None:
            meta.inputs = {n: self.pattern(p, "inputs", n)
                           for n, p in self.mapping(inputs, "inputs", tensors=True).items()}
        meta.outputs = self.names(block.get("outputs"), "outputs") or None
        meta.attrs = self.mapping(block.get("attrs"), "attrs")
        for name in meta.attrs:
            if keyword.iskeyword(name):  # an attr is a keyword argument of the compiled op
                raise self.error(f"attrs: {name!r} is a Python keyword, which cannot name an argument", "attrs", name)
        meta.dims = {n: self.expr(v, "dims", n) for n, v in self.mapping(block.get("dims"), "dims").items()}
        meta.shapes = {n: self.pattern(p, "shapes", n)
                       for n, p in self.mapping(block.get("shapes"), "shapes", tensors=True).items()}
        meta.ops = {n: self.call(v, n) for n, v in self.mapping(block.get("ops"), "ops").items()}
        meta.example = self.mapping(block.get("example"), "example")
        for name, size in meta.example.items():
            if isinstance(size, bool) or not isinstance(size, (int, list)):
                raise self.error(f"example.{name}: expected an integer, got {show_value(size)}", "example", name)
        meta.reference = block.get("reference")
        meta.params, meta.param_init = self.params(block.get("params"))
        meta.uses = block.get("uses")
        return meta

    def params(self, value: Any) -> tuple[list[str], dict[str, Call]]:
        """``params: [weight, bias]``, or with initialisers: ``params: {weight: uniform_fan_in, bias: zeros}``
        (a param without one gets graphconv.nn.init's default)."""
        if not isinstance(value, dict):
            return self.names(value, "params"), {}
        init = {name: self.call(call, name, "params", "an initialiser such as zeros or \"normal(std=0.02)\"")
                for name, call in self.mapping(value, "params", tensors=True).items() if call is not None}
        return list(value), init

    def call(self, value: Any, name: str, key: str = "ops", example: str = "an op call such as \"permute(0, 2, 1)\"") -> Call:
        if not isinstance(value, str):
            raise self.error(f"{key}.{name}: expected {example}, got {show_value(value)}", key, name)
        line, column = self.doc.where(*self.at, key, name, "<value>")
        try:
            call = parse_call(value)
        except SpecError as error:
            raise SpecError(error.message, path=self.path, line=line, column=column, source=self.source) from None
        return Call(call.name, call.args, call.kwargs, line, column)


def read_metadata(block: Any, doc: YamlDoc, at: tuple, *, path: str | None, source: str, title: Any = None) -> Metadata:
    """Check and read a ``graphconv:`` block found at key path ``at`` of ``doc``."""
    reader = _Reader(doc, at, path, source)
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise reader.error(f"the graphconv metadata must be a mapping, got {type(block).__name__}")
    meta = reader.read(block)
    meta.title = str(title) if title is not None else None
    return meta


def read_front_matter(front_matter: dict, doc: YamlDoc, *, path: str | None, source: str) -> Metadata:
    """The metadata in a Mermaid front matter: under ``graphconv:``; Mermaid's own keys are left to Mermaid."""
    stray = [k for k in front_matter if k in KEYS]
    if stray and "graphconv" not in front_matter:
        line, column = doc.where(stray[0])
        raise SpecError(
            f"front matter key {stray[0]!r} belongs under 'graphconv:' (Mermaid reads only title and config)",
            path=path,
            line=line,
            column=column,
            source=source,
        )
    return read_metadata(front_matter.get("graphconv"), doc, ("graphconv",), path=path, source=source,
                         title=front_matter.get("title"))
