"""``graphconv export SPEC -o myop.py``: write the compiled spec as a standalone module that imports torch only —
the ops' forwards and VJPs copied in, the generated forward and backward, an ``autograd.Function`` and a
function named after the spec."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphconv.cli.common import EXIT_OK
from graphconv.cli.compile import add_compile_arguments, compile_from_args
from graphconv.errors import SpecError


def add_parser(verbs: Any) -> None:
    export = verbs.add_parser("export", help="write a compiled spec as a standalone Python module (torch only)",
                              description=__doc__)
    export.add_argument("spec", help="a .mmd, .md or .yaml spec")
    export.add_argument("-o", "--output", metavar="FILE", help="the module to write (default: stdout)")
    export.add_argument("--name", help="the function's name (default: the spec's)")
    add_compile_arguments(export)
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from graphconv.compiler.codegen.export import export_source

    text = export_source(compile_from_args(args), name=args.name)
    if args.output is None:
        print(text, end="")
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot write {args.output}: {error}") from None
    return EXIT_OK
