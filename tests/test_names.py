"""Names survive the round trips they make: ``graphconv show`` writes a name holding Mermaid's entity syntax
(``a#quot;b``) so that it reads back as the same name, and an attr or dim Python would read differently (the
ligature ``ﬁ`` folds to ``fi`` under NFKC, as Python folds every identifier, so it could not be passed as a
keyword) is refused where the spec writes it: attrs and dims are named as expressions read them, in ASCII."""
from __future__ import annotations

import pytest

import graphconv
from graphconv.cli import main

LIGATURE = "\ufb01le"  # 'ﬁle': Python reads it as 'file'


@pytest.mark.parametrize("name", ["a#quot;b", "a#35;b", "#amp;", "a\"b", "a#b", "x #lt; y"])
def test_show_writes_names_that_read_back_as_the_same_names(tmp_path, capsys, name):
    spec = tmp_path / "spec.yaml"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    spec.write_text(f'title: t\ngraph:\n  - {{op: relu, inputs: "{quoted}", output: y}}\n', encoding="utf-8")
    assert graphconv.load(spec).input_names == [name]
    assert main(["show", str(spec)]) == 0
    shown = tmp_path / "shown.mmd"
    shown.write_text(capsys.readouterr().out, encoding="utf-8")
    assert graphconv.load(shown).input_names == [name]


def test_show_keeps_an_entity_code_that_a_mermaid_name_spells_out(tmp_path, capsys):
    spec = tmp_path / "spec.mmd"
    spec.write_text('graph LR\n  A["a#35;quot;b"] --> R((relu)) --> Y\n', encoding="utf-8")
    assert graphconv.load(spec).input_names == ["a#quot;b"]
    assert main(["show", str(spec)]) == 0
    out = capsys.readouterr().out
    assert 'A["a#35;quot;b"]' in out
    assert graphconv.loads(out).input_names == ["a#quot;b"]


@pytest.mark.parametrize("block, key", [
    (f"inputs: {{x: [n]}}\n  attrs: {{{LIGATURE}: 1}}", "attrs"),
    (f"inputs: {{x: [n]}}\n  dims: {{{LIGATURE}: n}}", "dims"),
    (f"inputs: {{x: [n]}}\n  example: {{{LIGATURE}: 2}}", "example"),
])
def test_a_name_python_reads_otherwise_is_refused_where_it_is_written(block, key):
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.loads(f"---\ngraphconv:\n  {block}\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    error = caught.value
    assert error.message.startswith(f"{key}: '{LIGATURE}' is not a valid name")
    assert LIGATURE in str(error).splitlines()[-2]  # the caret's line is the one that writes it
