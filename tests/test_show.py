"""``graphconv show``: the spec drawn again with shapes on its edges — Mermaid that loads back to the same op graph
(and compiles to the same numbers), Graphviz DOT, and a lossless YAML conversion."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import graphconv
from conftest import NO_FRONT_MATTER, ROOT, SPECS, write_spec
from graphconv.cli import main
from graphconv.graph.render_yaml import metadata_data
from graphconv.syntax.expr import to_source

SPLIT_JOIN = """\
    ---
    title: split_join
    graphconv:
      inputs: {x: [n, d]}
      dims: {h: n // 2}
      shapes: {top: [h, d], bottom: [n - h, d], joined: [2 * n, d]}
      example: {n: 5, d: 3}
    ---
    flowchart TB
      subgraph outer [Outer block]
        direction LR
        subgraph inner
          X[/x/] --> S(("split((h, n - h), dim=0)"))
        end
        S --> T[top]
        S --> B{{bottom}}
      end
      T --> C(("cat(dim=0)"))
      B --> C
      X --> C
      C --> J([joined])
      classDef big fill:#f9f
      class C big
    """
MERMAID_CHECK = Path("/work/shared/tools/mermaid-check")
MERMAID_CLI = Path(os.environ.get("MERMAID_CHECK_HOME", Path.home() / ".cache/mermaid-check")) / "node_modules/.bin/mmdc"


def op_graph(spec) -> dict:
    """What a spec means, independent of layout and node ids: inputs, outputs, metadata, and each op (id, label,
    registered op, arguments) with the names of the tensors it reads and writes, in execution order."""
    return {
        "inputs": spec.input_names,
        "outputs": spec.output_names,
        "meta": metadata_data(spec.meta),
        "ops": [(op.id, op.label, op.op.name, {k: to_source(v) for k, v in op.args.items()},
                 [spec.tensor(t).name if t else None for t in op.inputs], [spec.tensor(t).name for t in op.outputs])
                for op in spec.ops()],
    }


def show(capsys, *argv: str) -> str:
    assert main(["show", *map(str, argv)]) == 0
    return capsys.readouterr().out


def written(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SHIPPED = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".mmd", ".md", ".yaml"))


def reloaded(text: str, name: str):
    """``text`` loaded as if it sat in specs/ (where ``uses:`` finds the specs it calls)."""
    return graphconv.loads(text, path=str(SPECS / name))


@pytest.mark.parametrize("spec", SHIPPED)
def test_yaml_conversion_loads_to_the_same_op_graph(capsys, spec):
    converted = reloaded(show(capsys, SPECS / spec, "--format", "yaml"), "converted.yaml")
    assert op_graph(converted) == op_graph(graphconv.load(SPECS / spec))


@pytest.mark.parametrize("spec", SHIPPED)
def test_annotated_mermaid_loads_back_to_the_same_op_graph(capsys, spec):
    annotated = reloaded(show(capsys, SPECS / spec), "annotated.mmd")
    assert op_graph(annotated) == op_graph(graphconv.load(SPECS / spec))


def test_mermaid_and_yaml_seeds_convert_into_each_other(tmp_path, capsys):
    from_mermaid = written(tmp_path, show(capsys, SPECS / "conv2d.mmd", "--format", "yaml"), "a.yaml")
    back = written(tmp_path, show(capsys, from_mermaid), "b.mmd")
    assert op_graph(graphconv.load(back)) == op_graph(graphconv.load(SPECS / "conv2d.yaml"))


def test_edges_carry_the_declared_symbolic_shapes(capsys):
    text = show(capsys, SPECS / "conv2d.mmd")
    assert '  A -->|"[b, in_channels, i_h, i_w]"| L\n' in text
    assert '  L -->|"[b, patch_size, patches]"| B\n' in text
    assert '  N -->|"[b * patches, patch_size]"| D\n' in text
    assert '  D -->|"a: [b * patches, patch_size]"| P\n' in text  # names the input it binds: matmul's a
    assert '  G -->|"b: [patch_size, out_channels]"| P\n' in text
    assert '  S -->|"[b, out_channels, o_h, o_w]"| K\n' in text
    assert text.count("-->") == 19


def test_the_front_matter_and_layout_are_kept(capsys):
    source = (SPECS / "conv2d.mmd").read_text()
    text = show(capsys, SPECS / "conv2d.mmd")
    assert text.startswith(source[:source.index("---\ngraph LR")] + "---\ngraph LR\n  A(input_batch)\n")
    assert "  L((unfold))\n" in text
    assert "  subgraph kernel\n    E & O & F & T & G\n  end\n" in text


def test_with_dims_edges_carry_concrete_shapes(capsys):
    text = show(capsys, SPECS / "conv2d.mmd", "--dims", "b=256,i_h=224,i_w=224,in_channels=64,out_channels=128")
    assert '  L -->|"(256, 576, 50176)"| B\n' in text
    assert '  D -->|"a: (12845056, 576)"| P\n' in text
    assert '  S -->|"(256, 128, 224, 224)"| K\n' in text


def test_annotated_mermaid_compiles_to_the_same_numbers(tmp_path, capsys):
    annotated = written(tmp_path, show(capsys, SPECS / "conv2d.mmd", "--attr", "stride=2"), "annotated.mmd")
    conv2d = graphconv.compile(annotated)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    y = conv2d(x, w, stride=2, padding=1)
    expected = F.conv2d(x, w, stride=2, padding=1)
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(y, (x, w), grad), torch.autograd.grad(expected, (x, w), grad)):
        torch.testing.assert_close(got, want)


def test_a_spec_without_front_matter_compiles_runs_and_round_trips(tmp_path, capsys):
    path = write_spec(tmp_path, NO_FRONT_MATTER)
    op = graphconv.compile(path)
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = op(x, w)
    expected = x.permute(0, 2, 1).reshape(-1, 6) @ w
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(y, (x, w), grad), torch.autograd.grad(expected, (x, w), grad)):
        torch.testing.assert_close(got, want)

    plain = show(capsys, path)
    assert not plain.startswith("---") and "  P --> R\n" in plain and "  flat -->|a| M\n" in plain
    concrete = show(capsys, path, "--shapes", "x=(2,3,4),w=(6,5)")
    assert '  P -->|"(2, 4, 3)"| R\n' in concrete and '  w -->|"b: (6, 5)"| M\n' in concrete
    for text, name in [(plain, "plain.mmd"), (concrete, "concrete.mmd"), (show(capsys, path, "--format", "yaml"),
                                                                          "converted.yaml")]:
        assert op_graph(graphconv.load(written(tmp_path, text, name))) == op_graph(graphconv.load(path))


def test_several_outputs_variadic_inputs_node_shapes_and_nested_subgraphs_round_trip(tmp_path, capsys):
    path = write_spec(tmp_path, SPLIT_JOIN)
    text = show(capsys, path)
    assert "  X[/x/]\n" in text and "  B{{bottom}}\n" in text and "  J([joined])\n" in text
    assert '  subgraph outer["Outer block"]\n    direction LR\n    T & B\n    subgraph inner\n      X & S\n' in text
    assert '  S -->|"[n - h, d]"| B\n' in text and '  X -->|"[n, d]"| C\n' in text
    for converted in (written(tmp_path, text, "annotated.mmd"),
                      written(tmp_path, show(capsys, path, "--format", "yaml"), "converted.yaml")):
        assert op_graph(graphconv.load(converted)) == op_graph(graphconv.load(path))
        x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
        joined = graphconv.compile(converted)(x)
        torch.testing.assert_close(joined, torch.cat([x, x]))
        (grad,) = torch.autograd.grad(joined, x, torch.ones(10, 3, dtype=torch.float64))
        torch.testing.assert_close(grad, torch.full((5, 3), 2.0, dtype=torch.float64))


def test_dot_output(capsys):
    text = show(capsys, SPECS / "conv2d.mmd", "--format", "dot")
    assert text.startswith('digraph "conv2d" {\n  rankdir=LR;\n') and text.endswith("}\n")
    assert '  "L" [label="unfold", shape=circle];\n' in text
    assert '  "A" [label="input_batch", shape=box, style=rounded];\n' in text
    assert '  subgraph "cluster_kernel" {\n    label="kernel";\n    "E"; "O"; "F"; "T"; "G";\n  }\n' in text
    assert '  "D" -> "P" [label="a: [b * patches, patch_size]"];\n' in text
    assert len(re.findall(r" -> ", text)) == 19


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_dot_output_is_read_by_graphviz(capsys):
    text = show(capsys, SPECS / "conv2d_full.mmd", "--format", "dot")
    result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "[b, groups, group_out, patches]" in result.stdout


def test_symbolic_show_imports_no_torch(tmp_path):
    code = ("import sys; from graphconv.cli import main\n"
            f"for fmt in ('mermaid', 'dot', 'yaml'): assert main(['show', 'specs/conv2d.mmd', '--format', fmt, '-o', "
            f"{str(tmp_path / 'out')!r}]) == 0\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_output_file(tmp_path, capsys):
    target = tmp_path / "out.mmd"
    assert show(capsys, SPECS / "conv2d.yaml", "-o", target) == ""
    assert op_graph(graphconv.load(target)) == op_graph(graphconv.load(SPECS / "conv2d.yaml"))


def test_show_exit_codes(tmp_path, capsys):
    wrong = write_spec(tmp_path, (SPECS / "conv2d.mmd").read_text().replace("output: [b, out_channels, o_h, o_w]",
                                                                              "output: [b, o_h, o_w, out_channels]"))
    assert main(["show", str(wrong), "--concrete"]) == 1  # still drawn, with the actual shapes
    out, err = capsys.readouterr()
    assert '  S -->|"(4, 3, 8, 8)"| K\n' in out and "tensor 'output' (produced by op S (permute_output)" in err
    assert main(["show", str(SPECS / "conv2d.mmd"), "--format", "yaml", "--dims", "b=2"]) == 2
    assert "--format yaml writes the spec itself" in capsys.readouterr().err
    bad = write_spec(tmp_path, "graph LR\n  A(x) --> B((nope)) --> C(y)\n", "bad.mmd")
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as caught:
        main(["show", str(SPECS / "conv2d.mmd"), "--format", "svg"])
    assert caught.value.code == 2


@pytest.mark.slow
@pytest.mark.skipif(not MERMAID_CLI.exists(), reason="mermaid-check has not installed Mermaid here")
def test_real_mermaid_renders_the_annotated_diagrams(tmp_path, capsys):
    split_join = write_spec(tmp_path, SPLIT_JOIN, "split_join.mmd")
    files = [written(tmp_path, show(capsys, spec, *extra), f"{i}.mmd") for i, (spec, extra) in enumerate([
        (SPECS / "conv2d.mmd", ()), (SPECS / "conv2d.mmd", ("--concrete",)), (SPECS / "conv2d.yaml", ()),
        (SPECS / "conv2d_full.mmd", ()), (split_join, ())])]
    result = subprocess.run([str(MERMAID_CHECK), *map(str, files)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK ") == len(files)


def test_yaml_conversion_writes_every_metadata_key(tmp_path):
    """A key the metadata learns must be written back too, or the conversion silently loses it."""
    from graphconv.syntax.metadata import KEYS

    text = (SPECS / "conv2d.yaml").read_text() + "outputs: [output]\nparams: [kernel]\nuses: [conv2d_full]\n"
    spec = graphconv.loads(text, path=str(SPECS / "all_keys.yaml"))  # uses: is read next to the spec
    assert set(metadata_data(spec.meta)) == set(KEYS)
    from graphconv.graph.render_yaml import to_yaml

    assert op_graph(graphconv.loads(to_yaml(spec), path=str(SPECS / "again.yaml"))) == op_graph(spec)
