"""The README's examples run as written."""
import os
import re

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_example_runs(index, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(python_blocks()[index], f"README.md[python block {index}]", "exec"), {"__name__": "readme"})


def test_main_job_prints_the_shape_table(capsys, monkeypatch):
    from graphconv.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["run", "specs/conv2d.mmd"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^output\s+permute_output\s+(\[b, out_channels, o_h, o_w\]\s+){2}\(4, 3, 8, 8\)\s+proved$", out,
                     re.M)
    assert len([line for line in out.splitlines() if line.endswith(("proved", "input"))]) == 11


def test_readme_commands_exist():
    assert "./dev run specs/conv2d.mmd" in README and "./dev test" in README
    assert os.access(ROOT / "dev", os.X_OK)
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()
