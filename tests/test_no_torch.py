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


def test_the_first_call_checks_declared_shapes_without_the_meta_device():
    """The first call with new shapes checks the declared shapes by the rules: it does not load PyTorch's Python
    meta kernels (torch._dynamo and the rest: 500 modules, seconds), which a meta-device run would."""
    out = run_isolated(
        "import sys, torch, graphconv\n"
        f"op = graphconv.compile({str(SPECS / 'conv2d.mmd')!r})\n"
        "op(torch.randn(2, 3, 8, 8), torch.randn(3, 3, 3, 3))\n"
        "print('torch._dynamo' in sys.modules)"
    )
    assert out == "False"  # a meta-device run of unfold imports it
