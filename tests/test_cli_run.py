"""``graphconv run``: the shape checker — every tensor's declared, inferred (symbolic) and concrete shape by the ops'
shape rules (no torch), on torch's meta device with --device meta; gradient shapes with --backward, mismatches and
failed requirements named precisely with exit 1, bad specs and arguments with exit 2."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NO_FRONT_MATTER, ROOT, SPECS, write_spec
from graphconv.cli import main

BIG = "b=256,i_h=224,i_w=224,in_channels=64,out_channels=128"
BIG_SHAPES = {
    "input_batch": [256, 64, 224, 224],
    "kernel": [128, 64, 3, 3],
    "U": [256, 576, 50176],
    "U_permuted": [256, 50176, 576],
    "U_reshaped": [256 * 50176, 576],
    "kernel_reshaped": [128, 576],
    "kernel_permuted": [576, 128],
    "output_2D": [256 * 50176, 128],
    "output_3D": [256, 50176, 128],
    "output_4D": [256, 224, 224, 128],
    "output": [256, 128, 224, 224],
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


def shapes(report: dict, key: str = "shape") -> dict:
    return {row["name"]: row[key] for row in report["tensors"]}


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize("spec", ["conv2d.mmd", "conv2d.yaml"])
def test_conv2d_at_imagenet_size_by_the_shape_rules(capsys, spec):
    code, report = run_json(capsys, SPECS / spec, "--dims", BIG)
    assert code == 0 and report["ok"] and report["device"] is None
    assert shapes(report) == BIG_SHAPES
    assert report["dims"]["o_h"] == 224 and report["dims"]["patches"] == 224 * 224
    assert report["dims"]["patch_size"] == 576 and report["attrs"] == {"stride": 1, "padding": 1}
    assert shapes(report, "symbolic")["U_reshaped"] == "[b * patches, patch_size]"
    assert shapes(report, "inferred")["U_reshaped"] == "[b * patches, patch_size]"
    assert shapes(report, "op")["output_2D"] == "compute_output_2D"
    assert set(shapes(report, "proof").values()) == {"input", "proved"}


def test_device_meta_cross_checks_the_rules_on_torch(capsys):
    code, report = run_json(capsys, SPECS / "conv2d.mmd", "--dims", BIG, "--device", "meta")
    assert code == 0 and report["ok"] and report["device"] == "meta"
    assert shapes(report) == BIG_SHAPES
    assert {row["dtype"] for row in report["tensors"]} == {"float32"}


def test_backward_gives_every_gradient_its_tensors_shape(capsys):
    code, report = run_json(capsys, SPECS / "conv2d.mmd", "--dims", BIG, "--backward")
    assert code == 0
    assert shapes(report, "grad_shape") == BIG_SHAPES


def test_the_table_shows_declared_inferred_and_concrete_shapes_the_proofs_and_the_sizes(capsys):
    code, out, err = run(capsys, SPECS / "conv2d.mmd", "--dims", BIG, "--backward")
    assert code == 0 and err == ""
    assert "derived:  o_h=224, o_w=224, patches=50176, patch_size=576" in out
    assert "symbolic: b, in_channels, i_h, i_w, out_channels, kernel_h, kernel_w; stride >= 0, padding >= 0" in out
    assert re.search(r"^U_reshaped\s+reshape_U_permuted\s+\[b \* patches, patch_size\]\s+\[b \* patches, "
                     r"patch_size\]\s+\(12845056, 576\)\s+proved\s+\(12845056, 576\)$", out, re.M)
    assert len(re.findall(r"\bproved\b", out)) == 9 and "float32" not in out


def test_the_requirements_are_printed_with_their_op_and_checked(capsys):
    code, out, _ = run(capsys, SPECS / "conv2d.mmd")
    op_line = line_of((SPECS / "conv2d.mmd").read_text(), "L((unfold))")
    assert code == 0
    assert f"requires: i_h + 2 * padding >= kernel_h   [L unfold, line {op_line}: holds (10 >= 3)]" in out
    assert f"requires: stride >= 1   [L unfold, line {op_line}: holds (1 >= 1)]" in out


def test_attrs_and_dims_override_the_example(capsys):
    code, report = run_json(capsys, SPECS / "conv2d.mmd", "--attr", "stride=2,padding=0", "--dims", "i_w=11")
    assert code == 0
    assert shapes(report)["output"] == [4, 3, 3, 5]
    assert report["attrs"] == {"stride": 2, "padding": 0}


def test_device_cpu_runs_real_random_data(capsys):
    code, report = run_json(capsys, SPECS / "conv2d.mmd", "--device", "cpu", "--backward")
    assert code == 0 and report["device"] == "cpu"
    assert shapes(report)["output"] == [4, 3, 8, 8] and shapes(report, "grad_shape")["kernel"] == [3, 3, 3, 3]


def test_a_wrong_declared_shape_names_tensor_op_line_and_both_shapes(tmp_path, capsys):
    text = (SPECS / "conv2d.mmd").read_text().replace("U: [b, patch_size, patches]", "U: [b, patches, patch_size]")
    path = write_spec(tmp_path, text)
    code, out, err = run(capsys, path)
    assert code == 1
    declared_at, op_line = line_of(text, "U: [b, patches, patch_size]"), line_of(text, "L((unfold))")
    assert f"{path}:{declared_at}:" in err
    assert (f"tensor 'U' (produced by op L (unfold) at line {op_line}) has shape (4, 27, 64) but is declared "
            "[b, patches, patch_size] = (4, 64, 27)") in err
    assert "    U: [b, patches, patch_size]" in err  # the declaration, with a caret under it
    assert re.search(r"^✗ U\s+unfold", out, re.M)
    assert re.search(r"^output\s+permute_output\s+.*\(4, 3, 8, 8\)", out, re.M)  # the rest still ran
    assert "Traceback" not in err


def test_an_input_that_does_not_fit_its_pattern_exits_1(capsys):
    code, _, err = run(capsys, SPECS / "conv2d.mmd", "--shapes", "kernel=(3,4,3,3)")
    assert code == 1
    assert "kernel: in_channels is 4 but input_batch says 3" in err


def test_a_failed_requirement_names_the_op_its_line_the_condition_and_the_input_shapes(capsys):
    code, out, err = run(capsys, SPECS / "conv2d.mmd", "--attr", "padding=0", "--dims", "i_h=2,i_w=2")
    op_line = line_of((SPECS / "conv2d.mmd").read_text(), "L((unfold))")
    assert code == 1
    assert (f"op L (unfold) at line {op_line}: requires i_h + 2 * padding >= kernel_h, but here 2 >= 3 is false "
            "(unfold: the kernel must fit the padded input) (inputs: input_batch (4, 3, 2, 2))") in err
    assert "FAILS (2 >= 3)" in out
    assert re.search(r"^kernel\s+input\s+.*\(3, 3, 3, 3\)", out, re.M)
    assert re.search(r"^U\s+unfold\s+\[b, patch_size, patches\]\s+\[b, patch_size, patches\]\s+-", out, re.M)


def test_an_op_that_fails_on_torch_names_the_op_and_its_input_shapes(capsys):
    code, _, err = run(capsys, SPECS / "conv2d.mmd", "--attr", "padding=0", "--dims", "i_h=2,i_w=2", "--device",
                       "meta")
    assert code == 1
    assert "op L (unfold)" in err and "(inputs: input_batch (4, 3, 2, 2))" in err


def test_a_spec_without_front_matter_runs_with_whole_input_shapes(tmp_path, capsys):
    path = write_spec(tmp_path, NO_FRONT_MATTER)
    code, report = run_json(capsys, path, "--shapes", "x=(2,3,4),w=(6,5)", "--backward")
    assert code == 0
    assert shapes(report) == {"x": [2, 3, 4], "w": [6, 5], "P_out": [2, 4, 3], "flat": [4, 6], "y": [4, 5]}
    assert shapes(report, "grad_shape") == shapes(report)
    code, _, err = run(capsys, path)
    assert code == 2 and "input 'x' has no shape pattern under graphconv.inputs: give its shape with --shapes" in err


@pytest.mark.parametrize("argv, message", [
    (["--dims", "bb=3"], "--dims bb: not an input dim of conv2d; did you mean 'b'?"),
    (["--dims", "stride=2"], "--dims stride: 'stride' is an attr of conv2d; set it with --attr stride=…"),
    (["--dims", "o_h=2"], "--dims o_h: 'o_h' is derived"),
    (["--dims", "b=-1"], "--dims b=-1: a dim is a size, an integer ≥ 0"),
    (["--attr", "strid=2"], "conv2d has no attr 'strid'; did you mean 'stride'?"),
    (["--shapes", "x=(1,2)"], "--shapes x: not an input of conv2d"),
    (["--device", "nonsense"], "--device nonsense:"),
    (["--dims", "b=="], "--dims: cannot read 'b=='"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    code, out, err = run(capsys, SPECS / "conv2d.mmd", *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_a_bad_spec_exits_2_with_place_and_caret_and_no_traceback(tmp_path, capsys):
    path = write_spec(tmp_path, """\
        graph LR
          A(x) --> B((permute_it)) --> C(y)
        """)
    code, out, err = run(capsys, path)
    assert code == 2 and out == ""
    assert err.startswith(f"graphconv run: {path}:2:") and "unknown op 'permute_it'" in err
    assert err.rstrip().splitlines()[-1].strip() == "^" and "Traceback" not in err


def test_a_missing_file_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path / "nope.mmd")
    assert code == 2 and "cannot read spec" in err


def console_entry() -> list[str]:
    """The installed ``graphconv`` script; without one (no ``./dev`` install yet), its entry point run the same way."""
    script = Path(sys.executable).with_name("graphconv")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from graphconv.cli import main; sys.exit(main())"]


@pytest.mark.slow  # two fresh interpreters
def test_the_console_entry_checks_shapes_and_reports_bad_specs(tmp_path):
    result = subprocess.run([*console_entry(), "run", "specs/conv2d.mmd", "--dims", BIG, "--backward"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^output\s+permute_output\s+(\[b, out_channels, o_h, o_w\]\s+){2}\(256, 128, 224, 224\)\s+"
                     r"proved", result.stdout, re.M)
    bad = write_spec(tmp_path, "graph LR\n  A(x) --> B((nope)) --> C(y)\n")
    result = subprocess.run([*console_entry(), "run", str(bad)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "unknown op 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_a_real_device_refuses_sizes_over_max_memory(capsys):
    """A spec's example: (or --dims) cannot make --device cpu allocate without bound: a meta run sizes every
    tensor first."""
    code, out, err = run(capsys, SPECS / "conv2d.mmd", "--device", "cpu", "--dims", "b=100000,i_h=224,i_w=224")
    assert code == 2 and out == ""
    assert "at these sizes the tensors take about 1.8 TiB (inputs, intermediates), over --max-memory 4.0 GiB" in err
    # the seed size: 4·3·8·8 input, 27·64·4 patches, ... about 97 KiB in all; its gradients double that
    assert run(capsys, SPECS / "conv2d.mmd", "--device", "cpu", "--max-memory", "100KiB")[0] == 0
    code, _, err = run(capsys, SPECS / "conv2d.mmd", "--device", "cpu", "--backward", "--max-memory", "100KiB")
    assert code == 2 and "(inputs, intermediates and gradients), over --max-memory 100.0 KiB" in err
    code, _, err = run(capsys, SPECS / "conv2d.mmd", "--device", "cpu", "--max-memory", "lots")
    assert code == 2 and "--max-memory: cannot read 'lots' as a size" in err
