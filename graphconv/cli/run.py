"""``graphconv run SPEC``: the shape checker — infer every tensor's shape by the ops' shape rules, for every size
(symbolic) and at the spec's example dims or yours (concrete), without importing torch; prove each declared shape
equal to the inferred one for every size, or check it at these sizes where that cannot be shown; print what the
ops require of the sizes (``requires: i_h + 2 * padding >= kernel_h``). ``--device meta`` (or cpu, cuda) also runs
the spec on torch as a cross-check; ``--watch`` checks again on every save; ``--json`` is for editors.

Exit status: 0 when every shape fits, 1 when one does not or a requirement fails (the message names the tensor or
the op, the spec line, the declared shape symbolic and evaluated, and the actual one — or the condition and its
values), 2 for a bad spec or bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

from graphconv.cli.common import EXIT_OK, EXIT_SHAPE, EXIT_SPEC, import_modules, parse_assignments, parse_bytes
from graphconv.cli.common import show_bytes
from graphconv.errors import ShapeError, SpecError

MAX_MEMORY = "4GiB"  # what --device cpu / cuda may allocate unless told otherwise: a spec's example: is untrusted


def add_parser(verbs: Any) -> None:
    run = verbs.add_parser("run", help="check a spec's shapes end to end, proved for every size where they can be",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("spec", help="a .mmd, .md or .yaml spec")
    add_shape_arguments(run)
    run.add_argument("--backward", action="store_true", help="also give every gradient's shape (with --device, "
                                                             "run the VJPs and check them)")
    run.add_argument("--device", help="also run the spec on torch as a cross-check: meta (shapes only, free at any "
                                      "size), or cpu / cuda on real random data")
    run.add_argument("--max-memory", default=MAX_MEMORY,
                     help=f"on a real device, refuse sizes whose tensors (inputs, intermediates and, with "
                          f"--backward, gradients) would take more than this, found by a meta run first "
                          f"(default {MAX_MEMORY})")
    run.add_argument("--json", action="store_true", help="print the table as JSON (symbolic shapes, proofs, "
                                                         "requirements)")
    run.add_argument("--watch", action="store_true", help="check again every time the spec file is saved "
                                                          "(Ctrl-C stops)")
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
    if args.watch:
        return watch(args)
    return run_once(args)


def run_once(args: argparse.Namespace) -> int:
    """Check the spec once and print the report."""
    if args.device in (None, "meta"):
        spec, result = load_and_prove(args, backward=args.backward, device=args.device)
    else:
        spec, result = run_within_memory(args, lambda: load_and_prove(args, backward=args.backward,
                                                                       device=args.device))
    if args.json:
        print(json.dumps(trace_json(spec, result), indent=2))
    else:
        print_sizes(spec, result)
        print_conditions(result)
        print_table(result, args.backward)
    for problem in result.problems():
        print(f"\ngraphconv run: {problem}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_SHAPE


def load_and_prove(args: argparse.Namespace, *, backward: bool = False, device: str | None = None) -> tuple[Any, Any]:
    """The spec ``args.spec`` and its report at the sizes the shape arguments give: by the shape rules,
    cross-checked on torch when a ``device`` is named."""
    import graphconv
    from graphconv.check.proof import prove

    spec = graphconv.load(args.spec, ops=import_modules(args.ops))
    sizes = (parse_assignments(args.dims, "--dims"), parse_assignments(args.attr, "--attr"))
    shapes = parse_assignments(args.shapes, "--shapes")
    report = prove(spec, *sizes, shapes=shapes, backward=backward)
    if device is not None:
        from graphconv.check.trace import trace

        cross_check(report, trace(spec, *sizes, shapes=shapes, device=device, backward=backward))
    return spec, report


def cross_check(report: Any, traced: Any) -> None:
    """Take torch's shapes, dtypes and gradients into the report, and flag every shape the rules got otherwise."""
    report.device = traced.device
    for row, ran in zip(report.rows, traced.rows):
        if ran.shape is not None and row.shape is not None and ran.shape != row.shape:
            row.problems.append(f"tensor {row.name!r}: the shape rules give {row.shape} but torch gives {ran.shape}")
        row.shape, row.dtype, row.grad_shape = ran.shape or row.shape, ran.dtype, ran.grad_shape
        row.problems.extend(p for p in ran.problems if p not in row.problems)
    report.failure = report.failure or traced.failure


def watch(args: argparse.Namespace, *, rounds: int | None = None, interval: float = 0.5,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Check the spec, then again each time its file changes (polling its modification time every ``interval``
    seconds; ``rounds``: how many polls, for tests). Errors are printed, not raised; returns the last status."""
    status, seen, polls = EXIT_OK, None, 0
    try:
        while rounds is None or polls < rounds:
            stamp = _stamp(args.spec)
            if stamp != seen:
                seen = stamp
                status = _checked(args)
                print(f"graphconv run: watching {args.spec} (Ctrl-C stops)", file=sys.stderr, flush=True)
            polls += 1
            sleep(interval)
    except KeyboardInterrupt:
        pass
    return status


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _checked(args: argparse.Namespace) -> int:
    """One check inside ``--watch``: a bad spec is a message, and watching goes on."""
    try:
        return run_once(args)
    except SpecError as error:
        print(f"graphconv run: {error}", file=sys.stderr)
        return EXIT_SHAPE if isinstance(error, ShapeError) else EXIT_SPEC
    finally:
        sys.stdout.flush()


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
    inference = result.inference
    return {
        "spec": spec.name,
        "path": spec.path,
        "device": result.device,
        "ok": result.ok,
        "dims": result.dims,
        "attrs": result.attrs,
        "symbols": {"dims": inference.dims, "attrs": inference.attrs, "fixed": inference.fixed,
                    "opaque": inference.opaque},
        "requires": [
            {"condition": c.text, "why": c.why, "op": c.op, "op_id": c.op_id, "line": c.line, "holds": c.holds,
             "values": c.values}
            for c in result.conditions
        ],
        "tensors": [
            {"name": r.name, "op": r.op, "op_id": r.op_id, "line": r.line, "symbolic": r.symbolic,
             "inferred": r.inferred, "proof": r.proof, "shape": r.shape, "dtype": r.dtype,
             "grad_shape": r.grad_shape, "problems": r.problems}
            for r in result.rows
        ],
        "concrete_only": result.inference.concrete_only,
        "problems": result.problems(),
    }


def print_sizes(spec: Any, result: Any) -> None:
    """The sizes the spec ran at: its input dims, the derived dims they give, and the attrs."""
    derived = set(spec.meta.dims)
    groups = [("dims", {k: v for k, v in result.dims.items() if k not in derived}),
              ("derived", {k: v for k, v in result.dims.items() if k in derived}), ("attrs", result.attrs)]
    for title, values in groups:
        if values:
            print(f"{title + ':':10}" + ", ".join(f"{k}={_value(v)}" for k, v in values.items()))
    print(f"{'symbolic:':10}{_symbols(result.inference)}")
    device = result.device or "none (shape rules; --device meta runs the ops on torch as a cross-check)"
    print(f"{'device:':10}{device}")


def _symbols(inference: Any) -> str:
    """What the proofs range over: every input dim, and the integer attrs kept symbolic (over the values their
    current ones stand for)."""
    parts = [", ".join(inference.dims)] if inference.dims else []
    attrs = [name if least is None else f"{name} >= {least}" for name, least in inference.attrs.items()]
    parts += [", ".join(attrs)] if attrs else []
    text = "; ".join(parts) or "none"
    if inference.fixed:
        text += f" (fixed: {', '.join(inference.fixed)})"
    return text


def print_conditions(result: Any) -> None:
    """One ``requires:`` line per condition the ops need of the sizes, with its op and whether it holds here."""
    for c in result.conditions:
        status = {True: "holds", False: "FAILS", None: "-"}[c.holds]
        values = f" ({c.values})" if c.values else ""
        print(f"{'requires:':10}{c.text}   [{c.op_id} {c.op}, line {c.line}: {status}{values}]")
    print()


def print_table(result: Any, backward: bool) -> None:
    torch_run = result.device is not None
    header = (["tensor", "op", "declared", "inferred", "shape"] + (["dtype"] if torch_run else []) + ["proof"]
              + (["grad shape"] if backward else []))
    rows = []
    for r in result.rows:
        cells = [("✗ " if r.problems else "") + r.name, r.op, r.symbolic or "-", r.inferred or "-", _shape(r.shape)]
        cells += ([r.dtype or "-"] if torch_run else []) + [r.proof]
        rows.append(cells + ([_shape(r.grad_shape)] if backward else []))
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    for cells in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())


def _shape(shape: tuple[int, ...] | None) -> str:
    from graphconv.compiler.binding import show_shape

    return "-" if shape is None else show_shape(shape)


def _value(value: Any) -> str:
    return "(" + ", ".join(map(str, value)) + ")" if isinstance(value, tuple) else str(value)
