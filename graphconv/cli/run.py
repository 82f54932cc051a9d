"""``graphconv run SPEC``: check a spec's shapes end to end, on the meta device unless told otherwise."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from graphconv.cli.common import EXIT_OK, EXIT_SHAPE, import_modules, parse_assignments


def add_parser(verbs: Any) -> None:
    run = verbs.add_parser("run", help="check a spec's shapes end to end (on the meta device by default)")
    run.add_argument("spec", help="a .mmd, .md or .yaml spec")
    run.add_argument("--dims", help="input dims, e.g. b=64,i_h=224 (default: the spec's example:)")
    run.add_argument("--attr", help="attrs, e.g. stride=2,padding=0")
    run.add_argument("--backward", action="store_true", help="also run the backward and check gradient shapes")
    run.add_argument("--device", default="meta", help="meta (no memory, default), cpu or cuda: real random data")
    run.add_argument("--json", action="store_true", help="print the table as JSON")
    run.add_argument("--ops", action="append", help="import a module of extra ops (repeatable)")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import graphconv
    from graphconv.compiler.trace import trace

    spec = graphconv.load(args.spec, ops=import_modules(args.ops))
    dims = parse_assignments(args.dims, "--dims")
    attrs = parse_assignments(args.attr, "--attr")
    result = trace(spec, dims, attrs, device=args.device, backward=args.backward)
    if args.json:
        print(json.dumps(_trace_json(spec, result), indent=2))
    else:
        _print_table(result, args.backward)
        for problem in result.problems():
            print(f"\n{problem}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_SHAPE


def _trace_json(spec, result) -> dict[str, Any]:
    return {
        "spec": spec.name,
        "path": spec.path,
        "ok": result.ok,
        "dims": result.dims,
        "tensors": [
            {"name": r.name, "op": r.op, "line": r.line, "symbolic": r.symbolic, "shape": r.shape, "dtype": r.dtype,
             "grad_shape": r.grad_shape, "problems": r.problems}
            for r in result.rows
        ],
        "problems": result.problems(),
    }


def _print_table(result, backward: bool) -> None:
    header = ["tensor", "op", "symbolic shape", "shape", "dtype"] + (["grad shape"] if backward else [])
    rows = []
    for r in result.rows:
        cells = [r.name, r.op, r.symbolic or "-", _shape(r.shape), r.dtype or "-"]
        if backward:
            cells.append(_shape(r.grad_shape))
        cells[0] = ("✗ " if r.problems else "") + cells[0]
        rows.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    for cells in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())


def _shape(shape) -> str:
    return "-" if shape is None else "(" + ", ".join(map(str, shape)) + ")"
