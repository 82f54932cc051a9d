"""torch.distributed: two processes (gloo, 127.0.0.1) train a model of graphconv layers under
DistributedDataParallel, each on half of a batch, and end with the parameters that one process gets training on
the whole batch — DDP averages the two halves' gradients, which is the full batch's gradient of a mean loss."""
from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import graphconv

WORLD_SIZE = 2
STEPS = 4
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")]


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        graphconv.nn.Conv2d(2, 4, 3, padding=1, groups=2),
        torch.nn.Tanh(),
        graphconv.nn.Conv2d(4, 4, 3, stride=2, padding_mode="circular", padding=1),
        torch.nn.Flatten(),
        graphconv.nn.Linear(4 * 3 * 3, 3),
    ).double()


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(8, 2, 6, 6, generator=generator, dtype=torch.float64),
            torch.randn(8, 3, generator=generator, dtype=torch.float64))


def train(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def worker(rank: int, port: int, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
                            timeout=timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        x, target = make_batch()
        half = x.shape[0] // WORLD_SIZE
        mine = slice(rank * half, (rank + 1) * half)
        losses = train(model, x[mine], target[mine])
        torch.save({"state": model.module.state_dict(), "losses": losses}, f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_on_two_processes_matches_one_process(tmp_path):
    results = str(tmp_path / "rank")
    mp.spawn(worker, args=(free_port(), results), nprocs=WORLD_SIZE, join=True)
    single = make_model()
    x, target = make_batch()
    losses = train(single, x, target)
    assert losses[-1] < losses[0]  # it trained
    ranks = [torch.load(f"{results}.{rank}", weights_only=True) for rank in range(WORLD_SIZE)]
    for name, expected in single.state_dict().items():
        start = make_model().state_dict()[name]
        assert not torch.allclose(expected, start)  # every parameter moved
        for rank in ranks:
            torch.testing.assert_close(rank["state"][name], expected, rtol=1e-10, atol=1e-10)
    # each rank's loss is its half's; their mean is the full batch's loss
    mean_losses = [sum(r["losses"][step] for r in ranks) / WORLD_SIZE for step in range(STEPS)]
    assert mean_losses == pytest.approx(losses, rel=1e-10)
