"""How fast ``graphconv run`` checks a spec, against ``python -c "import torch"`` measured side by side, and how
long the first call of a compiled op takes with new input shapes (its declared-shape check by the shape rules).

    .venv/bin/python benchmarks/startup.py [--repeats 5]

Each command runs in a fresh interpreter, ``repeats`` times, interleaved with ``import torch`` so both see the same
load on the machine; the table gives medians and each ``graphconv run``'s ratio to ``import torch`` (the target is
0.2 at most). Python may write bytecode, as it does for a user: one untimed run of each command goes first. The
first-call figures are medians over calls at ``repeats`` batch sizes not seen before, after ``import torch`` and a
first call at another size — with torch's own number of threads and with one (on a loaded machine, torch's threads
wait on each other: the same call can take 0.2 ms or 60 ms).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.name for p in (ROOT / "specs").iterdir() if p.suffix in (".mmd", ".yaml"))
BIG = ["--dims", "b=256,i_h=224,i_w=224", "--backward"]


def commands() -> list[tuple[str, list[str]]]:
    run = [sys.executable, "-m", "graphconv", "run"]
    listed = [(f"graphconv run specs/{name}", run + [f"specs/{name}"]) for name in SPECS]
    return listed + [("graphconv run specs/conv2d.mmd " + " ".join(BIG), run + ["specs/conv2d.mmd", *BIG])]


def wall(argv: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return elapsed


def startup_table(repeats: int) -> None:
    torch_argv = [sys.executable, "-c", "import torch"]
    runs = commands()
    for argv in [torch_argv] + [argv for _, argv in runs]:
        wall(argv)  # bytecode, caches
    times: dict[str, list[float]] = {"import torch": []}
    for _ in range(repeats):
        times["import torch"].append(wall(torch_argv))
        for title, argv in runs:
            times.setdefault(title, []).append(wall(argv))
    base = statistics.median(times["import torch"])
    print(f"| command | median s | ÷ import torch |\n|---|---|---|\n| `python -c \"import torch\"` | {base:.2f} | 1 |")
    for title, _ in runs:
        median = statistics.median(times[title])
        print(f"| `{title}` | {median:.2f} | {median / base:.2f} |")


def first_call_table(repeats: int) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    import graphconv

    for threads in (torch.get_num_threads(), 1):
        torch.set_num_threads(threads)
        first_calls(graphconv.compile(ROOT / "specs" / "conv2d.mmd"), repeats)


def first_calls(op: Any, repeats: int) -> None:
    """Calls with batch sizes the op has not seen, each timed, then again at the same size."""
    import torch

    kernel = torch.randn(3, 3, 3, 3)
    op(torch.randn(1, 3, 8, 8), kernel)  # the op's code and torch's kernels warm
    first, again, checks = [], [], []
    for batch in range(2, 2 + repeats):
        x = torch.randn(batch, 3, 8, 8)
        first.append(timed(lambda: op(x, kernel)))
        again.append(timed(lambda: op(x, kernel)))
        env = op.binder.bind([x.shape, kernel.shape], op.binder.attrs({}))
        checks.append(timed(lambda: op.check_declared_shapes((x, kernel), env)))
    print(f"specs/conv2d.mmd compiled, calls with batch sizes 2 to {1 + repeats} (×3×8×8), torch threads "
          f"{torch.get_num_threads()}: first call with the new shapes {statistics.median(first) * 1e3:.2f} ms, "
          f"the next call {statistics.median(again) * 1e3:.2f} ms, the declared-shape check alone "
          f"{statistics.median(checks) * 1e6:.0f} µs (medians)")


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    startup_table(args.repeats)
    print()
    first_call_table(args.repeats)


if __name__ == "__main__":
    main()
