"""``graphconv check SPEC...``: gradcheck each op the spec uses on its samples, then gradcheck the compiled spec,
compare its value, gradients and second derivatives with the autograd oracle (naming the op to blame when they
differ) and its value and gradients with the spec's ``reference:``, on the example and every listed case.

Prints one row per check, and says so when the spec has no reference (nothing was compared with torch). Exit
status: 0 when every check passes, 1 when one fails, 2 when a spec (or its reference) is bad, or its cases need more
than ``--max-memory``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from graphconv.cli.common import (EXIT_OK, EXIT_SHAPE, EXIT_SPEC, import_modules, parse_assignments, parse_bytes,
                                  show_bytes)
from graphconv.errors import SpecError
from graphconv.syntax.expr import show_value

MAX_MEMORY = "4GiB"  # as for graphconv run: a spec's example: is untrusted

HEADER = ("result", "check", "subject", "case", "detail")
NO_REFERENCE = ("no reference: the spec names no torch function to match, so nothing was compared with torch "
                "(only with the autograd oracle, its own ops' forwards)")


def add_parser(verbs: Any) -> None:
    check = verbs.add_parser("check", help="gradcheck a spec's ops and the compiled spec; compare it with the "
                                           "autograd oracle and its reference")
    check.add_argument("spec", nargs="+", help="one or more .mmd, .md or .yaml specs")
    check.add_argument("--ops", action="append", help="import a module of extra ops (repeatable)")
    check.add_argument("--allow-reference", action="append", default=[], metavar="MODULE",
                       help="also accept reference functions from MODULE (repeatable); by default only "
                            "torch.nn.functional, torch.special, torch.linalg and torch.fft")
    check.add_argument("--shapes", help="whole input shapes, for inputs without a pattern: x=(2,3),w=(3,4)")
    check.add_argument("--failures", action="store_true", help="print only the checks that fail")
    check.add_argument("--max-memory", default=MAX_MEMORY,
                       help=f"refuse a spec whose example or cases would take more than this (the spec, the "
                            f"oracle and the reference side by side, with gradients), found by a meta run first "
                            f"and then enforced while the checks run (default {MAX_MEMORY})")
    check.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    import graphconv

    modules = import_modules(args.ops)
    limit = parse_bytes(args.max_memory, "--max-memory")
    status = EXIT_OK
    for index, path in enumerate(args.spec):
        if index:
            print()
        try:
            spec = graphconv.load(path, ops=modules)
            rows = check_within_memory(spec, args, limit)
        except SpecError as error:
            print(f"graphconv check: {error}", file=sys.stderr)
            status = EXIT_SPEC
            continue
        failed = [row for row in rows if not row.ok]
        print(f"{path}: {len(rows)} checks, {len(failed)} failed" if failed else f"{path}: all {len(rows)} checks pass")
        if spec.meta.reference is None:
            print(f"{path}: no reference: nothing was compared with a torch function (add reference: to compare "
                  "values and gradients)")
        _print_table(failed if args.failures else rows)
        if spec.meta.reference is None:
            print(NO_REFERENCE)
        if failed and status == EXIT_OK:
            status = EXIT_SHAPE
    return status


def check_within_memory(spec: Any, args: argparse.Namespace, limit: int) -> list:
    """``check_spec`` on the CPU within ``limit`` bytes: refused when a meta trace of a case makes more, then run
    under a cap the system enforces (graphconv.check.memory)."""
    from graphconv.check.memory import is_out_of_memory, memory_cap
    from graphconv.check.reference import ALLOWED_MODULES
    from graphconv.check.verify import check_spec

    estimate_memory(spec, limit)
    try:
        with memory_cap(limit, "cpu"):
            return check_spec(spec, allowed=ALLOWED_MODULES + tuple(args.allow_reference), shapes=given_shapes(args))
    except Exception as error:
        if is_out_of_memory(error):
            raise SpecError(f"checking it needed more than --max-memory {show_bytes(limit)}; raise --max-memory",
                            path=spec.path) from None
        raise


def given_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """``--shapes x=(2,3)``: whole input shapes by name, for inputs without a pattern."""
    return {name: shape if isinstance(shape, tuple) else (shape,)
            for name, shape in parse_assignments(args.shapes, "--shapes").items()}


def estimate_memory(spec: Any, limit: int) -> None:
    """Refuse a spec whose example (or a reference case) makes tensors of more than ``limit`` bytes — four times
    what a float64 meta trace with backward makes: the spec's, the oracle's (whose second derivatives keep the
    graph of its gradients too) and the reference's, side by side."""
    import torch

    from graphconv.check.memory import traced_bytes
    from graphconv.check.reference import read_reference
    from graphconv.check.trace import trace

    reference = read_reference(spec)
    for case in [{}] + (reference.cases if reference else []):
        attrs = {k: v for k, v in case.items() if k in spec.attrs}
        dims = {k: v for k, v in case.items() if k not in spec.attrs}
        try:
            needed = 4 * traced_bytes(trace(spec, dims, attrs, backward=True, dtype=torch.float64))
        except SpecError:  # a case whose dims do not work out fails its own check
            continue
        if needed > limit:
            label = ", ".join(f"{k}={show_value(v)}" for k, v in case.items()) or "the example"
            raise SpecError(f"at {label} the checks take about {show_bytes(needed)} (inputs, intermediates and "
                            f"gradients of the spec, the oracle and the reference, float64), over --max-memory "
                            f"{show_bytes(limit)}; raise --max-memory", path=spec.path)


def _print_table(rows: list) -> None:
    if not rows:
        return
    cells = [HEADER] + [("ok" if r.ok else "FAIL", r.what, r.subject, r.case, r.detail) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER) - 1)]
    for index, row in enumerate(cells):
        print(("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * len(HEADER[-1]))
