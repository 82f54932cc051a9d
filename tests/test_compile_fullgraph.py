"""torch.compile(model, fullgraph=True) of models made of graphconv layers: no graph break, training included, the
hand-written VJPs still the backward; torch.export; a dynamo-based ONNX export (optional: the ``onnx`` extra);
torch.jit.trace."""
from pathlib import Path

import pytest
import torch

import graphconv
import graphconv.nn as gnn
from graphconv.ops.registry import REGISTRY

EXAMPLES = Path(__file__).parent.parent / "examples"


def doubled_sin(x):
    return torch.sin(x)


def every_layer(torch_layers: bool = False) -> torch.nn.Module:
    """A model with every graphconv.nn layer (torch.nn's own when ``torch_layers``), strided, grouped and dilated."""
    nn = torch.nn if torch_layers else gnn
    return torch.nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, dilation=1),
        nn.Conv2d(8, 8, 1),
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1),
        torch.nn.Flatten(2),  # (b, 4, 64)
        nn.Conv1d(4, 6, 3, padding=2, dilation=2),
        nn.Linear(64, 5),
    )


def same_model_pair(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    ours = every_layer()
    theirs = every_layer(torch_layers=True)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def training_step(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    loss = model(x).square().mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.slow
def test_a_model_of_every_layer_compiles_whole_and_trains_like_torch():
    torch._dynamo.reset()
    ours, theirs = same_model_pair()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break is an error
    for _ in range(2):  # the second step reuses the compiled graph
        loss, grads = training_step(compiled, x)
        want_loss, want_grads = training_step(theirs, x)
        torch.testing.assert_close(loss, want_loss)
        for got, want in zip(grads, want_grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_compiled_backward_runs_the_hand_written_vjps():
    """The traced backward is graphconv's: an op whose VJP deliberately doubles the true gradient gives doubled
    gradients under torch.compile too (autograd of its forward would give the true ones)."""
    torch._dynamo.reset()
    if "test_compile_doubled_sin" not in REGISTRY:
        graphconv.register_op("test_compile_doubled_sin", doubled_sin, lambda ctx, grad: (2 * grad * torch.cos(ctx.x),),
                              save=("x",))
    spec = graphconv.loads("---\ngraphconv:\n  inputs: {x: [n]}\n---\ngraph LR\n"
                           "  X(x) --> S((test_compile_doubled_sin)) --> Y(y)\n")
    op = graphconv.compile(spec)
    x = torch.randn(5, requires_grad=True)
    (got,) = torch.autograd.grad(torch.compile(lambda a: op(a).sum(), fullgraph=True, backend="aot_eager")(x), x)
    torch.testing.assert_close(got, 2 * torch.cos(x))


@pytest.mark.slow
def test_a_from_spec_module_compiles_whole():
    torch._dynamo.reset()
    torch.manual_seed(1)
    block = gnn.from_spec(EXAMPLES / "squeeze_excite.mmd", channels=8, hidden=2)
    x = torch.randn(2, 8, 5, 5)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    loss, grads = training_step(compiled, x)
    want_loss, want_grads = training_step(block, x)
    torch.testing.assert_close(loss, want_loss)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.slow
def test_torch_export_of_a_model_of_every_layer():
    ours, theirs = same_model_pair(2)
    x = torch.randn(2, 3, 8, 8)
    exported = torch.export.export(ours, (x,))
    torch.testing.assert_close(exported.module()(x), theirs(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    ours, theirs = same_model_pair(3)
    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / "model.onnx"
    torch.onnx.export(ours, (x,), str(path), dynamo=True)
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), theirs(x).detach(), rtol=1e-4, atol=1e-5)


def test_jit_trace_works_or_names_the_cause():
    ours, theirs = same_model_pair(4)
    x = torch.randn(2, 3, 8, 8)
    try:
        traced = torch.jit.trace(ours, (x,), check_trace=False)
    except Exception as error:  # noqa: BLE001  (any refusal must say why)
        assert "torch.jit.trace" in str(error) and "torch.compile" in str(error)
        return
    torch.testing.assert_close(traced(x), theirs(x), rtol=1e-4, atol=1e-5)


def _aten_targets(graphs: list) -> list[str]:
    """The names of the ops in dynamo's graphs and their subgraphs (an autograd.Function's forward and backward)."""
    return [str(node.target) for graph in graphs for module in graph.modules() if hasattr(module, "graph")
            for node in module.graph.nodes if node.op == "call_function"]


@pytest.mark.parametrize("spec", ["causal_attention", "scaled_dot_product_attention"])
def test_compiled_attention_runs_torchs_fused_kernel_and_matches_it(spec):
    """While dynamo traces, the fused attention op takes torch's flash kernel forward and backward, as
    F.scaled_dot_product_attention does, not the softmax math (dynamo reads functorch's interpreter stack as never
    empty: the op asks whether a transform is active instead)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    op = graphconv.compile(Path(__file__).parent.parent / "specs" / f"{spec}.mmd")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))
    counter = CompileCounterWithBackend("aot_eager")
    y = torch.compile(lambda *a: op(*a), fullgraph=True, backend=counter)(q, k, v)
    grads = torch.autograd.grad(y, (q, k, v), torch.ones_like(y))
    targets = _aten_targets(counter.graphs)
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in targets
    assert "aten._scaled_dot_product_flash_attention_for_cpu_backward" in targets
    assert not any("softmax" in t for t in targets)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=spec.startswith("causal"))
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(grads, torch.autograd.grad(expected, (q, k, v), torch.ones_like(y)))


def test_vmap_under_compile_takes_the_math_path_and_matches_torch():
    """Under torch.compile of a vmapped function, a transform is active: the op computes the math (the kernel has no
    batching rule) and matches torch."""
    op = graphconv.compile(Path(__file__).parent.parent / "specs" / "causal_attention.mmd")
    q, k, v = (torch.randn(3, 2, 16, 8) for _ in range(3))
    got = torch.compile(torch.func.vmap(lambda *a: op(*a)), fullgraph=True, backend="aot_eager")(q, k, v)
    torch.testing.assert_close(got, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
