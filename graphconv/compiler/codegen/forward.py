"""Forward source: ``forward`` (keeps what backward needs) and ``forward_nograd`` (keeps nothing).

    def forward(A, input_batch, kernel):
        sh_kernel, dt_kernel = kernel.shape, kernel.dtype
        # O: 'reshape_kernel' (line 49)
        kernel_reshaped = op_reshape(kernel, shape=A[0])
        ...
        return output, (input_batch, kernel_permuted), (sh_input_batch, dt_input_batch, ...)
"""
from __future__ import annotations

from graphconv.compiler.codegen.source import Source, Unit


def emit(source: Source, unit: Unit, *, saving: bool) -> None:
    program = unit.program
    params = ", ".join(["A"] + [unit.var(s) for s in program.input_slots])
    source.add(f"def {'forward' if saving else 'forward_nograd'}({params}):", 0)
    kept = set(unit.plan.saved) if saving else set()
    described = described_slots(unit) if saving else set()
    for slot in program.input_slots:
        if slot in described:
            emit_description(source, unit, slot)
    for index, dead in zip(range(len(program.steps)), last_uses(unit, kept)):
        emit_step(source, unit, index, "forward")
        for slot in program.steps[index].outputs:
            if slot in described:
                emit_description(source, unit, slot)
        emit_free(source, unit, dead)
    emit_return(source, unit, saving)


def described_slots(unit: Unit) -> set[int]:
    """Slots whose shape and dtype a VJP may read (``ctx.shapes``, ``ctx.dtypes``): every op input."""
    return {slot for step in unit.program.steps for slot in step.inputs if slot is not None}


def last_uses(unit: Unit, kept: set[int]) -> list[list[int]]:
    """Per step, the slots that die after it: read for the last time, not kept for backward, not returned."""
    program = unit.program
    last: dict[int, int] = {}
    for index, step in enumerate(program.steps):
        for slot in step.inputs:
            if slot is not None:
                last[slot] = index
        for slot in step.outputs:
            last.setdefault(slot, index)  # a value nothing reads dies at once
    alive = kept | set(program.output_slots)
    dead: list[list[int]] = [[] for _ in program.steps]
    for slot, index in sorted(last.items()):
        if slot not in alive:
            dead[index].append(slot)
    return dead


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
    saved = "".join(f"{unit.var(s)}, " for s in unit.plan.saved)
    meta = "".join(f"sh_{unit.var(s)}, dt_{unit.var(s)}, " for s in sorted(described_slots(unit)))
    source.add(f"return {outputs}, ({saved}), ({meta})")
