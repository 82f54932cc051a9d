"""Compiled specs/conv2d.mmd against the seed's hand-written Conv2DFunc, torch.compile of the same composition and
F.conv2d: forward, forward+backward and peak memory, at the seed size and three ResNet-like layers.

    .venv/bin/python benchmarks/conv2d.py            # prints a Markdown table (takes a few minutes)
    .venv/bin/python benchmarks/conv2d.py --quick    # fewer repeats, no torch.compile

Every ratio compares figures measured side by side in this run (the cases take turns, medians of the repeats):
``÷conv`` is against F.conv2d, ``÷seed`` against the hand-written Function. Peak memory is the most bytes
allocated at once during one forward+backward beyond the inputs and the output gradient; "saved" is what the
autograd node keeps for backward. Both graphconv policies run on the optimized program.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile workers running beside the timings

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphconv  # noqa: E402
import seed_conv2d  # noqa: E402
from measure import interleaved, peak_bytes, saved_for_backward  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "conv2d.mmd"
SIZES = [(4, 3, 8, 8), (32, 64, 32, 32), (8, 128, 28, 28), (8, 256, 14, 14)]  # b, c, h, w; k3, p1, out = in
MIB = 1 << 20


def composition(input_batch: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The seed's forward as plain autograd-tracked torch calls (what torch.compile gets)."""
    b, _, i_h, i_w = input_batch.shape
    out_channels, _, kernel_h, kernel_w = kernel.shape
    U = seed_conv2d.unfold(input_batch, (kernel_h, kernel_w), 1, 1)
    _, patch_size, patches = U.shape
    U_reshaped = seed_conv2d.reshape_U_permuted(seed_conv2d.permute_U(U))
    kernel_permuted = seed_conv2d.permute_kernel_reshaped(seed_conv2d.reshape_kernel(kernel))
    output_2D = seed_conv2d.compute_output_2D(U_reshaped, kernel_permuted)
    output_3D = seed_conv2d.reshape_output_to_3D(output_2D, b, patches, out_channels)
    return seed_conv2d.permute_output(seed_conv2d.reshape_output_to_4D(output_3D, b, i_h, i_w, out_channels))


def implementations(with_torch_compile: bool) -> tuple[dict[str, Callable], str | None]:
    found: dict[str, Callable] = {
        "graphconv": graphconv.compile(SPEC),
        "graphconv save=minimal": graphconv.compile(SPEC, save="minimal"),
        "seed Conv2DFunc": lambda x, w: seed_conv2d.Conv2DFunc.apply(x, w, 1, 1),
        "F.conv2d": lambda x, w: F.conv2d(x, w, padding=1),
    }
    note = None
    if with_torch_compile:
        compiled = torch.compile(composition, dynamic=False)
        try:
            x, w = torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(2, 2, 3, 3, requires_grad=True)
            compiled(x, w).sum().backward()
            found["torch.compile(seed composition)"] = compiled
        except Exception as error:  # no C++ compiler, or an unsupported op: say so in the table
            note = f"torch.compile does not work here: {type(error).__name__}: {str(error).splitlines()[0]}"
    else:
        note = "torch.compile not measured (--quick or --no-torch-compile)"
    return found, note


def measure_size(size: tuple[int, ...], impls: dict[str, Callable], repeats: int) -> list[dict[str, Any]]:
    b, c, h, w = size
    torch.manual_seed(0)
    x = torch.randn(b, c, h, w, requires_grad=True)
    kernel = torch.randn(c, c, 3, 3, requires_grad=True)
    grad = torch.randn(b, c, h, w)
    torch._dynamo.reset()  # torch.compile starts afresh at each size (its recompile limit is per function)
    for name, run in impls.items():  # warm up (torch.compile compiles here) and check the values
        torch.testing.assert_close(run(x, kernel), F.conv2d(x, kernel, padding=1), rtol=1e-3, atol=1e-3,
                                   msg=lambda m: f"{name}: {m}")

    def forward(run: Callable) -> Callable:
        def call() -> None:
            with torch.no_grad():
                run(x, kernel)
        return call

    def both(run: Callable) -> Callable:
        return lambda: torch.autograd.grad(run(x, kernel), (x, kernel), grad)

    fwd = interleaved({name: forward(run) for name, run in impls.items()}, repeats)
    fwd_bwd = interleaved({name: both(run) for name, run in impls.items()}, repeats)
    rows = []
    for name, run in impls.items():
        saved = saved_for_backward(run(x, kernel)) if name.startswith(("graphconv", "seed")) else None
        rows.append({"size": size, "name": name, "fwd": fwd[name], "fwd_bwd": fwd_bwd[name],
                     "peak": peak_bytes(both(run)), "saved": saved})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = ("| size (b×c×h×w) | implementation | fwd ms | ÷conv | ÷seed | fwd+bwd ms | ÷conv | ÷seed "
              "| peak MiB | ÷conv | saved for bwd |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    by_size: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        by_size.setdefault(row["size"], {})[row["name"]] = row
    for size, named in by_size.items():
        conv, seed = named["F.conv2d"], named["seed Conv2DFunc"]
        for name, row in named.items():
            saved = f"{row['saved'][1] / MIB:.2f} MiB ({row['saved'][0]} storages)" if row["saved"] else "-"
            lines.append(
                f"| {'×'.join(map(str, size))} | {name} | {row['fwd'] * 1e3:.3f} | {row['fwd'] / conv['fwd']:.2f} "
                f"| {row['fwd'] / seed['fwd']:.2f} | {row['fwd_bwd'] * 1e3:.3f} | {row['fwd_bwd'] / conv['fwd_bwd']:.2f} "
                f"| {row['fwd_bwd'] / seed['fwd_bwd']:.2f} | {row['peak'] / MIB:.2f} "
                f"| {row['peak'] / max(conv['peak'], 1):.2f} | {saved} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python "
            f"{platform.python_version()}, {platform.system()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 21, no torch.compile")
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument("--repeats", type=int, help="timing samples per case (default 21, 5 with --quick)")
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 21)
    impls, note = implementations(not (args.quick or args.no_torch_compile))
    load = os.getloadavg()[0]
    rows = []
    for size in SIZES:
        rows += measure_size(size, impls, repeats)
        print(f"measured {size}", file=sys.stderr, flush=True)
    print(f"Machine: {machine()}; load average {load:.1f} before and {os.getloadavg()[0]:.1f} after (other work "
          f"on the machine); {repeats} interleaved repeats per figure, medians.\n")
    print(table(rows))
    if note:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
