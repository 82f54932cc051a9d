"""Functions with torch.nn.functional's signatures and semantics, each backed by a shipped spec (``specs/``).

    from graphconv.nn import functional as F
    y = F.conv2d(x, w, b, stride=2, padding="same")    # as torch.nn.functional.conv2d

Arguments are checked and normalized the way torch does it (an int or a tuple, ``padding`` also ``'same'`` or
``'valid'``, an unbatched input), then passed to the compiled spec, which is loaded and compiled once.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

import graphconv

SPECS = Path(__file__).resolve().parent.parent.parent / "specs"
PADDING_STRINGS = ("same", "valid")


@lru_cache(maxsize=None)
def compiled(name: str) -> Any:
    """The shipped spec ``specs/<name>.mmd``, compiled (once)."""
    return graphconv.compile(str(SPECS / f"{name}.mmd"))


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor:
    """2D convolution, as ``torch.nn.functional.conv2d``: input (b, c, h, w) or (c, h, w), weight
    (out_channels, c // groups, kh, kw), optional bias (out_channels,); the im2col spec ``conv2d_full``."""
    stride, dilation = _pair("stride", stride), _pair("dilation", dilation)
    padding = _padding(padding, stride)
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if bias is None:  # the spec always adds a bias; a zero one that wants no gradient costs one broadcast add
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    output = compiled("conv2d_full")(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                     groups=groups)
    return output.squeeze(0) if unbatched else output


def _pair(name: str, value: Any) -> tuple[int, int]:
    """An int or a 1- or 2-tuple of ints as a pair, as torch's conv2d reads it."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}")
    return values


def _padding(padding: Any, stride: tuple[int, int]) -> Any:
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of {set(PADDING_STRINGS)}")
        if padding == "same" and stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        return padding
    return _pair("padding", padding)
