"""Memory planning: what backward keeps under each save= policy (counted and in bytes, against the seed's
hand-written Function), recomputation giving the same numbers, and values released as soon as they are dead."""
import importlib.util
import textwrap
import weakref

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import graphconv
from graphconv.compiler import memory
from graphconv.compiler.program import Program

ROOT = __import__("conftest").ROOT
SPECS = ROOT / "specs"


def benchmark_module(name: str):
    """A module of benchmarks/ (not a package): the seed's Conv2DFunc, the allocator-event peak measure."""
    found = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def seed_function():
    """The seed's Conv2DFunc, as kept for the benchmark (benchmarks/seed_conv2d.py)."""
    return benchmark_module("seed_conv2d").Conv2DFunc


def saved(y):
    """(storages, bytes) of what y's autograd node keeps; a storage (a tensor and its views) counts once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in y.grad_fn.saved_tensors}
    return len(storages), sum(storages.values())


def names(program, slots):
    return {program.names[s] for s in slots}


def test_the_plans_for_the_seed_spec():
    program = Program(graphconv.load(SPECS / "conv2d.mmd"))
    every = memory.plan(program, "all")
    assert names(program, every.saved) == {"U_reshaped", "kernel_permuted"}
    least = memory.plan(program, "minimal")
    assert names(program, least.saved) == {"input_batch", "kernel"}
    assert set(least.recomputed_slots(program)) == {program.slot[t] for t in ("B", "C", "D", "F", "G")}
    assert least.recompute[5] == (0, 1, 2, 3, 4)  # all before the matmul's VJP, in forward order
    with pytest.raises(ValueError, match="save='some'"):
        memory.plan(program, "some")


@pytest.mark.parametrize("optimize, save", [(False, "all"), (False, "minimal"), (True, "all"), (True, "minimal")])
def test_what_backward_keeps_against_the_seed(optimize, save):
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    op = graphconv.compile(SPECS / "conv2d.mmd", optimize=optimize, save=save)
    got = saved(op(x, w))
    seed = saved(seed_function().apply(x, w, 1, 1))
    patches = 4 * 16 * 16 * 8 * 9 * 4  # the patch matrix, float32
    inputs = (x.numel() + w.numel()) * 4
    assert seed == (3, inputs + patches)  # input_batch, kernel (and its view kernel_permuted), U_reshaped
    keeps_patches = (save, optimize) == ("all", False)
    assert got == ((3, inputs + patches) if keeps_patches else (2, inputs))
    assert got[1] <= seed[1]


SAVES_A_COSTLY_VALUE = """\
    ---
    graphconv:
      inputs: {x: [n, k], w: [k, m]}
    ---
    graph LR
      X(x) --> M((matmul)) --> H(h) --> R((relu)) --> A(a) --> P(("permute(1, 0)")) --> PA(pa)
      W(w) --> M
      PA --> E((exp)) --> Y(y)
    """


def test_minimal_keeps_costly_outputs_and_recomputes_views():
    spec = graphconv.loads(textwrap.dedent(SAVES_A_COSTLY_VALUE))
    program = Program(spec)
    least = memory.plan(program, "minimal")
    assert names(program, least.saved) == {"x", "w", "a", "y"}  # relu's and exp's outputs are not recomputed
    assert names(program, least.recomputed_slots(program)) == set()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for save in memory.POLICIES:
        op = graphconv.compile(spec, save=save)
        assert torch.autograd.gradcheck(op, (x, w))


@pytest.mark.parametrize("optimize", [False, True])
def test_the_policies_give_the_same_numbers(optimize):
    x = torch.randn(3, 4, 9, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    results = []
    for save in memory.POLICIES:
        y = graphconv.compile(SPECS / "conv2d.mmd", save=save, optimize=optimize)(x, w, stride=2)
        results.append((y, torch.autograd.grad(y, (x, w), torch.ones_like(y))))
    # recomputing gives the very same numbers; optimized, minimal's fused op sums in another order (low memory)
    exact = {} if optimize else {"rtol": 0, "atol": 0}
    torch.testing.assert_close(results[0], results[1], **exact)


def _probe(saves: tuple, seen: list):
    """An op that hands out weak references to what it makes, to see when values die."""

    @graphconv.op(registry=None, name=f"probe_{len(saves)}", save=saves)
    def probe(x):
        """x + 1, remembered weakly."""
        out = x + 1
        seen.append(weakref.ref(out))
        return out

    @probe.vjp
    def _(ctx, grad):
        result = grad * 1
        seen.append(weakref.ref(result))
        return (result,)

    return probe


CHAIN = """\
    graph LR
      X(x) --> P1(({op})) --> A(a) --> P2(({op})) --> B(b) --> P3(({op})) --> C(c) --> P4(({op})) --> Y(y)
    """


@pytest.mark.parametrize("save", memory.POLICIES)
def test_forward_frees_every_value_backward_does_not_keep(save):
    seen: list = []
    probe = _probe((), seen)
    op = graphconv.compile(graphconv.loads(textwrap.dedent(CHAIN.format(op=probe.name)), ops=[probe]), save=save)
    y = op(torch.randn(3, requires_grad=True))
    assert [ref() is None for ref in seen] == [True, True, True, False]  # only the output lives
    y.sum().backward()


def test_values_kept_for_backward_live_until_it_runs():
    seen: list = []
    probe = _probe(("x",), seen)
    op = graphconv.compile(graphconv.loads(textwrap.dedent(CHAIN.format(op=probe.name)), ops=[probe]))
    y = op(torch.randn(3, requires_grad=True))
    assert [ref() is None for ref in seen] == [False, False, False, False]  # a, b, c are saved; y is the output
    y.sum().backward()
    del y
    assert all(ref() is None for ref in seen[:3])


def test_backward_frees_each_gradient_after_its_last_use():
    seen: list = []
    alive_at_each_vjp = []

    @graphconv.op(registry=None, name="watch")
    def watch(x):
        """x * 2."""
        return x * 2

    @watch.vjp
    def _(ctx, grad):
        alive_at_each_vjp.append(sum(ref() is not None for ref in seen))
        result = grad * 2
        seen.append(weakref.ref(result))
        return (result,)

    op = graphconv.compile(graphconv.loads(textwrap.dedent(CHAIN.format(op="watch")), ops=[watch]))
    op(torch.randn(3, requires_grad=True)).sum().backward()
    assert alive_at_each_vjp == [0, 1, 1, 1]  # only the gradient this VJP was handed; the earlier ones are gone


@pytest.mark.parametrize("save", memory.POLICIES)
def test_backward_frees_each_kept_value_after_its_last_use(save):
    """What forward kept dies once the last VJP reading it has run — as each of torch's nodes frees what it saved
    when it has run — not when the whole backward returns."""
    seen: list = []
    alive_at_each_vjp = []

    @graphconv.op(registry=None, name="keeps_x", save=("x",))
    def keeps_x(x):
        """x * 2, remembered weakly."""
        out = x * 2
        seen.append(weakref.ref(out))
        return out

    @keeps_x.vjp
    def _(ctx, grad):
        alive_at_each_vjp.append(sum(ref() is not None for ref in seen[:3]))
        return (grad * 2,)

    op = graphconv.compile(graphconv.loads(textwrap.dedent(CHAIN.format(op="keeps_x")), ops=[keeps_x]), save=save)
    op(torch.randn(3, requires_grad=True)).sum().backward()
    assert alive_at_each_vjp == [3, 2, 1, 0]  # a, b, c: each gone once the VJP reading it has run


@pytest.mark.parametrize("save", memory.POLICIES)
def test_a_retained_graph_keeps_what_backward_reads(save):
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = graphconv.compile(graphconv.loads(textwrap.dedent(SAVES_A_COSTLY_VALUE)), save=save)(x, w)
    first = torch.autograd.grad(y.sum(), (x, w), retain_graph=True)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), (x, w)), first, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(y.sum(), (x, w))


def _live_after_forward(op, x, w):
    """Bytes allocated during a forward that are still allocated after it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        y = op(x, w)
    return sum(e.nbytes() for e in recorded.profiler.kineto_results.events() if e.name() == "[memory]"), y


def test_minimal_holds_only_the_output_between_the_passes():
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    held = {save: _live_after_forward(graphconv.compile(SPECS / "conv2d.mmd", optimize=False, save=save), x, w)
            for save in memory.POLICIES}
    output = held["minimal"][1].numel() * 4
    assert held["minimal"][0] == output
    assert held["all"][0] == output + 2 * 12 * 12 * 4 * 9 * 4  # and the patch matrix


@pytest.mark.parametrize("b, c, o, h, w", [(4, 3, 3, 8, 8), (2, 16, 16, 16, 16), (3, 8, 5, 20, 12), (1, 1, 1, 5, 5),
                                           (2, 64, 128, 7, 7)])
def test_the_fused_conv_holds_no_more_than_torch(b, c, o, h, w):
    """The fused conv is torch's convolution kernel (no patch matrix), so a forward+backward holds no more than
    F.conv2d's does — under either policy; but for a small call (a patch matrix of at most SMALL_CONV_COLUMNS
    entries), whose kernel is torch's im2col one: it may hold that matrix more."""
    import torch.nn.functional as F

    from graphconv.ops.convolution import SMALL_CONV_COLUMNS

    torch.manual_seed(0)
    x, kernel = torch.randn(b, c, h, w, requires_grad=True), torch.randn(o, c, 3, 3, requires_grad=True)
    grad = torch.randn(b, o, h, w)
    peak_bytes, peaks = benchmark_module("measure").peak_bytes, {}
    for save in memory.POLICIES:
        op = graphconv.compile(SPECS / "conv2d.mmd", save=save)
        op(x, kernel)  # the first call checks the shapes on the meta device
        peaks[save] = peak_bytes(lambda: torch.autograd.grad(op(x, kernel), (x, kernel), grad))
    torch_peak = peak_bytes(lambda: torch.autograd.grad(F.conv2d(x, kernel, padding=1), (x, kernel), grad))
    columns = b * c * 9 * h * w
    assert max(peaks.values()) <= torch_peak + (columns * 4 if columns <= SMALL_CONV_COLUMNS else 0)


@pytest.mark.parametrize("save", memory.POLICIES)
@pytest.mark.parametrize("rows, features, hidden", [(512, 192, 512), (48, 205, 1), (198, 216, 21)])
def test_swiglu_holds_no_more_than_torch(save, rows, features, hidden):
    """x feeds two matmuls, a silu and a product join them: backward holds what torch's graph holds at once — the
    product (saved for the down projection's VJP) dies before the product's VJP makes its two gradients, and x's
    second gradient is summed into its first in place, as torch's engine does (with a hidden size below x's, a
    third buffer of x's size was 1.3× torch's peak)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    x, w_gate, w_up, w_down = (torch.randn(*shape, requires_grad=True) for shape in
                               ((rows, features), (hidden, features), (hidden, features), (features, hidden)))
    inputs, grad = (x, w_gate, w_up, w_down), torch.randn(rows, features)
    peak_bytes = benchmark_module("measure").peak_bytes
    op = graphconv.compile(SPECS / "swiglu.mmd", save=save)
    op(*inputs)  # the first call checks the shapes on the meta device
    ours = peak_bytes(lambda: torch.autograd.grad(op(*inputs), inputs, grad))
    theirs = peak_bytes(lambda: torch.autograd.grad(F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down),
                                                    inputs, grad))
    assert ours <= theirs


RESIDUAL = """\
---
graphconv:
  inputs: {x: [n, d], w: [d, d]}
---
graph LR
  X(x) --> M((matmul)) --> Y(y)
  W(w) --> M
  Y --> A((add)) --> Z(z)
  X --> A
"""


@pytest.mark.parametrize("grad_mode", ["plain", "create_graph", "vmap"])
def test_a_gradient_sum_in_place_spares_the_callers_gradient(grad_mode):
    """x reaches the output through the add (whose VJP hands on the caller's gradient itself) and the matmul (a
    fresh gradient): the sum goes into the matmul's gradient, never into the caller's, and a backward that records
    a graph or runs under vmap sums out of place; every way, the gradients are torch's."""
    op = graphconv.compile(graphconv.loads(RESIDUAL))
    assert "_gc_sum_into(r0, g_v_x)" in op.source  # the matmul's gradient of x takes the add's
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(4, 3, dtype=torch.float64)
    kept = grad.clone()
    expected = torch.autograd.grad(x @ w + x, (x, w), grad)
    if grad_mode == "vmap":
        grads = torch.stack([grad, 2 * grad])
        got = torch.func.vmap(lambda g: torch.autograd.grad(op(x, w), (x, w), g, retain_graph=True))(grads)
        for position in (0, 1):  # x's gradients, then w's, for each of the two grads
            torch.testing.assert_close(got[position][0], expected[position])
            torch.testing.assert_close(got[position][1], 2 * expected[position])
    else:
        got = torch.autograd.grad(op(x, w), (x, w), grad, create_graph=grad_mode == "create_graph")
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad, kept, rtol=0, atol=0)
