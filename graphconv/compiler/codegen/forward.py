"""Forward source: ``forward`` (returns what backward needs beyond the inputs, which the caller keeps anyway, as
a list: backward empties it) and ``forward_nograd`` (keeps nothing).

    def forward(A, v_input_batch, v_kernel):
        sh_v_kernel, dt_v_kernel = v_kernel.shape, v_kernel.dtype
        # O: 'reshape_kernel' (line 49)
        v_kernel_reshaped = op_reshape(v_kernel, shape=A[0])
        ...
        return v_output, [v_kernel_permuted, ], (sh_v_input_batch, dt_v_input_batch, ...)

What dies where, what is kept and which shapes the VJPs read all come from the :class:`Program`.
"""
from __future__ import annotations

from graphconv.compiler.codegen.source import Source, Unit


def emit(source: Source, unit: Unit, *, saving: bool) -> None:
    program = unit.program
    params = ", ".join(["A"] + [unit.var(s) for s in program.input_slots])
    source.add(f"def {unit.function('forward' if saving else 'forward_nograd')}({params}):", 0)
    described = set(program.described) if saving else set()
    for slot in program.input_slots:
        if slot in described:
            emit_description(source, unit, slot)
    for index, dead in enumerate(program.forward_deaths(saving)):
        emit_step(source, unit, index, "forward")
        for slot in program.steps[index].outputs:
            if slot in described:
                emit_description(source, unit, slot)
        emit_free(source, unit, dead)
    emit_return(source, unit, saving)


def emit_step(source: Source, unit: Unit, index: int, phase: str, depth: int = 1) -> None:
    """One op application: ``out = op_x(…)``, or ``a, b = op_x(…)`` for several outputs."""
    step = unit.program.steps[index]
    source.add(unit.header(index), depth)
    targets = ", ".join(unit.var(s) for s in step.outputs)
    source.add(f"{targets} = {unit.call(index)}", depth, (index, phase))


def emit_description(source: Source, unit: Unit, slot: int) -> None:
    name = unit.var(slot)
    source.add(f"sh_{name}, dt_{name} = {name}.shape, {name}.dtype")


def emit_free(source: Source, unit: Unit, slots: list[int], depth: int = 1) -> None:
    if slots:
        source.add(" = ".join(unit.var(s) for s in slots) + " = None", depth)


def emit_return(source: Source, unit: Unit, saving: bool) -> None:
    program = unit.program
    outputs = ", ".join(unit.var(s) for s in program.output_slots)
    if len(program.output_slots) > 1:
        outputs = f"({outputs})"
    if not saving:
        source.add(f"return {outputs}")
        return
    kept = "".join(f"{unit.var(s)}, " for s in program.kept)
    meta = "".join(f"sh_{unit.var(s)}, dt_{unit.var(s)}, " for s in program.described)
    source.add(f"return {outputs}, [{kept}], ({meta})")
