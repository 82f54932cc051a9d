"""Functions with torch.nn.functional's signatures and semantics, each backed by a shipped spec (``specs/``).

    from graphconv.nn import functional as F
    y = F.conv2d(x, w, b, stride=2, padding="same")    # as torch.nn.functional.conv2d

Arguments are checked and normalized the way torch does it (an int or a tuple, ``padding`` also ``'same'`` or
``'valid'``, an unbatched input, a missing bias), then passed to the compiled spec, loaded and compiled once (per ``backend``: each function's extra keyword,
``"eager"`` or ``"inductor"``, as :func:`graphconv.compile` takes it).
A missing bias is a zero bias that wants no gradient: the specs always add one, at the cost of a broadcast add.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import graphconv

LIBRARY = Path(__file__).parent.parent / "library"  # the shipped specs (the repository's specs/ links here)
PADDING_STRINGS = ("same", "valid")


_COMPILED: dict[tuple[str, str], Any] = {}


def compiled(name: str, backend: str = "eager") -> Any:
    """The shipped spec ``specs/<name>.mmd``, compiled (once per backend: ``"eager"``, or ``"inductor"`` — see
    :func:`graphconv.compile`). A plain dict, not functools.lru_cache: torch.compile traces through an lru_cache
    wrapper into graphconv.compile (reading the file: a graph break per call), while it reads a dict that already
    holds the op as a constant — graphconv.nn's layers fill it when they are built."""
    op = _COMPILED.get((name, backend))
    if op is None:
        op = _COMPILED[name, backend] = graphconv.compile(str(LIBRARY / f"{name}.mmd"), backend=backend)
    return op


def conv1d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1, *, backend: str = "eager") -> torch.Tensor:
    """1D convolution, as ``torch.nn.functional.conv1d``: input (b, c, length) or (c, length); the spec
    ``conv1d`` (which calls ``conv2d_full`` on a one-row image)."""
    stride, dilation = _ntuple("conv1d", "stride", stride, 1), _ntuple("conv1d", "dilation", dilation, 1)
    padding = _padding("conv1d", padding, stride, 1)
    return _convolution("conv1d", 2, input, weight, bias, stride, padding, dilation, groups, backend)


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1, *, backend: str = "eager") -> torch.Tensor:
    """2D convolution, as ``torch.nn.functional.conv2d``: input (b, c, h, w) or (c, h, w), weight
    (out_channels, c // groups, kh, kw), optional bias (out_channels,); the im2col spec ``conv2d_full``."""
    stride, dilation = _ntuple("conv2d", "stride", stride, 2), _ntuple("conv2d", "dilation", dilation, 2)
    padding = _padding("conv2d", padding, stride, 2)
    return _convolution("conv2d_full", 3, input, weight, bias, stride, padding, dilation, groups, backend)


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1, *,
                     backend: str = "eager") -> torch.Tensor:
    """Transposed 2D convolution, as ``torch.nn.functional.conv_transpose2d``: weight
    (c, out_channels // groups, kh, kw); the spec ``conv_transpose2d`` (a grouped matmul, then fold)."""
    name = "conv_transpose2d"
    pairs = {key: _ntuple(name, key, value, 2) for key, value in
             (("stride", stride), ("padding", padding), ("output_padding", output_padding), ("dilation", dilation))}
    return _batched(input, 3, lambda x: compiled(name, backend)(
        x, weight, _bias(bias, weight.shape[1] * groups, weight), groups=groups, **pairs))


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
           backend: str = "eager") -> torch.Tensor:
    """``input @ weight.T + bias``, as ``torch.nn.functional.linear``: input (..., in_features); the spec
    ``linear`` on the leading dims flattened into one."""
    lead = input.shape[:-1]
    rows = input.reshape(lead.numel(), input.shape[-1])  # not -1: with no features, -1 could be any number of rows
    output = compiled("linear", backend)(rows, weight, _bias(bias, weight.shape[0], weight))
    return output.reshape(*lead, weight.shape[0])


def _convolution(name: str, unbatched_rank: int, input: torch.Tensor, weight: torch.Tensor, bias: Any, stride: Any,
                 padding: Any, dilation: Any, groups: int, backend: str) -> torch.Tensor:
    """The spec ``name`` on a batch (or one unbatched input); torch's empty answer when there are no input
    channels."""

    def convolve(x: torch.Tensor) -> torch.Tensor:
        empty = _no_input_channels(x, weight, bias, stride, padding, dilation)
        if empty is not None:
            return empty
        return compiled(name, backend)(x, weight, _bias(bias, weight.shape[0], weight), stride=stride,
                                       padding=padding, dilation=dilation, groups=groups)

    return _batched(input, unbatched_rank, convolve)


def _batched(input: torch.Tensor, unbatched_rank: int, run: Any) -> torch.Tensor:
    """``run`` on a batch: an unbatched input (rank ``unbatched_rank``) becomes a batch of one and back."""
    if input.dim() == unbatched_rank:
        return run(input.unsqueeze(0)).squeeze(0)
    return run(input)


def _no_input_channels(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       stride: tuple[int, ...], padding: Any, dilation: tuple[int, ...]) -> torch.Tensor | None:
    """torch's answer for a batch with no channels and a weight that expects none (its 'Empty' convolution
    backend): an output with no channels either — (b, 0, *sizes), whatever the weight's out_channels — whose
    gradients are zeros for the input, the weight and the bias. None for any other call (or when the kernel does not
    fit, which the spec reports)."""
    if input.shape[1] != 0 or weight.shape[1] != 0:
        return None
    sizes = [_output_size(size, kernel, s, p, d) for size, kernel, s, p, d in
             zip(input.shape[2:], weight.shape[2:], stride, _pads(padding, weight.shape[2:], dilation), dilation)]
    if min(sizes) < 1:
        return None
    reached = input.sum() + weight.sum() + (bias.sum() if bias is not None else 0)  # for the zero gradients
    return input.new_zeros((input.shape[0], 0, *sizes)) + reached * 0


def _pads(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[float, ...]:
    """Padding on each side per dim; 'same' as the half of what keeps the size (torch pads the odd one after)."""
    if padding == "valid":
        return (0,) * len(kernel)
    if padding == "same":
        return tuple(d * (k - 1) / 2 for k, d in zip(kernel, dilation))
    return padding


def _output_size(size: int, kernel: int, stride: int, padding: float, dilation: int) -> int:
    return int((size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1)


def _bias(bias: torch.Tensor | None, size: int, like: torch.Tensor) -> torch.Tensor:
    return bias if bias is not None else torch.zeros(size, dtype=like.dtype, device=like.device)


def _ntuple(function: str, name: str, value: Any, n: int) -> tuple[int, ...]:
    """An int, or a tuple of 1 or ``n`` ints, as ``n`` ints — as torch's convolutions read them."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{function}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return values


def _padding(function: str, padding: Any, stride: tuple[int, ...], n: int) -> Any:
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of {set(PADDING_STRINGS)}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        return padding
    return _ntuple(function, "padding", padding, n)
