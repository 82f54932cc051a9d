"""Extending graphconv from Python: ``@graphconv.op`` + ``.vjp`` used in a spec, ``--ops`` / ``ops=[module]``, the
``graphconv.ops`` entry-point group (a fake installed distribution), name clashes, and VJPs that return the wrong
number or shape of gradients."""
import sys
import textwrap

import pytest
import torch

import graphconv
from conftest import write_spec
from graphconv.cli import main
from graphconv.errors import OpClashError
from graphconv.ops import REGISTRY, plugins
from graphconv.check.verify import check_op

SWISH = '''\
import graphconv
from graphconv.ops.lazy_torch import torch


@graphconv.op(save=("x",){registry})
def swish(x, *, beta=1.0):
    """x * sigmoid(beta * x)."""
    return x * torch.sigmoid(beta * x)


@swish.vjp
def _(ctx, grad):
    s = torch.sigmoid(ctx.beta * ctx.x)
    return (grad * (s + ctx.beta * ctx.x * s * (1 - s)),)


@swish.samples
def _():
    yield (torch.randn(3, 4, dtype=torch.float64),), {{"beta": 1.5}}
'''

SPEC = """\
---
graphconv:
  inputs: {x: [n, m]}
  attrs: {beta: 1.0}
  example: {n: 2, m: 3}
---
graph LR
  X(x) --> S((swish)) --> Y(y)
"""


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder on sys.path for modules and distributions; the registry, the plugin state and sys.modules are
    restored afterwards."""
    monkeypatch.setattr(REGISTRY, "_ops", dict(REGISTRY._ops))
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write_module(folder, name, text):
    (folder / f"{name}.py").write_text(textwrap.dedent(text))


def swish_reference(x, beta):
    return x * torch.sigmoid(beta * x)


def test_a_decorated_op_with_its_vjp_runs_in_a_spec_and_matches_torch(sandbox):
    write_module(sandbox, "swish_ops", SWISH.format(registry=""))
    import swish_ops

    assert REGISTRY.get("swish") is swish_ops.swish
    assert [row.ok for row in check_op(swish_ops.swish)] == [True]
    op = graphconv.compile(write_spec(sandbox, SPEC))
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = op(x, beta=0.7)
    torch.testing.assert_close(y, swish_reference(x, 0.7))
    upstream = torch.randn_like(y)
    (got,) = torch.autograd.grad(y, x, upstream)
    (want,) = torch.autograd.grad(swish_reference(x, 0.7), x, upstream)
    torch.testing.assert_close(got, want)


def test_an_unregistered_op_is_found_only_through_ops(sandbox):
    write_module(sandbox, "private_ops", SWISH.format(registry=", registry=None"))
    import private_ops

    path = write_spec(sandbox, SPEC)
    with pytest.raises(graphconv.SpecError, match="unknown op 'swish'"):
        graphconv.load(path)
    op = graphconv.compile(path, ops=[private_ops])
    x = torch.randn(2, 3)
    torch.testing.assert_close(op(x), swish_reference(x, 1.0))
    assert graphconv.compile(path, ops=[private_ops.swish])(x).shape == (2, 3)


def test_the_cli_imports_ops_modules(sandbox, capsys):
    write_module(sandbox, "cli_ops", SWISH.format(registry=", registry=None"))
    path = write_spec(sandbox, SPEC)
    assert main(["run", str(path)]) == 2
    assert main(["run", "--ops", "cli_ops", str(path)]) == 0
    assert main(["check", "--ops", "cli_ops", str(path)]) == 0
    assert main(["ops", "--ops", "cli_ops"]) == 0
    out = capsys.readouterr().out
    assert "from cli_ops:\n  swish(x, *, beta=1.0)  x * sigmoid(beta * x)." in out


def test_an_ops_module_clashing_with_a_builtin_names_both_sources(sandbox):
    write_module(sandbox, "clashing_ops", SWISH.format(registry=", registry=None").replace("def swish", "def relu")
                 .replace("@swish.", "@relu."))
    import clashing_ops

    with pytest.raises(OpClashError) as caught:
        graphconv.load(write_spec(sandbox, SPEC), ops=[clashing_ops])
    assert "op 'relu' from clashing_ops clashes with op 'relu' from graphconv.ops.nn" in str(caught.value)


# --- installed packages: the graphconv.ops entry-point group ------------------------------------------------------


def install(folder, package, entry_points):
    """A fake installed distribution: a dist-info folder on sys.path declaring ``entry_points``."""
    info = folder / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[graphconv.ops]\n{lines}")


def test_an_installed_plugin_provides_ops_to_every_spec(sandbox, capsys):
    write_module(sandbox, "acme_ops", SWISH.format(registry=""))
    install(sandbox, "acme", {"acme": "acme_ops"})
    op = graphconv.compile(write_spec(sandbox, SPEC))  # no ops= needed: the entry point brings swish
    x = torch.randn(3, 3)
    torch.testing.assert_close(op(x, beta=2.0), swish_reference(x, 2.0))
    assert main(["ops"]) == 0
    assert "from acme_ops:\n  swish(x, *, beta=1.0)" in capsys.readouterr().out


def test_a_plugin_entry_point_may_name_a_single_op(sandbox):
    write_module(sandbox, "single_ops", SWISH.format(registry=", registry=None"))
    install(sandbox, "single", {"swish": "single_ops:swish"})
    plugins.load_plugins()
    assert REGISTRY.get("swish").source == "single_ops"


def test_two_plugins_with_the_same_op_name_is_an_error_naming_both(sandbox):
    write_module(sandbox, "first_ops", SWISH.format(registry=""))
    write_module(sandbox, "second_ops", SWISH.format(registry=""))
    install(sandbox, "first", {"first": "first_ops"})
    install(sandbox, "second", {"second": "second_ops"})
    with pytest.raises(OpClashError) as caught:
        graphconv.load(write_spec(sandbox, SPEC))
    message = str(caught.value)
    assert "op 'swish' from " in message and "clashes with op 'swish' from " in message
    assert "first_ops" in message and "second_ops" in message
    assert "entry point graphconv.ops of package" in message


def test_a_plugin_that_fails_to_import_is_a_clear_error(sandbox, capsys):
    write_module(sandbox, "broken_ops", "raise RuntimeError('no GPU here')\n")
    install(sandbox, "broken", {"broken": "broken_ops"})
    assert main(["ops"]) == 2
    err = capsys.readouterr().err
    assert "plugin broken = broken_ops" in err and "RuntimeError: no GPU here" in err


# --- VJPs that return the wrong gradients ----------------------------------------------------------------------


BAD_VJPS = '''\
import graphconv
from graphconv.ops.lazy_torch import torch


@graphconv.op(registry=None)
def too_few(a, b):
    """a + b, with a VJP that forgets b."""
    return a + b


@too_few.vjp
def _(ctx, grad):
    return (grad,)


@graphconv.op(registry=None)
def wrong_shape(a, b):
    """a * b, with a VJP whose gradient for b has a's shape."""
    return a * b


@wrong_shape.vjp
def _(ctx, grad):
    return grad, grad.sum(0)
'''


@pytest.mark.parametrize("op, message", [
    ("too_few", "its VJP returned 1 gradient(s) for 2 input(s) (a, b)"),
    ("wrong_shape", "its VJP returned a gradient of shape (3,) for input 'b' of shape (2, 3)"),
])
def test_a_vjp_with_the_wrong_gradients_is_an_error_naming_the_op_and_input(sandbox, op, message):
    write_module(sandbox, "bad_vjps", BAD_VJPS)
    import bad_vjps

    path = write_spec(sandbox, f"graph LR\n  A(a) --> P(({op}))\n  B(b) --> P\n  P --> Y(y)\n")
    compiled = graphconv.compile(path, ops=[bad_vjps])
    a, b = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    with pytest.raises(graphconv.SpecError) as caught:
        compiled(a, b).sum().backward()
    assert f"while executing op P ({op})" in str(caught.value) and message in str(caught.value)
    assert caught.value.line == 2
