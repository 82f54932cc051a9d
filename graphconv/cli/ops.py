"""``graphconv ops [SPEC]``: every op a spec can name — its signature, one-line doc and where it comes from
(a graphconv module, a plugin's module, an ``--ops`` module, or a spec file that a SPEC ``uses:``)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from graphconv.cli.common import EXIT_OK, import_modules

SIGNATURE_WIDTH = 60  # a longer signature pushes its doc further right instead of widening every row


def add_parser(verbs: Any) -> None:
    ops = verbs.add_parser("ops", help="list every op: signature, one-line doc, where it comes from")
    ops.add_argument("spec", nargs="?", help="also list the specs this spec uses as ops")
    ops.add_argument("--ops", action="append", help="import a module of extra ops (repeatable)")
    ops.add_argument("--json", action="store_true", help="print the list as JSON")
    ops.set_defaults(handler=cmd_ops)


def cmd_ops(args: argparse.Namespace) -> int:
    ops = available_ops(args.spec, import_modules(args.ops))
    if args.json:
        print(json.dumps([{"name": op.name, "signature": op.signature(), "source": op.source, "doc": op.doc}
                          for op in ops], indent=2))
        return EXIT_OK
    sources = sorted({op.source for op in ops})
    for index, source in enumerate(sources):
        group = [op for op in ops if op.source == source]
        width = min(max(len(op.signature()) for op in group), SIGNATURE_WIDTH)
        print(f"{chr(10) if index else ''}from {source}:")
        for op in group:
            print(f"  {op.signature().ljust(width)}  {op.doc.replace('``', '')}".rstrip())
    return EXIT_OK


def available_ops(spec_path: str | None, modules: list) -> list:
    """The registry with installed plugins and ``modules``, plus the ops of the specs ``spec_path`` uses."""
    from graphconv.api import load, registry_with
    from graphconv.compiler.used_specs import used_ops

    registry = registry_with(modules)
    if spec_path is not None:
        spec = load(spec_path, ops=modules)
        registry = registry.extended(used_ops(spec.meta, spec.path, spec.source, lambda p: load(p, ops=modules)))
    return [registry.get(name) for name in registry.names()]
