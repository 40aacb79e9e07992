"""The /openapi/v2 protobuf: read back with a minimal wire decoder, it is the swagger 2.0 shape kube-openapi parses."""

from __future__ import annotations

import json

from timoner.api.openapi_v2 import build_v2_protobuf
from timoner.api.schema import definitions


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, payload) pairs of one message: bytes for length-delimited fields, ints for varints."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        if key & 7 == 0:
            out.append((key >> 3, varint()))
        else:
            assert key & 7 == 2, key
            size = varint()
            out.append((key >> 3, data[i:i + size]))
            i += size
    return out


def _one(message: bytes, field: int):
    (value,) = [v for f, v in _fields(message) if f == field]
    return value


def _named(message: bytes, field: int) -> dict[str, bytes]:
    """A gnostic ordered map (repeated Named*: name = 1, value = 2) as a dict."""
    return {_one(entry, 1).decode(): _one(entry, 2) for f, entry in _fields(message) if f == field}


def _schemas() -> dict[str, bytes]:
    doc = build_v2_protobuf()
    assert _one(doc, 1) == b"2.0"
    assert _one(_one(doc, 2), 1) == b"Kubernetes"
    return _named(_one(doc, 9), 1)


def test_every_definition_is_there():
    assert set(_schemas()) == set(definitions())


def test_a_kind_carries_its_group_version_kind_types_and_references():
    deployment = _schemas()["io.k8s.api.apps.v1.Deployment"]
    assert _one(_one(deployment, 22), 1) == b"object"  # the nullable type list collapsed to one type
    extensions = _named(deployment, 31)
    gvk = json.loads(_one(extensions["x-kubernetes-group-version-kind"], 2))
    assert gvk == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    properties = _named(_one(deployment, 25), 1)
    assert set(properties) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert _one(properties["metadata"], 1) == b"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    spec = _named(_one(_schemas()["io.k8s.api.apps.v1.DeploymentSpec"], 25), 1)
    assert _one(_one(spec["replicas"], 22), 1) == b"integer"
    assert [v for f, v in _fields(_schemas()["io.k8s.api.apps.v1.DeploymentSpec"]) if f == 19] == [
        b"selector", b"template"]


def test_arrays_maps_and_the_string_like_types():
    schemas = _schemas()
    pod_spec = _named(_one(schemas["io.k8s.api.core.v1.PodSpec"], 25), 1)
    containers = pod_spec["containers"]
    assert _one(_one(containers, 22), 1) == b"array"
    assert _one(_one(_one(containers, 23), 1), 1) == b"#/definitions/io.k8s.api.core.v1.Container"
    labels = _named(_one(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"], 25), 1)["labels"]
    assert _one(_one(_one(_one(labels, 21), 1), 22), 1) == b"string"
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert (_one(_one(int_or_string, 22), 1), _one(int_or_string, 2)) == (b"string", b"int-or-string")
    assert _one(_one(schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"], 22), 1) == b"string"
