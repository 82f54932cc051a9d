"""How long graphconv takes to turn a spec into a callable: parse + build (``graphconv.loads``) and compile (passes,
memory plan, forward code; backward code too for programs up to 500 ops) — for specs/conv2d.mmd and for generated
chains of 1,000 to 5,000 ops — and what the backward code costs when the first backward makes it (bigger programs).

    .venv/bin/python benchmarks/compile_time.py

Times are medians after the imports (a first, untimed run loads the modules). The chains cycle through tanh,
mul_scalar, transpose and add_scalar, so no pass collapses them; time per op should stay flat as they grow.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphconv  # noqa: E402
from graphconv.compiler.compiled import CompiledOp  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "conv2d.mmd"
CHAIN_OPS = ("tanh", '"mul_scalar(value=0.5)"', '"transpose(0, 1)"', '"add_scalar(value=1.0)"')
LENGTHS = (1000, 2000, 5000)


def chain_spec(length: int) -> str:
    """A Mermaid spec: x → op → t1 → op → t2 … → t<length>, one tensor node between every two ops."""
    lines = ["---", "graphconv:", "  inputs: {t0: [n, m]}", "---", "graph LR"]
    for i in range(length):
        lines.append(f"  T{i}(t{i}) --> O{i}(({CHAIN_OPS[i % len(CHAIN_OPS)]})) --> T{i + 1}(t{i + 1})")
    return "\n".join(lines) + "\n"


def timed(run, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def phases(text: str, path: str | None, repeats: int) -> tuple[float, float, float | None]:
    """(parse + build, compile, backward code made on first use — None when compile made it) seconds."""
    spec = graphconv.loads(text, path=path)
    CompiledOp(spec)  # warm-up
    load = timed(lambda: graphconv.loads(text, path=path), repeats)
    build = timed(lambda: CompiledOp(spec), repeats)
    ops = [CompiledOp(spec) for _ in range(repeats)]
    if ops[0].code._backward is not None:
        return load, build, None
    backward = timed(lambda: ops.pop().code.backward, repeats)
    return load, build, backward


def show_ms(seconds: float | None, digits: int) -> str:
    return "in compile" if seconds is None else f"{seconds * 1e3:.{digits}f}"


def main() -> None:
    text = SPEC.read_text()
    load, build, backward = phases(text, str(SPEC), 21)
    whole = timed(lambda: graphconv.compile(SPEC), 21)
    print("| spec | ops | parse + build ms | compile ms | total ms | µs per op | backward code, on first use ms |")
    print("|---|---|---|---|---|---|---|")
    print(f"| specs/conv2d.mmd (graphconv.compile of the path) | 9 | {load * 1e3:.1f} | {build * 1e3:.1f} "
          f"| {whole * 1e3:.1f} | {whole / 9 * 1e6:.0f} | {show_ms(backward, 1)} |")
    per_op = {}
    for length in LENGTHS:
        load, build, backward = phases(chain_spec(length), None, 3)
        per_op[length] = (load + build) / length
        print(f"| chain | {length} | {load * 1e3:.0f} | {build * 1e3:.0f} | {(load + build) * 1e3:.0f} "
              f"| {per_op[length] * 1e6:.0f} | {show_ms(backward, 0)} |")
    print(f"\nTime per op at {LENGTHS[-1]} ops ÷ at {LENGTHS[0]}: {per_op[LENGTHS[-1]] / per_op[LENGTHS[0]]:.2f} "
          "(1.00 = linear growth)")


if __name__ == "__main__":
    main()
