"""Safe YAML with source positions: ``load_yaml`` returns the data and where each key and item stands.

Only YAML's safe schema is read (``yaml.SafeLoader``): a tag that would build a Python object is a SpecError.
So are the YAML a hostile file could make expensive (:class:`SpecLoader`): aliases, deep nesting, huge integers,
number text too long to convert cheaply — and a lone surrogate (``"\\ud800"``), which is no character: no
file or terminal can take it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from graphconv.errors import SpecError

Path = tuple  # a key path into the data: ("graphconv", "dims", "o_h")

MAX_DEPTH = 100  # deeper nesting is refused: composing and reading it back recurses once per level
MAX_INT_BITS = 256  # as for integers computed in expressions (graphconv.syntax.expr)
# Longer number text is refused before PyYAML converts it: base 60 (1:00:00:…) costs it time quadratic in the
# length. A 256-bit integer needs at most 258 characters (0b and 256 binary digits).
MAX_NUMBER_CHARACTERS = 300
SURROGATE = re.compile("[\\ud800-\\udfff]")


class SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also refuses aliases (``*name``: a few lines of them can expand to billions of
    items, or to a list that contains itself), nesting deeper than :data:`MAX_DEPTH`, and integers over
    :data:`MAX_INT_BITS` bits. Each is a ``MarkedYAMLError`` at the spot."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a spec: write the "
                                                          "value out", self.peek_event().start_mark)
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = None
        if len(node.value.replace("_", "")) <= MAX_NUMBER_CHARACTERS:
            try:
                value = super().construct_yaml_int(node)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                pass
        if value is None or value.bit_length() > MAX_INT_BITS:
            raise yaml.constructor.ConstructorError(None, None, f"the integer {node.value[:20]}… is too large (more "
                                                                f"than {MAX_INT_BITS} bits)", node.start_mark)
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        if len(node.value.replace("_", "")) > MAX_NUMBER_CHARACTERS:
            raise yaml.constructor.ConstructorError(None, None, f"the number {node.value[:20]}… is longer than "
                                                                f"{MAX_NUMBER_CHARACTERS} characters", node.start_mark)
        return super().construct_yaml_float(node)

    def construct_scalar(self, node: yaml.Node) -> Any:
        """Every scalar (keys too): UTF-16 surrogate pairs that escapes spell (``"\\ud83d\\ude00"``, as JSON
        writes 😀) joined into their character, a lone surrogate refused."""
        value = super().construct_scalar(node)
        if isinstance(value, str) and SURROGATE.search(value):
            try:
                value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
            except UnicodeDecodeError:
                raise yaml.constructor.ConstructorError(None, None, "a lone surrogate (such as \\ud800) is not a "
                                                                    "character: write the character itself",
                                                        node.start_mark) from None
        return value


SpecLoader.add_constructor("tag:yaml.org,2002:int", SpecLoader.construct_yaml_int)
SpecLoader.add_constructor("tag:yaml.org,2002:float", SpecLoader.construct_yaml_float)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with :class:`SpecLoader`'s limits; raises ``yaml.YAMLError``."""
    loader = SpecLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass
class YamlDoc:
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    first_line: int = 1

    def where(self, *path: Any) -> tuple[int, int]:
        """Line and column of the value at ``path``, else of its nearest enclosing key."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (self.first_line, 1))


def load_yaml(text: str, *, path: str | None = None, source: str | None = None, first_line: int = 1) -> YamlDoc:
    """Parse ``text`` (which starts at ``first_line`` of ``source``) with the safe loader, keeping positions."""
    node, loader = None, None
    try:
        loader = SpecLoader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = _clamp(text, mark.line if mark else 0, (mark.column + 1) if mark else 1)
        problem = error.problem or str(error)
        raise SpecError(f"YAML: {problem}", path=path, line=line + first_line, column=column,
                        source=source or text) from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow, such as NUL
        line, column = _clamp(text, text.count("\n", 0, error.position),
                              error.position - text.rfind("\n", 0, error.position))
        raise SpecError(f"YAML: character U+{error.character:04X} is not allowed: {error.reason}", path=path,
                        line=line + first_line, column=column, source=source or text) from None
    except yaml.YAMLError as error:
        raise SpecError(f"YAML: {error}", path=path, line=first_line, column=1, source=source or text) from None
    finally:
        if loader is not None:
            loader.dispose()
    doc = YamlDoc(data, first_line=first_line)
    if node is not None:
        _record(node, (), doc.positions, first_line)
    return doc


def _clamp(text: str, line: int, column: int) -> tuple[int, int]:
    """A 0-based line and 1-based column in ``text``, moved from past its end (where YAML marks the end of the
    stream, after a final line break) to the end of its last line."""
    lines = text.splitlines()
    if line < len(lines):
        return line, column
    last = max(len(lines) - 1, 0)
    return last, len(lines[last]) + 1 if lines else 1


def _record(node: yaml.Node, at: Path, positions: dict, first_line: int) -> None:
    positions[at] = (node.start_mark.line + first_line, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = at + (key.value if isinstance(key, yaml.ScalarNode) else repr(key.value),)
            _record(value, child, positions, first_line)
            positions[child] = (key.start_mark.line + first_line, key.start_mark.column + 1)
            positions[child + ("<value>",)] = (value.start_mark.line + first_line, value.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record(item, at + (index,), positions, first_line)
