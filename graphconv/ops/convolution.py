"""Torch's convolution kernels, as the fused convolution ops lower to them (team policy: a fused op may lower a
pattern it has proved to be a convolution to torch's native kernel, as inductor lowers convolution to an extern
kernel). The forward is ``torch.convolution``; the VJP, still ours, is ``aten.convolution_backward`` asked for just
the gradients the caller needs. That kernel is itself differentiable (double backward), has a vmap batching rule,
and traces under torch.compile, so the ops built on it keep every transform the literal compositions have.
"""
from __future__ import annotations

from graphconv.ops.lazy_torch import torch


class Convolution:
    """One call's convolution geometry, as torch.convolution takes it: 2-D stride, padding, dilation (int pairs),
    groups, and, for a transposed convolution, its output padding."""

    __slots__ = ("stride", "padding", "dilation", "groups", "transposed", "output_padding")

    def __init__(self, stride, padding, dilation, groups: int = 1, transposed: bool = False,
                 output_padding=(0, 0)) -> None:
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups, self.transposed, self.output_padding = groups, transposed, tuple(output_padding)

    def forward(self, input, kernel):
        """``torch.convolution`` without bias: (b, c, h, w) input, (o, c/groups, kh, kw) kernel — or (c, o/groups,
        kh, kw) for a transposed convolution."""
        return torch.convolution(input, kernel, None, self.stride, self.padding, self.dilation, self.transposed,
                                 self.output_padding, self.groups)

    def vjp(self, input, kernel, grad, needs) -> tuple:
        """The input's and the kernel's gradients (None where ``needs`` says no) from
        ``aten.convolution_backward``, which computes only those asked for."""
        if not (needs[0] or needs[1]):
            return None, None
        grad_input, grad_kernel, _ = torch.ops.aten.convolution_backward(
            grad, input, kernel, None, self.stride, self.padding, self.dilation, self.transposed,
            self.output_padding, self.groups, [bool(needs[0]), bool(needs[1]), False])
        return grad_input, grad_kernel
