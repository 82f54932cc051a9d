"""The Lark parsers of ``expr.lark`` and ``mermaid.lark``, built once per machine and cached.

Building an LALR parser from its grammar takes 0.1–0.3 s on these machines — most of what a spec check costs. Lark's
own cache (``cache=PATH``) pickles the built parser and loads it in a few milliseconds; Lark keys the file with a
hash of the grammar, the options and Lark's version, and rebuilds it when any of them changed (or when the file is
unreadable, half-written by a concurrent first run, say). The cache lives in the user's cache folder —
``$GRAPHCONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphconv``, else ``~/.cache/graphconv`` — created private to the
user, never in a shared temp folder: loading a pickle runs code, so only the user may write it. Where no cache
folder can be made, the parser is built every time, as without a cache.

A standalone parser generated ahead of time (``python -m lark.tools.standalone``) was measured too, side by side
on the same (loaded) machine with bytecode cached: importing and constructing the two generated modules (340 KB,
each with its own copy of Lark's runtime) took 0.13–0.38 s; loading both cached parsers takes 10 ms (expr) and
30–40 ms (mermaid) after importing Lark (0.08–0.2 s, which the transformers need anyway). The cache needs no
generated code kept in step with the grammars, which are still being edited.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import lark
from lark import Lark


CALLBACKS = ("transformer", "lexer_callbacks", "postlex", "edit_terminals")  # objects, which Lark does not hash


def cache_dir() -> Path | None:
    """The folder for cached parsers (made, private to the user, on first use); None where it cannot be made."""
    base = os.environ.get("GRAPHCONV_CACHE_DIR")
    if base is None:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "graphconv")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return Path(base) if os.access(base, os.W_OK) else None


def open_grammar(name: str, **options: Any) -> Lark:
    """The LALR parser of ``graphconv/syntax/<name>``, loaded from the cache when it holds this grammar's.

    The cache file is named by a hash of the grammar and Lark's version, so that checkouts with different grammars
    side by side keep a parser each instead of rebuilding the other's."""
    path = Path(__file__).with_name(name)
    text = path.read_text(encoding="utf-8")
    folder = cache_dir()
    if folder is not None:
        settings = sorted((k, str(v)) for k, v in options.items() if k not in CALLBACKS)  # no object's address
        digest = hashlib.sha256(f"{text}{lark.__version__}{settings}".encode()).hexdigest()
        options["cache"] = str(folder / f"{path.stem}-{digest[:16]}.lark-cache")
    return Lark(text, source_path=str(path), parser="lalr", propagate_positions=True, **options)
