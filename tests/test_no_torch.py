"""Reading and validating a spec imports no torch (the spec layer is torch-free)."""
import subprocess
import sys

from conftest import ROOT, SPECS


def run_isolated(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_parse_and_load_do_not_import_torch():
    out = run_isolated(
        "import sys, graphconv\n"
        f"graphconv.parse_diagram(open({str(SPECS / 'conv2d.mmd')!r}).read())\n"
        f"spec = graphconv.load({str(SPECS / 'conv2d.mmd')!r})\n"
        f"graphconv.load({str(SPECS / 'conv2d.yaml')!r})\n"
        "print(len(spec.order), 'torch' in sys.modules)"
    )
    assert out == "9 False"


def test_compile_imports_torch_when_asked():
    out = run_isolated(
        "import sys, graphconv\n"
        f"op = graphconv.compile({str(SPECS / 'conv2d.mmd')!r})\n"
        "print('torch' in sys.modules)"
    )
    assert out == "True"


def test_run_imports_neither_torch_nor_networkx():
    """``graphconv run`` proves and checks shapes by the shape rules: torch is not imported at all (the target is a
    check at the speed of a linter; ``import torch`` alone takes seconds)."""
    out = run_isolated(
        "import io, sys, contextlib\n"
        "from graphconv.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['run', {str(SPECS / 'conv2d.mmd')!r}, '--dims', 'b=256,i_h=224,i_w=224', '--backward'])\n"
        "    main(['run', '--json', " + repr(str(SPECS / 'conv1d.mmd')) + "])\n"
        "print(code, 'torch' in sys.modules, 'networkx' in sys.modules)"
    )
    assert out == "0 False False"

