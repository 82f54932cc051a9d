"""A compiled op as a standalone Python module that imports torch only (``graphconv export``).

The module holds, in order: the ops' forwards and VJPs, copied from their source with the helpers and
constants they use (``inspect``; decorators dropped, functions renamed ``op_<name>`` / ``vjp_<name>``); the
runtime (the VJP context class, the gradient check); the binding — input shapes and attrs → the op arguments
``A``, written out from the spec's expressions; the same generated forward, forward without saving and backward a
compiled op runs; an ``autograd.Function`` and a function named after the spec.

Hygiene: everything the module defines besides the copied op code and the public function starts with ``_gc_``
(op code that names such a global is refused), the generated functions' locals are the prefixed names of
:mod:`~graphconv.compiler.codegen.source`, and the binding's locals start with ``d_`` (dims), ``a_`` (attrs)
or ``i_`` (inputs) — so no spec name can shadow anything the module needs. A public name that copied op code
already uses is refused.

A spec that uses other specs (``uses:``) carries each used spec as a section of its own: that spec's compiled
program under a prefix of its own (``_gc_1_bind``, ``_gc_1_forward``, …), and the op and VJP functions the using
spec calls — its forward, and its backward after its forward again from the saved inputs, as in process.
"""
from __future__ import annotations

import builtins
import dis
import inspect
import io
import re
import textwrap
import tokenize
import types
from typing import Any, Callable

from graphconv.compiler.codegen import backward as codegen_backward, forward as codegen_forward
from graphconv.compiler.codegen.generated import sum_into
from graphconv.compiler.codegen.source import RUNTIME, Source, Unit, comment, identifier, literal, plain_identifier
from graphconv.compiler.function import distinct_outputs
from graphconv.compiler.used_specs import SpecForward
from graphconv.errors import SpecError
from graphconv.ops.lazy_torch import torch as lazy_torch
from graphconv.ops.registry import Context, Op
from graphconv.syntax import expr as E
from graphconv.syntax.metadata import WILDCARD

STANDARD_MODULES = ("math", "operator", "itertools", "functools")  # op code may use these: the module imports them


class ExportError(SpecError):
    """A spec that cannot be written as a standalone module (an op whose code uses something not inlinable)."""


# --- the ops' code ------------------------------------------------------------------------------------------


class Inliner:
    """Collects source blocks: each op function (renamed), and every helper, class and constant it reaches."""

    def __init__(self) -> None:
        self.blocks: dict[str, str] = {}  # name → source, in the order found
        self.constants: dict[str, str] = {}
        self.imports: dict[str, str] = {"torch": "import torch"}
        self.origins: dict[str, Any] = {}

    def add_op_function(self, function: Callable, name: str, op: Op) -> None:
        if not isinstance(function, types.FunctionType):
            raise ExportError(f"cannot export op {op.name}: it is not a Python function but {op.source}")
        self._add(name, _renamed_source(function, name, op), function, op)

    def add_generated(self, name: str, owner: Any, op: Op) -> None:
        """Reserve ``name`` for a function export writes itself (a used spec's op and VJP), one per ``owner``."""
        if name in self.origins and self.origins[name] is not owner:
            raise ExportError(f"cannot export op {op.name}: two different ops are named {name!r} (specs used "
                              "from different folders under one name?)")
        self.origins[name] = owner

    def _add(self, name: str, source: str, value: Any, op: Op) -> None:
        if name.startswith(RUNTIME):
            raise ExportError(f"cannot export op {op.name}: its code names {name!r}, and names starting with "
                              f"{RUNTIME!r} are the exported runtime's")
        if name in self.origins:
            if self.origins[name] is value or self.blocks.get(name) == source:
                return
            raise ExportError(f"cannot export op {op.name}: two different helpers are named {name!r}")
        self.origins[name] = value
        self.blocks[name] = source
        for code in _code_objects(value):
            for global_name in _global_names(code):
                self._reach(global_name, value, op)

    def _reach(self, name: str, user: Any, op: Op) -> None:
        """Make a global that ``user``'s code reads available in the module."""
        scope = getattr(user, "__globals__", None) or vars(inspect.getmodule(user))
        if name not in scope:
            if hasattr(builtins, name):
                return
            raise ExportError(f"cannot export op {op.name}: its code reads {name!r}, which is not defined")
        value = scope[name]
        if value is lazy_torch or (isinstance(value, types.ModuleType) and value.__name__ == "torch"):
            if name != "torch":
                self.imports[name] = f"import torch as {name}"
            return
        if isinstance(value, types.ModuleType) and (value.__name__.startswith("torch.")
                                                    or value.__name__ in STANDARD_MODULES):
            self.imports[name] = f"import {value.__name__}" + (f" as {name}" if name != value.__name__ else "")
            return
        text = literal(value)
        if text is not None:
            if self.constants.get(name, text) != text:
                raise ExportError(f"cannot export op {op.name}: two different constants are named {name!r}")
            self.constants[name] = text
            return
        if isinstance(value, (types.FunctionType, type)) and not isinstance(value, Op):
            self._add(name, _helper_source(value, name, op), value, op)
            return
        raise ExportError(f"cannot export op {op.name}: its code uses {name!r} ({type(value).__name__}), which "
                          "is neither torch, a plain constant, nor a function or class graphconv can copy")


def _code_objects(value: Any) -> list[types.CodeType]:
    """Every code object of a function (with its nested ones) or of a class's methods."""
    roots = [value.__code__] if isinstance(value, types.FunctionType) else [
        member.__code__ for member in vars(value).values() if isinstance(member, types.FunctionType)]
    found, pending = [], list(roots)
    while pending:
        code = pending.pop()
        found.append(code)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def _global_names(code: types.CodeType) -> list[str]:
    return [i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")]


def _definition(value: Any, op: Op | None) -> tuple[list[str], int, int]:
    """The source lines of a function or class, where its ``def``/``class`` line is, and how many decorators."""
    try:
        lines = textwrap.dedent(inspect.getsource(value)).splitlines()
    except (OSError, TypeError) as error:
        raise ExportError(f"cannot export op {op.name}: no source for {value!r} ({error})") from None
    start = next(i for i, line in enumerate(lines) if re.match(r"\s*(def|class)\s", line))
    return lines, start, sum(1 for line in lines[:start] if line.lstrip().startswith("@"))


def _renamed_source(function: Callable, name: str, op: Op | None) -> str:
    """An op's forward or VJP as ``def <name>(…)``, its registering decorators dropped."""
    lines, start, _ = _definition(function, op)
    lines[start] = re.sub(r"def\s+\w+", f"def {name}", lines[start], count=1)
    return "\n".join(lines[start:])


def _helper_source(value: Any, name: str, op: Op) -> str:
    lines, start, decorators = _definition(value, op)
    if decorators:
        raise ExportError(f"cannot export op {op.name}: its helper {name!r} is decorated")
    if value.__name__ != name:
        raise ExportError(f"cannot export op {op.name}: it uses {value.__name__!r} under the name {name!r}")
    return "\n".join(lines[start:])


# --- the binding ----------------------------------------------------------------------------------------------


class BindingSource:
    """``_bind(inputs…, attrs…)``: the spec's input patterns unified with the shapes, the derived dims, ``A``."""

    def __init__(self, unit: Unit) -> None:
        self.unit, self.spec = unit, unit.program.spec
        self.taken: set[str] = set()
        self.vars: dict[str, str] = {}
        self.helpers: set[str] = set()

    def var(self, name: str, prefix: str = "d_") -> str:
        if name not in self.vars:
            self.vars[name] = identifier(name, self.taken, prefix)
        return self.vars[name]

    def source(self) -> str:
        """``_gc_bind(inputs…, attrs…)``, its parameters prefixed (``i_``, ``a_``)."""
        inputs = [identifier(name, self.taken, "i_") for name in self.spec.input_names]
        attrs = [self.var(name, "a_") for name in self.spec.meta.attrs]
        body: list[str] = []
        for param in attrs:
            body.append(f"{param} = tuple({param}) if isinstance({param}, list) else {param}")
        checks: list[tuple[str, E.Expr, str]] = []
        for name, param in zip(self.spec.input_names, inputs):
            body += self.unify(name, param, checks)
        body += self.check_lines(checks)
        for dim in self.spec.dim_order:
            body.append(f"{self.var(dim)} = {self.expression(self.spec.meta.dims[dim])}")
        values = [self.expression(expr) for _, _, expr in self.unit.arguments.dynamic]
        body.append("return (" + "".join(f"{v}, " for v in values) + ")")
        head = f"def {RUNTIME}bind({', '.join(inputs + attrs)}):"
        return "\n".join([head, '    """The op arguments A for these input shapes and attrs."""']
                         + ["    " + line for line in body])

    def unify(self, name: str, param: str, checks: list[tuple[str, E.Expr, str]]) -> list[str]:
        pattern = (self.spec.meta.inputs or {}).get(name)
        if pattern is None:
            return []
        shown = "[" + ", ".join(E.to_source(e) for e in pattern) + "]"
        group = next((i for i, entry in enumerate(pattern) if isinstance(entry, E.Splice)), None)
        if group is None:
            rank, expected = f"{param}.dim() != {len(pattern)}", f"{len(pattern)} dims"
        else:
            rank, expected = f"{param}.dim() < {len(pattern) - 1}", f"at least {len(pattern) - 1} dims"
        lines = [f"if {rank}:",
                 f"    raise ValueError({repr(f'{name}: expected {expected} {shown}, got shape ')}"
                 f" + str(tuple({param}.shape)))"]
        for axis, entry in enumerate(pattern):
            at = axis if group is None or axis < group else axis - len(pattern)  # after a group: from the end
            size = f"{param}.shape[{at}]"
            if isinstance(entry, E.Splice):
                size = f"tuple({param}.shape[{group}:{param}.dim() - {len(pattern) - 1 - group}])"
            if isinstance(entry, E.Name) and entry.id == WILDCARD:
                continue
            if isinstance(entry, (E.Name, E.Splice)) and entry.id not in self.vars:
                lines.append(f"{self.var(entry.id)} = {size}")
                continue
            checks.append((size, entry, repr(f"{name}: dim {axis} must be {E.to_source(entry)}, got ")))
        return lines

    def check_lines(self, checks: list[tuple[str, E.Expr, str]]) -> list[str]:
        """Each size that must equal an entry's value — written once every input has bound its symbols."""
        lines = []
        for size, entry, message in checks:
            value = self.vars[entry.id] if isinstance(entry, E.Splice) else self.expression(entry)
            lines += [f"if {size} != {value}:", f"    raise ValueError({message} + str({size}))"]
        return lines

    def expression(self, expr: E.Expr) -> str:
        """Python source for one spec expression (its names are the binding's variables)."""
        if isinstance(expr, E.Const):
            text = literal(expr.value)
            if text is None:
                raise ExportError(f"cannot export the value {expr.value!r}", line=expr.line, column=expr.column)
            return text
        if isinstance(expr, E.Name):
            if expr.id not in self.vars:
                raise ExportError(f"cannot export: {expr.id!r} has no value when the op arguments are computed",
                                  line=expr.line, column=expr.column)
            return self.vars[expr.id]
        if isinstance(expr, E.Tuple):
            return "(" + "".join(f"*{self.vars[i.id]}, " if isinstance(i, E.Splice) and i.id in self.vars
                                 else f"{self.expression(i)}, " for i in expr.items) + ")"
        if isinstance(expr, E.Neg):
            return f"(-{self.expression(expr.operand)})"
        if isinstance(expr, (E.BinOp, E.Compare)):
            return f"({self.expression(expr.left)} {expr.op} {self.expression(expr.right)})"
        if isinstance(expr, E.Conditional):
            return (f"({self.expression(expr.then)} if {self.expression(expr.test)} else "
                    f"{self.expression(expr.otherwise)})")
        if isinstance(expr, E.Subscript):
            return f"{self.expression(expr.target)}[{self.expression(expr.index)}]"
        if isinstance(expr, E.Function):
            args = ", ".join(self.expression(a) for a in expr.args)
            if expr.name in ("min", "max", "abs"):
                return f"{expr.name}({args})"
            self.helpers.add(expr.name)
            return f"{RUNTIME}{expr.name}({args})"
        raise ExportError(f"cannot export the expression {E.to_source(expr)}", line=expr.line, column=expr.column)


EXPRESSION_HELPERS = {
    "ceil_div": "def _gc_ceil_div(a, b):\n    return -(-a // b)",
    "ntuple": "def _gc_ntuple(value, n):\n    if isinstance(value, tuple):\n        if len(value) != n:\n"
              "            raise ValueError(f'expected {n} values, got {value!r}')\n        return value\n"
              "    return (value,) * n",
    "pair": "def _gc_pair(value):\n    return _gc_ntuple(value, 2)",
    "prod": "def _gc_prod(value):\n    result = 1\n    for item in value if isinstance(value, tuple) else (value,):\n"
            "        result *= item\n    return result",
}


# --- the module -----------------------------------------------------------------------------------------------


def module_source(unit: Unit, *, name: str, origin: str, options: str) -> str:
    """The standalone module's text."""
    spec = unit.program.spec
    inliner = Inliner()
    used = UsedSpecs(inliner)
    used.add_ops(unit)
    function_name = public_name(name, set(inliner.blocks) | set(inliner.constants) | set(inliner.imports))
    taken: set[str] = set()  # the public function's parameters: its body reads only _gc_ globals
    inputs = [parameter_name(n, taken, "i_") for n in spec.input_names]
    attrs = [parameter_name(n, taken, "a_") for n in spec.meta.attrs]
    binding = BindingSource(unit)
    main = program_section(unit, binding)
    helpers = binding.helpers | used.helpers
    if "pair" in helpers:
        helpers.add("ntuple")
    defaults = [f"{a}={literal(_plain(v))}" for a, v in zip(attrs, spec.meta.attrs.values())]
    parts = [
        docstring(f"{spec.name}, exported by graphconv from {origin} ({options}).\n\n"
                  f"Standalone: imports torch only. Call ``{function_name}({', '.join(inputs)}"
                  f"{', *, ' + ', '.join(attrs) if attrs else ''})``;\nthe hand-written VJPs run in backward (their "
                  "derivatives too, in a differentiable backward).\n"),
        "from __future__ import annotations\n\n" + "\n".join(sorted(set(inliner.imports.values()))),
        "\n".join(f"{k} = {v}" for k, v in inliner.constants.items()),
        "# --- ops: each forward and its hand-written VJP, with the helpers they use " + "-" * 30,
        *inliner.blocks.values(),
        "# --- the compiled program " + "-" * 80,
        context_source(),
        _renamed_source(distinct_outputs, f"{RUNTIME}distinct", None),
        _renamed_source(sum_into, f"{RUNTIME}sum_into", None),
        TAKE_SAVED,
        *(EXPRESSION_HELPERS[h] for h in ("ceil_div", "ntuple", "pair", "prod") if h in helpers),
        *used.sections,
        *main,
        PUBLIC_FUNCTION.format(function=function_name, inputs=", ".join(inputs),
                               params=", ".join(inputs + (["*"] + defaults if attrs else [])),
                               bind_args=", ".join(inputs + attrs)),
    ]
    return "\n\n\n".join(p for p in parts if p) + "\n"


def program_section(unit: Unit, binding: "BindingSource") -> list[str]:
    """One compiled program's runtime: its node names, constants and gradient check, its binding, its generated
    forward and backward, and the autograd.Function that runs them — every global named ``_gc_…``."""
    program = unit.program
    constants = [literal(v) for v in unit.arguments.constants]
    if any(c is None for c in constants):
        raise ExportError(f"cannot export {program.spec.name}: an op attribute has a value with no literal form")
    return [
        RUNTIME_SOURCE.format(nodes="".join(f"{comment_literal(s.node.id, s.node.label)}, " for s in program.steps),
                              constants="".join(f"{c}, " for c in constants)),
        binding.source(),
        functions_source(unit).text().rstrip(),
        FUNCTION_CLASS,
    ]


class UsedSpecs:
    """The ops of a program for the module: Python ops' code goes to the inliner; each spec used as an op (and
    each spec that one uses) becomes a section — its own :func:`program_section` under the prefix ``_gc_<n>_``,
    and the op and VJP functions that call it."""

    def __init__(self, inliner: Inliner) -> None:
        self.inliner = inliner
        self.prefixes: dict[int, str] = {}  # id(SpecForward) → its section's prefix
        self.sections: list[str] = []  # used specs before the specs that use them
        self.helpers: set[str] = set()  # the expression helpers their bindings call

    def add_ops(self, unit: Unit) -> None:
        for step in unit.program.steps:
            op, forward_name, vjp_name = step.op, unit.names.forward[id(step.op)], unit.names.vjp[id(step.op)]
            if isinstance(op.forward, SpecForward):
                self.add_spec_op(op, forward_name, vjp_name)
            else:
                self.inliner.add_op_function(op.forward, forward_name, op)
                self.inliner.add_op_function(op.backward, vjp_name, op)

    def add_spec_op(self, op: Op, forward_name: str, vjp_name: str) -> None:
        forward: SpecForward = op.forward
        self.inliner.add_generated(forward_name, forward, op)
        self.inliner.add_generated(vjp_name, forward, op)
        if id(forward) in self.prefixes:
            return
        prefix = self.prefixes[id(forward)] = f"{RUNTIME}{len(self.prefixes) + 1}_"
        unit = forward.compiled().code.unit
        self.add_ops(unit)  # the specs it uses come first
        binding = BindingSource(unit)
        call = USED_SPEC.format(op=forward_name, vjp=vjp_name, inputs="".join(f"{n!r}, " for n in forward.input_names),
                                attrs="".join(f"{n!r}, " for n in forward.attr_names))
        text = "\n\n\n".join(program_section(unit, binding) + [call])
        self.helpers |= binding.helpers
        self.sections.append(f"# --- the spec {comment(forward.spec.name)}, used as the op {op.name} " + "-" * 40
                             + "\n\n" + prefixed(text, prefix))


PER_PROGRAM = {f"{RUNTIME}{name}" for name in ("NODES", "K", "grads", "bind", "forward", "forward_nograd", "backward",
                                              "Function", "run", "call", "INPUTS", "ATTRS")}


def prefixed(source: str, prefix: str) -> str:
    """``source`` with each per-program global (``_gc_forward`` …) renamed ``<prefix>forward`` …: the names that
    read or bind a global only — not strings, comments, attributes or keyword arguments (an attr may be named
    ``_gc_K``: it is passed as ``op_x(v, _gc_K=…)``)."""
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    found, depth = [], 0
    for before, token, after in zip([None] + tokens, tokens, tokens[1:] + [None]):
        depth += (token.string in "([{") - (token.string in ")]}") if token.type == tokenize.OP else 0
        keyword = depth > 0 and after is not None and after.type == tokenize.OP and after.string == "="
        attribute = before is not None and before.type == tokenize.OP and before.string == "."
        if token.type == tokenize.NAME and token.string in PER_PROGRAM and not (keyword or attribute):
            found.append(token)
    for token in reversed(found):  # from the end, so earlier positions stay right
        row, column = token.start[0] - 1, token.start[1]
        line = lines[row]
        lines[row] = line[:column] + prefix + token.string[len(RUNTIME):] + line[column + len(token.string):]
    return "".join(lines)


def public_name(name: str, module_names: set[str]) -> str:
    """The exported function's name: ``name`` as an identifier, refused when copied op code uses it."""
    chosen = identifier(name, set())
    if chosen.startswith(RUNTIME) or chosen in module_names:
        raise ExportError(f"cannot export as {chosen!r}: the exported module uses that name for its own code; "
                          "choose another name (graphconv export --name NAME)")
    return chosen


def parameter_name(name: str, taken: set[str], prefix: str) -> str:
    """The public function's parameter for a spec input or attr: its own name where that is a plain identifier
    (so attrs pass by keyword as in the spec), else a prefixed one."""
    if plain_identifier(name) and not name.startswith(RUNTIME) and name not in taken:
        taken.add(name)
        return name
    return identifier(name, taken, prefix)


def docstring(text: str) -> str:
    """``text`` as a triple-quoted literal: backslashes and quotes from spec text escaped, and characters a source
    file cannot hold as they are (controls, lone surrogates) written as escapes."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"""' + "".join(c if c == "\n" or _printable(c) else repr(c)[1:-1] for c in quoted) + '"""'


def _printable(character: str) -> bool:
    return character.isprintable() and not 0xD800 <= ord(character) <= 0xDFFF


def comment_literal(node_id: str, label: str) -> str:
    return repr(f"{node_id} ({label})")


def functions_source(unit: Unit) -> Source:
    """The generated forward, forward without saving and backward, named ``_gc_forward`` … in the module."""
    unit = Unit(unit.program, unit.names, unit.arguments, RUNTIME)
    source = Source()
    codegen_forward.emit(source, unit, saving=True)
    source.add("", 0)
    codegen_forward.emit(source, unit, saving=False)
    source.add("", 0)
    codegen_backward.emit(source, unit)
    return source


def context_source() -> str:
    """The VJP context class (:class:`~graphconv.ops.registry.Context`), copied in as ``_gc_Ctx``."""
    lines, start, _ = _definition(Context, None)
    lines[start] = re.sub(r"class\s+\w+", f"class {RUNTIME}Ctx", lines[start], count=1)
    return "\n".join(lines[start:])


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


RUNTIME_SOURCE = '''_gc_NODES = ({nodes})  # the spec's op nodes, for error messages
_gc_K = ({constants})  # op attribute values with no literal form


def _gc_grads(step, grads, shapes, needs):
    """A VJP's result checked (one gradient per input, of its shape), None where no gradient is wanted."""
    node = _gc_NODES[step]
    if type(grads) not in (tuple, list) or len(grads) != len(shapes):
        raise RuntimeError(f"while executing op {{node}}: its VJP returned a wrong number of gradients")
    for position, (grad, shape, need) in enumerate(zip(grads, shapes, needs)):
        if need and grad is not None and grad.shape != shape:
            raise RuntimeError(f"while executing op {{node}}: its VJP returned a gradient of shape "
                               f"{{tuple(grad.shape)}} for input {{position}} of shape {{tuple(shape)}}")
    return tuple(grad if need else None for grad, need in zip(grads, needs))'''


TAKE_SAVED = '''def _gc_take_saved(ctx):
    """A Function's saved (inputs, kept values) as lists the generated backward empties, ctx's references released
    unless the graph is retained: each value then dies at its last use in backward, not when backward returns."""
    stored = ctx.saved_tensors
    getattr(ctx, "maybe_clear_saved_tensors", lambda: None)()  # an older torch keeps them
    return list(stored[:ctx.count]), list(stored[ctx.count:])'''


FUNCTION_CLASS = '''class _gc_Function(torch.autograd.Function):
    """Keeps the inputs and what the memory plan saved beyond them: a differentiable backward (create_graph=True)
    runs the forward again from the inputs with autograd recording, so second derivatives are the VJPs' own."""

    @staticmethod
    def forward(ctx, A, *inputs):
        outputs, kept, ctx.meta = _gc_forward(A, *inputs)
        ctx.save_for_backward(*inputs, *kept)
        ctx.A, ctx.count = A, len(inputs)
        return _gc_distinct(outputs, inputs)

    @staticmethod
    def backward(ctx, *grads):
        inputs, kept = _gc_take_saved(ctx)
        meta = ctx.meta
        if torch.is_grad_enabled():
            _, kept, meta = _gc_forward(ctx.A, *inputs)
        return (None, *_gc_backward(ctx.A, inputs, kept, meta, ctx.needs_input_grad[1:], *grads))


def _gc_run(A, inputs):
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _gc_Function.apply(A, *inputs)
    return _gc_forward_nograd(A, *inputs)'''


PUBLIC_FUNCTION = '''def {function}({params}):
    return _gc_run(_gc_bind({bind_args}), ({inputs},))'''


USED_SPEC = '''_gc_INPUTS = ({inputs})  # the used spec's inputs and attrs: what its op takes
_gc_ATTRS = ({attrs})


def _gc_call(inputs, attrs):
    return _gc_run(_gc_bind(*inputs, *(attrs[name] for name in _gc_ATTRS)), inputs)


def {op}(*inputs, **attrs):
    """The used spec as an op: its compiled forward."""
    return _gc_call(inputs, attrs)


def {vjp}(ctx, grad):
    """Its backward at the saved inputs: its forward again, then its hand-written VJPs (plain torch ops on the
    inputs as saved, so a differentiable backward keeps their graph)."""
    inputs = [ctx.saved[name] for name in _gc_INPUTS]
    A = _gc_bind(*inputs, *(ctx.attrs[name] for name in _gc_ATTRS))
    _, kept, meta = _gc_forward(A, *inputs)
    return _gc_backward(A, inputs, kept, meta, ctx.needs, *(grad if isinstance(grad, tuple) else (grad,)))'''


def export_source(compiled: Any, *, name: str | None = None) -> str:
    """A :class:`~graphconv.compiler.compiled.CompiledOp` as a standalone module's text."""
    passes = f"passes: {', '.join(r.name for r in compiled.reports)}" if compiled.reports else "no passes"
    return module_source(compiled.code.unit, name=name or compiled.spec.name, origin=compiled.spec.path or "a spec",
                         options=f"{passes}; save={compiled.program.plan.policy!r}")
