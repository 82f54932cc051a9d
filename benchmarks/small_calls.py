"""Small calls: what one call of a compiled op costs beyond its math, at the seed's size (issue 13).

At 4×3×8×8 (kernel 8×3×3×3, stride 1, padding 1) the convolution itself takes tens of microseconds, so the fixed
cost of each call — binding the spec's names, the input checks, the autograd.Function, the VJP contexts, the
generated code — shows. Forward + backward, side by side: the cases take turns in short samples (about 2 ms each,
hundreds of rounds), and each figure is the low decile of its samples — on a machine shared with other work, the
median of so short a call moves with the load, while the low decile is what the call costs when it gets the core
(the median is printed too). For:

- ``graphconv``: ``graphconv.compile("specs/conv2d.mmd")`` — the seed's spec, as a user calls it;
- ``same op, bare Function``: the compiled program's one op (its forward and its hand-written VJP, with the same
  attributes) inside the smallest ``autograd.Function`` that can run it — the op's math with no graphconv runtime
  around it: ``graphconv ÷ this`` is the runtime's share;
- ``minimal unfold/matmul Function``: a hand-written ``autograd.Function`` doing the seed's math (unfold, one
  batched matmul; backward: the patch matrix recomputed, two matmuls, fold) — the target (≤ 1.1×);
- ``F.conv2d`` for scale.

    PYTHONPATH=. python benchmarks/small_calls.py [--rounds 300] [--threads 1]

One torch thread by default: at this size torch's kernels do not split the work, and on a loaded machine a second
thread only adds waiting.
"""
from __future__ import annotations

import argparse
import random
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

import graphconv
from benchmarks.measure import per_call
from graphconv.nn.functional import LIBRARY
from graphconv.ops.registry import Context

SEED_INPUT, SEED_KERNEL, PADDING = (4, 3, 8, 8), (8, 3, 3, 3), 1


class MinimalConv(torch.autograd.Function):
    """The seed's im2col convolution as one would write it by hand: keeps the input and kernel, recomputes the
    patch matrix in backward (stride 1, square kernel, ``PADDING``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        cols = F.unfold(x, w.shape[2], padding=PADDING)
        out = w.reshape(w.shape[0], -1).expand(x.shape[0], -1, -1).bmm(cols)
        return out.view(x.shape[0], w.shape[0], x.shape[2], x.shape[3])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, w = ctx.saved_tensors
        b, o, k = x.shape[0], w.shape[0], w.shape[2]
        cols = F.unfold(x, k, padding=PADDING)
        columns = grad.reshape(b, o, -1)
        grad_w = columns.bmm(cols.transpose(1, 2)).sum(0).view(w.shape)
        grad_x = F.fold(w.reshape(o, -1).t().expand(b, -1, -1).bmm(columns), x.shape[2:], k, padding=PADDING)
        return grad_x, grad_w


def bare_function(op: Any, inputs: tuple) -> type:
    """An autograd.Function running the compiled program's only op — forward, and its VJP with a Context laid
    out as the compiler lays it out — with nothing else around it."""
    program = op.program
    if len(program.steps) != 1:
        raise ValueError(f"expected one op after the passes, got {len(program.steps)}")
    step = program.steps[0]
    attrs = program.arguments(op.binder.bind([t.shape for t in inputs], op.binder.attrs({})))[0]
    names = [field.name for field in program.saved_fields[0]]
    forward, vjp = step.op.forward, step.op.backward

    class Bare(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *xs: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(*xs)
            return forward(*xs, **attrs)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple:
            xs = ctx.saved_tensors
            saved = dict(zip(names, xs))
            return vjp(Context(attrs, saved, tuple(t.shape for t in xs), tuple(t.dtype for t in xs),
                               ctx.needs_input_grad), grad)

    return Bare


def low_decile_and_median(cases: dict[str, Callable[[], Any]], rounds: int) -> dict[str, tuple[float, float]]:
    """Seconds per call of each case (low decile, median) over ``rounds`` rounds in which every case runs one short
    sample, in a random order."""
    numbers = {name: per_call(run, 0.002) for name, run in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    order = random.Random(0)
    for _ in range(rounds):
        order.shuffle(names)  # a fresh order each round: a case that always followed the same one would pay for
        for name in names:    # what that one leaves behind (a rotation keeps the cyclic order)
            run, number = cases[name], numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                run()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: (sorted(v)[len(v) // 10], sorted(v)[len(v) // 2]) for name, v in samples.items()}


def train_step(run: Callable, inputs: tuple, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        run(*inputs).backward(grad)
        for t in inputs:
            t.grad = None
    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, w = torch.randn(*SEED_INPUT, requires_grad=True), torch.randn(*SEED_KERNEL, requires_grad=True)
    op = graphconv.compile(str(LIBRARY / "conv2d.mmd"))
    runs = {"graphconv": op, "same op, bare Function": bare_function(op, (x, w)).apply,
            "minimal unfold/matmul Function": MinimalConv.apply, "F.conv2d": lambda a, b: F.conv2d(a, b, padding=1)}
    expected = F.conv2d(x, w, padding=PADDING)
    grad = torch.randn_like(expected)
    for name, run in runs.items():
        torch.testing.assert_close(run(x, w), expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    cases = {f"{name} fwd+bwd": train_step(run, (x, w), grad) for name, run in runs.items()}
    cases.update({f"{name} fwd": (lambda r=run: r(x, w)) for name, run in runs.items()})
    times = low_decile_and_median(cases, args.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); seed size {SEED_INPUT} * {SEED_KERNEL}; "
          f"low decile (median) of {args.rounds} interleaved samples")
    print("| implementation | fwd µs | fwd+bwd µs | ÷ minimal Function | ÷ same op, bare |\n|---|---|---|---|---|")
    base, bare = times["minimal unfold/matmul Function fwd+bwd"], times["same op, bare Function fwd+bwd"]
    for name in runs:
        (fwd, fwd_median), (step, step_median) = times[f"{name} fwd"], times[f"{name} fwd+bwd"]
        print(f"| {name} | {fwd * 1e6:.1f} ({fwd_median * 1e6:.1f}) | {step * 1e6:.1f} ({step_median * 1e6:.1f}) | "
              f"{step / base[0]:.2f} ({step_median / base[1]:.2f}) | {step / bare[0]:.2f} ({step_median / bare[1]:.2f}) |")


if __name__ == "__main__":
    main()
