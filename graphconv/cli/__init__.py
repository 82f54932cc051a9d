"""The ``graphconv`` command: one module per verb, each with ``add_parser(verbs)``.

Exit status: 0 fine, 1 a shape does not fit, 2 a bad spec or bad arguments. A bad spec prints a
one-paragraph message with file, line, column and a caret — never a traceback (``--debug`` shows one).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from graphconv.cli import check, compile, export, new, ops, run, show
from graphconv.cli.common import EXIT_SHAPE, EXIT_SPEC
from graphconv.errors import ShapeError
from graphconv.errors import SpecError

VERBS = [run, show, check, ops, compile, export, new]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphconv", description="Computation-graph diagrams → PyTorch ops")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SpecError as error:
        if args.debug:
            raise
        print(f"graphconv {args.verb}: {error}", file=sys.stderr)
        return EXIT_SHAPE if isinstance(error, ShapeError) else EXIT_SPEC


if __name__ == "__main__":
    sys.exit(main())
