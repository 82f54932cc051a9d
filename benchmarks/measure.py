"""Measuring side by side on a busy machine: cases take turns, each figure is a median, memory comes from the
allocator's own events."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile


def per_call(run: Callable[[], Any], target_s: float = 0.02) -> int:
    """How many calls of ``run`` make one timing sample of about ``target_s`` seconds, from the mean of at least
    three calls after a warm-up call (a single timed call, often slower than the rest, gave samples of one call)."""
    run()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < target_s / 4:
        run()
        calls += 1
    once = (time.perf_counter() - start) / calls
    return max(1, int(target_s / max(once, 1e-7)))


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int, target_s: float = 0.02) -> dict[str, float]:
    """Median seconds per call of each case. The cases take turns within every repeat (in a rotating order), so
    load from other processes slows them alike and the ratios between them stay meaningful."""
    numbers = {name: per_call(run, target_s) for name, run in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            run, number = cases[name], numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                run()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_bytes(run: Callable[[], Any]) -> int:
    """The most bytes ``run`` has allocated at once beyond what existed before it (CPU allocator events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        run()
    events = sorted((e for e in recorded.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def saved_for_backward(output: torch.Tensor) -> tuple[int, int]:
    """(storages, bytes) an autograd.Function's node keeps for backward: a tensor and its views count once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in output.grad_fn.saved_tensors}
    return len(storages), sum(storages.values())
