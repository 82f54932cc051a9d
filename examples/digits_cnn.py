"""Train the same small CNN on scikit-learn's 8×8 digits twice — with graphconv.nn.Conv2d and with torch.nn.Conv2d —
from the same seed, and compare: test accuracy of each, the largest gap between the two loss curves, and a plot of
both curves.

    pip install -e ".[examples]"
    python examples/digits_cnn.py --epochs 12 --plot examples/digits_loss.png

The digits (1797 images, 10 classes) ship with scikit-learn: nothing is downloaded. Both runs see the same
parameters (graphconv.nn.Conv2d draws them exactly as torch.nn.Conv2d does) and the same batches, so the curves
differ only by floating-point rounding: the two convolutions add up their products in different orders. In
float64 (the default) that stays near 1e-16; in float32 (``--dtype float32``) training amplifies it step by
step, to about 1e-2 by the end, and both runs still reach the same accuracy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import graphconv

matplotlib.use("Agg")  # write files, never open a window
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

LAYERS = {"graphconv": graphconv.nn.Conv2d, "torch": torch.nn.Conv2d}


def load_data(seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Train and test images (n, 1, 8, 8) scaled to [0, 1], with their labels; a stratified 80/20 split."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=dtype).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=0.2, random_state=seed,
                                                        stratify=labels)
    return x_train, x_test, y_train, y_test


def make_model(conv: type[torch.nn.Module]) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        conv(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),   # 16 × 4 × 4
        conv(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),  # 32 × 2 × 2
        torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10),
    )


def train(conv: type[torch.nn.Module], data: tuple[torch.Tensor, ...], *, epochs: int, batch_size: int,
          seed: int, label: str) -> tuple[list[float], float]:
    """Train from ``seed``; returns the loss of every step and the test accuracy."""
    x_train, x_test, y_train, y_test = data
    torch.manual_seed(seed)
    model = make_model(conv).to(x_train.dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(seed)  # the same batches for both runs
    steps_per_epoch = -(-len(x_train) // batch_size)
    losses = []
    with tqdm(total=epochs * steps_per_epoch, desc=f"{label:>9}", unit="step") as progress:
        for _ in range(epochs):
            for batch in torch.randperm(len(x_train), generator=order).split(batch_size):
                loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                progress.update()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return losses, accuracy


def plot(curves: dict[str, list[float]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for (label, losses), style in zip(curves.items(), ("-", "--")):
        axes.plot(losses, style, label=f"{label}.nn.Conv2d")
    axes.set(xlabel="step", ylabel="cross-entropy (training batch)", yscale="log",
             title="digits CNN: the same training with graphconv and torch convolutions")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (a model this small runs fastest on one)")
    parser.add_argument("--plot", type=Path, default=Path("digits_loss.png"), help="where to write the PNG")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_data(args.seed, getattr(torch, args.dtype))
    curves, accuracies, seconds = {}, {}, {}
    for label, conv in LAYERS.items():
        start = time.perf_counter()
        curves[label], accuracies[label] = train(conv, data, epochs=args.epochs, batch_size=args.batch_size,
                                                 seed=args.seed, label=label)
        seconds[label] = time.perf_counter() - start
    gap = max(abs(a - b) for a, b in zip(curves["graphconv"], curves["torch"]))
    plot(curves, args.plot)
    for label in LAYERS:
        print(f"{label:>9}.nn.Conv2d: test accuracy {accuracies[label]:.2%}, final loss {curves[label][-1]:.4f}, "
              f"{seconds[label]:.1f} s")
    print(f"max |loss difference| over {len(curves['torch'])} steps: {gap:.2e}")
    print(f"plot: {args.plot}")
    return {"accuracy": accuracies, "losses": curves, "max_loss_difference": gap, "plot": args.plot}


if __name__ == "__main__":
    main()
