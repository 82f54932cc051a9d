"""The two ways to put a compiled spec inside a torch.compile'd graph, measured side by side (issue 13):

- **traced**: the autograd.Function graphconv ships, traced by dynamo (views it saves for backward cloned): its
  forward and the hand-written VJPs of its backward become ops of the model's graph, which inductor fuses.
- **custom_op**: ``torch.library.custom_op`` with ``register_fake`` and ``register_autograd`` — the generated forward
  and backward as two opaque ops (what they keep for backward returned as extra outputs): dynamo never looks
  inside, inductor cannot fuse across them.

    PYTHONPATH=. python benchmarks/compile_routes.py [--repeats 9]
    PYTHONPATH=. python benchmarks/compile_routes.py --resnet18 8 3 64 64

Prints compile time (first training step, no inductor cache) and the median training step of a two-conv model, per
route; with ``--resnet18``, of a ResNet-18 (graphconv.nn's Conv2d and Linear, else torch.nn's) on that batch, the
shipped route against torch's layers.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

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
    grads = code.backward(args, list(inputs), list(kept), META[call], (True,) * len(inputs), grad)
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


class BasicBlock(torch.nn.Module):
    """ResNet-18's block: two 3×3 convs with batch norm, the input added back (through a strided 1×1 conv where
    the shape changes)."""

    def __init__(self, nn: Any, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(outputs)
        self.down = None
        if stride != 1 or inputs != outputs:
            self.down = torch.nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                                            torch.nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


def resnet18(nn: Any, classes: int = 10) -> torch.nn.Module:
    """ResNet-18 (torchvision's layout) with the convolutions and the classifier from ``nn`` (torch.nn or
    graphconv.nn); batch norm, pooling and ReLU from torch.nn."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), torch.nn.BatchNorm2d(64),
                                     torch.nn.ReLU(), torch.nn.MaxPool2d(3, stride=2, padding=1)]
    channels = 64
    for outputs, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [BasicBlock(nn, channels, outputs, stride), BasicBlock(nn, outputs, outputs, 1)]
        channels = outputs
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), nn.Linear(512, classes)]
    return torch.nn.Sequential(*layers)


def step(m: torch.nn.Module, x: torch.Tensor) -> None:
    m(x).square().mean().backward()


def compare(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int) -> None:
    """Compile each model whole, check it computes what the first does, time its training step side by side."""
    compiled, compile_s = {}, {}
    for name, m in models.items():
        start = time.perf_counter()
        compiled[name] = torch.compile(m, fullgraph=True)
        step(compiled[name], x)
        compile_s[name] = time.perf_counter() - start
    first = next(iter(compiled.values()))
    for name, c in compiled.items():
        torch.testing.assert_close(c(x), first(x), rtol=1e-3, atol=1e-3)
    times = interleaved({name: (lambda c=c: step(c, x)) for name, c in compiled.items()}, repeats=repeats)
    base = times[next(iter(models))]
    print(f"| route | compile s | train step ms | ÷ torch layers |\n|---|---|---|---|")
    for name in models:
        print(f"| {name} | {compile_s[name]:.1f} | {times[name] * 1e3:.2f} | {times[name] / base:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--resnet18", nargs=4, type=int, metavar=("B", "C", "H", "W"),
                        help="instead: a ResNet-18 training step on a B×C×H×W batch, graphconv layers ÷ torch's")
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64
    torch._inductor.config.fx_graph_cache = False  # compile time from cold (and no graph compiled for other code)
    if args.resnet18:
        x = torch.randn(*args.resnet18)
        compare({"torch layers": resnet18(torch.nn), "graphconv layers (traced Function)": resnet18(gnn)}, x,
                args.repeats)
        return
    x = torch.randn(8, 16, 32, 32)
    models = {"torch layers": model(torch.nn.Conv2d), "traced Function": model(gnn.Conv2d),
              "custom_op": model(CustomOpConv2d)}
    models["custom_op"](x)  # fixes the call sites' bindings
    compare(models, x, args.repeats)


if __name__ == "__main__":
    main()
