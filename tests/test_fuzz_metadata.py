"""Fuzzing the metadata: the shipped specs' front matter (and the YAML spec's keys), edited as data — values replaced
by hostile ones (huge, negative, float, nan, None, strings, nested lists, bad expressions), keys deleted, added,
renamed and copied — then written back as YAML and loaded. As in test_fuzz_specs: only ``SpecError`` with a line in
the text, and a spec that loads traces and runs on the meta device raising nothing but ``SpecError``. YAML tags
that would build Python objects are refused wherever a spec holds YAML, and never run.
"""
from __future__ import annotations

import copy
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import graphconv
from conftest import SPECS
from graphconv import SpecError
from test_fuzz_specs import FUZZ, SCALE, SPEC_FILES, check_consistent, check_load, long_label, mutated

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)

EXPRESSIONS = [
    "b", "b * b", "b // 0", "b % 0", "b ** 100", "b ** -1", "2 ** 64", "10 ** 80", "-b", "(b, b)", "(b, b)[5]",
    "pair(b)", "ntuple(b, 17)", "ntuple(b, 0)", "min(b)", "max()", "abs(b, b)", "ceil_div(b, 0)", "b if b else 1",
    "b if 1 else 2", "'same'", "'a' * 3", "b < 'a'", "1e308 * 1e308", "1e300 ** 2", "(-8) ** 0.5", "inf", "inf // 1",
    "nan", "None", "__import__('os')", "b.real", "b[0]", "((((b))))", "-" * 150 + "b", "b +", "*", "", " ",
]
NAMES = ["b", "x", "n", "c", "input", "output", "weight", "kernel", "stride", "padding", "U", "zz", "_", "inputs",
         "dims", "example", "graph", "op", "id", "True", "2x", "é"]
scalars = st.one_of(
    st.integers(-3, 8), st.sampled_from([0, -1, 2 ** 31, 2 ** 60, 2 ** 63, -2 ** 63, 10 ** 30, 2 ** 255]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(), st.sampled_from(EXPRESSIONS),
    st.sampled_from(NAMES), st.text(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)),
                      max_leaves=8)


def _paths(data, at=()):
    """Every key path into ``data`` (mappings and lists), the root excluded."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield at + (key,)
        yield from _paths(value, at + (key,))


def _parent(data, path):
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def edited(draw, data):
    """``data`` (a front matter or a YAML spec, as Python data) after one to three random edits."""
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add", "rename", "copy", "edit_text"]))
        if kind == "replace":
            parent[key] = draw(values)
        elif kind == "delete":
            del parent[key]
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(NAMES))] = draw(values)
        elif kind == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(NAMES))] = parent.pop(key)
        elif kind == "copy":
            parent[key] = copy.deepcopy(_parent(data, draw(st.sampled_from(paths)) + (None,)))
        elif kind == "edit_text" and isinstance(parent[key], str):
            text, at = parent[key], draw(st.integers(0, len(parent[key])))
            parent[key] = text[:at] + draw(st.sampled_from(["*", "(", ")", ",", "[", "]", "0", " if ", "//0", "**9",
                                                            "b", "-", "'", "_"])) + text[at:]
    return data


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


@st.composite
def edited_spec(draw, path):
    """The spec at ``path`` with its metadata edited: its text."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return dump(draw(edited(yaml.safe_load(text))))
    match = FRONT_MATTER.match(text)
    return "---\n" + dump(draw(edited(yaml.safe_load(match.group(1))))) + "---\n" + text[match.end():]


@settings(FUZZ, max_examples=40 * SCALE)
@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
@given(data=st.data())
def test_edited_metadata_loads_or_raises_spec_error_and_what_loads_runs(path, data):
    spec = check_load(data.draw(edited_spec(path)), path)
    if spec is not None:
        check_consistent(spec, backward=data.draw(st.booleans()))


@pytest.mark.slow
@settings(FUZZ, max_examples=500 * SCALE)
@given(data=st.data())
def test_a_longer_run_over_all_specs_and_mutations(data):
    """More examples, each spec mutated by any strategy of test_fuzz_specs and this module."""
    path = data.draw(st.sampled_from(SPEC_FILES))
    text = path.read_text(encoding="utf-8")
    text = data.draw(st.one_of(mutated(text), long_label(text), edited_spec(path),
                               edited_spec(path).flatmap(mutated)))
    spec = check_load(text, path)
    if spec is not None:
        check_consistent(spec, backward=data.draw(st.booleans()))


# --- YAML that would build Python objects --------------------------------------------------------------------------

TAGS = [
    "!!python/object/apply:os.system ['touch {sentinel}']",
    "!!python/object/new:os.system ['touch {sentinel}']",
    "!!python/object/apply:subprocess.check_output [['touch', '{sentinel}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object/new:collections.OrderedDict [[[a, 1]]]",
    "!!python/tuple [1, 2]",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {sentinel}']",
    "!custom 1",
]
TAGGED_SPECS = {  # where a spec holds YAML: the front matter, a YAML spec, a node's @{…} data
    "front matter": ("spec.mmd", "---\ngraphconv:\n  attrs:\n    k: {tag}\n---\ngraph LR\n  x --> R((relu)) --> y\n"),
    "yaml spec": ("spec.yaml", "title: {tag}\ngraph:\n  - {{op: relu, inputs: [x], output: y}}\n"),
    "node data": ("spec.mmd", "graph LR\n  x --> R@{{ shape: circle, label: {tag} }} --> y\n"),
}


@settings(FUZZ, max_examples=30)
@given(where=st.sampled_from(sorted(TAGGED_SPECS)), tag=st.sampled_from(TAGS))
def test_yaml_tags_that_build_python_objects_are_refused_and_never_run(tmp_path_factory, where, tag):
    sentinel = tmp_path_factory.mktemp("tags") / "ran"
    name, template = TAGGED_SPECS[where]
    text = template.format(tag=tag.format(sentinel=sentinel))
    with pytest.raises(SpecError, match="could not determine a constructor for the tag") as caught:
        graphconv.loads(text, path=name)
    assert caught.value.line in (1, 2, 4)
    assert not sentinel.exists()


def test_the_shipped_yaml_spec_is_among_the_fuzzed():
    assert SPECS / "conv2d.yaml" in SPEC_FILES and len(SPEC_FILES) >= 10


# --- regression tests: the smallest inputs that once crashed, one per fix ------------------------------------------


def test_an_attr_named_like_an_input_is_a_spec_error_at_the_attr():
    # was: ValueError "duplicate parameter name: 'x'" from inspect.Signature when compiling (graph/build.py now checks)
    with pytest.raises(SpecError) as caught:
        graphconv.loads("---\ngraphconv:\n  attrs:\n    x: 0\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    assert caught.value.line == 4
    assert caught.value.message == ("attrs: 'x' is also the name of an input tensor; rename one (both are parameters "
                                    "of the compiled op)")


def test_an_attr_named_by_a_python_keyword_is_a_spec_error_at_the_attr():
    # was: ValueError "'class' is not a valid parameter name" when compiling (spec/metadata.py now checks)
    with pytest.raises(SpecError) as caught:
        graphconv.loads("---\ngraphconv:\n  attrs: {k: 1, class: 2}\n---\ngraph LR\n  x --> R((relu)) --> y\n")
    assert caught.value.line == 3
    assert caught.value.message == "attrs: 'class' is a Python keyword, which cannot name an argument"
