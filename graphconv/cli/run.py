"""``graphconv run SPEC``: the shape checker — run a spec end to end on the meta device (no memory, no compute,
any size) unless told otherwise, and print every tensor's symbolic and concrete shape.

Exit status: 0 when every shape fits, 1 when one does not (the message names the tensor, the op that made it,
the spec line, the declared shape symbolic and evaluated, and the actual one), 2 for a bad spec or bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from graphconv.cli.common import EXIT_OK, EXIT_SHAPE, import_modules, parse_assignments, parse_bytes, show_bytes
from graphconv.errors import SpecError

MAX_MEMORY = "4GiB"  # what --device cpu / cuda may allocate unless told otherwise: a spec's example: is untrusted


def add_parser(verbs: Any) -> None:
    run = verbs.add_parser("run", help="check a spec's shapes end to end (on the meta device by default)",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("spec", help="a .mmd, .md or .yaml spec")
    add_shape_arguments(run)
    run.add_argument("--backward", action="store_true", help="also run the VJPs and check every gradient's shape")
    run.add_argument("--device", default="meta", help="meta (default: shapes only, free at any size), or cpu / "
                                                      "cuda to run on real random data")
    run.add_argument("--max-memory", default=MAX_MEMORY,
                     help=f"on a real device, refuse sizes whose tensors (inputs, intermediates and, with "
                          f"--backward, gradients) would take more than this, found by a meta run first "
                          f"(default {MAX_MEMORY})")
    run.add_argument("--json", action="store_true", help="print the table as JSON")
    run.set_defaults(handler=cmd_run)


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which sizes to run a spec at (shared with ``show``)."""
    parser.add_argument("--dims", help="input dims, e.g. b=64,i_h=224 (over the spec's example:)")
    parser.add_argument("--attr", help="attrs, e.g. stride=2,padding=0 (over the spec's defaults)")
    parser.add_argument("--shapes", help="whole input shapes, for inputs without a pattern: x=(2,3),w=(3,4)")
    parser.add_argument("--ops", action="append", help="import a module of extra ops (repeatable)")


def load_and_trace(args: argparse.Namespace, *, backward: bool = False, device: str = "meta") -> tuple[Any, Any]:
    """The spec ``args.spec`` and its trace at the sizes the shape arguments give."""
    import graphconv
    from graphconv.check.trace import trace

    spec = graphconv.load(args.spec, ops=import_modules(args.ops))
    result = trace(spec, parse_assignments(args.dims, "--dims"), parse_assignments(args.attr, "--attr"),
                   shapes=parse_assignments(args.shapes, "--shapes"), device=device, backward=backward)
    return spec, result


def cmd_run(args: argparse.Namespace) -> int:
    if args.device == "meta":
        spec, result = load_and_trace(args, backward=args.backward)
    else:
        spec, result = run_within_memory(args, lambda: load_and_trace(args, backward=args.backward,
                                                                       device=args.device))
    if args.json:
        print(json.dumps(trace_json(spec, result), indent=2))
    else:
        print_sizes(spec, result)
        print_table(result, args.backward)
    for problem in result.problems():
        print(f"\ngraphconv run: {problem}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_SHAPE


def run_within_memory(args: argparse.Namespace, run: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """``run()`` on a real device within ``--max-memory``: refused first when a meta trace at these sizes makes
    more, then run under a cap the system enforces (graphconv.check.memory) — an allocation past it, anywhere in
    the run, is the same refusal."""
    from graphconv.check.memory import is_out_of_memory, memory_cap
    from graphconv.check.trace import check_device

    limit = parse_bytes(args.max_memory, "--max-memory")
    check_device(args.device)
    check_memory(args, limit)
    try:
        with memory_cap(limit, args.device):
            spec, result = run()
    except Exception as error:
        if is_out_of_memory(error):
            raise over_memory(args, limit) from None
        raise
    if is_out_of_memory(result.failure):
        raise over_memory(args, limit)
    return spec, result


def check_memory(args: argparse.Namespace, limit: int) -> None:
    """Refuse a real-device run whose tensors would take more than ``--max-memory``: a meta run (free at any size)
    gives every tensor's shape first, so a spec's ``example:`` cannot make graphconv allocate without bound."""
    from graphconv.check.memory import traced_bytes

    _, shapes = load_and_trace(args, backward=args.backward, device="meta")
    needed = traced_bytes(shapes)
    if needed > limit:
        raise SpecError(f"--device {args.device}: at these sizes the tensors take about {show_bytes(needed)} "
                        f"(inputs, intermediates{' and gradients' if args.backward else ''}), over --max-memory "
                        f"{show_bytes(limit)}; check the shapes on the meta device (the default), or raise "
                        "--max-memory", path=args.spec)


def over_memory(args: argparse.Namespace, limit: int) -> SpecError:
    return SpecError(f"--device {args.device}: the run needed more than --max-memory {show_bytes(limit)} (an op "
                     "allocates more than the tensors it makes: matmul copies broadcast inputs whole); raise "
                     "--max-memory, or check the shapes on the meta device (the default)", path=args.spec)


def trace_json(spec: Any, result: Any) -> dict[str, Any]:
    return {
        "spec": spec.name,
        "path": spec.path,
        "device": result.device,
        "ok": result.ok,
        "dims": result.dims,
        "attrs": result.attrs,
        "tensors": [
            {"name": r.name, "op": r.op, "op_id": r.op_id, "line": r.line, "symbolic": r.symbolic, "shape": r.shape,
             "dtype": r.dtype, "grad_shape": r.grad_shape, "problems": r.problems}
            for r in result.rows
        ],
        "problems": result.problems(),
    }


def print_sizes(spec: Any, result: Any) -> None:
    """The sizes the spec ran at: its input dims, the derived dims they give, and the attrs."""
    derived = set(spec.meta.dims)
    groups = [("dims", {k: v for k, v in result.dims.items() if k not in derived}),
              ("derived", {k: v for k, v in result.dims.items() if k in derived}), ("attrs", result.attrs)]
    for title, values in groups:
        if values:
            print(f"{title + ':':9}" + ", ".join(f"{k}={_value(v)}" for k, v in values.items()))
    print(f"{'device:':9}{result.device}\n")


def print_table(result: Any, backward: bool) -> None:
    header = ["tensor", "op", "symbolic shape", "shape", "dtype"] + (["grad shape"] if backward else [])
    rows = []
    for r in result.rows:
        cells = [("✗ " if r.problems else "") + r.name, r.op, r.symbolic or "-", _shape(r.shape), r.dtype or "-"]
        rows.append(cells + ([_shape(r.grad_shape)] if backward else []))
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    for cells in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())


def _shape(shape: tuple[int, ...] | None) -> str:
    from graphconv.compiler.binding import show_shape

    return "-" if shape is None else show_shape(shape)


def _value(value: Any) -> str:
    return "(" + ", ".join(map(str, value)) + ")" if isinstance(value, tuple) else str(value)
