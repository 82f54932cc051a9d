"""``graphconv check SPEC...``: gradcheck each op the spec uses on its samples, then gradcheck the compiled spec,
compare its value, gradients and second derivatives with the autograd oracle (naming the op to blame when they
differ) and its value and gradients with the spec's ``reference:``, on the example and every listed case.

Prints one row per check, and says so when the spec has no reference (nothing was compared with torch). Exit status: 0 when every check passes, 1 when one fails, 2 when a spec (or its
reference) is bad.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from graphconv.cli.common import EXIT_OK, EXIT_SHAPE, EXIT_SPEC, import_modules
from graphconv.errors import SpecError

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
    check.add_argument("--failures", action="store_true", help="print only the checks that fail")
    check.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    import graphconv
    from graphconv.check.reference import ALLOWED_MODULES
    from graphconv.check.verify import check_spec

    modules = import_modules(args.ops)
    status = EXIT_OK
    for index, path in enumerate(args.spec):
        if index:
            print()
        try:
            spec = graphconv.load(path, ops=modules)
            rows = check_spec(spec, allowed=ALLOWED_MODULES + tuple(args.allow_reference))
        except SpecError as error:
            print(f"graphconv check: {error}", file=sys.stderr)
            status = EXIT_SPEC
            continue
        failed = [row for row in rows if not row.ok]
        print(f"{path}: {len(rows)} checks, {len(failed)} failed" if failed else f"{path}: all {len(rows)} checks pass")
        _print_table(failed if args.failures else rows)
        if spec.meta.reference is None:
            print(NO_REFERENCE)
        if failed and status == EXIT_OK:
            status = EXIT_SHAPE
    return status


def _print_table(rows: list) -> None:
    if not rows:
        return
    cells = [HEADER] + [("ok" if r.ok else "FAIL", r.what, r.subject, r.case, r.detail) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER) - 1)]
    for index, row in enumerate(cells):
        print(("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * len(HEADER[-1]))
