"""The benchmark scripts still run against the code they measure (each checks its cases against torch before it
times them): a short run of each, its table read back. Timings are not asserted (shared machines)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def run_main(monkeypatch, capsys, module: str, *args: str) -> list[list[str]]:
    """``python benchmarks/<module>.py args`` in this process; the rows of the table it prints, as cells. The
    scripts set torch's thread count (small_calls.py to one by default): it is put back afterwards, so that the rest
    of the suite runs as it would without them."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "argv", [module, *args])
    threads = torch.get_num_threads()
    try:
        __import__(f"benchmarks.{module}", fromlist=["main"]).main()
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
            if line.startswith("| ") and not line.startswith("| ---")]


def test_small_calls_runs_every_case(monkeypatch, capsys):
    rows = run_main(monkeypatch, capsys, "small_calls", "--rounds", "3")
    assert [row[0] for row in rows[1:]] == ["graphconv", "same op, bare Function", "minimal unfold/matmul Function",
                                           "F.conv2d"]
    assert all(float(cell.split()[0]) > 0 for row in rows[1:] for cell in row[1:])


@pytest.mark.slow
def test_compile_routes_runs_every_route(monkeypatch, capsys):
    """Three models compiled with inductor, their outputs compared before timing (about 15 s)."""
    import torch._dynamo
    import torch._inductor.config

    dynamo, inductor = torch._dynamo.config, torch._inductor.config
    with dynamo.patch(cache_size_limit=dynamo.cache_size_limit), inductor.patch(fx_graph_cache=inductor.fx_graph_cache):
        rows = run_main(monkeypatch, capsys, "compile_routes", "--repeats", "1")  # the script sets both
    assert [row[0] for row in rows[1:]] == ["torch layers", "traced Function", "custom_op"]
    assert all(float(row[3]) > 0 for row in rows[1:])


def specs_ratios(monkeypatch, capsys, *args: str) -> dict[str, list[float]]:
    """``benchmarks/specs.py --quick --threads 1 args``: each case name's ratio cells (eager, peak, then compiled) as
    numbers. One thread: on a loaded two-core machine two threads made the run 2-3× slower (each parallel region
    waits for a descheduled thread)."""
    rows = run_main(monkeypatch, capsys, "specs", "--quick", "--threads", "1", *args)
    return {row[0]: [float(cell) for cell in row[3:]] for row in rows[1:]}


def test_specs_quick_runs_every_case(monkeypatch, capsys):
    """Every shipped spec at small sizes, checked against its torch reference, then timed once."""
    from benchmarks.specs import CASES

    ratios = specs_ratios(monkeypatch, capsys)
    assert list(ratios) == [case.name for case in CASES]
    assert all(len(cells) == 2 and all(r > 0 for r in cells) for cells in ratios.values())


@pytest.mark.slow
def test_specs_quick_compiled_runs(monkeypatch, capsys):
    """The compiled column for two specs (about 30 s with a cold inductor cache): each op compiled with inductor
    (graphconv's with fullgraph) and timed against torch's. Not every case: all twenty take about 2.5 minutes cold."""
    from benchmarks.specs import CASES

    ratios = specs_ratios(monkeypatch, capsys, "--compiled", "--only", "conv2d", "layer_norm")
    assert list(ratios) == [case.name for case in CASES if case.spec in ("conv2d", "layer_norm")]
    assert all(len(cells) == 3 and all(r > 0 for r in cells) for cells in ratios.values())
