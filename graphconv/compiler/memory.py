"""Memory planning: what forward keeps for backward, what backward recomputes, and when each value dies.

Each VJP declares what it reads (its op's ``save=``: input names, ``out``). Policy ``"all"`` keeps every value a
VJP reads, as a hand-written Function would. Policy ``"minimal"`` keeps the graph inputs (alive anyway) and the
outputs of costly ops, and recomputes values that cheap ops make — views, and copies such as the patch matrix —
in backward, just before the first VJP that reads them. Everything else dies after its last use in either pass
(the generated code sets it to None). Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Program holds its plan: it calls plan() while it is being built
    from graphconv.compiler.program import Program, Step

POLICIES = ("all", "minimal")


@dataclass
class MemoryPlan:
    policy: str
    reads: list[tuple[int, ...]]  # per step: the slots its VJP reads (saved inputs in order, then outputs)
    saved: tuple[int, ...]  # slots forward keeps for backward, in ctx.save_for_backward order
    recompute: list[tuple[int, ...]]  # per step: the forward steps backward re-runs before its VJP, in order

    def recomputed_slots(self, program: "Program") -> list[int]:
        return [slot for steps in self.recompute for index in steps for slot in program.steps[index].outputs]


def vjp_reads(step: "Step") -> tuple[int, ...]:
    inputs = tuple(step.inputs[i] for i in step.saved_inputs)
    return inputs + (step.outputs if step.saves_output else ())


def plan(program: "Program", policy: str = "all") -> MemoryPlan:
    if policy not in POLICIES:
        raise ValueError(f"save={policy!r}: expected one of {', '.join(map(repr, POLICIES))}")
    reads = [vjp_reads(step) for step in program.steps]
    if policy == "all":
        saved = sorted({slot for slots in reads for slot in slots})
        return MemoryPlan(policy, reads, tuple(saved), [()] * len(program.steps))
    return _minimal(program, reads)


def _minimal(program: "Program", reads: list[tuple[int, ...]]) -> MemoryPlan:
    producer = {slot: index for index, step in enumerate(program.steps) for slot in step.outputs}
    inputs = set(program.input_slots)
    saved: set[int] = set()
    available: set[int] = set()
    recompute: list[tuple[int, ...]] = [()] * len(program.steps)

    def materialize(slot: int, schedule: list[int]) -> None:
        """Make ``slot`` available in backward: saved, or recomputed (after what its producer reads)."""
        if slot in available:
            return
        index = producer.get(slot)
        if slot in inputs or index is None or not program.steps[index].op.cheap:
            saved.add(slot)
            available.add(slot)
            return
        for source in program.steps[index].inputs:
            if source is not None:
                materialize(source, schedule)
        schedule.append(index)
        available.update(program.steps[index].outputs)

    for index in range(len(program.steps) - 1, -1, -1):
        schedule: list[int] = []
        for slot in reads[index]:
            materialize(slot, schedule)
        recompute[index] = tuple(schedule)
    return MemoryPlan("minimal", reads, tuple(sorted(saved)), recompute)
