"""How much a real-device run of a spec may allocate (``--max-memory`` of ``graphconv run`` and ``check``).

Two guards. Before anything is allocated, an estimate from a meta-device trace (free at any size): the bytes of
every tensor the spec makes, inputs and intermediates, and their gradients when backward runs. An estimate cannot
see what an op allocates inside (matmul copies broadcast operands whole; a reference function has workspaces of
its own), so the run itself goes under a cap that the system enforces: on Linux the process's data segment
(``RLIMIT_DATA``, which every large CPU allocation counts against) may grow by the limit at most; on a CUDA device
torch's per-process memory fraction. An allocation past the cap fails, and :func:`is_out_of_memory` recognises
the failure, however it was wrapped.
"""
from __future__ import annotations

import math
import re
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from graphconv.ops.lazy_torch import torch

if TYPE_CHECKING:
    from graphconv.check.trace import Trace

OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory|Cannot allocate memory", re.IGNORECASE)


def traced_bytes(result: "Trace") -> int:
    """The bytes of every tensor a trace made, and of every gradient its backward made."""
    return sum(_bytes(row.shape, row.dtype) + _bytes(row.grad_shape, row.dtype) for row in result.rows)


def _bytes(shape: tuple[int, ...] | None, dtype: str | None) -> int:
    if shape is None or dtype is None:
        return 0
    return math.prod(shape) * getattr(torch, dtype).itemsize


@contextmanager
def memory_cap(limit: int, device: str) -> Iterator[None]:
    """Meanwhile, the process may allocate at most ``limit`` more bytes on ``device`` (cpu: where the system
    enforces a data-segment limit; cuda: through torch's allocator). Elsewhere, no cap: the estimate stands."""
    kind = torch.device(device).type
    if kind == "cuda":
        with _cuda_cap(limit, torch.device(device)):
            yield
    elif kind == "cpu" and sys.platform.startswith("linux"):
        with _data_segment_cap(limit):
            yield
    else:
        yield


@contextmanager
def _data_segment_cap(limit: int) -> Iterator[None]:
    import resource

    _start_threads()  # thread stacks count as data: make them before the cap, as torch would make them after it
    used = _data_segment()
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if used is None:  # no /proc to read it from: the estimate stands alone
        yield
        return
    cap = min([used + limit] + [bound for bound in (soft, hard) if bound != resource.RLIM_INFINITY])
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _data_segment() -> int | None:
    """The bytes the process's data segment holds now (``VmData``, what ``RLIMIT_DATA`` limits)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            found = re.search(r"^VmData:\s+(\d+) kB", status.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _start_threads() -> None:
    """Run one operation big enough that torch starts its pool of worker threads."""
    torch.ones(1 << 20).sum()


@contextmanager
def _cuda_cap(limit: int, device: Any) -> Iterator[None]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = min(1.0, (torch.cuda.memory_reserved(index) + limit) / total)
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException | None) -> bool:
    """Whether ``error``, or what it was raised from, is an allocation that failed."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MemoryError) or OUT_OF_MEMORY.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False
