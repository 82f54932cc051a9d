"""Fuzzing the command line: mutated shipped specs and hostile arguments through ``graphconv run``, ``show`` and
``ops`` (in process, output captured). Every outcome is an exit status — 0, 1 (a shape does not fit) or 2 (a bad
spec or bad arguments) — and stderr holds paragraphs that each start ``graphconv VERB:`` (a bad spec is one of
them, the last), never a traceback; ``--debug`` shows the traceback instead. ``--device cpu`` is left out of the fuzz: it allocates what the spec's example asks for.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SPECS
from graphconv import SpecError
from graphconv.cli import main
from test_fuzz_specs import FUZZ, SCALE, SPEC_FILES, mutated

ASSIGNMENTS = [
    "b=2", "b=0", "b=-1", "b=2**62", "b=2**300", "b=9" + "9" * 100, "b=1.5", "b=nan", "b=inf", "b=(1,2)", "b=",
    "=2", "b==2", "b=2,b=3", "nope=3", "stride=0", "stride=-1", "stride=(1,)", "padding=same", "padding='valid'",
    "padding=2**62", "kernel_h=100", "i_h=0", "input_batch=(2,3)", "input=(0,)", "x=(2**61,1)", "b=__import__('os')",
    "b=" + "(" * 200 + "1" + ")" * 200, "b=" + "-" * 200 + "1", "é=1", "b=1;rm -rf /",
]
assignments = st.one_of(st.sampled_from(ASSIGNMENTS), st.text(max_size=12))


@st.composite
def arguments(draw, spec: str, folder: str) -> list[str]:
    """A command line for one verb on ``spec``, with some of its options, hostile values included."""
    verb = draw(st.sampled_from(["run", "run", "run", "show", "show", "ops"]))
    argv = [verb, spec]
    if verb in ("run", "show"):
        for option in ("--dims", "--attr", "--shapes"):
            if draw(st.integers(0, 3)) == 0:
                argv += [option, draw(assignments)]
    if verb == "run":
        argv += draw(st.sampled_from([[], [], ["--backward"], ["--json"], ["--device", "meta"],
                                      ["--device", "nonsense"], ["--device", "cuda:99"]]))
    if verb == "show":
        argv += draw(st.sampled_from([[], ["--format", "dot"], ["--format", "yaml"], ["--concrete"],
                                      ["-o", f"{folder}/out.mmd"], ["-o", f"{folder}/no/such/dir/out"],
                                      ["--format", "png"]]))
    if draw(st.integers(0, 9)) == 0:
        argv += draw(st.sampled_from([["--ops", "no_such_module"], ["--ops", "os"], ["--unknown"]]))
    return argv


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of specs/: a mutated spec is written next to the specs it uses."""
    path = tmp_path_factory.mktemp("specs")
    for spec in SPEC_FILES:
        shutil.copy(spec, path / spec.name)
    return path


def check_exit(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI: its exit status and output, with what must hold for any outcome."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse: bad options
        code = exit.code
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), code
    assert "Traceback" not in err + out
    if err and not err.startswith("usage:"):  # paragraphs, each a problem (a shape that does not fit) or the error
        assert all(p.startswith(f"graphconv {argv[0]}: ") for p in err.strip("\n").split("\n\n")), err
    return code, out, err


@settings(FUZZ, max_examples=100 * SCALE, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_cli_answers_with_an_exit_status_and_never_a_traceback(folder, capsys, data):
    original = data.draw(st.sampled_from(SPEC_FILES))
    path = folder / f"fuzzed{original.suffix}"
    text = data.draw(st.one_of(st.just(original.read_text(encoding="utf-8")),
                               mutated(original.read_text(encoding="utf-8"))))
    path.write_text(text, encoding="utf-8")
    code, _, _ = check_exit(data.draw(arguments(str(path), str(folder))), capsys)
    event(f"exit {code}")


def test_the_fuzzed_cli_reaches_every_exit_status(folder, capsys):
    bad = folder / "bad.mmd"
    bad.write_text("graph LR\n  x --> R((rleu)) --> y\n", encoding="utf-8")
    assert check_exit(["run", str(SPECS / "conv2d.mmd")], capsys)[0] == 0
    assert check_exit(["run", str(SPECS / "conv2d.mmd"), "--shapes", "kernel=(3,4,3,3)"], capsys)[0] == 1
    code, _, err = check_exit(["run", str(bad)], capsys)
    assert code == 2 and "unknown op 'rleu' in node R; did you mean 'relu'" in err


def test_debug_shows_the_traceback(folder):
    bad = folder / "bad.mmd"
    bad.write_text("graph LR\n  x --> R((rleu)) --> y\n", encoding="utf-8")
    with pytest.raises(SpecError, match="unknown op 'rleu'"):
        main(["--debug", "run", str(bad)])


def test_check_reports_a_bad_spec_in_one_paragraph(folder, capsys):
    bad = folder / "bad.yaml"
    bad.write_text("graph: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphconv check: ") and "could not determine a constructor" in err
    assert "Traceback" not in err and "\n\n" not in err.strip()


def test_the_installed_command_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.mmd"
    bad.write_text("---\ngraphconv:\n  dims: {d: '" + "-" * 200 + "1'}\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    done = subprocess.run([sys.executable, "-m", "graphconv", "run", str(bad)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"graphconv run: {bad}:3:13: expression nested more than 100 levels deep")
    assert "Traceback" not in done.stderr and "\n\n" not in done.stderr.strip()
