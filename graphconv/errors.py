"""Every error type graphconv raises: :class:`SpecError` (where it is, what is wrong, a caret under the spot) and
its kinds."""
from __future__ import annotations


class SpecError(Exception):
    """A spec (or a call of a compiled spec) is wrong.

    ``path``, ``line`` and ``column`` (1-based) say where; ``str(error)`` is
    ``path:line:column: message`` followed by the source line and a caret under the column.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.source_line = _line_of(source, line)
        super().__init__(self._render())

    def _render(self) -> str:
        where = ":".join(str(p) for p in (self.path or "<spec>", self.line, self.column) if p is not None)
        text = f"{where}: {self.message}" if (self.path or self.line) else self.message
        if self.source_line is not None:
            caret = " " * (max(self.column or 1, 1) - 1) + "^"
            text += f"\n    {self.source_line}\n    {caret}"
        return text

    def located(self, *, path: str | None = None, source: str | None = None, line_offset: int = 0) -> "SpecError":
        """The same error, placed in a larger file (``line_offset`` lines above the text it was raised on)."""
        line = self.line + line_offset if self.line is not None else None
        return SpecError(self.message, path=path or self.path, line=line, column=self.column, source=source)


def _line_of(source: str | None, line: int | None) -> str | None:
    if source is None or line is None:
        return None
    lines = source.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1].expandtabs(1)
    return None


class CallError(SpecError, TypeError):
    """A compiled op was called wrongly: wrong number or kind of inputs, unknown attrs."""


class ShapeError(SpecError, ValueError):
    """A tensor's shape does not fit the spec: an input against its pattern, or a declared intermediate shape."""


class OpClashError(SpecError, ValueError):
    """Two different ops want the same name; the message names where each comes from."""
