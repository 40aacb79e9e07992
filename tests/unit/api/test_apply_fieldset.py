"""fieldsV1 encoding of field sets, checked against what kube-apiserver writes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.errors import BadRequest
from timoner.api.patch import decode_fields, encode_fields, path_string
from timoner.api.patch._fieldset import json_text

# A managedFields entry of `kubectl create deployment nginx --image=nginx` on kube-apiserver v1.32,
# trimmed to the shapes that matter: members with children ("."), keys, nested keys, leaves.
UPSTREAM = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {
                    'k:{"name":"nginx"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                    }
                },
                "f:finalizers": {'v:"a"': {}, 'v:"b"': {}},
                "f:x": {"i:0": {}, "i:10": {}},
            },
        },
    },
}


def test_round_trip_of_upstream_entry_is_byte_exact():
    paths = decode_fields(UPSTREAM)
    assert orjson.dumps(encode_fields(paths)) == orjson.dumps(UPSTREAM)


def test_members_and_children():
    paths = decode_fields(UPSTREAM)
    labels = (("f", "metadata"), ("f", "labels"))
    assert labels in paths and (*labels, ("f", "app")) in paths
    assert (("f", "spec"),) not in paths
    assert (("f", "spec"), ("f", "selector")) in paths
    item = (("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"), ("k", (("name", '"nginx"'),)))
    assert item in paths


@pytest.mark.parametrize(("path", "text"), [
    ((("f", "spec"), ("f", "replicas")), ".spec.replicas"),
    ((("f", "spec"), ("f", "containers"), ("k", (("name", '"nginx"'),)), ("f", "image")),
     '.spec.containers[name="nginx"].image'),
    ((("f", "ports"), ("k", (("containerPort", "80"), ("protocol", '"TCP"')))),
     '.ports[containerPort=80,protocol="TCP"]'),
    ((("f", "finalizers"), ("v", '"a"')), '.finalizers[="a"]'),
    ((("f", "args"), ("i", 3)), ".args[3]"),
])
def test_path_string_as_upstream(path, text):
    assert path_string(path) == text


@pytest.mark.parametrize("bad", [
    {"x:spec": {}}, {"f:spec": []}, {"k:[1]": {}}, {"k:{}": {}}, {"i:z": {}}, {"v:{": {}}, [],
])
def test_malformed_fields_are_bad_request(bad):
    with pytest.raises(BadRequest):
        decode_fields(bad)


_scalar = st.one_of(st.integers(-5, 5), st.text("abc", max_size=3), st.booleans())
_element = st.one_of(
    st.tuples(st.just("f"), st.text("abcxyz.", min_size=1, max_size=4)),
    st.tuples(st.just("k"), st.dictionaries(st.sampled_from(["name", "port"]), _scalar, min_size=1).map(
        lambda d: tuple(sorted((k, json_text(v)) for k, v in d.items())))),
    st.tuples(st.just("v"), _scalar.map(json_text)),
    st.tuples(st.just("i"), st.integers(0, 20)),
)


@given(st.sets(st.lists(_element, min_size=1, max_size=4).map(tuple), max_size=12))
def test_encode_decode_round_trip(paths):
    encoded = encode_fields(paths)
    assert decode_fields(encoded) == paths
    # And the encoding survives JSON.
    assert decode_fields(orjson.loads(orjson.dumps(encoded))) == paths
