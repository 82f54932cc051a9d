"""The transformer passes — attention, matmul_bias, layer_norm, rms_norm, gelu, silu — fire on the shipped specs
and only where the chain is exactly their math; the fused ops equal torch's functions and the unoptimized chain in
value and gradient across shapes, layouts and dtypes, the lowered (kernel) paths equal the math paths, and second
derivatives, vmap, jacrev and torch.compile(fullgraph=True) go through them."""
from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import SPECS

import graphconv
from graphconv.compiler import passes
from graphconv.compiler.passes import attention as attention_pass
from graphconv.compiler.passes import layer_norm as layer_norm_pass
from graphconv.compiler.passes import matmul_bias as matmul_bias_pass
from graphconv.ops import activation, attention, dense, normalization

F64 = torch.float64


def load(text: str):
    return graphconv.loads(textwrap.dedent(text).lstrip("\n"))


def fused(spec) -> list[str]:
    return [node.op.name for node in passes.optimize(spec)[0].ops()]


def rand(*shape, dtype=F64, generator=None):
    return torch.randn(shape, dtype=dtype, generator=generator).requires_grad_()


def assert_same_values_and_grads(got_fn, want_fn, inputs, **tolerance) -> None:
    got, want = got_fn(*inputs), want_fn(*inputs)
    torch.testing.assert_close(got, want, **tolerance)
    grad = torch.randn_like(want)
    wanted = [t for t in inputs if t.requires_grad]
    for a, b in zip(torch.autograd.grad(got, wanted, grad), torch.autograd.grad(want, wanted, grad)):
        torch.testing.assert_close(a, b, **tolerance)


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values, laid out with the last two dims swapped in memory."""
    return t.detach().mT.contiguous().mT.requires_grad_()


# --- attention -------------------------------------------------------------------------------------------------

SDPA, CAUSAL = SPECS / "scaled_dot_product_attention.mmd", SPECS / "causal_attention.mmd"

ATTENTION_SHAPES = [  # (query, key, value)
    ((2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 4)),  # heads; l < s
    ((3, 6, 4), (3, 2, 4), (3, 2, 4)),  # l > s
    ((5, 8), (5, 8), (5, 8)),  # no batch dims
    ((1, 1, 1), (1, 1, 1), (1, 1, 1)),
    ((2, 4, 3), (2, 6, 3), (2, 6, 5)),  # values wider than the keys: the math path
    ((0, 3, 4), (0, 3, 4), (0, 3, 4)),  # empty batch
]


def test_the_attention_pass_fuses_both_shipped_attention_specs():
    for path in (SDPA, CAUSAL):
        assert fused(graphconv.load(path)) == ["transpose", "attention"]
    op = graphconv.compile(CAUSAL)
    [report] = [r for r in op.reports if r.name == attention_pass.NAME]
    assert report.changes == ["QK (matmul) → SC (scale_scores) → O (ones) → TRI (tril) → Z (is_zero) → M (block) → "
                              "A (attend) → WV (matmul) → QK+SC+O+TRI+Z+M+A+WV (attention): causal attention lowered "
                              "to torch's fused CPU kernel; backward keeps the output and its log-sum-exp "
                              "(output_lse), not the weights"]
    assert op.program.plan.saved == tuple(sorted(op.program.slot[t] for t in ("Q", "KT", "V", "Y", "output_lse")))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shapes", ATTENTION_SHAPES, ids=str)
@pytest.mark.parametrize("save", ["all", "minimal"])
def test_attention_matches_torch_and_the_unfused_chain(causal, shapes, save):
    path = CAUSAL if causal else SDPA
    op, plain = graphconv.compile(path, save=save), graphconv.compile(path, optimize=False)
    generator = torch.Generator().manual_seed(0)
    inputs = [rand(*shape, generator=generator) for shape in shapes]
    assert_same_values_and_grads(op, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                 inputs)
    assert_same_values_and_grads(op, plain, inputs)


def test_attention_with_a_scale_noncontiguous_inputs_and_float32():
    op = graphconv.compile(SDPA)
    generator = torch.Generator().manual_seed(1)
    q, k, v = (noncontiguous(rand(2, 3, 6, 4, generator=generator)) for _ in range(3))
    assert_same_values_and_grads(lambda *t: op(*t, scale=0.3),
                                 lambda *t: F.scaled_dot_product_attention(*t, scale=0.3), [q, k, v])
    single = [rand(2, 5, 8, dtype=torch.float32, generator=generator) for _ in range(3)]
    assert_same_values_and_grads(op, F.scaled_dot_product_attention, single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shapes", [((2, 3, 5, 4), (2, 3, 4, 7), (2, 3, 7, 4)), ((6, 3), (3, 2), (2, 3))], ids=str)
def test_the_attention_kernel_path_equals_the_math_path(causal, shapes):
    generator = torch.Generator().manual_seed(2)
    query, key_t, value = (torch.randn(*s, dtype=F64, generator=generator) for s in shapes)
    assert attention._kernel_takes(query, key_t, value)
    out, lse = attention._kernel_forward(query, key_t, value, 0.6, causal)
    want_out, want_lse = attention._math_forward(query, key_t, value, 0.6, causal)
    torch.testing.assert_close((out, lse), (want_out, want_lse))
    grad = torch.randn(want_out.mT.shape, dtype=F64, generator=generator).mT  # a non-contiguous gradient
    torch.testing.assert_close(attention._kernel_vjp(grad, query, key_t, value, out, lse, 0.6, causal),
                               attention._math_vjp(grad, None, query, key_t, value, 0.6, causal))


def test_attention_goes_through_second_derivatives_vmap_and_jacrev():
    op = graphconv.compile(CAUSAL)
    generator = torch.Generator().manual_seed(3)
    inputs = [rand(2, 4, 3, generator=generator) for _ in range(3)]
    assert torch.autograd.gradgradcheck(lambda *t: op(*t), inputs)

    def causal(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    q, k, v = (t.detach() for t in inputs)
    torch.testing.assert_close(torch.func.vmap(op)(q, k, v), torch.func.vmap(causal)(q, k, v))
    torch.testing.assert_close(torch.func.jacrev(op, argnums=(0, 1))(q, k, v),
                               torch.func.jacrev(causal, argnums=(0, 1))(q, k, v))


@pytest.mark.parametrize("change, why", [
    ("attend: softmax(dim=-2)", "softmax over another dim"),
    ("block: masked_fill(value=-1e9)", "a finite fill"),
    ("is_zero: eq(value=1.0)", "another mask"),
    ("ones: full_like(value=0.0)", "an all-blocked mask"),
])
def test_the_attention_pass_leaves_other_math_alone(change, why):
    name, label = change.split(": ")
    text = CAUSAL.read_text()
    line = next(line for line in text.splitlines() if line.strip().startswith(f"{name}:"))
    spec = graphconv.loads(text.replace(line, f"    {name}: {label}"))
    assert "attention" not in fused(spec), why


def test_the_attention_pass_leaves_scores_that_another_op_reads():
    also_read = "  WV --> O(output)\n  S --> AB((abs)) --> ABS(absolute)"
    spec = graphconv.loads(SDPA.read_text().replace("  WV --> O(output)", also_read))
    assert "attention" not in fused(spec)


# --- matmul + bias ---------------------------------------------------------------------------------------------

LINEAR = SPECS / "linear.mmd"


def test_the_matmul_bias_pass_fuses_the_linear_spec():
    op = graphconv.compile(LINEAR)
    assert [s.op.name for s in op.program.steps] == ["transpose", "matmul_bias"]
    [report] = [r for r in op.reports if r.name == matmul_bias_pass.NAME]
    assert report.changes == ["M (matmul) → A (add) → M+A (matmul_bias): one torch.addmm, no product beside the "
                              "output"]


@pytest.mark.parametrize("batch", [(), (4,), (2, 3), (7, 1, 2), (0,)], ids=str)
@pytest.mark.parametrize("save", ["all", "minimal"])
def test_matmul_bias_matches_linear_and_the_unfused_chain(batch, save):
    op, plain = graphconv.compile(LINEAR, save=save), graphconv.compile(LINEAR, optimize=False)
    generator = torch.Generator().manual_seed(4)
    inputs = [rand(*batch, 5, generator=generator), rand(3, 5, generator=generator), rand(3, generator=generator)]
    assert_same_values_and_grads(op, F.linear, inputs)
    assert_same_values_and_grads(op, plain, inputs)


def test_matmul_bias_with_noncontiguous_operands_and_float32():
    op = graphconv.compile(LINEAR)
    generator = torch.Generator().manual_seed(5)
    x, w = noncontiguous(rand(6, 4, generator=generator)), noncontiguous(rand(3, 4, generator=generator))
    assert_same_values_and_grads(op, F.linear, [x, w, rand(3, generator=generator)])
    single = [rand(2, 6, 4, dtype=torch.float32), rand(3, 4, dtype=torch.float32), rand(3, dtype=torch.float32)]
    assert_same_values_and_grads(op, F.linear, single, rtol=1e-5, atol=1e-5)


def test_the_weight_gradient_is_laid_out_like_the_weight():
    """The weight is transposed in the spec: its gradient comes back contiguous, as torch's does."""
    op = graphconv.compile(LINEAR)
    x, w, b = rand(8, 5), rand(3, 5), rand(3)
    op(x, w, b).sum().backward()
    assert w.grad.is_contiguous()


def test_matmul_bias_literal_path_broadcasts():
    generator = torch.Generator().manual_seed(6)
    x, w, b = rand(2, 3, 4, generator=generator), rand(2, 4, 5, generator=generator), rand(3, 1, generator=generator)
    assert not dense._rows_layout(x.shape, w.shape, b.shape)
    assert_same_values_and_grads(lambda *t: graphconv.compile(load(BARE_MATMUL_BIAS))(*t),
                                 lambda x, w, b: x @ w + b, [x, w, b])


BARE_MATMUL_BIAS = """\
    ---
    graphconv:
      inputs: {x: [...a], w: [...c], b: [...d]}
    ---
    graph LR
      X(x) --> M((matmul_bias))
      W(w) --> M
      B(b) --> M
      M --> Y(y)
    """


DENSE = """\
    ---
    graphconv:
      inputs: {{x: [...batch, i], w: {w}, b: {b}}}
      ops: {{t: "transpose(dim0=-2, dim1=-1)"}}
    ---
    graph LR
      W(w) --> T((t)) --> WT(w_t)
      X(x) -->|a| M((matmul))
      WT -->|b| M
      M --> P(p)
      P --> A((add))
      B(b) --> A
      A --> Y(y)
    """


@pytest.mark.parametrize("w, b, fires", [
    ("[o, i]", "[o]", True),
    ("[...w, o, i]", "[o]", False),  # a weight of unknown rank
    ("[o, i]", "[...c, o]", False),  # a bias of unknown rank
    ("[o, i]", "[o, o]", False),  # a matrix bias
])
def test_the_matmul_bias_pass_needs_a_matrix_and_a_vector(w, b, fires):
    assert ("matmul_bias" in fused(load(DENSE.format(w=w, b=b)))) == fires


# --- layer norm --------------------------------------------------------------------------------------------------

LAYER_NORM = SPECS / "layer_norm.mmd"

NO_AFFINE = """\
    ---
    graphconv:
      inputs: {x: [...batch, d]}
      attrs: {eps: 1.0e-5}
      ops: {mean_d: "mean(dim=-1, keepdim=True)", square: "pow(exponent=2)", plus_eps: "add_scalar(value=eps)"}
    ---
    graph LR
      X(x) --> M1((mean_d)) --> MU(mu)
      X -->|a| SUB((sub))
      MU -->|b| SUB
      SUB --> C(centered)
      C --> SQ((square)) --> C2(squared)
      C2 --> M2((mean_d)) --> V(variance)
      V --> E((plus_eps)) --> VE(variance_eps)
      VE --> R((sqrt)) --> SD(std)
      C -->|a| DIV((div))
      SD -->|b| DIV
      DIV --> N(normalized)
    """


def test_the_layer_norm_pass_fuses_the_shipped_spec():
    op = graphconv.compile(LAYER_NORM)
    assert [s.op.name for s in op.program.steps] == ["fused_layer_norm"]
    assert [op.program.names[s] for s in op.program.steps[0].outputs] == ["output", "mu", "output_rstd"]
    [report] = [r for r in op.reports if r.name == layer_norm_pass.NAME]
    assert report.changes[0].endswith("→ ADD (add) → M1+SUB+SQ+M2+E+R+DIV+MUL+ADD (fused_layer_norm): "
                                      "torch.native_layer_norm and its backward; outputs mu (row means) and "
                                      "output_rstd (1 / std) for the VJP")


@pytest.mark.parametrize("batch", [(), (4,), (2, 3), (0,)], ids=str)
@pytest.mark.parametrize("width", [1, 7])
@pytest.mark.parametrize("save", ["all", "minimal"])
def test_layer_norm_matches_torch_and_the_unfused_chain(batch, width, save):
    op, plain = graphconv.compile(LAYER_NORM, save=save), graphconv.compile(LAYER_NORM, optimize=False)
    generator = torch.Generator().manual_seed(7)
    inputs = [rand(*batch, width, generator=generator), rand(width, generator=generator),
              rand(width, generator=generator)]
    assert_same_values_and_grads(lambda *t: op(*t, eps=0.1), lambda x, w, b: F.layer_norm(x, (width,), w, b, 0.1),
                                 inputs)
    assert_same_values_and_grads(lambda *t: op(*t, eps=0.1), lambda *t: plain(*t, eps=0.1), inputs)


def test_layer_norm_without_weight_and_bias_noncontiguous_and_float32():
    spec = load(NO_AFFINE)
    assert fused(spec) == ["fused_layer_norm"]
    op = graphconv.compile(spec)
    x = noncontiguous(rand(3, 6, 5))
    assert_same_values_and_grads(op, lambda x: F.layer_norm(x, (5,)), [x])
    single = rand(4, 9, dtype=torch.float32)
    assert_same_values_and_grads(op, lambda x: F.layer_norm(x, (9,)), [single], rtol=1e-5, atol=1e-5)


def test_layer_norm_with_a_weight_that_broadcasts_takes_the_math():
    spec = graphconv.loads(LAYER_NORM.read_text().replace("    weight: [d]", "    weight: [w]"))
    op, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    assert [s.op.name for s in op.program.steps] == ["fused_layer_norm"]
    inputs = [rand(3, 4), rand(1), rand(4)]
    assert not normalization._native_takes(*(t.shape for t in inputs))
    assert_same_values_and_grads(op, plain, inputs)


@pytest.mark.parametrize("old, new, why", [
    ("square: pow(exponent=2)", "square: pow(exponent=3)", "not a variance"),
    ("mean_d: mean(dim=-1, keepdim=True)", "mean_d: mean(dim=0, keepdim=True)", "another dim"),
    ("  X -->|a| SUB((sub))", "  X --> X2((exp)) --> XE(xe)\n  XE -->|a| SUB((sub))", "centres another tensor"),
    ("  C -->|a| DIV((div))", "  C --> CN((neg)) --> NC(negated)\n  NC -->|a| DIV((div))", "divides another tensor"),
])
def test_the_layer_norm_pass_leaves_other_math_alone(old, new, why):
    text = LAYER_NORM.read_text()
    assert old in text
    assert "fused_layer_norm" not in fused(graphconv.loads(text.replace(old, new))), why


def test_layer_norm_goes_through_second_derivatives_vmap_and_jacrev():
    op = graphconv.compile(LAYER_NORM)
    generator = torch.Generator().manual_seed(8)
    x, w, b = (rand(*s, generator=generator) for s in ((3, 5), (5,), (5,)))
    assert torch.autograd.gradgradcheck(lambda *t: op(*t), (x, w, b))

    def torch_layer_norm(x):
        return F.layer_norm(x, (5,), w.detach(), b.detach())

    mine = lambda x: op(x, w.detach(), b.detach())  # noqa: E731
    torch.testing.assert_close(torch.func.vmap(mine)(x.detach()), torch.func.vmap(torch_layer_norm)(x.detach()))
    torch.testing.assert_close(torch.func.jacrev(mine)(x.detach()), torch.func.jacrev(torch_layer_norm)(x.detach()))


# --- torch.compile ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path, reference, shapes", [
    (SDPA, F.scaled_dot_product_attention, ((2, 3, 5, 4),) * 3),
    (CAUSAL, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), ((2, 5, 4),) * 3),
    (LINEAR, F.linear, ((2, 3, 5), (4, 5), (4,))),
    (LAYER_NORM, lambda x, w, b: F.layer_norm(x, (5,), w, b), ((2, 3, 5), (5,), (5,))),
    (SPECS / "gelu.mmd", F.gelu, ((2, 3, 5),)),
    (SPECS / "rms_norm.mmd", lambda x, w: F.rms_norm(x, (5,), w, 1e-6), ((2, 3, 5), (5,))),
], ids=lambda v: v.stem if hasattr(v, "stem") else "")
def test_the_fused_ops_compile_whole(path, reference, shapes):
    torch._dynamo.reset()
    op = graphconv.compile(path)
    inputs = [rand(*s, dtype=torch.float32) for s in shapes]
    compiled = torch.compile(lambda *t: op(*t), fullgraph=True, backend="aot_eager")
    assert_same_values_and_grads(compiled, reference, inputs, rtol=1e-5, atol=1e-5)


# --- GELU ---------------------------------------------------------------------------------------------------------

GELU = SPECS / "gelu.mmd"


def test_the_gelu_pass_fuses_the_shipped_spec():
    op = graphconv.compile(GELU)
    assert [s.op.name for s in op.program.steps] == ["erf_gelu"]
    assert activation.is_gelu(*(op.program.arguments({"inv_sqrt2": 1 / 2**0.5})[0][k]
                                for k in ("scale", "shift", "half")))


@pytest.mark.parametrize("shape", [(), (5,), (3, 4, 2), (0, 3)], ids=str)
@pytest.mark.parametrize("save", ["all", "minimal"])
def test_erf_gelu_matches_torch_and_the_unfused_chain(shape, save):
    op, plain = graphconv.compile(GELU, save=save), graphconv.compile(GELU, optimize=False)
    x = rand(*shape, generator=torch.Generator().manual_seed(9))
    assert_same_values_and_grads(op, F.gelu, [x])
    assert_same_values_and_grads(op, plain, [x])
    assert_same_values_and_grads(op, F.gelu, [noncontiguous(rand(3, 5))])


def test_erf_gelu_with_other_constants_takes_the_math():
    text = GELU.read_text().replace("halve: mul_scalar(value=0.5)", "halve: mul_scalar(value=0.25)")
    spec = graphconv.loads(text)
    op, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    assert [s.op.name for s in op.program.steps] == ["erf_gelu"]
    assert_same_values_and_grads(op, plain, [rand(4, 3)])
    assert_same_values_and_grads(op, lambda x: F.gelu(x) / 2, [rand(4, 3)])


def test_the_gelu_pass_needs_the_same_tensor_on_both_sides():
    text = GELU.read_text().replace("  X -->|a| M((mul))", "  X --> NX((neg)) --> XN(negated)\n  XN -->|a| M((mul))")
    assert "erf_gelu" not in fused(graphconv.loads(text))


def test_erf_gelu_goes_through_second_derivatives_and_vmap():
    op = graphconv.compile(GELU)
    x = rand(3, 4, generator=torch.Generator().manual_seed(10))
    assert torch.autograd.gradgradcheck(lambda t: op(t), (x,))
    torch.testing.assert_close(torch.func.vmap(torch.func.grad(lambda t: op(t).sum()))(x.detach()),
                               torch.func.vmap(torch.func.grad(lambda t: F.gelu(t).sum()))(x.detach()))


# --- RMS norm ---------------------------------------------------------------------------------------------------

RMS_NORM = SPECS / "rms_norm.mmd"


def test_the_rms_norm_pass_fuses_the_shipped_spec():
    op = graphconv.compile(RMS_NORM)
    assert [s.op.name for s in op.program.steps] == ["fused_rms_norm"]
    assert [op.program.names[s] for s in op.program.steps[0].outputs] == ["output", "inv_rms"]


@pytest.mark.parametrize("batch", [(), (4,), (2, 3), (0,)], ids=str)
@pytest.mark.parametrize("save", ["all", "minimal"])
def test_rms_norm_matches_torch_and_the_unfused_chain(batch, save):
    op, plain = graphconv.compile(RMS_NORM, save=save), graphconv.compile(RMS_NORM, optimize=False)
    generator = torch.Generator().manual_seed(11)
    inputs = [rand(*batch, 6, generator=generator), rand(6, generator=generator)]
    assert_same_values_and_grads(lambda *t: op(*t, eps=0.1), lambda x, w: F.rms_norm(x, (6,), w, 0.1), inputs)
    assert_same_values_and_grads(lambda *t: op(*t, eps=0.1), lambda *t: plain(*t, eps=0.1), inputs)
    single = [noncontiguous(rand(3, 5, 6, dtype=torch.float32)), rand(6, dtype=torch.float32)]
    assert_same_values_and_grads(op, lambda x, w: F.rms_norm(x, (6,), w, 1e-6), single, rtol=1e-5, atol=1e-5)


def test_rms_norm_with_a_weight_that_broadcasts_and_without_one():
    spec = graphconv.loads(RMS_NORM.read_text().replace("    weight: [d]", "    weight: [w]"))
    op, plain = graphconv.compile(spec), graphconv.compile(spec, optimize=False)
    assert_same_values_and_grads(op, plain, [rand(3, 4), rand(1)])
    weighted = "  XN -->|a| S((mul))\n  W(weight) -->|b| S\n  S --> Y(output)"
    text = RMS_NORM.read_text().replace("    weight: [d]\n", "").replace(weighted, "  XN --> Y((neg)) --> O(output)")
    unweighted = graphconv.compile(graphconv.loads(text))
    assert [s.op.name for s in unweighted.program.steps] == ["fused_rms_norm", "neg"]
    assert_same_values_and_grads(unweighted, lambda x: -F.rms_norm(x, (5,), eps=1e-6), [rand(2, 5)])


def test_the_rms_norm_pass_needs_the_square_of_the_normalized_tensor():
    negated = "  X --> NX((neg)) --> XN2(negated)\n  XN2 -->|a| N((mul))"
    text = RMS_NORM.read_text().replace("  X -->|a| N((mul))", negated)
    assert "fused_rms_norm" not in fused(graphconv.loads(text))


def test_rms_norm_goes_through_second_derivatives_and_vmap():
    op = graphconv.compile(RMS_NORM)
    generator = torch.Generator().manual_seed(12)
    x, w = rand(3, 5, generator=generator), rand(5, generator=generator)
    assert torch.autograd.gradgradcheck(lambda *t: op(*t), (x, w))
    torch.testing.assert_close(torch.func.vmap(lambda t: op(t, w.detach()))(x.detach()),
                               torch.func.vmap(lambda t: F.rms_norm(t, (5,), w.detach(), 1e-6))(x.detach()))


# --- SiLU (inside SwiGLU) ------------------------------------------------------------------------------------------

SWIGLU = SPECS / "swiglu.mmd"


def swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


@pytest.mark.parametrize("batch", [(), (3,), (2, 3), (0,)], ids=str)
def test_the_silu_pass_fuses_swiglu_and_it_matches_torch(batch):
    op, plain = graphconv.compile(SWIGLU), graphconv.compile(SWIGLU, optimize=False)
    assert [s.op.name for s in op.program.steps].count("silu") == 1
    assert "sigmoid" not in [s.op.name for s in op.program.steps]
    generator = torch.Generator().manual_seed(13)
    inputs = [rand(*s, generator=generator) for s in ((*batch, 4), (6, 4), (6, 4), (5, 6))]
    assert_same_values_and_grads(op, swiglu, inputs)
    assert_same_values_and_grads(op, plain, inputs)


def test_the_silu_pass_needs_the_sigmoid_of_the_same_tensor():
    text = SWIGLU.read_text().replace("  G -->|a| SILU((mul))", "  U -->|a| SILU((mul))")
    assert "silu" not in fused(graphconv.loads(text))


def test_silu_goes_through_second_derivatives_and_vmap():
    op = graphconv.compile(SWIGLU)
    generator = torch.Generator().manual_seed(14)
    inputs = [rand(*s, generator=generator) for s in ((2, 4), (3, 4), (3, 4), (2, 3))]
    assert torch.autograd.gradgradcheck(lambda *t: op(*t), inputs)
    x, *weights = (t.detach() for t in inputs)
    torch.testing.assert_close(torch.func.vmap(lambda t: op(t, *weights))(x),
                               torch.func.vmap(lambda t: swiglu(t, *weights))(x))
