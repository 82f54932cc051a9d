"""Every registered op's shape rule against torch's meta kernels: on the op's samples, and on random shapes
(hypothesis) — where the rule and torch must also agree on which shapes are refused. The list of ops comes from
the registry, so a new op's rule is checked the moment it is registered."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import graphconv
from conftest import SPECS
from graphconv.errors import ShapeError
from graphconv.ops import REGISTRY
from graphconv.ops.shapes import ShapeRuleError
from test_fuzz_specs import FUZZ, SCALE


def meta_shapes(op, shapes, dtypes, attrs):
    """The op's output shapes on the meta device, or the exception torch raises."""
    tensors = [torch.empty(shape, dtype=dtype, device="meta") for shape, dtype in zip(shapes, dtypes)]
    try:
        result = op.forward(*tensors, **attrs)
    except Exception as error:  # torch's own refusal: RuntimeError, IndexError, ValueError…
        return error
    return [tuple(t.shape) for t in (result if isinstance(result, (tuple, list)) else (result,))]


def rule_shapes(op, shapes, attrs):
    try:
        return op.infer_shapes(shapes, attrs)
    except ShapeRuleError as error:
        return error


def sample_cases(op):
    return [([tuple(t.shape) for t in tensors], [t.dtype for t in tensors], attrs)
            for tensors, attrs in op.sample_inputs()]


OPS = REGISTRY.names()


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_a_shape_rule_that_matches_meta_on_its_samples(name):
    op = REGISTRY.get(name)
    assert op.rule is not None, f"op {name} has no shape rule"
    for shapes, dtypes, attrs in sample_cases(op):
        assert rule_shapes(op, shapes, attrs) == meta_shapes(op, shapes, dtypes, attrs), (shapes, attrs)


def resized(shape, data):
    """Each size kept, or redrawn from 0 to 6."""
    return tuple(data.draw(st.sampled_from([size, size, 0, 1, 2, 3, 4, 5, 6])) for size in shape)


@pytest.mark.parametrize("name", OPS)
@settings(FUZZ, max_examples=40 * SCALE)
@given(data=st.data())
def test_rule_and_meta_agree_on_random_shapes(name, data):
    op = REGISTRY.get(name)
    shapes, dtypes, attrs = data.draw(st.sampled_from(sample_cases(op)))
    shapes = [resized(shape, data) for shape in shapes]
    expected, found = meta_shapes(op, shapes, dtypes, attrs), rule_shapes(op, shapes, attrs)
    if isinstance(expected, Exception) or isinstance(found, Exception):
        assert isinstance(expected, Exception) and isinstance(found, Exception), (shapes, attrs, expected, found)
    else:
        assert found == expected, (shapes, attrs)


class Devices(TorchDispatchMode):
    """The devices of the tensors every torch op makes inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.seen.update(t.device.type for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


def test_the_first_call_checks_declared_shapes_by_the_rules_not_on_the_meta_device():
    conv2d = graphconv.compile(SPECS / "conv2d.mmd")
    with Devices() as devices:
        conv2d(torch.randn(2, 3, 8, 8), torch.randn(3, 3, 3, 3))
    assert devices.seen == {"cpu"}
    wrong = graphconv.loads((SPECS / "conv2d.mmd").read_text().replace("U: [b, patch_size, patches]",
                                                                       "U: [b, patches, patch_size]"))
    with pytest.raises(ShapeError, match="tensor 'U' .* has shape \\(2, 27, 64\\) but is declared"):
        graphconv.compile(wrong)(torch.randn(2, 3, 8, 8), torch.randn(3, 3, 3, 3))
