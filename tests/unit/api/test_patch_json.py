"""JSON patch (RFC 6902) with evanphx/json-patch v4 behaviour and kube-apiserver's error shapes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.errors import BadRequest, Invalid, TooLarge
from timoner.api.patch import GENERIC_INVALID_MESSAGE, PatchFailed, apply_json_patch

DOC: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web", "a/b": "1", "m~n": "2"}},
    "spec": {"replicas": 1, "items": ["a", "b", "c"], "flag": True, "nothing": None},
}

# (ops, path into the result, expected value there)
CASES = [
    ([{"op": "add", "path": "/metadata/labels/tier", "value": "fe"}], ("metadata", "labels", "tier"), "fe"),
    ([{"op": "add", "path": "/spec/replicas", "value": 3}], ("spec", "replicas"), 3),
    ([{"op": "add", "path": "/spec/items/-", "value": "d"}], ("spec", "items"), ["a", "b", "c", "d"]),
    ([{"op": "add", "path": "/spec/items/0", "value": "z"}], ("spec", "items"), ["z", "a", "b", "c"]),
    ([{"op": "add", "path": "/spec/items/3", "value": "z"}], ("spec", "items"), ["a", "b", "c", "z"]),
    ([{"op": "add", "path": "/spec/items/-1", "value": "z"}], ("spec", "items"), ["a", "b", "c", "z"]),
    ([{"op": "add", "path": "/spec/new"}], ("spec", "new"), None),
    ([{"op": "remove", "path": "/metadata/labels/a~1b"}], ("metadata", "labels"), {"app": "web", "m~n": "2"}),
    ([{"op": "remove", "path": "/metadata/labels/m~0n"}], ("metadata", "labels"), {"app": "web", "a/b": "1"}),
    ([{"op": "remove", "path": "/spec/items/1"}], ("spec", "items"), ["a", "c"]),
    ([{"op": "remove", "path": "/spec/items/-1"}], ("spec", "items"), ["a", "b"]),
    ([{"op": "replace", "path": "/spec/replicas", "value": 5}], ("spec", "replicas"), 5),
    ([{"op": "replace", "path": "/spec/items/0", "value": "q"}], ("spec", "items"), ["q", "b", "c"]),
    # The library adds a missing object member on replace.
    ([{"op": "replace", "path": "/spec/paused", "value": True}], ("spec", "paused"), True),
    ([{"op": "move", "from": "/spec/replicas", "path": "/spec/count"}], ("spec", "count"), 1),
    ([{"op": "move", "from": "/spec/items/0", "path": "/spec/items/-"}], ("spec", "items"), ["b", "c", "a"]),
    ([{"op": "copy", "from": "/metadata/labels", "path": "/spec/labels"}], ("spec", "labels", "app"), "web"),
    ([{"op": "copy", "from": "/spec/missing", "path": "/spec/copied"}], ("spec", "copied"), None),
    (
        [{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "add", "path": "/x", "value": 1}],
        ("x",),
        1,
    ),
    (
        [{"op": "test", "path": "/spec/missing", "value": None}, {"op": "add", "path": "/x", "value": 2}],
        ("x",),
        2,
    ),
    ([{"op": "test", "path": "/spec/items", "value": ["a", "b", "c"]}], ("spec", "replicas"), 1),
    ([], ("spec", "replicas"), 1),
    (None, ("spec", "replicas"), 1),
]


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@pytest.mark.parametrize(("ops", "path", "expected"), CASES)
def test_apply(ops: Any, path: tuple[str, ...], expected: Any) -> None:
    before = copy.deepcopy(DOC)
    result = apply_json_patch(DOC, ops)
    assert _at(result, path) == expected
    assert DOC == before  # the input is never mutated


def test_replace_whole_document() -> None:
    assert apply_json_patch(DOC, [{"op": "replace", "path": "", "value": {"a": 1}}]) == {"a": 1}


def test_result_does_not_share_values_with_patch() -> None:
    value = {"k": ["v"]}
    result = apply_json_patch({}, [{"op": "add", "path": "/x", "value": value}])
    result["x"]["k"].append("w")
    assert value == {"k": ["v"]}


FAILURES = [
    (
        [{"op": "test", "path": "/spec/replicas", "value": 2}],
        "testing value /spec/replicas failed: test failed",
    ),
    (
        [{"op": "test", "path": "/spec/replicas", "value": 1.0}],
        "testing value /spec/replicas failed: test failed",
    ),
    ([{"op": "test", "path": "/spec/flag", "value": 1}], "testing value /spec/flag failed: test failed"),
    ([{"op": "test", "path": "/spec/missing", "value": "x"}], "testing value /spec/missing failed"),
    ([{"op": "test", "path": "/spec/replicas"}], "testing value /spec/replicas failed"),
    (
        [{"op": "remove", "path": "/metadata/annotations/x"}],
        'remove operation does not apply: doc is missing path: "/metadata/annotations/x"',
    ),
    ([{"op": "remove", "path": "/spec/absent"}], "Unable to remove nonexistent key: absent: missing value"),
    ([{"op": "remove", "path": "/spec/items/3"}], "Unable to access invalid index: 3"),
    ([{"op": "add", "path": "/spec/items/5", "value": 1}], "Unable to access invalid index: 5"),
    ([{"op": "add", "path": "/spec/items/x", "value": 1}], "value was not a proper array index: 'x'"),
    (
        [{"op": "add", "path": "/a/b/c", "value": 1}],
        'add operation does not apply: doc is missing path: "/a/b/c"',
    ),
    ([{"op": "add", "path": "/spec/replicas/x", "value": 1}], "doc is missing path"),
    ([{"op": "add", "path": "", "value": 1}], "doc is missing path"),
    ([{"op": "replace", "path": "/spec/items/9", "value": 1}], "Unable to access invalid index: 9"),
    ([{"op": "replace", "path": "", "value": 1}], "replace operation value must be object or array"),
    ([{"op": "move", "from": "/spec/absent", "path": "/x"}], "Unable to remove nonexistent key"),
    ([{"op": "move", "from": "/spec", "path": "/spec/x"}], "doc is missing destination path"),
    ([{"op": "frobnicate", "path": "/x"}], "Unexpected kind: frobnicate"),
    ([{"path": "/x"}], "Unexpected kind: unknown"),
    ([None], "Unexpected kind: unknown"),
    ([{"op": "add", "value": 1}], "add operation failed to decode path"),
    ([{"op": "copy", "path": "/x"}], "copy operation failed to decode from"),
]


@pytest.mark.parametrize(("ops", "detail"), FAILURES)
def test_failures_are_generic_422(ops: Any, detail: str) -> None:
    with pytest.raises(PatchFailed) as info:
        apply_json_patch(DOC, ops)
    err = info.value
    assert isinstance(err, Invalid)
    assert err.code == 422
    assert err.status()["reason"] == "Invalid"
    assert err.status()["message"] == GENERIC_INVALID_MESSAGE
    assert detail in err.detail


def test_failure_leaves_input_untouched() -> None:
    before = copy.deepcopy(DOC)
    with pytest.raises(PatchFailed):
        apply_json_patch(
            DOC, [{"op": "remove", "path": "/spec/replicas"}, {"op": "test", "path": "/x", "value": 1}]
        )
    assert DOC == before


MALFORMED = [
    ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("x", "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
    (["x"], "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
    ([[1]], "json: cannot unmarshal array into Go value of type jsonpatch.Operation"),
    ([1], "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
]


@pytest.mark.parametrize(("ops", "message"), MALFORMED)
def test_malformed_patch_is_bad_request(ops: Any, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        apply_json_patch(DOC, ops)
    assert info.value.code == 400
    assert info.value.message == message


def test_too_many_operations() -> None:
    ops = [{"op": "test", "path": "/spec/replicas", "value": 1}] * 10001
    with pytest.raises(TooLarge) as info:
        apply_json_patch(DOC, ops)
    assert info.value.code == 413
    assert info.value.message.endswith("The allowed maximum operations in a JSON patch is 10000, got 10001")
    assert apply_json_patch(DOC, ops[:10000]) == DOC


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5), st.text(max_size=6), json_values)
def test_add_then_test_then_remove(doc: dict[str, Any], key: str, value: Any) -> None:
    path = "/" + _escape(key)
    added = apply_json_patch(
        doc, [{"op": "add", "path": path, "value": value}, {"op": "test", "path": path, "value": value}]
    )
    assert added[key] == value
    removed = apply_json_patch(added, [{"op": "remove", "path": path}])
    expected = dict(doc)
    expected.pop(key, None)
    assert removed == expected
