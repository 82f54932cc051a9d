"""The seed's conv2d diagram, compiled, matches torch.nn.functional.conv2d in value and both gradients."""
import re

import pytest
import torch
import torch.nn.functional as F

import graphconv
from conftest import SEED, SPECS

CONFIGS = [
    # batch, in_ch, out_ch, (h, w), (kh, kw), stride, padding
    (1, 1, 1, (5, 5), (1, 1), 1, 0),
    (2, 3, 4, (8, 8), (3, 3), 1, 1),
    (3, 2, 5, (7, 9), (3, 3), 2, 1),
    (4, 8, 2, (6, 6), (5, 5), 1, 2),
    (5, 4, 3, (9, 6), (3, 2), 3, 0),
    (1, 6, 8, (10, 7), (2, 4), 2, 2),
    (2, 1, 3, (4, 11), (1, 3), 3, 1),
    (3, 5, 1, (12, 12), (5, 5), 3, 2),
    (2, 7, 6, (5, 8), (4, 1), 1, 0),
    (4, 3, 3, (8, 8), (3, 3), 2, 0),
    (1, 2, 2, (3, 3), (3, 3), 1, 2),
]


@pytest.fixture(scope="module", params=["conv2d.mmd", "conv2d.yaml"])
def conv2d(request):
    return graphconv.compile(SPECS / request.param)


def _random_case(batch, cin, cout, size, kernel, dtype=torch.float64):
    x = torch.randn(batch, cin, *size, dtype=dtype, requires_grad=True)
    w = torch.randn(cout, cin, *kernel, dtype=dtype, requires_grad=True)
    return x, w


@pytest.mark.parametrize("batch, cin, cout, size, kernel, stride, padding", CONFIGS)
def test_matches_torch_in_value_and_gradients(conv2d, batch, cin, cout, size, kernel, stride, padding):
    torch.manual_seed(batch * 100 + cin * 10 + cout)
    x, w = _random_case(batch, cin, cout, size, kernel)
    y = conv2d(x, w, stride=stride, padding=padding)
    expected = F.conv2d(x, w, stride=stride, padding=padding)
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(y, (x, w), grad)
    want = torch.autograd.grad(expected, (x, w), grad)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0), (3, 2)])
def test_gradcheck_float64(conv2d, stride, padding):
    torch.manual_seed(0)
    x, w = _random_case(2, 2, 3, (6, 5), (3, 2))
    assert torch.autograd.gradcheck(lambda a, b: conv2d(a, b, stride=stride, padding=padding), (x, w))


def test_seed_script_reproduced(conv2d):
    """The seed notebook's own check: seed 42, 4×3×8×8 input, 3×3×3×3 kernel, stride 1, padding 1."""
    torch.manual_seed(42)
    input_batch = torch.randn(4, 3, 8, 8).requires_grad_(True)
    kernel = torch.randn(3, 3, 3, 3).requires_grad_(True)
    output = conv2d(input_batch, kernel, stride=1, padding=1)
    reference = F.conv2d(input=input_batch, weight=kernel, stride=1, padding=1)
    torch.testing.assert_close(output, reference)
    grad_output = torch.randn_like(output)
    reference.backward(grad_output)
    expected_input_grad, expected_kernel_grad = input_batch.grad.clone(), kernel.grad.clone()
    input_batch.grad = kernel.grad = None
    output.backward(grad_output)
    torch.testing.assert_close(kernel.grad, expected_kernel_grad)
    torch.testing.assert_close(input_batch.grad, expected_input_grad)


def test_default_attrs_come_from_the_spec(conv2d):
    x, w = _random_case(1, 2, 2, (5, 5), (3, 3))
    torch.testing.assert_close(conv2d(x, w), F.conv2d(x, w, stride=1, padding=1))


def test_only_requested_gradients_are_computed(conv2d):
    x, w = _random_case(2, 3, 4, (6, 6), (3, 3))
    x.requires_grad_(False)
    y = conv2d(x, w)
    (grad_w,) = torch.autograd.grad(y.sum(), (w,))
    torch.testing.assert_close(grad_w, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), (w,))[0])
    assert x.grad is None


def test_no_grad_call_returns_a_plain_tensor(conv2d):
    x, w = _random_case(2, 3, 4, (6, 6), (3, 3))
    with torch.no_grad():
        y = conv2d(x, w)
    assert y.grad_fn is None
    torch.testing.assert_close(y, F.conv2d(x.detach(), w.detach(), padding=1))


def test_float32_and_the_output_is_the_only_result(conv2d):
    x, w = _random_case(2, 3, 4, (6, 6), (3, 3), dtype=torch.float32)
    y = conv2d(x, w)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not SEED.exists(), reason="the seed lives in ../shared/seed beside the checkout (as in CI)")
def test_the_spec_body_is_the_seed_diagram_verbatim():
    seed = SEED.read_text()
    body = seed[seed.index("graph LR"):]
    body = body[: body.index("  end\n", body.index("subgraph output")) + len("  end\n")]
    spec = (SPECS / "conv2d.mmd").read_text()
    assert spec.endswith(body)
    assert re.match(r"---\n.*?\n---\n", spec, re.S), "front matter first"


def test_mermaid_and_yaml_specs_build_the_same_graph():
    mmd, yml = graphconv.load(SPECS / "conv2d.mmd"), graphconv.load(SPECS / "conv2d.yaml")

    def shape_of(spec):
        ops = [(o.id, o.op.name, {k: str(v) for k, v in o.args.items()},
                tuple(spec.tensor(t).name for t in o.inputs), tuple(spec.tensor(t).name for t in o.outputs))
               for o in spec.ops()]
        return ops, spec.input_names, spec.output_names

    assert shape_of(mmd)[1:] == shape_of(yml)[1:]
    strip = lambda ops: [(i, n, {k: re.sub(r"line=\d+, column=\d+", "", v) for k, v in a.items()}, ins, outs)
                         for i, n, a, ins, outs in ops]
    assert strip(shape_of(mmd)[0]) == strip(shape_of(yml)[0])
    torch.manual_seed(1)
    x, w = _random_case(2, 3, 4, (7, 6), (3, 3))
    torch.testing.assert_close(graphconv.compile(mmd)(x, w, stride=2), graphconv.compile(yml)(x, w, stride=2))


def test_loaded_graph_is_networkx_in_topological_order():
    import networkx as nx

    spec = graphconv.load(SPECS / "conv2d.mmd")
    assert isinstance(spec.graph, nx.DiGraph) and nx.is_directed_acyclic_graph(spec.graph)
    assert spec.order == ["L", "M", "N", "O", "T", "P", "Q", "R", "S"]
    assert spec.input_names == ["input_batch", "kernel"] and spec.output_names == ["output"]
    assert spec.op("P").op.name == "matmul"
    assert [spec.tensor(t).name for t in spec.op("P").inputs] == ["U_reshaped", "kernel_permuted"]
    assert spec.graph.nodes["L"]["kind"] == "op" and spec.graph.nodes["A"]["kind"] == "tensor"
