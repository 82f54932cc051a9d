"""Backward source: the VJPs in reverse order, each gradient summed over every reader, each value freed after
its last use.

    def backward(A, saved, meta, needs, g_output):
        input_batch, kernel_permuted, = saved
        sh_input_batch, dt_input_batch, ... = meta
        q_input_batch, q_kernel, = needs             # which values need a gradient, forward order
        q_kernel_reshaped = q_kernel
        ...
        g_input_batch = g_kernel = ... = None
        # S: 'permute_output' (line 62)
        if q_output_4D and g_output is not None:
            g_output_4D, = _grads(8, vjp_permute(Ctx(dims=(0, 3, 1, 2), shapes=(sh_output_4D,), …), g_output),
                                  (sh_output_4D,), (q_output_4D,))
        g_output = None
        ...
        return g_input_batch if q_input_batch else None, g_kernel if q_kernel else None
"""
from __future__ import annotations

from graphconv.compiler.codegen.source import Source, Unit
from graphconv.compiler.codegen.forward import described_slots, emit_free, emit_step


def emit(source: Source, unit: Unit) -> None:
    program = unit.program
    grads = ", ".join(f"g_{unit.var(s)}" for s in program.output_slots)
    source.add(f"def backward(A, saved, meta, needs, {grads}):", 0)
    emit_unpack(source, [unit.var(s) for s in unit.plan.saved], "saved")
    emit_unpack(source, [f"{p}_{unit.var(s)}" for s in sorted(described_slots(unit)) for p in ("sh", "dt")], "meta")
    emit_needs(source, unit)
    receivers = [s for s in gradient_slots(unit) if s not in program.output_slots]
    if receivers:
        source.add(" = ".join(f"g_{unit.var(s)}" for s in receivers) + " = None")
    deaths, shared = value_deaths(unit), shared_slots(unit)
    for index in range(len(program.steps) - 1, -1, -1):
        for producer in unit.plan.recompute[index]:
            emit_step(source, unit, producer, "recompute")
        emit_vjp(source, unit, index, shared)
        emit_free(source, unit, deaths[index])
    results = ", ".join(f"g_{unit.var(s)} if q_{unit.var(s)} else None" for s in program.input_slots)
    source.add(f"return ({results}{',' if len(program.input_slots) == 1 else ''})")


def emit_unpack(source: Source, targets: list[str], tuple_name: str) -> None:
    if targets:
        source.add(f"{', '.join(targets)}{',' if len(targets) == 1 else ''} = {tuple_name}")


def emit_needs(source: Source, unit: Unit) -> None:
    """``q_<value>``: whether a value's gradient is wanted — some graph input that needs one depends on it."""
    program = unit.program
    emit_unpack(source, [f"q_{unit.var(s)}" for s in program.input_slots], "needs")
    for step in program.steps:
        wanted = " or ".join(dict.fromkeys(f"q_{unit.var(s)}" for s in step.inputs if s is not None)) or "False"
        source.add(" = ".join(f"q_{unit.var(s)}" for s in step.outputs) + f" = {wanted}")


def shared_slots(unit: Unit) -> set[int]:
    """Values read more than once (by two ops, or twice by one) or that are also graph outputs: their gradient is
    a sum."""
    reads: dict[int, int] = {}
    for step in unit.program.steps:
        for slot in step.inputs:
            if slot is not None:
                reads[slot] = reads.get(slot, 0) + 1
    return {slot for slot, count in reads.items() if count > 1} | set(unit.program.output_slots)


def gradient_slots(unit: Unit) -> list[int]:
    """Slots whose gradient variable the backward reads: every value (one no op reads has None)."""
    return list(range(len(unit.program.names)))


def value_deaths(unit: Unit) -> list[list[int]]:
    """Per step, the kept or recomputed values backward reads for the last time there (backward runs in reverse,
    so that is the lowest step that reads one)."""
    program, plan = unit.program, unit.plan
    last: dict[int, int] = {}
    for index in range(len(program.steps) - 1, -1, -1):
        used = list(plan.reads[index])
        for producer in plan.recompute[index]:
            used += [s for s in program.steps[producer].inputs if s is not None]
            used += list(program.steps[producer].outputs)
        for slot in used:
            last[slot] = index
    for slot in plan.saved:
        last.setdefault(slot, len(program.steps) - 1)
    deaths: list[list[int]] = [[] for _ in program.steps]
    for slot, index in sorted(last.items()):
        deaths[index].append(slot)
    return deaths


def emit_vjp(source: Source, unit: Unit, index: int, shared: set[int]) -> None:
    """Run one op's VJP if some input wants a gradient and some output has one; ``_grads`` checks what it returns
    (one gradient per input, each of its input's shape) and drops those no input wants. A value read more than
    once sums its gradients."""
    step = unit.program.steps[index]
    source.add(unit.header(index))
    wanted = " or ".join(dict.fromkeys(f"q_{unit.var(s)}" for s in step.inputs if s is not None)) or "False"
    out_grads = [f"g_{unit.var(s)}" for s in step.outputs]
    arrived = " or ".join(f"{g} is not None" for g in out_grads)
    wanted, arrived = (f"({part})" if " or " in part else part for part in (wanted, arrived))
    source.add(f"if {wanted} and {arrived}:")
    grad = out_grads[0] if len(out_grads) == 1 else f"({', '.join(out_grads)},)"
    shapes = _tuple(f"sh_{unit.var(s)}" if s is not None else "None" for s in step.inputs)
    needs = _tuple(f"q_{unit.var(s)}" if s is not None else "False" for s in step.inputs)
    call = f"_grads({index}, {unit.names.vjp[id(step.op)]}({context(unit, index)}, {grad}), {shapes}, {needs})"
    targets = [f"g_{unit.var(s)}" if s is not None and s not in shared else f"r{i}"
               for i, s in enumerate(step.inputs)]
    source.add(f"{', '.join(targets)}{',' if len(targets) == 1 else ''} = {call}", 2, (index, "vjp"))
    for i, slot in enumerate(step.inputs):
        if slot is not None and slot in shared:
            name = f"g_{unit.var(slot)}"
            source.add(f"{name} = r{i} if {name} is None else {name} if r{i} is None else {name} + r{i}", 2)
    source.add(" = ".join(out_grads) + " = None")


def _tuple(items) -> str:
    items = list(items)
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def context(unit: Unit, index: int) -> str:
    """``Ctx(attr=…, shapes=…, dtypes=…, needs=…, saved=…)``: what the VJP reads."""
    step = unit.program.steps[index]
    fields = [f"{name}={text}" for name, text in unit.arguments.code[index].items()]
    shapes = [f"sh_{unit.var(s)}" if s is not None else "None" for s in step.inputs]
    dtypes = [f"dt_{unit.var(s)}" if s is not None else "None" for s in step.inputs]
    needs = [f"q_{unit.var(s)}" if s is not None else "False" for s in step.inputs]
    for key, items in (("shapes", shapes), ("dtypes", dtypes), ("needs", needs)):
        fields.append(f"{key}={_tuple(items)}")
    fields += [f"{name}={value}" for name, value in saved_fields(unit, step)]
    return f"Ctx({', '.join(fields)})"


def saved_fields(unit: Unit, step) -> list[tuple[str, str]]:
    """The tensors a VJP reads by name: its saved inputs (a tuple for ``*tensors``), ``out`` for its outputs."""
    op = step.op
    fields = []
    if op.variadic_inputs:
        if step.saved_inputs:
            fields.append((op.inputs[0], "(" + "".join(f"{unit.var(step.inputs[i])}, " for i in step.saved_inputs)
                           + ")"))
    else:
        fields += [(op.inputs[i], unit.var(step.inputs[i])) for i in step.saved_inputs]
    if step.saves_output:
        outputs = [unit.var(s) for s in step.outputs]
        fields.append(("out", outputs[0] if len(outputs) == 1 else f"({', '.join(outputs)},)"))
    return fields
