"""JSON merge patch (RFC 7386): the RFC's examples, kube-apiserver's top-level rule, and merge laws."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.errors import BadRequest
from timoner.api.patch import apply_merge_patch, create_merge_patch

# RFC 7386 appendix A (the rows whose target and patch are objects).
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    # kubectl label / annotate
    (
        {"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"b": None, "c": "3"}}},
        {"metadata": {"name": "x", "labels": {"a": "1", "c": "3"}}},
    ),
    # kubectl scale on /scale
    (
        {"spec": {"replicas": 1}, "status": {"replicas": 1}},
        {"spec": {"replicas": 3}},
        {"spec": {"replicas": 3}, "status": {"replicas": 1}},
    ),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC_EXAMPLES)
def test_apply(doc: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    assert apply_merge_patch(doc, patch) == expected
    assert doc == before


def test_result_is_independent_of_inputs() -> None:
    doc = {"a": {"b": [1]}, "c": {"d": 1}}
    patch = {"e": {"f": [2]}}
    result = apply_merge_patch(doc, patch)
    result["a"]["b"].append(9)
    result["e"]["f"].append(9)
    assert doc == {"a": {"b": [1]}, "c": {"d": 1}}
    assert patch == {"e": {"f": [2]}}


@pytest.mark.parametrize("patch", [None, [1], "x", 3])
def test_top_level_non_object_is_rejected(patch: Any) -> None:
    with pytest.raises(BadRequest) as info:
        apply_merge_patch({"a": 1}, patch)
    assert info.value.message == "Invalid JSON Patch"


CREATE = [
    ({"a": 1}, {"a": 1}, {}),
    ({"a": 1}, {"a": 2}, {"a": 2}),
    ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": None}}),
    ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),
    ({"a": 1}, {"a": 1.0}, {"a": 1.0}),
    ({"a": 1}, {"a": True}, {"a": True}),
    ({"a": "x"}, {"a": {"b": 1}}, {"a": {"b": 1}}),
]


@pytest.mark.parametrize(("a", "b", "patch"), CREATE)
def test_create(a: dict[str, Any], b: dict[str, Any], patch: dict[str, Any]) -> None:
    assert create_merge_patch(a, b) == patch


def test_create_rejects_non_objects() -> None:
    with pytest.raises(TypeError):
        create_merge_patch({}, [])  # type: ignore[arg-type]


scalars = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4)
)
values_without_null = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)
objects_without_null = st.dictionaries(st.text(max_size=3), values_without_null, max_size=4)


@given(objects_without_null, objects_without_null)
def test_create_then_apply_gives_target(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert apply_merge_patch(a, create_merge_patch(a, b)) == b


@given(objects_without_null, objects_without_null)
def test_apply_is_idempotent(a: dict[str, Any], patch: dict[str, Any]) -> None:
    once = apply_merge_patch(a, patch)
    assert apply_merge_patch(once, patch) == once


@given(objects_without_null)
def test_self_diff_is_empty(a: dict[str, Any]) -> None:
    assert create_merge_patch(a, copy.deepcopy(a)) == {}
