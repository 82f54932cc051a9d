"""How ``uses:`` reads other spec files: each file once per load (a DAG of specs loads in linear time), no deeper
than ``MAX_DEPTH`` levels (a SpecError in the file that would go deeper, not a RecursionError), and never out of
the using spec's folder — a link that leads elsewhere is refused before anything is read, so no message can show
what the file holds."""
from __future__ import annotations

import os

import pytest

import graphconv
from graphconv.compiler import used_specs
from graphconv.compiler.used_specs import MAX_DEPTH

LEAF = "---\ngraphconv:\n  inputs: {x: [n]}\n---\ngraph LR\n  X(x) --> R((relu)) --> Y(y)\n"


def calling(*names: str) -> str:
    """A spec that uses ``names`` and calls each once, in a row."""
    uses = ", ".join(names)
    lines = [f"---\ngraphconv:\n  uses: [{uses}]\n  inputs: {{x: [n]}}\n---\ngraph LR"]
    previous = "X(x)"
    for index, name in enumerate(names):
        output = "Y(y)" if index == len(names) - 1 else f"H{index}(h{index})"
        lines.append(f"  {previous} --> C{index}(({name})) --> {output}")
        previous = output.split("(")[0]
    return "\n".join(lines) + "\n"


def diamond(folder, depth: int):
    """a0 uses a1 and b1, each of which uses a2 and b2, …: 2**depth paths through 2 * depth + 2 files."""
    for name in (f"a{depth}", f"b{depth}"):
        (folder / f"{name}.mmd").write_text(LEAF)
    for level in range(depth - 1, -1, -1):
        for name in (f"a{level}", f"b{level}"):
            (folder / f"{name}.mmd").write_text(calling(f"a{level + 1}", f"b{level + 1}"))
    return folder / "a0.mmd"


def chain(folder, links: int):
    """s0 uses s1, which uses s2, … up to a leaf."""
    (folder / f"s{links}.mmd").write_text(LEAF)
    for level in range(links):
        (folder / f"s{level}.mmd").write_text(calling(f"s{level + 1}"))
    return folder / "s0.mmd"


def count_loads(monkeypatch) -> list[str]:
    """The spec files ``uses:`` makes ops of, one entry per file loaded."""
    loaded: list[str] = []
    original = used_specs._load_used

    def counting(found, load, error):
        loaded.append(found.name)
        return original(found, load, error)

    monkeypatch.setattr(used_specs, "_load_used", counting)
    return loaded


def test_a_diamond_of_specs_loads_each_file_once(tmp_path, monkeypatch):
    loaded = count_loads(monkeypatch)
    graphconv.load(diamond(tmp_path, 14))  # was 2**15 loads: 94 s
    assert sorted(loaded) == sorted(f"{n}{level}.mmd" for level in range(1, 15) for n in "ab")


def test_a_spec_used_twice_along_two_paths_is_one_op(tmp_path):
    spec = graphconv.load(diamond(tmp_path, 2))
    via_a = spec.op("C0").op.forward.spec.op("C0").op
    via_b = spec.op("C1").op.forward.spec.op("C0").op
    assert via_a is via_b and via_a.name == "a2"


def test_a_diamond_still_computes_what_it_says(tmp_path):
    torch = pytest.importorskip("torch")
    op = graphconv.compile(diamond(tmp_path, 3))
    x = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(op(x), x.relu())


def test_a_chain_of_specs_as_deep_as_the_limit_loads(tmp_path):
    spec = graphconv.load(chain(tmp_path, MAX_DEPTH))
    assert spec.op("C0").op.name == "s1"


@pytest.mark.parametrize("links", [MAX_DEPTH + 1, 200])
def test_a_chain_deeper_than_the_limit_is_an_error_in_the_file_that_goes_too_deep(tmp_path, links):
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.load(chain(tmp_path, links))  # 200 links were a RecursionError
    error = caught.value
    assert error.path == str(tmp_path / f"s{MAX_DEPTH}.mmd")
    assert f"specs use specs more than {MAX_DEPTH} levels deep: s0.mmd → s1.mmd → s2.mmd → … →" in error.message
    assert (error.line, error.column) == (3, 10)
    assert str(error).splitlines()[-2].strip() == f"uses: [s{MAX_DEPTH + 1}]"


def test_a_cycle_is_still_an_error(tmp_path):
    (tmp_path / "p.mmd").write_text(calling("q"))
    (tmp_path / "q.mmd").write_text(calling("p"))
    with pytest.raises(graphconv.SpecError, match="specs use each other in a cycle: p.mmd → q.mmd → p.mmd"):
        graphconv.load(tmp_path / "p.mmd")


SECRET = "password: hunter2 is not a spec\n"


@pytest.mark.parametrize("target", ["outside", "sub"])
def test_a_link_out_of_the_folder_is_refused_and_nothing_it_leads_to_is_shown(tmp_path, target):
    folder = tmp_path / "specs"
    folder.mkdir()
    secret = tmp_path / "secret.mmd" if target == "outside" else folder / "sub" / "secret.mmd"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(SECRET)
    os.symlink(secret, folder / "leak.mmd")
    (folder / "outer.mmd").write_text(calling("leak"))
    with pytest.raises(graphconv.SpecError) as caught:
        graphconv.load(folder / "outer.mmd")
    error = caught.value
    assert "leak.mmd is a link that leads out of" in error.message and error.path == str(folder / "outer.mmd")
    assert "hunter2" not in str(error) and "secret" not in str(error)
    assert str(error).splitlines()[-2].strip() == "uses: [leak]"


def test_a_link_to_etc_passwd_is_refused(tmp_path):
    os.symlink("/etc/passwd", tmp_path / "passwd.mmd")
    (tmp_path / "outer.mmd").write_text(calling("passwd"))
    with pytest.raises(graphconv.SpecError, match="passwd.mmd is a link that leads out of") as caught:
        graphconv.load(tmp_path / "outer.mmd")
    assert "root:" not in str(caught.value) and "/bin/" not in str(caught.value)


def test_a_link_within_the_folder_is_followed(tmp_path):
    (tmp_path / "leaf.mmd").write_text(LEAF)
    os.symlink(tmp_path / "leaf.mmd", tmp_path / "alias.mmd")
    (tmp_path / "outer.mmd").write_text(calling("alias"))
    assert graphconv.load(tmp_path / "outer.mmd").op("C0").op.name == "alias"


def test_a_spec_reached_through_a_linked_folder_uses_the_files_next_to_it(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "leaf.mmd").write_text(LEAF)
    (tmp_path / "real" / "outer.mmd").write_text(calling("leaf"))
    os.symlink(tmp_path / "real", tmp_path / "linked")
    assert graphconv.load(tmp_path / "linked" / "outer.mmd").op("C0").op.name == "leaf"
