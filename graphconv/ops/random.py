"""Randomness with an explicit seed: the same seed gives the same mask, in forward and again in backward.

``dropout`` keeps nothing for backward: its VJP draws the mask again from the seed (a generator of its own, never
torch's global one), so the gradient is masked exactly where the output was.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op


def keep_mask(shape, dtype, device, p, seed):
    """The entries dropout keeps (1) and drops (0), drawn from ``seed`` with probability ``1 - p`` of keeping."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1 - p, generator=generator)


def _scaled_mask(shape, dtype, device, p, seed):
    if p == 1:
        return torch.zeros(shape, dtype=dtype, device=device)
    if device.type == "meta":  # shapes only: nothing to draw
        return torch.empty(shape, dtype=dtype, device=device)
    return keep_mask(shape, dtype, device, p, seed) / (1 - p)


@library_op
def dropout(x, *, p=0.5, seed):
    """Zero each entry with probability ``p`` and scale the rest by ``1 / (1 - p)``; the mask is drawn from
    ``seed`` (an integer), so a call is reproducible. ``p=0`` is the identity (eval mode)."""
    if p == 0:
        return x.clone()
    return x * _scaled_mask(x.shape, x.dtype, x.device, p, seed)


@dropout.vjp
def _(ctx, grad):
    if ctx.p == 0:
        return (grad,)
    return (grad * _scaled_mask(ctx.shapes[0], grad.dtype, grad.device, ctx.p, ctx.seed),)


@dropout.shape_rule
def _(x, *, p=0.5, seed):
    return x


@dropout.samples
def _():
    yield (randn(4, 5),), {"p": 0.3, "seed": 7}
    yield (randn(2, 3, 4),), {"p": 0.0, "seed": 0}
    yield (randn(3, 4),), {"p": 1.0, "seed": 1}
