"""Fused attention: ``softmax(scale · query @ key_t [causal mask]) @ value`` as one op (the optimizer's
graphconv.compiler.passes.attention rewrites the spec chain into it; specs may use it directly).

The math, with ``S = scale · Q·Kᵀ`` (``key_t`` is ``Kᵀ``; under ``causal``, ``S[i, j] = -inf`` for ``j > i``),
``P = softmax(S)`` along the last dim and ``lse = logsumexp(S)`` of each row::

    O   = P · V
    dV  = Pᵀ · dO
    dP  = dO · Vᵀ
    dS  = P ⊙ (dP - rowsum(dP ⊙ P)) + P ⊙ dlse      (softmax's VJP, plus the log-sum-exp's)
    dQ  = scale · dS · K        dKᵀ = scale · Qᵀ · dS

Two paths compute it:

- **kernel** — lowered to torch's fused CPU attention kernel: the forward is
  ``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu`` (which gives O and lse without the (l, s) weight
  matrix), the VJP ``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward`` on the saved O and lse
  (it recomputes P block by block). Taken on CPU tensors of one floating dtype with the same batch dims and
  values as wide as the queries (the kernel's one head size), when
  autograd does not record and no functorch transform is active, and (in the VJP) when no gradient reaches lse.
- **math** — the lines above in differentiable torch ops, recomputing P from the inputs: where autograd records
  (a double backward differentiates it), under vmap/jacrev, on other devices, for broadcast batch dims, empty
  tensors, and whenever lse receives a gradient.

Both outputs are the op's: ``(O, lse)``. The pass leaves lse unread — it exists so that the VJP does not recompute
the scores to find it.
"""
from __future__ import annotations

from graphconv.ops.helpers import randn, sum_to
from graphconv.ops.lazy_torch import torch
from graphconv.ops.registry import library_op
from graphconv.ops.shapes import ShapeRuleError, matmul_shape


@library_op(save=("query", "key_t", "value", "out"), outputs=2, lower_precision=True, fresh_grads=True)
def attention(query, key_t, value, *, scale, causal=False):
    """``softmax(scale · query @ key_t)`` (positions ``j > i`` blocked under ``causal``) ``@ value``, and the
    log-sum-exp of each row of the scaled scores. Lowered to torch's fused CPU attention kernel where it can take
    the call (see the module's docstring), else computed as the math."""
    if _kernel_takes(query, key_t, value) and _may_lower():
        return _kernel_forward(query, key_t, value, scale, causal)
    return _math_forward(query, key_t, value, scale, causal)


@attention.vjp
def _(ctx, grads):
    grad, grad_lse = grads
    query, key_t, value = ctx.query, ctx.key_t, ctx.value
    if grad_lse is None and grad is not None and _kernel_takes(query, key_t, value) and _may_lower():
        out, lse = ctx.out
        grads = _kernel_vjp(grad, query, key_t, value, out, lse, ctx.scale, ctx.causal)
    else:
        grads = _math_vjp(grad, grad_lse, query, key_t, value, ctx.scale, ctx.causal)
    return tuple(sum_to(g, shape) if need else None for g, shape, need in zip(grads, ctx.shapes, ctx.needs))


@attention.shape_rule
def _(query, key_t, value, *, scale, causal=False):
    if len(query) < 2 or len(key_t) < 2 or len(value) < 2:
        raise ShapeRuleError("attention takes query, key_t and value of at least 2 dims")
    scores = matmul_shape(query, key_t)
    return matmul_shape(scores, value), scores[:-1]


@attention.samples
def _():
    yield (randn(2, 3, 4, 5), randn(2, 3, 5, 6), randn(2, 3, 6, 5)), {"scale": 0.7}
    yield (randn(2, 4, 3), randn(2, 3, 5), randn(2, 5, 3)), {"scale": 0.5, "causal": True}  # l < s
    yield (randn(3, 5, 3), randn(3, 3, 2), randn(3, 2, 3)), {"scale": 1.0, "causal": True}  # l > s
    yield (randn(1, 1), randn(1, 1), randn(1, 1)), {"scale": 2.0}
    yield (randn(2, 4, 3), randn(2, 3, 4), randn(2, 4, 2)), {"scale": 0.5}  # values narrower: math
    yield (randn(2, 1, 3, 4), randn(3, 4, 5), randn(5, 2)), {"scale": 0.3}  # broadcast batch dims: math


# --- when the kernel takes the call ---------------------------------------------------------------------------


def _may_lower() -> bool:
    """Autograd does not record (a double backward needs the math) and no functorch transform is active (the
    kernel has no batching rule). Also while torch.compile traces: dynamo reads functorch's interpreter stack as
    never empty, but knows whether a transform is active."""
    return not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()


def _kernel_takes(query, key_t, value) -> bool:
    """CPU tensors of one kernel dtype, at least 2 dims, the same batch dims, values as wide as queries and keys
    (the kernel's one head size), no empty dim."""
    tensors = (query, key_t, value)
    return (all(t.device.type == "cpu" and t.dim() >= 2 and t.dtype == query.dtype for t in tensors)
            and query.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
            and query.shape[:-2] == key_t.shape[:-2] == value.shape[:-2]
            and query.shape[-1] == key_t.shape[-2] == value.shape[-1] and key_t.shape[-1] == value.shape[-2]
            and all(t.numel() > 0 for t in tensors))


def _heads(tensor):
    """A (..., n, m) tensor as the kernel's (batch, heads, n, m): its batch dims merged (a view when it can), its
    rows made contiguous when they are not (the kernel reads each row as a contiguous vector)."""
    tensor = tensor if tensor.stride(-1) == 1 else tensor.contiguous()
    return tensor if tensor.dim() == 4 else tensor.reshape(-1, 1, *tensor.shape[-2:])


def _kernel_forward(query, key_t, value, scale, causal):
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        _heads(query), _heads(key_t.transpose(-2, -1)), _heads(value), 0.0, causal, attn_mask=None, scale=scale)
    return out.reshape(*query.shape[:-1], value.shape[-1]), lse.reshape(query.shape[:-1])


def _kernel_vjp(grad, query, key_t, value, out, lse, scale, causal) -> tuple:
    grad_query, grad_key, grad_value = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        _heads(grad), _heads(query), _heads(key_t.transpose(-2, -1)), _heads(value), _heads(out),
        lse.reshape(_heads(query).shape[:-1]), 0.0, causal, attn_mask=None, scale=scale)
    return (grad_query.reshape(query.shape), grad_key.reshape(key_t.transpose(-2, -1).shape).transpose(-2, -1),
            grad_value.reshape(value.shape))


# --- the math: differentiable, any layout ------------------------------------------------------------------------


def _scores(query, key_t, scale, causal):
    """``S = scale · Q·Kᵀ``, with ``-inf`` above the diagonal under ``causal``."""
    scores = torch.matmul(query, key_t) * scale
    if causal:
        above = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(above, float("-inf"))
    return scores


def _math_forward(query, key_t, value, scale, causal):
    scores = _scores(query, key_t, scale, causal)
    return torch.matmul(torch.softmax(scores, -1), value), torch.logsumexp(scores, -1)


def _math_vjp(grad, grad_lse, query, key_t, value, scale, causal) -> tuple:
    weights = torch.softmax(_scores(query, key_t, scale, causal), -1)
    grad_scores = torch.zeros_like(weights)
    grad_value = None
    if grad is not None:
        grad_value = torch.matmul(weights.mT, grad)
        grad_weights = torch.matmul(grad, value.mT)
        grad_scores = weights * (grad_weights - (grad_weights * weights).sum(-1, keepdim=True))
    if grad_lse is not None:
        grad_scores = grad_scores + weights * grad_lse.unsqueeze(-1)
    grad_scores = grad_scores * scale
    grad_value = grad_value if grad_value is not None else torch.zeros_like(value)
    return torch.matmul(grad_scores, key_t.mT), torch.matmul(query.mT, grad_scores), grad_value
