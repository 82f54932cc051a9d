"""Backward source: the VJPs in reverse order, each gradient summed over every reader, each value freed after
its last use.

    def backward(A, inputs, kept, meta, needs, g_v_output):
        v_input_batch, v_kernel = inputs                 # the inputs, then what forward kept beyond them:
        inputs.clear()                                   # lists handed over, emptied so that each value
        v_kernel_permuted, = kept                        # dies where backward frees it
        kept.clear()
        sh_v_input_batch, dt_v_input_batch, ... = meta
        q_v_input_batch, q_v_kernel, = needs             # which values need a gradient, forward order
        q_v_kernel_reshaped = q_v_kernel
        ...
        g_v_input_batch = g_v_kernel = ... = None
        # S: 'permute_output' (line 62)
        if q_v_output_4D and g_v_output is not None:
            g_v_output_4D, = _gc_grads(8, vjp_permute(_gc_Ctx({'dims': (0, 3, 1, 2)}, {}, (sh_v_output_4D,), …),
                                    g_v_output), (sh_v_output_4D,), (q_v_output_4D,))
        g_v_output = None
        ...
        return g_v_input_batch if q_v_input_batch else None, g_v_kernel if q_v_kernel else None

Needs, what is kept or recomputed, what dies where and which gradients are sums all come from the
:class:`Program`.
"""
from __future__ import annotations

from graphconv.compiler.codegen.forward import emit_free, emit_step
from graphconv.compiler.codegen.source import RUNTIME, Source, Unit, as_tuple


def emit(source: Source, unit: Unit) -> None:
    program = unit.program
    grads = ", ".join(f"g_{unit.var(s)}" for s in program.output_slots)
    source.add(f"def {unit.function('backward')}(A, inputs, kept, meta, needs, {grads}):", 0)
    emit_take(source, [unit.var(s) for s in program.input_slots], "inputs")
    emit_take(source, [unit.var(s) for s in program.kept], "kept")
    emit_unpack(source, [f"{p}_{unit.var(s)}" for s in program.described for p in ("sh", "dt")], "meta")
    emit_needs(source, unit)
    receivers = [s for s in range(len(program.names)) if s not in program.output_slots]
    if receivers:
        source.add(" = ".join(f"g_{unit.var(s)}" for s in receivers) + " = None")
    for index in range(len(program.steps) - 1, -1, -1):
        for producer in program.plan.recompute[index]:
            emit_step(source, unit, producer, "recompute")
        emit_vjp(source, unit, index)
        emit_free(source, unit, program.backward_deaths[index])
    source.add(f"return {as_tuple(f'g_{unit.var(s)} if q_{unit.var(s)} else None' for s in program.input_slots)}")


def emit_take(source: Source, targets: list[str], list_name: str) -> None:
    """Unpack a list the caller hands over, and empty it: the caller's reference to the list then holds none of
    its values, so each dies when backward frees its variable."""
    if targets:
        emit_unpack(source, targets, list_name)
        source.add(f"{list_name}.clear()")


def emit_unpack(source: Source, targets: list[str], tuple_name: str) -> None:
    if targets:
        source.add(f"{', '.join(targets)}{',' if len(targets) == 1 else ''} = {tuple_name}")


def emit_needs(source: Source, unit: Unit) -> None:
    """``q_<value>``: whether a value's gradient is wanted (the program's ``need_sources``)."""
    program = unit.program
    emit_unpack(source, [f"q_{unit.var(s)}" for s in program.input_slots], "needs")
    for step in program.steps:
        wanted = " or ".join(f"q_{unit.var(s)}" for s in program.need_sources[step.outputs[0]]) or "False"
        source.add(" = ".join(f"q_{unit.var(s)}" for s in step.outputs) + f" = {wanted}")


def emit_vjp(source: Source, unit: Unit, index: int) -> None:
    """Run one op's VJP if some input wants a gradient and some output has one; ``_gc_grads`` checks what it returns
    (one gradient per input, each of its input's shape) and drops those no input wants. A value read more than
    once sums its gradients (into the newest, in place, where its op's VJP made it fresh: ``sum_into``)."""
    program = unit.program
    step = program.steps[index]
    source.add(unit.header(index))
    wanted = " or ".join(f"q_{unit.var(s)}" for s in step.read_slots()) or "False"
    out_grads = [f"g_{unit.var(s)}" for s in step.outputs]
    arrived = " or ".join(f"{g} is not None" for g in out_grads)
    wanted, arrived = (f"({part})" if " or " in part else part for part in (wanted, arrived))
    source.add(f"if {wanted} and {arrived}:")
    grad = out_grads[0] if len(out_grads) == 1 else as_tuple(out_grads)
    shapes = as_tuple(f"sh_{unit.var(s)}" if s is not None else "None" for s in step.inputs)
    vjp = f"{unit.names.vjp[id(step.op)]}({unit.context(index)}, {grad})"
    call = f"{RUNTIME}grads({index}, {vjp}, {shapes}, {unit.needs(index)})"
    shared = program.shared
    targets = [f"g_{unit.var(s)}" if s is not None and s not in shared else f"r{i}" for i, s in enumerate(step.inputs)]
    source.add(f"{', '.join(targets)}{',' if len(targets) == 1 else ''} = {call}", 2, (index, "vjp"))
    for i, slot in enumerate(step.inputs):
        if slot is not None and slot in shared:
            name = f"g_{unit.var(slot)}"
            total = f"{RUNTIME}sum_into(r{i}, {name})" if step.op.fresh_grads else f"{name} + r{i}"
            source.add(f"{name} = r{i} if {name} is None else {name} if r{i} is None else {total}", 2)
    source.add(" = ".join(out_grads) + " = None")
