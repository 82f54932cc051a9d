"""A new op, authored as a spec, dropped into a model: the squeeze-and-excitation block drawn in
``examples/squeeze_excite.mmd`` (a mean, two small linear layers, a sigmoid gate — all registered primitives with
hand-written VJPs) becomes a module with ``graphconv.nn.from_spec``. The model trains next to the same model
written in plain torch; from the same seed both start from the same parameters and follow the same losses.

    graphconv run examples/squeeze_excite.mmd --backward    # check the spec's shapes first
    python examples/custom_op_in_model.py --steps 40

Only torch is needed (no extra).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import graphconv

SPEC = Path(__file__).resolve().parent / "squeeze_excite.mmd"
CHANNELS, HIDDEN, CLASSES = 16, 4, 3


class SqueezeExcite(torch.nn.Module):
    """The spec's block in torch, for comparison: its parameters are drawn in the spec's order (w1, b1, w2, b2)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down, self.up = torch.nn.Linear(channels, hidden), torch.nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.up(torch.relu(self.down(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


def make_model(use_graphconv: bool) -> torch.nn.Sequential:
    torch.manual_seed(0)
    nn = graphconv.nn if use_graphconv else torch.nn
    block = (graphconv.nn.from_spec(SPEC, channels=CHANNELS, hidden=HIDDEN) if use_graphconv
             else SqueezeExcite(CHANNELS, HIDDEN))
    return torch.nn.Sequential(
        nn.Conv2d(CLASSES, CHANNELS, 3, padding=1), torch.nn.ReLU(), block,
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), nn.Linear(CHANNELS, CLASSES),
    ).double()


def make_data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 3-channel 8×8 images; the class is the channel with the brightest mean."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(n, CLASSES, 8, 8, generator=generator, dtype=torch.float64)
    return images, images.mean(dim=(2, 3)).argmax(dim=1)


def train(model: torch.nn.Module, steps: int) -> list[float]:
    x, y = make_data()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)

    ours, theirs = make_model(use_graphconv=True), make_model(use_graphconv=False)
    print(ours)
    start_gap = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), theirs.parameters()))
    losses = {"graphconv": train(ours, args.steps), "torch": train(theirs, args.steps)}
    loss_gap = max(abs(a - b) for a, b in zip(losses["graphconv"], losses["torch"]))
    param_gap = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), theirs.parameters()))
    print(f"loss: {losses['graphconv'][0]:.4f} → {losses['graphconv'][-1]:.4f} in {args.steps} steps")
    print(f"max |difference| to the torch model: parameters at the start {start_gap:.1e}, losses {loss_gap:.1e}, "
          f"parameters at the end {param_gap:.1e}")
    return {"losses": losses, "start_gap": start_gap, "loss_gap": loss_gap, "param_gap": param_gap}


if __name__ == "__main__":
    main()
