"""A loaded spec written back as data: its ``graphconv:`` metadata (for Mermaid front matter and YAML specs) and a
whole YAML spec (``graphconv show --format yaml``).

The conversion is lossless for what a spec means: the YAML loads to the same op graph — the same ops with the
same labels and arguments on the same tensors, the same inputs, outputs and metadata. Layout (node shapes,
subgraphs, styling) and comments are not carried over. Expressions are written with ``to_source``; imports no
torch.
"""
from __future__ import annotations

from typing import Any

import yaml

from graphconv.graph.opgraph import OpNode, Spec
from graphconv.syntax.expr import Const, Expr, Name, to_source
from graphconv.syntax.expr import Tuple as TupleExpr
from graphconv.syntax.metadata import Metadata


def expr_data(expr: Expr) -> Any:
    """An expression as the YAML value that reads back to it: numbers and bools as themselves, a name as a plain
    string, a tuple as a list, anything else (a string constant included) as its source text."""
    if isinstance(expr, Const) and not isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, TupleExpr):
        return [expr_data(item) for item in expr.items]
    return to_source(expr)


def _pattern_data(pattern: list[Expr] | None) -> list[Any] | None:
    return None if pattern is None else [expr_data(entry) for entry in pattern]


def _plain(value: Any) -> Any:
    """Metadata values as plain YAML data (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _input_data(meta: Metadata, name: str) -> Any:
    """An input's pattern, or ``{shape:, dtype:, range:}`` when it declares a type."""
    pattern = _pattern_data(meta.inputs[name])
    declared = meta.input_types.get(name)
    if declared is None:
        return pattern
    data: dict[str, Any] = {"shape": pattern, "dtype": declared.dtype}
    if declared.range is not None:
        data["range"] = [expr_data(bound) for bound in declared.range]
    return data


def metadata_data(meta: Metadata) -> dict[str, Any]:
    """The ``graphconv:`` block that reads back to ``meta`` (empty keys left out)."""
    data: dict[str, Any] = {}
    if meta.inputs is not None:
        patterns = {name: _input_data(meta, name) for name in meta.inputs}
        data["inputs"] = list(patterns) if all(p is None for p in patterns.values()) else patterns
    if meta.outputs is not None:
        data["outputs"] = list(meta.outputs)
    optional = {
        "attrs": _plain(meta.attrs),
        "dims": {name: expr_data(expr) for name, expr in meta.dims.items()},
        "shapes": {name: _pattern_data(p) for name, p in meta.shapes.items()},
        "ops": {name: to_source(call) for name, call in meta.ops.items()},
        "example": _plain(meta.example),
        "reference": meta.reference,
        "params": ({name: to_source(meta.param_init[name]) if name in meta.param_init else None for name in meta.params}
                   if meta.param_init else list(meta.params)),
        "uses": _plain(meta.uses),
    }
    data.update({key: value for key, value in optional.items() if value not in (None, {}, [])})
    return data


def application_data(spec: Spec, op: OpNode) -> dict[str, Any]:
    """One entry of a YAML spec's ``graph:`` list: the op's id and label, its inputs and outputs by name.

    Inputs of an op with several parameters are written by parameter (``{a: x, b: w}``), so they bind the same
    however the tensors are named; a single input or a variadic op's inputs as a list, in order."""
    names = [spec.tensor(t).name if t is not None else None for t in op.inputs]
    if len(op.op.inputs) > 1 and not op.op.variadic_inputs:
        inputs: Any = {param: name for param, name in zip(op.op.inputs, names) if name is not None}
    else:
        inputs = [name for name in names if name is not None]
    outputs = [spec.tensor(t).name for t in op.outputs]
    entry: dict[str, Any] = {"id": op.id, "op": op.label, "inputs": inputs}
    if len(outputs) == 1 and op.op.outputs == 1:
        entry["output"] = outputs[0]
    else:
        entry["outputs"] = outputs
    return entry


FLOW_WIDTH = 100  # a mapping of plain values shorter than this goes on one line: {stride: 1, padding: 1}


class _Dumper(yaml.SafeDumper):
    """Plain YAML, lists on one line (``input_batch: [b, in_channels, i_h, i_w]``) unless they hold mappings,
    mappings as blocks unless short and flat."""


class _Document(dict):
    """The top level: always a block."""


def _is_flat(value: Any) -> bool:
    """A scalar, or a list of scalars."""
    items = value if isinstance(value, list) else [value]
    return not any(isinstance(item, (dict, list)) for item in items)


def _represent_dict(dumper: yaml.SafeDumper, value: dict) -> yaml.Node:
    flat = all(_is_flat(v) for v in value.values())
    short = sum(len(str(k)) + len(str(v)) + 4 for k, v in value.items()) < FLOW_WIDTH
    flow = flat and short and not isinstance(value, _Document)
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    flow = not any(isinstance(v, dict) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(_Document, _represent_dict)


def dump(data: Any) -> str:
    """``data`` as plain YAML (no tags, no anchors: what Mermaid's front matter reader accepts too)."""
    return yaml.dump(_Document(data), Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)


def _flow(data: Any) -> str:
    return yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=1 << 16, allow_unicode=True).strip()


def _first_mentions(spec: Spec, graph: list[dict[str, Any]], produced: bool) -> list[str]:
    """Graph inputs (``produced=False``) or outputs in the order the YAML mentions them first — the order a
    YAML spec without ``inputs:``/``outputs:`` lists them in."""
    found: list[str] = []
    for entry in graph:
        inputs = entry["inputs"].values() if isinstance(entry["inputs"], dict) else entry["inputs"]
        outputs = [entry["output"]] if "output" in entry else entry["outputs"]
        found += [name for name in (outputs if produced else inputs) if name not in found]
    wanted = set(spec.output_names if produced else spec.input_names)
    return [name for name in found if name in wanted]


def to_yaml(spec: Spec) -> str:
    """The whole spec as a YAML spec: title, metadata keys at the top level, then ``graph:``."""
    graph = [application_data(spec, op) for op in spec.ops()]
    data: dict[str, Any] = {"title": spec.meta.title or spec.name}
    data.update(metadata_data(spec.meta))
    if spec.meta.inputs is None and _first_mentions(spec, graph, produced=False) != spec.input_names:
        data["inputs"] = spec.input_names
    if spec.meta.outputs is None and _first_mentions(spec, graph, produced=True) != spec.output_names:
        data["outputs"] = spec.output_names
    source = f" from {spec.path}" if spec.path else ""
    applications = "".join(f"  - {_flow(entry)}\n" for entry in graph)
    return f"# {spec.name}: written by graphconv show{source}\n{dump(data)}graph:\n{applications}"
