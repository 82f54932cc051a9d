"""The two ways to put a compiled spec inside a torch.compile'd graph, measured side by side (issue 13):

- **traced**: the autograd.Function graphconv ships, traced by dynamo (views it saves for backward cloned): its
  forward and the hand-written VJPs of its backward become ops of the model's graph, which inductor fuses.
- **custom_op**: ``torch.library.custom_op`` with ``register_fake`` and ``register_autograd`` — the generated forward
  and backward as two opaque ops (what they keep for backward returned as extra outputs): dynamo never looks
  inside, inductor cannot fuse across them.

    PYTHONPATH=. python benchmarks/compile_routes.py

Prints compile time (first training step) and the median training step of a two-conv model, per route.
"""
from __future__ import annotations

import time

import torch
import torch._inductor.config

import graphconv.nn as gnn
from benchmarks.measure import interleaved
from graphconv.nn import functional as F

CALLS: list = []  # (generated code, op arguments) per call site of the custom_op route
META: dict = {}  # call → the shapes and dtypes the VJPs read (static shapes)


def _kept(inputs, output, kept) -> list[torch.Tensor]:
    """The output, then what backward keeps beyond the inputs (a custom op may return no input, nor a view; inputs
    are kept by setup_context)."""
    taken = {t.untyped_storage().data_ptr() for t in inputs}
    returned = []
    for t in [output, *kept]:
        storage = t.untyped_storage().data_ptr()
        returned.append(t.clone() if storage in taken else t)  # no return may share memory with an input or another
        taken.add(storage)
    return returned


@torch.library.custom_op("graphconv_routes::forward", mutates_args=())
def forward_op(call: int, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    code, args = CALLS[call]
    output, kept, META[call] = code.forward(args, *inputs)
    return _kept(inputs, output, kept)


@forward_op.register_fake
def _(call, inputs):
    code, args = CALLS[call]
    output, kept, META[call] = code.forward(args, *inputs)
    return [torch.empty_like(t) for t in [output, *kept]]


@torch.library.custom_op("graphconv_routes::backward", mutates_args=())
def backward_op(call: int, inputs: list[torch.Tensor], kept: list[torch.Tensor],
                grad: torch.Tensor) -> list[torch.Tensor]:
    code, args = CALLS[call]
    grads = code.backward(args, tuple(inputs), tuple(kept), META[call], (True,) * len(inputs), grad)
    return [g.contiguous() for g in grads]


@backward_op.register_fake
def _(call, inputs, kept, grad):
    return [torch.empty_like(t) for t in inputs]


def _setup(ctx, inputs, output):
    ctx.call, ctx.count = inputs[0], len(inputs[1])
    ctx.save_for_backward(*inputs[1], *output[1:])


def _backward(ctx, grads):
    stored = ctx.saved_tensors
    return None, backward_op(ctx.call, list(stored[:ctx.count]), list(stored[ctx.count:]), grads[0])


forward_op.register_autograd(_backward, setup_context=_setup)


class CustomOpConv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d through graphconv's conv2d_full spec, as one custom op forward and one backward."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.call = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = F.compiled("conv2d_full")
        inputs = (x, self.weight, self.bias)
        if self.call is None:  # one call site: its binding fixed at the first (eager) call
            CALLS.append((op.code, op.arguments(inputs, dict(stride=self.stride, padding=self.padding,
                                                                dilation=self.dilation, groups=self.groups))))
            self.call = len(CALLS) - 1
        return forward_op(self.call, list(inputs))[0]


def model(conv: type) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(conv(16, 32, 3, padding=1), torch.nn.ReLU(), conv(32, 32, 3, padding=1),
                               torch.nn.ReLU())


def step(m: torch.nn.Module, x: torch.Tensor) -> None:
    m(x).square().mean().backward()


def main() -> None:
    torch._dynamo.config.cache_size_limit = 64
    torch._inductor.config.fx_graph_cache = False  # compile time from cold (and no graph compiled for other code)
    x = torch.randn(8, 16, 32, 32)
    models = {"torch layers": model(torch.nn.Conv2d), "traced Function": model(gnn.Conv2d),
              "custom_op": model(CustomOpConv2d)}
    models["custom_op"](x)  # fixes the call sites' bindings
    compiled, compile_s = {}, {}
    for name, m in models.items():
        start = time.perf_counter()
        compiled[name] = torch.compile(m, fullgraph=True)
        step(compiled[name], x)
        compile_s[name] = time.perf_counter() - start
    for name, m in models.items():
        torch.testing.assert_close(compiled[name](x), models["torch layers"](x), rtol=1e-4, atol=1e-4)
    times = interleaved({name: (lambda c=c: step(c, x)) for name, c in compiled.items()}, repeats=9)
    base = times["torch layers"]
    print(f"| route | compile s | train step ms | ÷ torch layers |\n|---|---|---|---|")
    for name in models:
        print(f"| {name} | {compile_s[name]:.1f} | {times[name] * 1e3:.2f} | {times[name] / base:.2f} |")


if __name__ == "__main__":
    main()
