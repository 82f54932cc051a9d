"""Drop-in layers: ``graphconv.nn.Conv2d`` is ``torch.nn.Conv2d`` computed by the shipped specs.

Each class subclasses its torch.nn counterpart and replaces only the computation: the constructor, argument
checks, parameter names and shapes, ``reset_parameters`` (so the same seed gives the same numbers), ``state_dict``,
``repr`` and every attribute are torch's own. ``isinstance(layer, torch.nn.Conv2d)`` holds, so code that walks a
model for its convolutions (custom initialisation, parameter groups) treats both the same. Padding modes other
than ``'zeros'`` pad first and convolve without padding, as torch does.
"""
from __future__ import annotations

import torch

from graphconv.nn import functional as F


class _CompiledAtBuild:
    """Compiles the layer's shipped spec (``spec_name``) when the layer is built, not in its first forward, which
    torch.compile may be tracing. ``backend``: the one keyword beyond torch's, as :func:`graphconv.compile` takes
    it (``"inductor"``: the spec's generated code compiled by torch.compile)."""

    spec_name: str

    def __init__(self, *args, backend: str = "eager", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend
        F.compiled(self.spec_name, backend)


def _pad_by_mode(layer: torch.nn.modules.conv._ConvNd, input: torch.Tensor) -> torch.Tensor:
    """The input padded for ``padding_mode`` 'reflect', 'replicate' or 'circular' (torch's own padding)."""
    return torch.nn.functional.pad(input, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)


class Conv1d(_CompiledAtBuild, torch.nn.Conv1d):
    """``torch.nn.Conv1d`` computed by ``specs/conv1d.mmd``."""

    spec_name = "conv1d"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return F.conv1d(_pad_by_mode(self, input), self.weight, self.bias, self.stride, 0, self.dilation,
                            self.groups, backend=self.backend)
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        backend=self.backend)


class Conv2d(_CompiledAtBuild, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` computed by ``specs/conv2d_full.mmd`` (im2col, a grouped matmul, a bias add)."""

    spec_name = "conv2d_full"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return F.conv2d(_pad_by_mode(self, input), self.weight, self.bias, self.stride, 0, self.dilation,
                            self.groups, backend=self.backend)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        backend=self.backend)


class ConvTranspose2d(_CompiledAtBuild, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` computed by ``specs/conv_transpose2d.mmd``; ``output_size`` picks the
    output padding as torch does."""

    spec_name = "conv_transpose2d"

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              2, self.dilation)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation, backend=self.backend)


class Linear(_CompiledAtBuild, torch.nn.Linear):
    """``torch.nn.Linear`` computed by ``specs/linear.mmd``."""

    spec_name = "linear"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, self.weight, self.bias, backend=self.backend)
