"""Authoring real ops (issue 15): any-rank patterns, typed inputs, float values beside integer dims, composite
references, shipped specs used by name, ``graphconv new`` — and a transformer block and a CNN block drawn from
primitives that match torch in value and every gradient."""
import textwrap

import pytest
import torch
import torch.nn.functional as F

import graphconv
from conftest import ROOT, SPECS
from graphconv.check.verify import check_spec
from graphconv.cli import main
from graphconv.compiler.binding import Binder
from graphconv.errors import CallError, ShapeError, SpecError
from graphconv.ops.random import keep_mask

EXAMPLES = ROOT / "examples"


def spec_text(front: str, graph: str) -> str:
    return f"---\ngraphconv:\n{textwrap.indent(textwrap.dedent(front).strip(), '  ')}\n---\ngraph LR\n" + \
        textwrap.indent(textwrap.dedent(graph).strip(), "  ") + "\n"


def grads(outputs, inputs, seed=0):
    """Every input's gradient under one random output gradient per output."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    generator = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outputs]
    return torch.autograd.grad(outputs, inputs, upstream, allow_unused=True)


def leaves(*tensors):
    return [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]


# --- 1. patterns of any rank ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [(), (4,), (2, 3), (2, 1, 3)])
def test_linear_takes_any_number_of_leading_dims_like_torch(lead):
    linear = graphconv.compile(SPECS / "linear.mmd")
    x, w, b = leaves(torch.randn(*lead, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64),
                     torch.randn(3, dtype=torch.float64))
    ours, theirs = linear(x, w, b), F.linear(x, w, b)
    torch.testing.assert_close(ours, theirs)
    for g, h in zip(grads(ours, [x, w, b]), grads(theirs, [x, w, b])):
        torch.testing.assert_close(g, h)


@pytest.mark.parametrize("lead", [(), (3,), (2, 2)])
def test_layer_norm_and_attention_are_batched_and_unbatched(lead):
    norm = graphconv.compile(SPECS / "layer_norm.mmd")
    x, w, b = torch.randn(*lead, 4, 6), torch.randn(6), torch.randn(6)
    torch.testing.assert_close(norm(x, w, b), F.layer_norm(x, (6,), w, b), atol=1e-6, rtol=1e-5)
    attention = graphconv.compile(SPECS / "scaled_dot_product_attention.mmd")
    q, k, v = torch.randn(*lead, 3, 4), torch.randn(*lead, 5, 4), torch.randn(*lead, 5, 2)
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)


GROUPED = spec_text("""
    inputs:
      x: [...batch, n]
      y: [...batch, m]
    shapes:
      flat: [prod(batch), n]
      back: [...batch, n]
    ops:
      flatten_batch: reshape(prod(batch), n)
      restore: reshape(...batch, n)
    example: {batch: [2, 3], n: 4, m: 1}
""", """
    X(x) --> F((flatten_batch)) --> FL(flat)
    FL --> R((restore)) --> B(back)
    B -->|a| A((add))
    Y(y) -->|b| A
    A --> O(out)
""")


def test_a_group_of_dims_splices_into_shapes_and_reshape_arguments():
    op = graphconv.compile(graphconv.loads(GROUPED))
    x, y = torch.randn(2, 3, 4), torch.randn(2, 3, 1)
    torch.testing.assert_close(op(x, y), x + y)
    torch.testing.assert_close(op(x[0, 0], y[0, 0]), x[0, 0] + y[0, 0])  # an empty group


def test_a_group_must_agree_between_inputs_and_have_room():
    binder = Binder(graphconv.loads(GROUPED))
    with pytest.raises(ShapeError) as caught:
        binder.bind([(2, 3, 4), (2, 5, 1)], {})
    assert "y: ...batch is (2, 5) but x says (2, 3)" in caught.value.message
    with pytest.raises(ShapeError) as caught:
        binder.bind([(), (1,)], {})
    assert "x: expected at least 1 dims [...batch, n], got shape () (0 dims)" in caught.value.message


def test_a_group_pattern_is_plain_yaml_and_one_group_per_pattern():
    import yaml

    assert yaml.safe_load("p: [...batch, in_features]") == {"p": ["...batch", "in_features"]}
    with pytest.raises(SpecError, match="one group of dims"):
        graphconv.loads(spec_text("inputs: {x: [...a, ...b]}", "X(x) --> R((relu)) --> Y(y)"))


def test_run_takes_a_group_of_dims(capsys):
    assert main(["run", str(SPECS / "linear.mmd"), "--dims", "batch=(2,3,4)"]) == 0
    assert "(2, 3, 4, 5)" in capsys.readouterr().out
    assert main(["run", str(SPECS / "linear.mmd"), "--dims", "batch=(2,-1)"]) == 2


# --- 2. typed inputs --------------------------------------------------------------------------------------------


def test_integer_targets_are_declared_made_from_their_range_and_guarded(capsys):
    spec = graphconv.load(SPECS / "cross_entropy.mmd")
    assert spec.meta.input_types["target"].dtype == "int"
    loss = graphconv.compile(spec)
    x, target = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2, 0])
    torch.testing.assert_close(loss(x, target, label_smoothing=0.2), F.cross_entropy(x, target, label_smoothing=0.2))
    with pytest.raises(CallError, match="input 'target' is float64 but the spec declares it int"):
        loss(x, target.double())
    assert main(["run", str(SPECS / "cross_entropy.mmd"), "--device", "meta"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("target ")]
    assert "int64" in row.split()


def test_a_bool_input_masks_and_a_float_input_may_have_a_range():
    spec = graphconv.loads(spec_text("""
        inputs:
          x: {shape: [n], range: [2, 3]}
          keep: {shape: [n], dtype: bool}
        ops:
          drop: masked_fill(value=0.0)
        example: {n: 50}
    """, """
        X(x) -->|x| M((drop))
        K(keep) -->|mask| M
        M --> Y(y)
    """))
    from graphconv.compiler.examples import example_inputs

    x, keep = example_inputs(spec, {"n": 50}, torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and 0 < keep.sum() < 50
    assert 2 <= x.min() and x.max() < 3
    op = graphconv.compile(spec)
    torch.testing.assert_close(op(x, keep), x.masked_fill(keep, 0.0))
    with pytest.raises(CallError, match="declares it bool"):
        op(x, keep.long())
    with pytest.raises(SpecError, match="a bool input has no range"):
        graphconv.loads(spec_text("inputs: {m: {shape: [n], dtype: bool, range: [0, 1]}}",
                                  "M(m) --> R((logical_not)) --> Y(y)"))


# --- 3. primitives ----------------------------------------------------------------------------------------------


def test_dropout_is_reproducible_and_masks_the_gradient_where_it_masked_the_output():
    drop = graphconv.compile(SPECS / "dropout.mmd")
    x = torch.randn(40, 50, requires_grad=True)
    first, again, other = drop(x, p=0.3, seed=5), drop(x, p=0.3, seed=5), drop(x, p=0.3, seed=6)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    kept = keep_mask(x.shape, x.dtype, x.device, 0.3, 5)
    torch.testing.assert_close(first, x * kept / 0.7)
    (grad,) = torch.autograd.grad(first.sum(), x)
    torch.testing.assert_close(grad, kept / 0.7)
    assert 0.25 < 1 - kept.mean() < 0.35
    torch.testing.assert_close(drop(x, p=0.0), x)


@pytest.mark.parametrize("equation, shapes", [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("i,i->", [(4,), (4,)]), ("ij->j", [(3, 4)]),
    ("...ij,jk", [(2, 3, 4), (4, 5)]), ("bhld,bhsd->bhls", [(1, 2, 3, 4), (1, 2, 5, 4)]),
])
def test_einsum_matches_torch_in_value_and_gradient(equation, shapes):
    op = graphconv.ops.REGISTRY.get("einsum")
    compiled = __import__("graphconv.check.verify", fromlist=["single_op"]).single_op(
        op, [torch.randn(s) for s in shapes], {"equation": equation})
    tensors = leaves(*(torch.randn(s, dtype=torch.float64) for s in shapes))
    ours, theirs = compiled(*tensors, equation=equation), torch.einsum(equation, *tensors)
    torch.testing.assert_close(ours, theirs)
    for g, h in zip(grads(ours, tensors), grads(theirs, tensors)):
        torch.testing.assert_close(g, h)


# --- 4. float values beside integer dims ------------------------------------------------------------------------


FLOAT_SIZE = spec_text("""
    inputs: {x: [n]}
    dims: {half: n / 2}
    ops:
      cut: reshape(2, half)
    example: {n: 6}
""", "X(x) --> C((cut)) --> Y(y)")


def test_a_float_that_sizes_something_is_a_spec_error_and_run_exits_2(tmp_path, capsys):
    path = tmp_path / "half.mmd"
    path.write_text(FLOAT_SIZE)
    assert main(["run", str(path)]) == 2
    message = capsys.readouterr().err
    assert "dims.half: n / 2 is 3.0, a float, but half is a size (used in op C (cut))" in message
    assert "use // for integer division" in message and "fine where only op arguments read it" in message


def test_a_float_value_named_under_dims_reaches_op_arguments():
    attention = graphconv.compile(SPECS / "causal_attention.mmd")
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-6, rtol=1e-5)


# --- 5. check tells the whole truth -----------------------------------------------------------------------------


def test_check_says_when_there_is_no_reference(capsys):
    assert main(["check", str(SPECS / "dropout.mmd")]) == 0
    assert "no reference" in capsys.readouterr().out


def test_a_composite_reference_with_natural_strings_passes_and_a_wrong_one_fails(tmp_path):
    front = """
        inputs: {x: [n, d], w: [m, d]}
        ops:
          t: transpose(dim0=0, dim1=1)
        example: {n: 3, d: 4, m: 2}
        reference: "{reference}"
    """
    graph = """
        W(w) --> T((t)) --> WT(wt)
        X(x) -->|a| M((matmul))
        WT -->|b| M
        M --> P(p)
        P --> R((relu)) --> Y(y)
    """
    good = graphconv.loads(spec_text(front.replace("{reference}", "relu(linear(x, w))"), graph))
    assert all(row.ok for row in check_spec(good, ops=False))
    wrong = graphconv.loads(spec_text(front.replace("{reference}", "gelu(linear(x, w), approximate='tanh')"), graph))
    assert not all(row.ok for row in check_spec(wrong, ops=False))
    with pytest.raises(SpecError, match="a string is quoted in an expression"):
        read = graphconv.loads(spec_text(front.replace("{reference}", "gelu(x, approximate=tanh)"), graph))
        check_spec(read, ops=False)
    with pytest.raises(SpecError, match="no function 'system'"):
        check_spec(graphconv.loads(spec_text(front.replace("{reference}", "system(x)"), graph)), ops=False)


def test_shapes_for_inputs_without_a_pattern_come_from_example_or_the_command_line(tmp_path, capsys):
    path = tmp_path / "free.mmd"
    path.write_text(spec_text("""
        inputs: [x]
        example: {x: [2, 3]}
        reference: torch.nn.functional.relu
    """, "X(x) --> R((relu)) --> Y(y)"))
    assert main(["check", str(path)]) == 0
    assert "all 5 checks pass" in capsys.readouterr().out  # relu gradcheck, spec gradcheck, oracle, value, grad x
    path.write_text(path.read_text().replace("  example: {x: [2, 3]}\n", ""))
    assert main(["check", str(path)]) == 1
    assert main(["check", str(path), "--shapes", "x=(4,5)"]) == 0


# --- 6. uses: the shipped library by name -------------------------------------------------------------------------


def test_a_spec_anywhere_uses_a_shipped_spec_by_name(tmp_path):
    path = tmp_path / "mine.mmd"
    path.write_text(spec_text("""
        uses: [graphconv:gelu]
        inputs: {x: [n]}
    """, "X(x) --> G((gelu)) --> Y(y)"))
    op = graphconv.compile(path)
    x = torch.randn(7)
    torch.testing.assert_close(op(x), F.gelu(x))
    path.write_text(path.read_text().replace("graphconv:gelu", "graphconv:../gelu"))
    with pytest.raises(SpecError, match="not a spec name"):
        graphconv.load(path)
    text = spec_text("uses: [graphconv:gelu]\ninputs: {x: [n]}", "X(x) --> G((gelu)) --> Y(y)")
    assert graphconv.loads(text).input_names == ["x"]  # the library needs no folder


# --- 7. graphconv new ---------------------------------------------------------------------------------------------


def test_new_writes_a_skeleton_that_passes_check_and_renders_every_key(tmp_path, capsys):
    path = tmp_path / "my_op.mmd"
    assert main(["new", "my_op", "-o", str(path)]) == 0
    text = path.read_text()
    for key in ("uses", "inputs", "outputs", "attrs", "dims", "shapes", "ops", "example", "params", "reference"):
        assert f"# {key}:" in text or f"  {key}:" in text, key
    assert main(["check", str(path)]) == 0
    assert main(["new", "my_op", "-o", str(path)]) == 2
    assert main(["new", "1bad"]) == 2


# --- the examples: a transformer block and a CNN block ----------------------------------------------------------


def rope(z, angles):
    cos, sin = torch.cat((angles.cos(),) * 2, -1), torch.cat((angles.sin(),) * 2, -1)
    first, second = z.chunk(2, -1)
    return z * cos + torch.cat((-second, first), -1) * sin


def torch_transformer_block(x, angles, norm1, wq, wk, wv, wo, norm2, w_gate, w_up, w_down, heads=2, eps=1e-6):
    b, t, d = x.shape

    def split(z):
        return z.reshape(b, t, heads, d // heads).transpose(1, 2)

    h = F.rms_norm(x, (d,), norm1, eps)
    q, k, v = split(h @ wq.T), split(h @ wk.T), split(h @ wv.T)
    attended = F.scaled_dot_product_attention(rope(q, angles), rope(k, angles), v, is_causal=True)
    residual = x + attended.transpose(1, 2).reshape(b, t, d) @ wo.T
    h2 = F.rms_norm(residual, (d,), norm2, eps)
    return residual + F.linear(F.silu(F.linear(h2, w_gate)) * F.linear(h2, w_up), w_down)


def test_the_transformer_block_matches_torch_in_value_and_every_gradient():
    block = graphconv.compile(EXAMPLES / "transformer_block.mmd")
    b, t, d, hidden = 2, 5, 8, 12
    shapes = [(b, t, d), (t, d // 4), (d,), (d, d), (d, d), (d, d), (d, d), (d,), (hidden, d), (hidden, d),
              (d, hidden)]
    generator = torch.Generator().manual_seed(0)
    inputs = leaves(*(torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes))
    ours, theirs = block(*inputs), torch_transformer_block(*inputs)
    torch.testing.assert_close(ours, theirs)
    for name, g, h in zip(graphconv.load(EXAMPLES / "transformer_block.mmd").input_names, grads(ours, inputs),
                          grads(theirs, inputs)):
        torch.testing.assert_close(g, h, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("training", [True, False])
def test_the_cnn_block_matches_torch_in_value_every_gradient_and_running_statistics(training):
    block = graphconv.compile(EXAMPLES / "cnn_block.mmd")
    generator = torch.Generator().manual_seed(1)
    x, w, b = (torch.randn(s, generator=generator, dtype=torch.float64) for s in [(2, 3, 6, 6), (4, 3, 3, 3), (4,)])
    mean, var = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    gamma, beta = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    x, w, b, gamma, beta = leaves(x, w, b, gamma, beta)
    output, new_mean, new_var = block(x, w, b, mean, var, gamma, beta, training=training)
    running_mean, running_var = mean.clone(), var.clone()
    normed = F.batch_norm(F.conv2d(x, w, b, padding=1), running_mean, running_var, gamma, beta, training=training,
                          momentum=0.1, eps=1e-5)
    expected = F.max_pool2d(F.relu(normed), 2)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(new_mean, running_mean)
    torch.testing.assert_close(new_var, running_var)
    for g, h in zip(grads(output, [x, w, b, gamma, beta]), grads(expected, [x, w, b, gamma, beta])):
        torch.testing.assert_close(g, h)


def test_the_readme_walkthrough_shows_the_shipped_example():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## From a skeleton to a model\n", 1)[1].split("\n## ", 1)[0]
    [shown] = __import__("re").findall(r"```mermaid\n(.*?)```", section, __import__("re").S)
    assert shown == (EXAMPLES / "gelu_mlp.mmd").read_text()


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.mmd")) + sorted(EXAMPLES.glob("*.mmd")), ids=lambda p: p.name)
def test_every_spec_traces_forward_and_backward_on_the_meta_device(path, capsys):
    assert main(["run", str(path), "--backward"]) == 0
