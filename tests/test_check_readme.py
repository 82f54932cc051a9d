"""The README's "Authoring an op" tutorial runs as written: its spec is the shipped file, its commands succeed and
print what it shows, its Python runs."""
import re

import pytest

from conftest import ROOT
from graphconv.cli import main

SECTION = (ROOT / "README.md").read_text().split("\n## Authoring an op\n", 1)[-1].split("\n## ", 1)[0]
NUMBER = re.compile(r"\d\.\de[-+]\d\d")


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", SECTION, re.S)


def test_the_section_exists():
    assert "./dev check specs/avg_pool_2x2.mmd" in SECTION


def test_the_tutorial_spec_is_the_shipped_file():
    [spec] = blocks("mmd")
    assert spec == (ROOT / "specs" / "avg_pool_2x2.mmd").read_text()


def test_the_commands_succeed_and_print_what_the_tutorial_shows(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    [command] = blocks("sh")
    [shown] = blocks("text")
    argv = command.split()
    assert argv[0] == "./dev"
    assert main(argv[1:]) == 0
    printed = capsys.readouterr().out
    assert NUMBER.sub("#", printed) == NUMBER.sub("#", shown)  # the |Δ| figures may differ in the last bits


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_the_python_runs(index, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(blocks("python")[index], f"README.md[authoring python {index}]", "exec"), {"__name__": "readme"})
