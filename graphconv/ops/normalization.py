"""Fused normalizations over the last dim: layer norm (the optimizer's graphconv.compiler.passes.layer_norm rewrites
the spec chain ``mean → sub → pow(2) → mean → add eps → sqrt → div [→ mul weight → add bias]`` into it) and RMS
norm (``fused_rms_norm`` below; its chain ``pow(2) → mean → add eps → rsqrt → mul x [→ mul weight]``).

With ``μ`` the mean of each row, ``c = x - μ``, ``r = (mean(c²) + eps)^-½`` and ``x̂ = c·r``::

    y   = x̂ · w + b
    dx  = r · (ĝ - mean(ĝ) - x̂ · mean(ĝ ⊙ x̂))   with ĝ = dy · w      (rows: means along the last dim)
        + dμ / d - dr · r³ · c / d                                  (when μ or r, outputs too, get a gradient)
    dw  = Σ dy ⊙ x̂        db = Σ dy

The forward is lowered to ``torch.native_layer_norm`` (which gives y, μ and r in one pass) and the VJP to
``torch.ops.aten.native_layer_norm_backward`` on the saved μ and r, where the weight and bias are vectors as wide
as a row (or absent) and the input is not empty; torch differentiates that kernel again (double backward) and vmap
batches it. Elsewhere — a weight or bias that broadcasts, empty tensors, or when μ or r receive a gradient — the
lines above run as torch ops.
"""
from __future__ import annotations

from graphconv.ops.helpers import plain_eager_call, randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, broadcast_shapes


@library_op(save=("input", "weight", "bias", "out"), outputs=3)
def fused_layer_norm(input, weight=None, bias=None, *, eps):
    """``(x - μ) / sqrt(mean((x - μ)²) + eps) · weight + bias`` along the last dim, with μ and the reciprocal
    standard deviation as second and third outputs (kept for the VJP): torch.native_layer_norm where the weight and
    bias are row-wide vectors, else the same math as torch ops."""
    if _native_takes(input.shape, _shape(weight), _shape(bias)):
        return torch.native_layer_norm(input, input.shape[-1:], weight, bias, eps)
    return _math_forward(input, weight, bias, eps)


@fused_layer_norm.vjp
def _(ctx, grads):
    grad, grad_mean, grad_rstd = grads
    input, weight, bias = ctx.input, ctx.saved.get("weight"), ctx.saved.get("bias")  # (optional inputs)
    needs = [need and tensor is not None for need, tensor in zip(ctx.needs, (input, weight, bias))]
    native = _native_takes(*map(_shape, (input, weight, bias)))
    if grad is not None and grad_mean is None and grad_rstd is None and native:
        _, mean, rstd = ctx.out
        grads = torch.ops.aten.native_layer_norm_backward(grad, input, input.shape[-1:], mean, rstd, weight, bias,
                                                          needs)
    else:
        grads = _math_vjp(input, weight, bias, ctx.eps, grad, grad_mean, grad_rstd)
    return tuple(g if need else None for g, need in zip(grads, needs))


@fused_layer_norm.shape_rule
def _(input, weight=None, bias=None, *, eps):
    if not input:
        raise ShapeRuleError("fused_layer_norm takes a tensor of at least 1 dim")
    out = input
    for affine in (weight, bias):
        out = broadcast_shapes(out, affine) if affine is not None else out
    stats = tuple(input[:-1]) + (1,)
    return out, stats, stats


@fused_layer_norm.samples
def _():
    yield (randn(3, 5), randn(5), randn(5)), {"eps": 1e-5}
    yield (randn(2, 3, 4), randn(4), None), {"eps": 0.1}
    yield (randn(4), None, None), {"eps": 1e-3}
    yield (randn(3, 4), randn(1), randn(4)), {"eps": 1e-5}  # a weight that broadcasts: math
    yield (randn(3, 1), randn(2), randn(2)), {"eps": 0.5}  # the output wider than the input: math


def _shape(tensor):
    return tensor.shape if tensor is not None else None


def _native_takes(input, weight, bias) -> bool:
    """The input has rows and elements; the weight and bias, where present, are vectors as wide as a row."""
    row = tuple(input[-1:])
    return (len(input) >= 1 and all(n > 0 for n in input)
            and all(affine is None or tuple(affine) == row for affine in (weight, bias)))


def _normalized(input, eps):
    """μ, ``c = x - μ``, ``r`` and ``x̂ = c·r`` of each row."""
    mean = input.mean(-1, keepdim=True)
    centered = input - mean
    rstd = (centered.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    return mean, centered, rstd, centered * rstd


def _math_forward(input, weight, bias, eps):
    mean, _, rstd, out = _normalized(input, eps)
    out = out * weight if weight is not None else out
    out = out + bias if bias is not None else out
    return out, mean, rstd


def _math_vjp(input, weight, bias, eps, grad, grad_mean, grad_rstd) -> tuple:
    mean, centered, rstd, normalized = _normalized(input, eps)
    grad_input = torch.zeros_like(input)
    grad_weight = torch.zeros_like(weight) if weight is not None else None
    grad_bias = torch.zeros_like(bias) if bias is not None else None
    if grad is not None:
        scaled = sum_to(grad * weight if weight is not None else grad, input.shape)
        grad_input = rstd * (scaled - scaled.mean(-1, keepdim=True)
                             - normalized * (scaled * normalized).mean(-1, keepdim=True))
        grad_weight = sum_to(grad * normalized, weight.shape) if weight is not None else None
        grad_bias = sum_to(grad, bias.shape) if bias is not None else None
    width = input.shape[-1]
    if grad_mean is not None:
        grad_input = grad_input + grad_mean / width
    if grad_rstd is not None:
        grad_input = grad_input - grad_rstd * rstd.pow(3) * centered / width
    return grad_input, grad_weight, grad_bias


# --- rms_norm ------------------------------------------------------------------------------------------------------


@library_op(save=("input", "weight", "out"), outputs=2)
def fused_rms_norm(input, weight=None, *, eps):
    """``x · (mean(x²) + eps)^-½ · weight`` along the last dim, with the reciprocal root mean square as second
    output (kept for the VJP). Lowered to ``torch.ops.aten._fused_rms_norm`` (one pass) where the weight is a
    row-wide vector (or absent) and autograd does not record, no functorch transform is active and torch.compile
    does not trace (torch has no CPU kernel for its backward, so it cannot be differentiated there); else torch
    ops. The VJP is torch ops: ``dx = r · (ĝ - x̂ · mean(ĝ ⊙ x̂)) - dr · r³ · x / d`` with ``ĝ = dy · w``,
    ``x̂ = x · r``; ``dw = Σ dy ⊙ x̂``."""
    if _native_takes(input.shape, _shape(weight), None) and plain_eager_call():
        return torch.ops.aten._fused_rms_norm(input, [input.shape[-1]], weight, eps)
    rstd = (input.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    out = input * rstd
    return (out * weight if weight is not None else out), rstd


@fused_rms_norm.vjp
def _(ctx, grads):
    grad, grad_rstd = grads
    input, weight, (_, rstd) = ctx.input, ctx.saved.get("weight"), ctx.out
    grad_input = grad_weight = None
    if grad is not None:
        normalized = input * rstd
        if ctx.needs[0]:
            scaled = sum_to(grad * weight if weight is not None else grad, input.shape)
            grad_input = rstd * (scaled - normalized * (scaled * normalized).mean(-1, keepdim=True))
        if ctx.needs[1] and weight is not None:
            grad_weight = sum_to(grad * normalized, weight.shape)
    if grad_rstd is not None and ctx.needs[0]:
        from_rstd = grad_rstd * rstd.pow(3) * input / -input.shape[-1]
        grad_input = from_rstd if grad_input is None else grad_input + from_rstd
    if ctx.needs[0] and grad_input is None:
        grad_input = torch.zeros_like(input)
    if ctx.needs[1] and weight is not None and grad_weight is None:
        grad_weight = torch.zeros_like(weight)
    return grad_input, grad_weight


@fused_rms_norm.shape_rule
def _(input, weight=None, *, eps):
    if not input:
        raise ShapeRuleError("fused_rms_norm takes a tensor of at least 1 dim")
    return (broadcast_shapes(input, weight) if weight is not None else input), tuple(input[:-1]) + (1,)


@fused_rms_norm.samples
def _():
    yield (randn(3, 5), randn(5)), {"eps": 1e-6}
    yield (randn(2, 3, 4), None), {"eps": 0.1}
    yield (randn(3, 1), randn(2)), {"eps": 0.5}  # the output wider than the input: torch ops
