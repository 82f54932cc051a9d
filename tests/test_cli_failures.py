"""Every way a command can end that is not its verdict — output that cannot be written (a full disk, a closed
pipe), Ctrl-C, a size too big to read, text the terminal cannot encode, a real-device run past ``--max-memory`` —
ends in one line on stderr and an exit status (2; 130 for Ctrl-C), never a traceback, in every verb."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import types

import pytest

import graphconv.cli
from conftest import ROOT, SPECS
from graphconv.cli import main

SPEC = str(SPECS / "conv2d.mmd")
VERBS = {
    "run": ["run", SPEC],
    "run --device cpu": ["run", SPEC, "--device", "cpu"],
    "show": ["show", SPEC],
    "check": ["check", str(SPECS / "linear.mmd")],
    "ops": ["ops"],
    "ops SPEC": ["ops", SPEC],
    "compile": ["compile", SPEC, "--code"],
    "export": ["export", SPEC],
}


class Unwritable:
    """A standard output whose writes fail as ``error`` says."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def write(self, text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error


def one_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize("argv", VERBS.values(), ids=VERBS.keys())
@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENOSPC, "No space left on device"), "cannot write the output: No space left on device"),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), "cannot write the output: Broken pipe"),
])
def test_output_that_cannot_be_written_is_one_line_and_exit_2(monkeypatch, capsys, argv, error, message):
    monkeypatch.setattr(sys, "stdout", Unwritable(error))
    assert main(argv) == 2
    assert one_line(capsys.readouterr().err) == f"graphconv {argv[0]}: {message}"


def test_a_full_disk_and_a_closed_pipe_end_the_installed_command_quietly(tmp_path):
    """In a real process: the output still buffered must not fail again as Python exits ('Exception ignored')."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "graphconv", "ops"], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert one_line(done.stderr) == "graphconv ops: cannot write the output: No space left on device"
    read, write = os.pipe()
    os.close(read)  # `graphconv ops | head -c 10`, once head has gone
    done = subprocess.run([sys.executable, "-m", "graphconv", "ops"], stdout=write, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, timeout=120)
    os.close(write)
    assert done.returncode == 2 and one_line(done.stderr) == "graphconv ops: cannot write the output: Broken pipe"


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("argv", VERBS.values(), ids=VERBS.keys())
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, argv):
    monkeypatch.setattr(graphconv.cli.common, "importlib", types.SimpleNamespace(import_module=interrupt))
    assert main([*argv, "--ops", "any_module"]) == 130
    assert one_line(capsys.readouterr().err) == f"graphconv {argv[0]}: interrupted"


def test_ctrl_c_in_the_installed_command_exits_130(tmp_path):
    fifo = tmp_path / "spec.mmd"
    os.mkfifo(fifo)
    process = subprocess.Popen([sys.executable, "-m", "graphconv", "run", str(fifo)], stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    timer = threading.Timer(120, process.kill)
    timer.start()
    try:
        with open(fifo, "w"):  # opens once graphconv opened it to read: it is waiting for the spec now
            process.send_signal(signal.SIGINT)
            err = process.communicate(timeout=120)[1]
    finally:
        timer.cancel()
    assert process.returncode == 130 and one_line(err) == "graphconv run: interrupted"


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(graphconv.cli.common, "importlib", types.SimpleNamespace(import_module=exhausted))
    assert main(["ops", "--ops", "any_module"]) == 2
    assert one_line(capsys.readouterr().err) == "graphconv ops: out of memory"


@pytest.mark.parametrize("verb", ["run", "check"])
@pytest.mark.parametrize("size, message", [
    ("9" * 400, "cannot read '99999"),  # was an OverflowError
    ("9" * 30 + "TiB", "is more bytes than anything can hold"),
    ("1e9", "cannot read '1e9' as a size"),
])
def test_a_max_memory_too_big_to_read_is_one_line(capsys, verb, size, message):
    argv = [verb, SPEC, "--max-memory", size] + (["--device", "cpu"] if verb == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in one_line(err) and len(err) < 400


SURROGATE_SPEC = '---\ntitle: "\\ud800"\ngraphconv:\n  inputs: {x: [n]}\n  example: {n: 2}\n---\n' \
                 "graph LR\n  x --> R((relu)) --> y\n"


@pytest.mark.parametrize("verb", [["run"], ["run", "--device", "cpu"], ["show"], ["show", "--format", "yaml"],
                                  ["check"], ["ops"], ["compile"], ["export"]])
def test_a_lone_surrogate_from_a_yaml_escape_is_a_spec_error_in_every_verb(tmp_path, capsys, verb):
    path = tmp_path / "spec.mmd"
    path.write_text(SURROGATE_SPEC, encoding="utf-8")
    assert main([verb[0], str(path), *verb[1:]]) == 2  # was a UnicodeEncodeError in run, check and compile
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert f"{path}:2:8:" in err and "a lone surrogate (such as \\ud800) is not a character" in err


def test_a_surrogate_pair_from_yaml_escapes_is_its_character(tmp_path, capsys):
    path = tmp_path / "spec.mmd"
    path.write_text(SURROGATE_SPEC.replace("\\ud800", "\\ud83d\\ude00"), encoding="utf-8")
    assert main(["run", str(path)]) == 0
    assert graphconv.load(path).meta.title == "😀"


def test_output_the_terminal_cannot_encode_is_escaped(tmp_path, capsys):
    name = os.fsdecode(b"spec\xff.mmd")  # a file name that is not UTF-8: '\udcff' in Python
    path = tmp_path / name
    path.write_text("---\ngraphconv:\n  inputs: {x: [n]}\n  example: {n: 2}\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "spec\\udcff.mmd: all 3 checks pass" in out


BROADCAST = """\
---
graphconv:
  inputs: {x: [b, 1, n, k], w: [1, c, k, m]}
  example: {b: 50, c: 50, n: 1, k: 4000, m: 1}
  reference: {function: torch.matmul, args: [x, w], kwargs: {}}
---
graph LR
  X(x) -->|a| M((matmul))
  W(w) -->|b| M
  M --> Y(y)
"""


def test_run_on_cpu_stays_within_max_memory_where_the_estimate_cannot_see(tmp_path, capsys):
    """matmul copies its broadcast inputs whole (50·50·4000 floats, 40 MB each): more than every tensor the spec
    makes together (1.6 MB), which the meta estimate counts. The cap catches the copies."""
    path = tmp_path / "broadcast.mmd"
    path.write_text(BROADCAST)
    assert main(["run", str(path), "--device", "cpu", "--max-memory", "200MB"]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--device", "cpu", "--max-memory", "30MB"]) == 2  # peaked past 80 MB
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"graphconv run: {path}: --device cpu: the run needed more than --max-memory 28.6 MiB")


def test_check_refuses_an_example_over_max_memory_before_allocating_it(tmp_path, capsys):
    path = tmp_path / "big.mmd"
    path.write_text(BROADCAST.replace("b: 50, c: 50", "b: 5000, c: 50"))
    assert main(["check", str(path), "--allow-reference", "torch", "--max-memory", "100MB"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "at the example the checks take about 1.2 GiB" in err and "over --max-memory 95.4 MiB" in err


def test_check_stays_within_max_memory_where_the_estimate_cannot_see(tmp_path, capsys):
    path = tmp_path / "broadcast.mmd"
    path.write_text(BROADCAST)
    assert main(["check", str(path), "--allow-reference", "torch", "--max-memory", "60MB"]) == 2
    err = one_line(capsys.readouterr().err)
    assert err == f"graphconv check: {path}: checking it needed more than --max-memory 57.2 MiB; raise --max-memory"
