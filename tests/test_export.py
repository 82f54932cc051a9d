"""``graphconv export``: the written module imports torch only, and matches the compiled op in value and gradient."""
import ast
import importlib.util
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import graphconv
from graphconv.cli import main

ROOT = __import__("conftest").ROOT
SPEC = ROOT / "specs" / "conv2d.mmd"


def export(tmp_path, *args, name="exported"):
    path = tmp_path / f"{name}.py"
    assert main(["export", *map(str, args), "-o", str(path)]) == 0
    return path


def import_path(path):
    found = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    return names


def assert_matches(function, compiled, x, w, **attrs):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    got, expected = function(x, w, **attrs), compiled(x, w, **attrs)
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(expected, (x, w), grad))


@pytest.mark.parametrize("options", [[], ["--no-optimize"], ["--save", "minimal"]])
def test_the_exported_conv2d_matches_the_compiled_op(tmp_path, options):
    module = import_path(export(tmp_path, SPEC, *options))
    assert {m.split(".")[0] for m in imported_modules(tmp_path / "exported.py")} <= {"torch", "__future__"}
    compiled = graphconv.compile(SPEC, optimize="--no-optimize" not in options,
                                 save="minimal" if "minimal" in options else "all")
    configs = [(2, 3, 4, (7, 6), 3, 1, 1), (3, 2, 5, (9, 8), 2, 2, 0), (4, 16, 8, (14, 12), 3, 1, 1)]
    for b, c, o, size, k, stride, padding in configs[-2 if options else 0:]:
        x = torch.randn(b, c, *size, dtype=torch.float64)
        w = torch.randn(o, c, k, k, dtype=torch.float64)
        assert_matches(module.conv2d, compiled, x, w, stride=stride, padding=padding)
        torch.testing.assert_close(module.conv2d(x, w, stride=stride, padding=padding),
                                   F.conv2d(x, w, stride=stride, padding=padding))
    x, w = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True), torch.randn(2, 3, 3, 3,
                                                                                       dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: module.conv2d(a, b), (x, w.requires_grad_()), fast_mode=True)


def test_the_module_is_readable_and_checks_its_inputs(tmp_path):
    path = export(tmp_path, SPEC, "--name", "my_conv")
    text = path.read_text()
    module = import_path(path)
    assert "class _gc_Function(torch.autograd.Function):" in text
    assert "def my_conv(input_batch, kernel, *, stride=1, padding=1):" in text
    assert "def op_patch_matmul(input, weight, *, kernel_size" in text and "def vjp_patch_matmul(ctx, grad):" in text
    assert "# L+M+N+O+T+P+R+S: patch_matmul (line " in text
    with pytest.raises(ValueError, match=r"kernel: dim 1 must be in_channels, got 2"):
        module.my_conv(torch.randn(1, 3, 5, 5), torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"input_batch: expected 4 dims \[b, in_channels, i_h, i_w\]"):
        module.my_conv(torch.randn(3, 5, 5), torch.randn(4, 3, 3, 3))


@pytest.mark.slow  # a fresh interpreter that imports torch
def test_the_module_runs_without_graphconv(tmp_path):
    export(tmp_path, SPEC)
    code = ("import sys, torch; import exported; "
            "y = exported.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)); "
            "assert y.shape == (1, 3, 5, 5); "
            "assert not [m for m in sys.modules if m.startswith('graphconv')], 'graphconv was imported'")
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {code}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


USER_OPS = '''
import graphconv
from graphconv.ops.lazy_torch import torch

SCALE = 3.0


def _scaled(x):
    return x * SCALE


@graphconv.op(registry=None, save=("x",))
def cube_scaled(x):
    """3 x³."""
    return _scaled(x ** 3)


@cube_scaled.vjp
def _(ctx, grad):
    return (_scaled(3 * ctx.x ** 2) * grad,)


TABLE = {"a": 1}


@graphconv.op(registry=None)
def uses_a_dict(x):
    """x + TABLE['a']."""
    return x + TABLE["a"]


@uses_a_dict.vjp
def _(ctx, grad):
    return (grad,)
'''


def test_user_ops_are_copied_with_their_helpers_and_constants(tmp_path, monkeypatch):
    (tmp_path / "my_ops.py").write_text(USER_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "cube.mmd"
    spec.write_text("graph LR\n  X(x) --> C((cube_scaled)) --> Y(y)\n")
    module = import_path(export(tmp_path, spec, "--ops", "my_ops", name="cube"))
    assert "SCALE = 3.0" in (tmp_path / "cube.py").read_text()
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(module.cube(x), 3 * x ** 3)
    assert torch.autograd.gradcheck(module.cube, (x,))


def test_an_op_that_cannot_be_copied_is_a_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_ops.py").write_text(USER_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "table.mmd"
    spec.write_text("graph LR\n  X(x) --> D((uses_a_dict)) --> Y(y)\n")
    assert main(["export", str(spec), "--ops", "my_ops", "-o", str(tmp_path / "t.py")]) == 2
    err = capsys.readouterr().err
    assert "cannot export op uses_a_dict: its code uses 'TABLE' (dict)" in err and "Traceback" not in err
    assert not (tmp_path / "t.py").exists()


SHIPPED = sorted(p.name for p in (ROOT / "specs").glob("*.mmd"))  # conv1d.mmd uses conv2d_full


INNER = """---
graphconv:
  inputs: {x: [n]}
  attrs: {_gc_K: 2.0, self: 1.0}
---
graph LR
  X(x) --> M(("mul_scalar(value=_gc_K)")) --> Y(y)
  Y --> A(("add_scalar(value=self)")) --> Z(z)
"""

MIDDLE = """---
graphconv:
  uses: [inner]
  inputs: {r1: [n], ctx: [n]}
  attrs: {_gc_K: 3.0}
---
graph LR
  R(r1) --> I(("inner(_gc_K=_gc_K, self=0.5)")) --> S(scaled)
  S -->|a| M((mul))
  C(ctx) -->|b| M
  M --> O(out)
"""

OUTER = """---
title: _gc_1_run
graphconv:
  uses: [middle, inner]
  inputs: {a: [n], b: [n]}
---
graph LR
  A(a) -->|r1| M(("middle(_gc_K=-1.5)"))
  B(b) -->|ctx| M
  M --> P(p)
  P --> I((inner)) --> Q(q)
  Q -->|a| T((mul))
  A -->|b| T
  T --> O(out)
"""


def test_specs_that_use_specs_export_with_each_used_spec_once(tmp_path):
    """Used specs nest (outer → middle → inner, and outer → inner again), with attrs named like the module's own
    globals (_gc_K) and self, a title like a used spec's runner, an input named r1: the module carries
    each used spec once, and matches the compiled spec in value, gradient and second derivative."""
    for name, text in (("inner", INNER), ("middle", MIDDLE), ("outer", OUTER)):
        (tmp_path / f"{name}.mmd").write_text(text)
    path = export(tmp_path, tmp_path / "outer.mmd", "--name", "op")
    source = path.read_text()
    assert source.count("def _gc_1_forward(") == 1 and source.count("def _gc_2_forward(") == 1
    assert "_gc_3_" not in source and {m.split(".")[0] for m in imported_modules(path)} <= {"torch", "__future__"}
    module, compiled = import_path(path), graphconv.compile(tmp_path / "outer.mmd")
    a, b = (torch.randn(5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    for op in (module.op, compiled):
        got, expected = op(a, b), ((a * -1.5 + 0.5) * b * 2.0 + 1.0) * a
        torch.testing.assert_close(got, expected)
        grads = torch.autograd.grad(got.square().sum(), (a, b), create_graph=True)
        want = torch.autograd.grad(expected.square().sum(), (a, b), create_graph=True)
        torch.testing.assert_close(grads, want)
        torch.testing.assert_close(torch.autograd.grad(sum(g.sum() for g in grads), (a, b)),
                                   torch.autograd.grad(sum(g.sum() for g in want), (a, b)))
    with pytest.raises(ValueError, match="a: expected 1 dims"):
        module.op(a.reshape(1, 5), b)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_exports_and_matches_in_value_and_both_derivatives(tmp_path, name):
    from graphconv.compiler.examples import example_inputs

    spec = graphconv.load(ROOT / "specs" / name)
    module = import_path(export(tmp_path, ROOT / "specs" / name, "--name", "op"))
    compiled = graphconv.compile(spec)
    attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.attrs.items()}
    inputs = [t.requires_grad_(t.is_floating_point()) for t in example_inputs(spec, {**spec.example_dims, **attrs},
                                                                              torch.Generator().manual_seed(0))]
    floating = [t for t in inputs if t.is_floating_point()]  # int and bool inputs (targets, masks) have no gradient

    def derivatives(op):
        outputs = op(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        grads = torch.autograd.grad([o.pow(2).sum() for o in outputs], floating, create_graph=True)
        second = torch.autograd.grad(sum(g.sum() for g in grads), floating, allow_unused=True)
        return outputs, grads, [s if s is not None else torch.zeros_like(t) for s, t in zip(second, floating)]

    for got, want in zip(derivatives(module.op), derivatives(compiled)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("title", ["forward", "backward", "forward_nograd", 'say """hi"""', "torch", "_gc_run"])
def test_titles_and_names_that_the_module_itself_uses(tmp_path, title):
    """Inputs named ctx, forward and like their own dim, a dim named isinstance, an attr named torch: the module
    keeps them apart from its own names (everything it defines starts with _gc_, values v_, dims d_)."""
    text = f'''---
title: {title!r}
graphconv:
  inputs: {{ctx: [isinstance], forward: [forward], r1: [isinstance]}}
  attrs: {{torch: 2}}
  dims: {{A: isinstance + torch - torch}}
---
graph LR
  C(ctx) -->|a| M((mul)) --> R(r0)
  F(forward) -->|b| M
  R -->|a| S((add)) --> O(out)
  X(r1) -->|b| S
  O --> P(("reshape(A)")) --> Q(q)
'''
    path = tmp_path / "spec.mmd"
    path.write_text(text)
    module = import_path(export(tmp_path, path, "--name", "op"))
    x, y, z = (torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    got = module.op(x, y, z, torch=5)
    torch.testing.assert_close(got, x * y + z)
    grads = torch.autograd.grad(got.sum(), (x, y, z))
    torch.testing.assert_close(grads, (y, x, torch.ones_like(z)))
