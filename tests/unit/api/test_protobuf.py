"""decode_protobuf on hand-built messages: the special types, presence, names, errors.

Messages are built with the same descriptors the decoder uses
(`message_class`) and wrapped in a `runtime.Unknown` envelope as kubectl
does. `test_protobuf_kubectl.py` checks real kubectl bodies; the last test
here checks the rename and inline tables against the OpenAPI schema, for
every served message.
"""

from __future__ import annotations

import gzip
import importlib.resources
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from timoner.api import protobuf
from timoner.api.errors import BadRequest
from timoner.api.protobuf import decode_protobuf, go_duration, message_class
from timoner.api.registry import BUILTIN
from timoner.api.schema import definitions

META = "k8s.io.apimachinery.pkg.apis.meta.v1"


# --- hand-built messages: the special types --------------------------------


def _message(full_name: str, **fields: Any) -> Any:
    return message_class(full_name)(**fields)


def _envelope(api_version: str, kind: str, obj: Any, *, content_encoding: str = "") -> bytes:
    raw = obj if isinstance(obj, bytes) else obj.SerializeToString()
    unknown = _message(
        "k8s.io.apimachinery.pkg.runtime.Unknown",
        typeMeta={"apiVersion": api_version, "kind": kind},
        raw=raw,
        contentEncoding=content_encoding,
    )
    return b"k8s\x00" + unknown.SerializeToString()


def test_pod_with_times_quantities_int_or_strings_and_inline_fields() -> None:
    pod = _message(
        "k8s.io.api.core.v1.Pod",
        metadata={
            "name": "p",
            "creationTimestamp": {"seconds": 1704067200, "nanos": 999},  # JSON drops the nanoseconds
            "deletionGracePeriodSeconds": 0,
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "time": {"seconds": 1704067201},
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"Raw": b'{"f:metadata":{"f:labels":{}}}'},
                }
            ],
        },
        spec={
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": "nginx",
                    "stdin": False,
                    "resources": {"limits": {"cpu": {"string": "500m"}, "memory": {"string": "1Gi"}}},
                    "livenessProbe": {
                        "handler": {"httpGet": {"path": "/", "port": {"type": 0, "intVal": 8080}}},
                        "periodSeconds": 10,
                    },
                    "readinessProbe": {"handler": {"tcpSocket": {"port": {"type": 1, "strVal": "http"}}}},
                    "env": [
                        {
                            "name": "K",
                            "valueFrom": {
                                "secretKeyRef": {"localObjectReference": {"name": "s"}, "key": "k"}
                            },
                        }
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "v",
                    "volumeSource": {
                        "configMap": {"localObjectReference": {"name": "cm"}, "defaultMode": 420}
                    },
                }
            ],
        },
    )
    assert decode_protobuf(_envelope("v1", "Pod", pod)) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0,
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "time": "2024-01-01T00:00:01Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {}}},
                }
            ],
        },
        "spec": {
            "volumes": [{"name": "v", "configMap": {"name": "cm", "defaultMode": 420}}],
            "containers": [
                {
                    "name": "c",
                    "image": "nginx",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                    "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 10},
                    "readinessProbe": {"tcpSocket": {"port": "http"}},
                }
            ],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
        },
    }


def test_micro_time_has_six_fractional_digits() -> None:
    event = _message(
        "k8s.io.api.events.v1.Event",
        metadata={"name": "e"},
        eventTime={"seconds": 1704067200, "nanos": 123456789},
        series={"count": 2, "lastObservedTime": {"seconds": 1704067200, "nanos": 0}},
    )
    got = decode_protobuf(_envelope("events.k8s.io/v1", "Event", event))
    assert got["eventTime"] == "2024-01-01T00:00:00.123456Z"
    assert got["series"] == {"count": 2, "lastObservedTime": "2024-01-01T00:00:00.000000Z"}
    # A value field left at the zero time (0 s) is Go's null: omitted.
    assert "creationTimestamp" not in got["metadata"]


def test_raw_extension_holds_json_or_a_nested_protobuf_object() -> None:
    revision = _message(
        "k8s.io.api.apps.v1.ControllerRevision",
        metadata={"name": "r"},
        data={"raw": b'{"spec":{"replicas":3}}'},
        revision=4,
    )
    got = decode_protobuf(_envelope("apps/v1", "ControllerRevision", revision))
    assert got["data"] == {"spec": {"replicas": 3}}
    assert got["revision"] == 4

    configmap = _envelope("v1", "ConfigMap", _message("k8s.io.api.core.v1.ConfigMap", metadata={"name": "c"}))
    items = [{"raw": configmap}, {"raw": b'{"apiVersion":"v1","kind":"Secret"}'}]
    got = decode_protobuf(_envelope("v1", "List", _message("k8s.io.api.core.v1.List", items=items)))
    assert got["items"] == [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "v1", "kind": "Secret"},
    ]


def test_eviction_with_delete_options_keeps_pointer_zeros() -> None:
    eviction = _message(
        "k8s.io.api.policy.v1.Eviction",
        metadata={"name": "p", "namespace": "ns"},
        deleteOptions={
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u-1"},
            "dryRun": ["All"],
            "propagationPolicy": "Foreground",
        },
    )
    assert decode_protobuf(_envelope("policy/v1", "Eviction", eviction)) == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "p", "namespace": "ns"},
        "deleteOptions": {
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u-1"},
            "dryRun": ["All"],
            "propagationPolicy": "Foreground",
        },
    }


@pytest.mark.parametrize("api_version", ["v1", "apps/v1", "batch/v1", "meta.k8s.io/v1"])
def test_delete_options_decode_under_any_group(api_version: str) -> None:
    options = _message(f"{META}.DeleteOptions", orphanDependents=False, propagationPolicy="Background")
    assert decode_protobuf(_envelope(api_version, "DeleteOptions", options)) == {
        "apiVersion": api_version,
        "kind": "DeleteOptions",
        "orphanDependents": False,
        "propagationPolicy": "Background",
    }


def test_named_slices_renamed_fields_and_bytes() -> None:
    review = _message(
        "k8s.io.api.authorization.v1.SubjectAccessReview",
        spec={
            "user": "u",
            "extra": {"scopes": {"items": ["a", "b"]}},
            "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
        },
    )
    got = decode_protobuf(_envelope("authorization.k8s.io/v1", "SubjectAccessReview", review))
    assert got["spec"] == {
        "user": "u",
        "extra": {"scopes": ["a", "b"]},
        "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
    }

    token = _message(
        "k8s.io.api.authentication.v1.TokenRequest",
        spec={
            "audiences": ["api"],
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "name": "p", "uID": "u-1"},
        },
    )
    got = decode_protobuf(_envelope("authentication.k8s.io/v1", "TokenRequest", token))
    assert got["spec"]["boundObjectRef"] == {"kind": "Pod", "name": "p", "uid": "u-1"}

    webhook = _message(
        "k8s.io.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        metadata={"name": "w"},
        Webhooks=[
            {
                "name": "w.example.com",
                "clientConfig": {"caBundle": b"\x01\x02", "url": "https://x"},
                "rules": [{"operations": ["CREATE"], "rule": {"apiGroups": [""], "resources": ["pods"]}}],
            }
        ],
    )
    got = decode_protobuf(
        _envelope("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", webhook)
    )
    assert got["webhooks"] == [
        {
            "name": "w.example.com",
            "clientConfig": {"url": "https://x", "caBundle": "AQI="},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "resources": ["pods"]}],
        }
    ]


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5\u00b5s"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_661_000_000_001, "1h1m1.000000001s"),
        (-90_000_000_000, "-1m30s"),
    ],
)
def test_go_duration(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text


# --- errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b'{"kind":"ConfigMap"}', "magic number", id="json"),
        pytest.param(b"k8s\x00\xff\xff\xff", "cannot decode protobuf runtime.Unknown", id="garbage"),
        pytest.param(_envelope("", "", b""), "no apiVersion and kind", id="no-type-meta"),
        pytest.param(
            _envelope("v1", "NoSuchKind", b""), "no protobuf schema for NoSuchKind in v1", id="unknown-kind"
        ),
        pytest.param(
            _envelope("example.com/v1", "Widget", b""), "no protobuf schema for Widget", id="custom-group"
        ),
        pytest.param(_envelope("v1", "Pod.SpecEntry", b""), "invalid apiVersion", id="nested-type-name"),
        pytest.param(
            _envelope("v1", "ConfigMap", b"\x0a\x05ab"),
            "cannot decode protobuf v1 ConfigMap",
            id="truncated-object",
        ),
        pytest.param(
            _envelope("v1", "ConfigMap", b"", content_encoding="gzip"),
            "content encoding 'gzip'",
            id="content-encoding",
        ),
        # ControllerRevision field 2 (data) = RawExtension whose field 1 (raw) is "{".
        pytest.param(
            _envelope("apps/v1", "ControllerRevision", b"\x12\x03\x0a\x01{"),
            "not JSON",
            id="raw-extension-not-json",
        ),
    ],
)
def test_bad_bodies_are_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as caught:
        decode_protobuf(body)
    assert caught.value.code == 400


# --- the name tables against the OpenAPI schema ----------------------------


def test_json_names_match_the_openapi_schema() -> None:
    """Every served message yields exactly its OpenAPI properties, inline fields merged."""
    defs = definitions()
    pool = protobuf._schema().pool
    special = set(protobuf._SPECIAL)

    def keys(descriptor: Any) -> set[str]:
        out: set[str] = set()
        for f in protobuf._plan(descriptor):
            out |= keys(f.field.message_type) if f.inline else {f.key}
        return out

    checked = 0
    for resource in BUILTIN:
        if resource.group == "apiextensions.k8s.io":
            continue  # CRDs are JSON-only (docs/ARCHITECTURE.md, "Deliberate differences"); tested below
        assert pool.FindMessageTypeByName(protobuf._message_name(resource.api_version, resource.kind))
    for name in _all_message_names(pool):
        definition = defs.get("io." + name.replace("k8s.io.", "k8s.", 1))
        if definition is None or name in special:
            continue
        descriptor = pool.FindMessageTypeByName(name)
        properties = set(definition.get("properties", {})) - {"apiVersion", "kind"}
        assert keys(descriptor) - {"apiVersion", "kind"} == properties, name
        checked += 1
    assert checked > 300


def test_a_crd_sent_as_protobuf_is_refused_with_a_clear_message() -> None:
    with pytest.raises(BadRequest, match="send it as application/json"):
        decode_protobuf(_envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", b""))


def _all_message_names(pool: Any) -> list[str]:
    data = importlib.resources.files("timoner.api").joinpath("_data/kubernetes-protos.pb.gz").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(gzip.decompress(data)).file
    return [f"{fdp.package}.{m.name}" for fdp in files for m in fdp.message_type]


def test_invalid_utf8_becomes_replacement_characters_as_in_go() -> None:
    configmap = b"\x0a\x04\x0a\x02\xff\xfe"  # metadata { name: "\xff\xfe" }; proto2 does not check UTF-8
    got = decode_protobuf(_envelope("v1", "ConfigMap", configmap))
    assert got["metadata"] == {"name": "\ufffd\ufffd"}


def test_unbounded_nesting_of_embedded_objects_is_a_bad_request() -> None:
    revision = message_class("k8s.io.api.apps.v1.ControllerRevision")
    body = _envelope("apps/v1", "ControllerRevision", revision(data={"raw": b"{}"}))
    for _ in range(2000):
        body = _envelope("apps/v1", "ControllerRevision", revision(data={"raw": body}))
    with pytest.raises(BadRequest, match="too deeply"):
        decode_protobuf(body)
