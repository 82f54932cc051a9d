"""``graphconv show --backward``: the backward drawn as Mermaid — a circle per VJP, gradient edges labelled with
their shapes, what forward keeps and (save="minimal") what backward recomputes, from the compiler's memory plan —
that parses back and renders in real Mermaid."""
import subprocess

import pytest

import graphconv
from conftest import SPECS
from graphconv.cli import main
from graphconv.compiler.program import Program
from test_show import MERMAID_CHECK, MERMAID_CLI, written

SHIPPED = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".mmd", ".yaml"))


def drawn(capsys, *argv: str) -> str:
    assert main(["show", "--backward", *map(str, argv)]) == 0
    return capsys.readouterr().out


def labels(diagram, shape: str) -> list[str]:
    return [node.label for node in diagram.nodes.values() if node.shape == shape]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_vjp_is_a_circle_and_the_drawing_parses_back(capsys, name):
    spec = graphconv.load(SPECS / name)
    diagram = graphconv.parse_diagram(drawn(capsys, SPECS / name))
    assert sorted(labels(diagram, "circle")) == sorted(f"VJP {op.id}: {op.label}" for op in spec.ops())
    assert {label[1:] for label in labels(diagram, "stadium")} == set(spec.output_names)  # the gradients it starts from


def test_gradient_edges_carry_the_shapes_and_kept_tensors_feed_their_vjp(capsys):
    diagram = graphconv.parse_diagram(drawn(capsys, SPECS / "conv2d.mmd"))
    nodes = {node.id: node.label for node in diagram.nodes.values()}
    edges = {(nodes[e.source], nodes[e.target]): e.label for e in diagram.edges}
    assert edges["∂output", "VJP S: permute_output"] == "[b, out_channels, o_h, o_w]"
    assert edges["VJP P: compute_output_2D", "∂U_reshaped"] == "[b * patches, patch_size]"
    assert edges["VJP L: unfold", "∂input_batch"] == "[b, in_channels, i_h, i_w]"
    kept = sorted(label for label in labels(diagram, "cylinder"))
    spec = graphconv.load(SPECS / "conv2d.mmd")
    program = Program(spec, "all")
    assert kept == sorted(f"kept: {program.names[s]}" for s in program.plan.saved)
    assert ("kept: U_reshaped", "VJP P: compute_output_2D") in edges


def test_save_minimal_draws_what_backward_recomputes_and_from_what(capsys):
    diagram = graphconv.parse_diagram(drawn(capsys, SPECS / "conv2d.mmd", "--save", "minimal"))
    nodes = {node.id: node.label for node in diagram.nodes.values()}
    edges = {(nodes[e.source], nodes[e.target]): e.label for e in diagram.edges}
    assert sorted(labels(diagram, "cylinder")) == ["kept: input_batch", "kept: kernel"]
    assert "recomputed: U_reshaped" in labels(diagram, "hexagon")
    assert edges["kept: input_batch", "recomputed: U"] == "unfold"
    assert ("recomputed: U_reshaped", "VJP P: compute_output_2D") in edges


def test_the_optimized_program_is_drawn_with_its_fused_op(capsys):
    diagram = graphconv.parse_diagram(drawn(capsys, SPECS / "conv2d.mmd", "--optimized"))
    [vjp] = labels(diagram, "circle")
    assert vjp.endswith("patch_matmul")


def test_backward_draws_mermaid_only(capsys):
    assert main(["show", "--backward", str(SPECS / "conv2d.mmd"), "--format", "dot"]) == 2
    assert "--backward draws Mermaid" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not MERMAID_CLI.exists(), reason="mermaid-check has not installed Mermaid here")
def test_real_mermaid_renders_the_backward(tmp_path, capsys):
    files = [written(tmp_path, drawn(capsys, SPECS / name, *extra), f"{i}.mmd") for i, (name, extra) in enumerate([
        ("conv2d.mmd", ()), ("conv2d.mmd", ("--save", "minimal")), ("conv2d_full.mmd", ("--save", "minimal")),
        ("layer_norm.mmd", ())])]
    result = subprocess.run([str(MERMAID_CHECK), *map(str, files)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK ") == len(files)
