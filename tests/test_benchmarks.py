"""The benchmark scripts still run against the code they measure (each checks its cases against torch before it
times them): a short run of each, its table read back. Timings are not asserted (shared machines)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def run_main(monkeypatch, capsys, module: str, *args: str) -> list[list[str]]:
    """``python benchmarks/<module>.py args`` in this process; the rows of the table it prints, as cells."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "argv", [module, *args])
    __import__(f"benchmarks.{module}", fromlist=["main"]).main()
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
