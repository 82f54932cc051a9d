"""``graphconv show SPEC``: the spec drawn again with every edge labelled by the shape it carries.

Mermaid (default; renders in any Mermaid viewer and loads back through ``graphconv.load`` to the same op graph),
Graphviz DOT (``--format dot``), or a lossless YAML spec (``--format yaml``). Edge labels are the declared,
symbolic shapes; with ``--dims``, ``--attr``, ``--shapes`` or ``--concrete`` they are the concrete shapes the ops'
shape rules give at those sizes (exit 1 if a shape does not fit: the diagram is still written).

``--backward`` draws the backward instead (Mermaid): each VJP a circle, the gradients as edges labelled with their
shapes, the tensors forward keeps for backward — and with ``--save minimal`` what backward recomputes — from the
compiler's memory plan; ``--optimized`` draws the program ``graphconv.compile`` runs (after its passes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from graphconv.cli.common import EXIT_OK, EXIT_SHAPE, import_modules
from graphconv.cli.run import add_shape_arguments, load_and_prove
from graphconv.errors import SpecError

FORMATS = ("mermaid", "dot", "yaml")


def add_parser(verbs: Any) -> None:
    show = verbs.add_parser("show", help="draw a spec again with shapes on its edges (Mermaid, DOT or YAML)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("spec", help="a .mmd, .md or .yaml spec")
    show.add_argument("--format", choices=FORMATS, default="mermaid", help="what to write (default: mermaid)")
    show.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    show.add_argument("--concrete", action="store_true", help="label concrete shapes at the spec's example dims")
    show.add_argument("--backward", action="store_true", help="draw the backward: VJPs, gradients and what backward "
                                                              "reads (Mermaid)")
    show.add_argument("--save", choices=("all", "minimal"), default="all",
                      help="with --backward: the memory policy whose plan to draw (default: all)")
    show.add_argument("--optimized", action="store_true", help="with --backward: draw the program after the "
                                                               "compiler's passes")
    add_shape_arguments(show)
    show.set_defaults(handler=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    import graphconv
    from graphconv.graph.render import symbolic_labels, to_dot, to_mermaid
    from graphconv.graph.render_yaml import to_yaml

    if args.backward:
        return show_backward(args)
    concrete = args.concrete or any((args.dims, args.attr, args.shapes))
    if args.format == "yaml" and concrete:
        raise SpecError("--format yaml writes the spec itself, without shapes; drop --dims/--attr/--shapes/--concrete")
    status = EXIT_OK
    if concrete:
        spec, result = load_and_prove(args)
        labels = concrete_labels(spec, result)
        for problem in result.problems():
            print(f"graphconv show: {problem}\n", file=sys.stderr)
        status = EXIT_OK if result.ok else EXIT_SHAPE
    else:
        spec = graphconv.load(args.spec, ops=import_modules(args.ops))
        labels = symbolic_labels(spec)
    if args.format == "yaml":
        text = to_yaml(spec)
    else:
        text = (to_mermaid if args.format == "mermaid" else to_dot)(spec, diagram_of(spec), labels)
    write(text, args.output)
    return status


def show_backward(args: argparse.Namespace) -> int:
    import graphconv
    from graphconv.check.backward import backward_mermaid
    from graphconv.compiler import passes

    if args.format != "mermaid" or any((args.dims, args.attr, args.shapes, args.concrete)):
        raise SpecError("--backward draws Mermaid with symbolic shapes; drop --format/--dims/--attr/--shapes/--concrete")
    spec = graphconv.load(args.spec, ops=import_modules(args.ops))
    if args.optimized:
        spec, _ = passes.optimize(spec)
    write(backward_mermaid(spec, args.save), args.output)
    return EXIT_OK


def concrete_labels(spec: Any, result: Any) -> dict[str, str]:
    """Tensor id → ``(4, 27, 64)`` for every tensor the run reached."""
    from graphconv.compiler.binding import show_shape

    return {spec.tensor_id(row.name): show_shape(row.shape) for row in result.rows if row.shape is not None}


def diagram_of(spec: Any) -> Any:
    """The Diagram the spec was read from (its layout: direction, node shapes, subgraphs)."""
    from graphconv.api import YAML_SUFFIXES
    from graphconv.syntax.mermaid import parse_diagram
    from graphconv.syntax.yaml_spec import parse_yaml_spec

    if spec.path and spec.path.lower().endswith(YAML_SUFFIXES):
        return parse_yaml_spec(spec.source, spec.path)[0]
    return parse_diagram(spec.source, spec.path)


def write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise SpecError(f"-o {output}: cannot write: {error}") from None
