"""Safe YAML with source positions: ``load_yaml`` returns the data and where each key and item stands.

Only YAML's safe schema is read (``yaml.SafeLoader``): a tag that would build a Python object is a SpecError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from graphconv.errors import SpecError

Path = tuple  # a key path into the data: ("graphconv", "dims", "o_h")


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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = (mark.line if mark else 0) + first_line
        column = (mark.column + 1) if mark else 1
        problem = error.problem or str(error)
        raise SpecError(f"YAML: {problem}", path=path, line=line, column=column, source=source or text) from None
    except yaml.YAMLError as error:
        raise SpecError(f"YAML: {error}", path=path, line=first_line, column=1, source=source or text) from None
    finally:
        loader.dispose()
    doc = YamlDoc(data, first_line=first_line)
    if node is not None:
        _record(node, (), doc.positions, first_line)
    return doc


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
