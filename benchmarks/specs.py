"""Every shipped spec against its torch counterpart, forward + backward, at layer sizes of real models (ResNet-18,
MobileNet-v2, a transformer block): eager graphconv ÷ eager torch, peak memory ÷ torch's, and (``--compiled``) a
torch.compile'd model of the graphconv op ÷ the same model of the torch op. Every ratio comes from figures measured
side by side in one run (medians of interleaved repeats: benchmarks/measure.py). ``--quick`` (a smoke test: every
case at small sizes, one repeat of short samples) checks and runs every case in seconds; its figures mean little.

    PYTHONPATH=. python benchmarks/specs.py [--quick] [--compiled] [--save minimal] [--repeats 7] [--threads N]
                                            [--only NAME ...]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F

import graphconv
from benchmarks.measure import interleaved, peak_bytes
from graphconv.nn.functional import LIBRARY


@dataclass
class Case:
    """One row: the spec, its inputs' shapes, its attrs, and the torch function computing the same."""

    name: str
    spec: str
    shapes: tuple[tuple[int, ...], ...]
    reference: Callable[..., torch.Tensor]
    attrs: dict[str, Any] = field(default_factory=dict)


def conv(**kw: Any) -> Callable:
    return lambda x, w, b=None: F.conv2d(x, w, b, **kw)


def depthwise(**kw: Any) -> Callable:
    return lambda x, w: F.conv2d(x, w, groups=x.shape[1], **kw)


def layer_norm_chain(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """specs/layer_norm.mmd's chain written in torch, differentiated by torch autograd."""
    centered = x - x.mean(-1, keepdim=True)
    return centered / (centered.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


CASES = [
    Case("conv2d k3 (seed spec), ResNet-18 layer1 8×64×56×56", "conv2d", ((8, 64, 56, 56), (64, 64, 3, 3)),
         conv(padding=1), {"padding": 1}),
    Case("conv2d_full k3 s2 → 128, ResNet-18 layer2 8×64×56×56", "conv2d_full",
         ((8, 64, 56, 56), (128, 64, 3, 3), (128,)), conv(stride=2, padding=1), {"stride": 2, "padding": 1}),
    Case("conv2d_full 1×1, ResNet-18 downsample 8×256×14×14 → 512", "conv2d_full",
         ((8, 256, 14, 14), (512, 256, 1, 1), (512,)), conv()),
    Case("conv2d_full k3 dilation 2, 8×64×28×28", "conv2d_full", ((8, 64, 28, 28), (64, 64, 3, 3), (64,)),
         conv(padding=2, dilation=2), {"padding": 2, "dilation": 2}),
    Case("conv2d_full k3 groups 4, 8×64×28×28", "conv2d_full", ((8, 64, 28, 28), (64, 16, 3, 3), (64,)),
         conv(padding=1, groups=4), {"padding": 1, "groups": 4}),
    Case("depthwise_conv2d k3, MobileNet-v2 8×96×56×56", "depthwise_conv2d", ((8, 96, 56, 56), (96, 1, 3, 3)),
         depthwise(padding=1), {"padding": 1}),
    Case("depthwise_conv2d k3 s2, MobileNet-v2 8×144×56×56", "depthwise_conv2d",
         ((8, 144, 56, 56), (144, 1, 3, 3)), depthwise(stride=2, padding=1), {"stride": 2, "padding": 1}),
    Case("conv_transpose2d k4 s2, 8×64×28×28 → 32", "conv_transpose2d", ((8, 64, 28, 28), (64, 32, 4, 4), (32,)),
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1), {"stride": 2, "padding": 1}),
    Case("conv1d k3, 8×256×1024", "conv1d", ((8, 256, 1024), (256, 256, 3), (256,)),
         lambda x, w, b: F.conv1d(x, w, b, padding=1), {"padding": 1}),
    Case("max_pool2d k3 s2 p1, ResNet-18 stem 8×64×112×112", "max_pool2d", ((8, 64, 112, 112),),
         lambda x: F.max_pool2d(x, 3, 2, 1), {"kernel_size": 3, "stride": 2, "padding": 1}),
    Case("avg_pool2d k3 s2 p1, 8×64×56×56", "avg_pool2d", ((8, 64, 56, 56),),
         lambda x: F.avg_pool2d(x, 3, 2, 1), {"kernel_size": 3, "stride": 2, "padding": 1}),
    Case("avg_pool_2x2, 8×64×56×56", "avg_pool_2x2", ((8, 64, 56, 56),), lambda x: F.avg_pool2d(x, 2)),
    Case("linear, transformer MLP 4096×768 → 3072", "linear", ((4096, 768), (3072, 768), (3072,)), F.linear),
    Case("layer_norm, transformer 16×256×768", "layer_norm", ((16, 256, 768), (768,), (768,)),
         lambda x, w, b: F.layer_norm(x, w.shape, w, b)),
    Case("layer_norm, transformer 16×256×768 (vs the same chain in eager torch autograd)", "layer_norm",
         ((16, 256, 768), (768,), (768,)), lambda x, w, b: layer_norm_chain(x, w, b)),
    Case("rms_norm, transformer 16×256×768", "rms_norm", ((16, 256, 768), (768,)),
         lambda x, w: F.rms_norm(x, w.shape, w, 1e-6)),
    Case("gelu, transformer MLP 4096×3072", "gelu", ((4096, 3072),), F.gelu),
    Case("swiglu, transformer MLP 2048×768 → 2048 → 768", "swiglu",
         ((2048, 768), (2048, 768), (2048, 768), (768, 2048)),
         lambda x, wg, wu, wd: F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)),
    Case("scaled_dot_product_attention, 8×12×256×64", "scaled_dot_product_attention",
         ((8, 12, 256, 64), (8, 12, 256, 64), (8, 12, 256, 64)), F.scaled_dot_product_attention),
    Case("causal_attention, 8×12×256×64", "causal_attention",
         ((8, 12, 256, 64), (8, 12, 256, 64), (8, 12, 256, 64)),
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
]


QUICK_DIVISOR = 4  # every size in CASES above 4 is a multiple of 4: dividing keeps the ratios between sizes exact


def shrunk(case: Case) -> Case:
    """The same op with the same attrs at small sizes: every size above ``QUICK_DIVISOR`` divided by it, kernel sizes
    (at most 4) kept. Equal sizes stay equal and ratios stay exact (groups still divide channels), so the inputs still
    fit together; the references read the sizes they need (groups, normalized shape) from their inputs."""
    small = tuple(tuple(n // QUICK_DIVISOR if n > QUICK_DIVISOR else n for n in shape) for shape in case.shapes)
    return replace(case, shapes=small)


class Model(torch.nn.Module):
    """One op inside a model (what a torch.compile'd network holds)."""

    def __init__(self, op: Callable, attrs: dict[str, Any]) -> None:
        super().__init__()
        self.op, self.attrs = op, attrs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.op(*inputs, **self.attrs)


def train_step(run: Callable, inputs: tuple, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        torch.autograd.backward(run(*inputs), grad)
        for t in inputs:
            t.grad = None
    return step


def measure(case: Case, repeats: int, compiled: bool, save: str = "all", target_s: float = 0.05) -> dict[str, float]:
    torch.manual_seed(0)
    inputs = tuple(torch.randn(*shape, requires_grad=True) for shape in case.shapes)
    ours = graphconv.compile(str(LIBRARY / f"{case.spec}.mmd"), save=save)
    theirs = case.reference
    run_ours = lambda *xs: ours(*xs, **case.attrs)  # noqa: E731
    expected = theirs(*inputs)
    scale = max(1.0, expected.abs().max().item())  # float32 sums of big products: tolerance grows with them
    torch.testing.assert_close(run_ours(*inputs), expected, rtol=1e-3, atol=1e-3 * scale)
    grad = torch.randn_like(expected)
    cases = {"ours": train_step(run_ours, inputs, grad), "torch": train_step(theirs, inputs, grad)}
    if compiled:
        torch._dynamo.reset()
        cases["ours compiled"] = train_step(torch.compile(Model(ours, case.attrs), fullgraph=True), inputs, grad)
        cases["torch compiled"] = train_step(torch.compile(Model(theirs, {})), inputs, grad)
    times = interleaved(cases, repeats, target_s)
    row = {"ms": times["ours"] * 1e3, "torch ms": times["torch"] * 1e3, "eager": times["ours"] / times["torch"]}
    row["peak"] = peak_bytes(cases["ours"]) / max(1, peak_bytes(cases["torch"]))
    if compiled:
        row["compiled"] = times["ours compiled"] / times["torch compiled"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compiled", action="store_true", help="also time torch.compile'd models (slow to compile)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: sizes above {QUICK_DIVISOR} divided by {QUICK_DIVISOR}, 1 repeat (unless "
                             "--repeats), 5 ms samples")
    parser.add_argument("--repeats", type=int, help="timing samples per case (default 7, 1 with --quick)")
    parser.add_argument("--only", nargs="*", help="rows whose spec is one of these")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--save", choices=("all", "minimal"), default="all", help="the compiled specs' save policy")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 7)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fwd+bwd, medians of {repeats}; "
          f"save={args.save!r}" + (f"; --quick: sizes above {QUICK_DIVISOR} divided by {QUICK_DIVISOR}"
                                   if args.quick else ""))
    header = "| case | graphconv ms | torch ms | eager ÷ torch | peak ÷ torch |" + (
        " compiled ÷ torch compiled |" if args.compiled else "")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for case in CASES:
        if args.only and case.spec not in args.only:
            continue
        row = measure(shrunk(case) if args.quick else case, repeats, args.compiled, args.save,
                      target_s=0.005 if args.quick else 0.05)
        line = f"| {case.name} | {row['ms']:.1f} | {row['torch ms']:.1f} | {row['eager']:.2f} | {row['peak']:.2f} |"
        print(line + (f" {row['compiled']:.2f} |" if args.compiled else ""), flush=True)


if __name__ == "__main__":
    main()
