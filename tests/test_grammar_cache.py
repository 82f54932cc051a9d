"""The Lark parsers are built once and cached in the user's cache folder (private to the user), keyed by the
grammar; without a usable folder they are built as before."""
import os
import stat

from graphconv.syntax import grammar


def test_parsers_are_cached_per_grammar_in_a_private_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRAPHCONV_CACHE_DIR", str(folder))
    first = grammar.open_grammar("expr.lark", start=["call", "expr"])
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 1 and files[0].startswith("expr-") and files[0].endswith(".lark-cache")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    again = grammar.open_grammar("expr.lark", start=["call", "expr"])  # loaded from the file
    assert again.parse("a * (b + 1)", start="expr") == first.parse("a * (b + 1)", start="expr")
    assert sorted(p.name for p in folder.iterdir()) == files


def test_without_a_writable_cache_folder_the_parser_is_built(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("GRAPHCONV_CACHE_DIR", str(blocked / "cache"))
    assert grammar.cache_dir() is None
    assert grammar.open_grammar("expr.lark", start=["call", "expr"]).parse("2", start="expr") is not None
