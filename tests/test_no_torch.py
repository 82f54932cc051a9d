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
