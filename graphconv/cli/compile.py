"""``graphconv compile SPEC``: compile a spec and say what the compiler did — the passes and their changes
(``--explain``), the program it runs, what backward keeps, and the generated source (``--code``)."""
from __future__ import annotations

import argparse
from typing import Any

from graphconv.cli.common import EXIT_OK, import_modules
from graphconv.compiler.memory import POLICIES


def add_parser(verbs: Any) -> None:
    compile_ = verbs.add_parser("compile", help="compile a spec; --explain lists the passes and what they did",
                                description=__doc__)
    compile_.add_argument("spec", help="a .mmd, .md or .yaml spec")
    compile_.add_argument("--explain", action="store_true", help="list every pass and the changes it made")
    compile_.add_argument("--code", action="store_true", help="print the generated forward and backward source")
    add_compile_arguments(compile_)
    compile_.set_defaults(handler=cmd_compile)


def add_compile_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``compile`` and ``export`` share."""
    parser.add_argument("--no-optimize", action="store_true", help="skip the optimization passes")
    parser.add_argument("--save", choices=POLICIES, default="all",
                        help="what backward keeps: every value a VJP reads (all), or the inputs, recomputing "
                             "cheap values (minimal)")
    parser.add_argument("--ops", action="append", help="import a module of extra ops (repeatable)")


def compile_from_args(args: argparse.Namespace) -> Any:
    import graphconv

    spec = graphconv.load(args.spec, ops=import_modules(args.ops))
    return graphconv.compile(spec, optimize=not args.no_optimize, save=args.save)


def cmd_compile(args: argparse.Namespace) -> int:
    compiled = compile_from_args(args)
    print(summary(compiled))
    if args.explain:
        print(explain(compiled))
    if args.code:
        print(f"\n{compiled.source}", end="")
    return EXIT_OK


def summary(compiled: Any) -> str:
    before, after = len(compiled.spec.order), len(compiled.program.steps)
    passes = f"{len(compiled.reports)} passes" if compiled.reports else "no passes (--no-optimize)"
    return f"{compiled.spec.name}: {before} ops → {after} after {passes}; save={compiled.program.plan.policy!r}"


def explain(compiled: Any) -> str:
    lines = ["", "passes:"]
    for number, report in enumerate(compiled.reports, start=1):
        lines.append(f"  {number}. {report.name:<13} {report.summary}")
        lines += [f"       - {change}" for change in report.changes] or ["       (no change)"]
    lines += ["", "program:"]
    program = compiled.program
    for step in program.steps:
        ins = ", ".join(program.names[s] if s is not None else "-" for s in step.inputs)
        outs = ", ".join(program.names[s] for s in step.outputs)
        lines.append(f"  {step.node.id:<14} {step.op.name:<13} {ins} → {outs}   (line {step.node.line})")
    plan = compiled.program.plan
    kept = ", ".join(program.names[s] for s in plan.saved) or "nothing"
    again = ", ".join(program.names[s] for s in plan.recomputed_slots(program)) or "nothing"
    lines += ["", f"memory (save={plan.policy!r}): backward keeps {kept}; recomputes {again}"]
    return "\n".join(lines)
