"""Find the Mermaid diagram inside a Markdown file: the first ```` ```mermaid ```` (or ``~~~mermaid``) fenced block."""
from __future__ import annotations

import re
from dataclasses import dataclass

from graphconv.errors import SpecError

_OPENING_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*mermaid(?:[ \t][^\n]*)?$", re.M)


@dataclass(frozen=True)
class Block:
    """A fenced block: ``text[start:end]`` is its body, which begins on 1-based line ``line`` of the file."""

    start: int
    end: int
    line: int


def is_markdown(text: str, path: str | None = None) -> bool:
    """Markdown when the path says so, or when the text holds a ```mermaid fence (a bare flowchart never does)."""
    if path is not None and path.lower().endswith((".md", ".markdown")):
        return True
    return _OPENING_FENCE.search(text) is not None


def find_mermaid_block(text: str, path: str | None = None) -> Block:
    """The first ```mermaid block of ``text`` (line breaks already ``\\n``); a SpecError when there is none or
    when its fence is never closed (CommonMark would run it to the end of the file, hiding the mistake)."""
    opening = _OPENING_FENCE.search(text)
    if opening is None:
        raise SpecError("this Markdown file has no ```mermaid block", path=path, line=1, column=1, source=text)
    fence = opening.group(2)
    closing = re.compile(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}[ \t]*$", re.M)
    start = opening.end() + 1
    end = closing.search(text, start) if start <= len(text) else None
    opening_line = text.count("\n", 0, opening.start()) + 1
    if end is None:
        raise SpecError(
            f"the {fence}mermaid block opened here is never closed by a {fence} line",
            path=path, line=opening_line, column=len(opening.group(1)) + 1, source=text,
        )
    return Block(start=start, end=end.start(), line=opening_line + 1)
