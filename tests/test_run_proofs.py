"""``graphconv run`` proves declared shapes for every size: every shipped spec's are proved; a declared shape the
normal form cannot match is checked at the given sizes (and a wrong one still fails); what the ops require is
reported and checked; an op without a shape rule falls back to the meta device; ``--watch`` checks again on save."""
import json

import pytest

import graphconv
from conftest import NO_FRONT_MATTER, SPECS, write_spec
from graphconv.check.proof import prove
from graphconv.cli import build_parser, main
from graphconv.cli.run import watch

SHIPPED = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".mmd", ".yaml"))

EVEN = """\
    ---
    graphconv:
      inputs: {x: [n]}
      shapes: {y: [2 * (n // 2)]}
      example: {n: 4}
    ---
    graph LR
      X(x) --> N((neg)) --> Y(y)
    """


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["run", *map(str, argv), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_declared_shape_of_every_shipped_spec_is_proved(capsys, name):
    code, report = run_json(capsys, SPECS / name)
    assert code == 0 and report["ok"]
    declared = {row["name"]: row["proof"] for row in report["tensors"] if row["symbolic"] and row["op_id"]}
    assert declared and set(declared.values()) == {"proved"}, declared
    assert all(c["holds"] for c in report["requires"])


def test_the_json_carries_symbols_requirements_and_inferred_shapes(capsys):
    _, report = run_json(capsys, SPECS / "conv2d_full.mmd")
    assert report["symbols"]["dims"][:2] == ["b", "in_channels"]
    assert report["symbols"]["attrs"] == {"stride": 0, "padding": 0, "dilation": 0, "groups": 0}
    conditions = {c["condition"]: c for c in report["requires"]}
    assert conditions["in_channels % groups == 0"]["op_id"] == "G" and conditions["stride >= 1"]["holds"]
    inferred = {row["name"]: row["inferred"] for row in report["tensors"]}
    assert inferred["padded"] == "[b, in_channels, i_h + 2 * padding, i_w + 2 * padding]"
    assert inferred["group_output"] == "[b, groups, group_out, patches]"


def test_a_shape_the_normal_form_cannot_match_is_checked_at_the_sizes_given(tmp_path, capsys):
    path = write_spec(tmp_path, EVEN)
    code, report = run_json(capsys, path)
    assert code == 0 and {r["name"]: r["proof"] for r in report["tensors"]}["y"] == "checked"
    code, report = run_json(capsys, path, "--dims", "n=5")
    assert code == 1 and "tensor 'y' (produced by op N (neg)" in report["problems"][0]


def test_inputs_without_patterns_get_a_symbol_per_size(tmp_path, capsys):
    path = write_spec(tmp_path, NO_FRONT_MATTER)
    code, report = run_json(capsys, path, "--shapes", "x=(2,3,4),w=(6,5)")
    assert code == 0
    conditions = [c["condition"] for c in report["requires"]]
    assert "(x[0] * x[1] * x[2]) % 6 == 0" in conditions and "w[0] == 6" in conditions
    code, report = run_json(capsys, path, "--shapes", "x=(1,5,7),w=(6,5)")
    assert code == 1 and "requires (x[0] * x[1] * x[2]) % 6 == 0, but here 35 % 6 == 0 is false" in report["problems"][0]


def test_an_op_without_a_shape_rule_runs_on_the_meta_device():
    op = graphconv.op(lambda x: x.flip(0), name="flip_rows", registry=None)
    op.vjp(lambda ctx, grad: (grad.flip(0),))
    spec = graphconv.loads("""---
graphconv:
  inputs: {x: [n, m]}
  shapes: {y: [n, m], z: [m, n]}
  example: {n: 2, m: 3}
---
graph LR
  X(x) --> F((flip_rows)) --> Y(y) --> T(("transpose(0, 1)")) --> Z(z)
""", ops=[op])
    report = prove(spec)
    rows = {row.name: row for row in report.rows}
    assert report.ok and rows["y"].shape == (2, 3) and rows["z"].shape == (3, 2)
    assert rows["y"].inferred is None and rows["y"].proof == rows["z"].proof == "checked"
    assert "has no shape rule" in report.inference.concrete_only["F"]


def test_watch_checks_again_each_time_the_file_changes(tmp_path, capsys):
    path = write_spec(tmp_path, (SPECS / "linear.mmd").read_text())
    edits = iter([(SPECS / "linear.mmd").read_text().replace("product: [b, out_features]", "product: [b, b]"),
                  "graph LR\n  A(x) --> B((nope)) --> C(y)\n"])

    def save_next(_seconds):
        text = next(edits, None)
        if text is not None:
            path.write_text(text)

    status = watch(build_parser().parse_args(["run", str(path), "--watch"]), rounds=3, sleep=save_next)
    out, err = capsys.readouterr()
    assert status == 2 and err.count("watching") == 3
    assert out.count("tensor ") == 2  # two tables: the spec as it was, and with the wrong declared shape
    assert "tensor 'product'" in err and "unknown op 'nope'" in err
