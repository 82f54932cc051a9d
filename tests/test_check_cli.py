"""``graphconv check``: a row per check, exit 0 when all pass, 1 when one fails, 2 for a bad spec or reference —
and a reference can name a function in an allowed module, never make graphconv import anything else."""
import textwrap

import pytest

from conftest import SPECS, write_spec
from graphconv.cli import main


def spec_text(op="relu", reference="torch.nn.functional.relu", extra=""):
    """A one-op spec on x: (n, m); ``extra`` adds lines to its graphconv metadata."""
    return (f"---\ngraphconv:\n  inputs: {{x: [n, m]}}\n  example: {{n: 3, m: 4}}\n  reference: {reference}\n"
            f"{extra}---\ngraph LR\n  X(x) --> R(({op})) --> Y(y)\n")


def check(capsys, *argv):
    status = main(["check", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def rows(out, result):
    return [line.split() for line in out.splitlines() if line.startswith(result + " ")]


def test_a_matching_spec_passes_with_a_row_per_check(tmp_path, capsys):
    status, out, _ = check(capsys, write_spec(tmp_path, spec_text()))
    assert status == 0
    assert "all 5 checks pass" in out  # relu's sample, the spec's gradcheck, the oracle, value, grad x
    assert [r[1:3] for r in rows(out, "ok")] == [["op", "gradcheck"], ["spec", "gradcheck"], ["oracle", "spec"],
                                                 ["value", "torch.nn.functional.relu"], ["grad", "x"]]
    assert not rows(out, "FAIL")


def test_a_spec_that_differs_from_its_reference_fails_in_value_and_gradient(tmp_path, capsys):
    status, out, _ = check(capsys, write_spec(tmp_path, spec_text(op="sigmoid")))
    assert status == 1
    assert "2 failed" in out
    assert [r[1:3] for r in rows(out, "FAIL")] == [["value", "torch.nn.functional.relu"], ["grad", "x"]]


def test_failures_prints_only_what_failed(tmp_path, capsys):
    status, out, _ = check(capsys, "--failures", write_spec(tmp_path, spec_text(op="sigmoid")))
    assert status == 1
    assert len(rows(out, "FAIL")) == 2 and not rows(out, "ok")


@pytest.mark.slow
def test_every_shipped_spec_passes(capsys):
    status, out, err = check(capsys, *sorted(SPECS.glob("*.mmd")))
    assert status == 0, out + err
    assert out.count("checks pass") == len(list(SPECS.glob("*.mmd")))


@pytest.mark.parametrize("reference, message", [
    ("os.system", "'os.system' is not in an allowed module"),
    ("torch.load", "not in an allowed module"),
    ("torch.nn.functional._no_grad_embedding_renorm_", "not a public function name"),
    ("torch.nn.functional.relux", "has no function 'relux'"),
    ("{function: torch.nn.functional.relu, kwarg: {}}", "unknown key 'kwarg'; did you mean 'kwargs'"),
    ("{function: torch.nn.functional.relu, cases: [{q: 1}]}", "cases: 'q' is not an attr or an input dim"),
    ("{args: [x]}", "function: expected a dotted name"),
    ("[1, 2]", "expected a dotted name such as"),
])
def test_a_bad_reference_is_a_spec_error_at_its_line(tmp_path, capsys, reference, message):
    path = write_spec(tmp_path, spec_text(reference=reference))
    status, out, err = check(capsys, path)
    assert status == 2
    assert message in err
    assert f"{path}:5:" in err and "^" in err  # the reference's line, with a caret


def test_a_reference_outside_the_allowed_modules_is_never_imported(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_reference.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom torch.nn.functional import relu\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_spec(tmp_path, spec_text(reference="sneaky_reference.relu"))
    assert check(capsys, path)[0] == 2
    assert not marker.exists()
    status, out, _ = check(capsys, "--allow-reference", "sneaky_reference", path)  # the user may allow it
    assert status == 0 and marker.exists()


def test_reference_arguments_are_expressions_over_inputs_attrs_and_dims(tmp_path, capsys):
    extra = "  attrs: {dim: -1}\n"
    reference = "{function: torch.nn.functional.softmax, args: [x], kwargs: {dim: dim}, cases: [{dim: 0}, {n: 1}]}"
    status, out, _ = check(capsys, write_spec(tmp_path, spec_text(op="softmax", reference=reference, extra=extra)))
    assert status == 0, out
    assert {r[-4] if r[1] == "value" else None for r in rows(out, "ok")} >= {"example", "dim=0", "n=1"}


def test_a_spec_without_a_reference_is_gradchecked_and_compared_with_the_oracle(tmp_path, capsys):
    text = spec_text().replace("  reference: torch.nn.functional.relu\n", "")
    status, out, _ = check(capsys, write_spec(tmp_path, text))
    assert status == 0
    assert [r[1:3] for r in rows(out, "ok")] == [["op", "gradcheck"], ["spec", "gradcheck"], ["oracle", "spec"]]
    assert "nothing was compared with torch" in out


def test_an_op_without_samples_fails_the_check(tmp_path, capsys, monkeypatch):
    (tmp_path / "bare_ops.py").write_text(textwrap.dedent("""\
        import graphconv

        @graphconv.op(registry=None)
        def double(x):
            return 2 * x

        @double.vjp
        def _(ctx, grad):
            return (2 * grad,)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_spec(tmp_path, spec_text(op="double", reference="null"))
    status, out, _ = check(capsys, "--ops", "bare_ops", path)
    assert status == 1
    [failed] = rows(out, "FAIL")
    assert failed[1:4] == ["op", "gradcheck", "double"] and "declares no samples" in " ".join(failed)


def test_a_bad_spec_among_good_ones_exits_2_and_the_others_still_run(tmp_path, capsys):
    bad = write_spec(tmp_path, "graph LR\n  X(x) --> R((relux)) --> Y(y)\n", "bad.mmd")
    status, out, err = check(capsys, bad, SPECS / "linear.mmd")
    assert status == 2
    assert "unknown op 'relux'" in err and "did you mean 'relu'" in err
    assert "linear.mmd: all" in out


WRONG_REFERENCES = '''\
import torch


def other_shape(x):
    return x.sum()


def other_dtype(x):
    return torch.relu(x).float()


def integers(x):
    return (x > 0).long()


def not_a_tensor(x):
    return 3


def two_outputs(x):
    return torch.relu(x), x


def constant(x):
    return torch.relu(x).detach()


def raises(x):
    raise RuntimeError("no such luck")
'''


@pytest.mark.parametrize("function, detail", [
    ("other_shape", "shape (3, 4), reference ()"),
    ("other_dtype", "dtype float64, reference float32"),
    ("integers", "dtype float64, reference int64"),
    ("not_a_tensor", "the reference returned int 3, not a tensor"),
    ("two_outputs", "the spec has 1 output(s), the reference 2"),
    ("raises", "RuntimeError: no such luck"),
])
def test_a_reference_that_returns_something_else_is_a_failed_row(tmp_path, capsys, monkeypatch, function, detail):
    """Was a traceback for another shape, dtype or type: a mismatch is what check is there to report."""
    (tmp_path / "wrong_references.py").write_text(WRONG_REFERENCES)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_spec(tmp_path, spec_text(reference=f"wrong_references.{function}"))
    status, out, err = check(capsys, "--allow-reference", "wrong_references", path)
    assert status == 1 and err == "", err
    [failed] = rows(out, "FAIL")
    assert failed[1:3] == ["value", f"wrong_references.{function}"] and detail in " ".join(failed)


def test_a_reference_without_a_gradient_fails_the_gradient_rows(tmp_path, capsys, monkeypatch):
    (tmp_path / "wrong_references.py").write_text(WRONG_REFERENCES)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_spec(tmp_path, spec_text(reference="wrong_references.constant"))
    status, out, err = check(capsys, "--allow-reference", "wrong_references", path)
    assert status == 1 and err == ""
    assert [r[1:3] for r in rows(out, "FAIL")] == [["grad", "x"]]
    assert [r[1] for r in rows(out, "ok")] == ["op", "spec", "oracle", "value"]
