"""Schema-driven decoding: pruning, unknown-field paths and Go's type errors, as upstream answers them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timoner.api.errors import BadRequest
from timoner.api.structural import DecodeResult, compile_schema, decode, decode_with_schema

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"note": "x"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": 0.1},
                            },
                            "env": [{"name": "A", "value": "1"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def _decode_deployment(obj: dict[str, Any]) -> DecodeResult:
    return decode(obj, DEPLOYMENT, kind="Deployment", api_version="apps/v1")


def test_a_well_formed_object_decodes_unchanged() -> None:
    obj = deployment()
    assert _decode_deployment(obj) == DecodeResult(unknown_fields=[])
    assert obj == deployment()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets `a.b[0].c` (creating nothing: every step but the last must exist)."""

    def mutate(obj: dict[str, Any]) -> None:
        node: Any = obj
        steps = path.replace("[", ".[").split(".")
        for step in steps[:-1]:
            node = node[int(step[1:-1])] if step.startswith("[") else node[step]
        node[steps[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("paths", "reported"),
    [
        (["spec.foo"], ["spec.foo"]),
        (["spec.template.spec.containers[0].bar"], ["spec.template.spec.containers[0].bar"]),
        (["metadata.foo"], ["metadata.foo"]),
        (["top"], ["top"]),
        (["spec.template.spec.containers[0].ports[0].hostname"], ["spec.template.spec.containers[0].ports[0].hostname"]),
        (["spec.strategy.rollingUpdate.extra"], ["spec.strategy.rollingUpdate.extra"]),
        (["spec.template.spec.volumes[0].emptyDir.size"], ["spec.template.spec.volumes[0].emptyDir.size"]),
        # In the order the walk meets them, which is the document's order.
        (["spec.b", "metadata.a"], ["metadata.a", "spec.b"]),
    ],
)  # fmt: skip
def test_unknown_fields_are_reported_with_upstream_paths_and_pruned(
    paths: list[str], reported: list[str]
) -> None:
    obj = deployment()
    for path in paths:
        _set(path, {"any": "value"})(obj)
    assert _decode_deployment(obj).unknown_fields == reported
    assert obj == deployment()


def test_an_unknown_field_is_reported_even_when_null() -> None:
    obj = deployment()
    obj["spec"]["ghost"] = None
    assert _decode_deployment(obj).unknown_fields == ["spec.ghost"]
    assert "ghost" not in obj["spec"]


def test_map_keys_are_free_and_appear_in_nested_paths() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any-key/at.all": "v"}},
        "spec": {
            "containers": [{"name": "c", "resources": {"limits": {"example.com/gpu": "1"}}}],
            "overhead": {},
        },
    }
    before = copy.deepcopy(obj)
    assert decode(obj, "io.k8s.api.core.v1.Pod", kind="Pod", api_version="v1").unknown_fields == []
    assert obj == before


PREFIX = 'Deployment in version "v1" cannot be handled as a Deployment: '


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.replicas", "3",
         "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
        ("spec.replicas", 1.5,
         "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
        ("spec.replicas", 2.0,
         "json: cannot unmarshal number 2.0 into Go struct field DeploymentSpec.spec.replicas of type int32"),
        ("spec.replicas", 2**31,
         "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32"),
        ("spec.replicas", True,
         "json: cannot unmarshal bool into Go struct field DeploymentSpec.spec.replicas of type int32"),
        ("spec.paused", "yes",
         "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool"),
        ("spec.selector", "app=web",
         "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.selector of type v1.LabelSelector"),
        ("spec.template.spec.containers", {},
         "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers "
         "of type []v1.Container"),
        ("spec.template.spec.containers[0].image", 5,
         "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image "
         "of type string"),
        ("spec.template.spec.containers[0].args", ["a", 1],
         "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.args "
         "of type string"),
        ("metadata.labels", ["a"],
         "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"),
        ("metadata.labels", {"a": 1},
         "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
        ("spec.strategy.rollingUpdate.maxSurge", True,
         "json: cannot unmarshal bool into Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate."
         "maxSurge of type int32"),
        ("spec.strategy.rollingUpdate.maxSurge", 0.5,
         "json: cannot unmarshal number 0.5 into Go struct field RollingUpdateDeployment.spec.strategy."
         "rollingUpdate.maxSurge of type int32"),
        ("spec.template.spec.containers[0].resources.limits.cpu", "lots",
         "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
        ("spec.template.spec.containers[0].resources.limits.cpu", "1Mm", "unable to parse quantity's suffix"),
        ("spec.template.spec.containers[0].resources.limits.cpu", {"v": 1},
         "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
        ("metadata.creationTimestamp", 5,
         "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string"),
        ("metadata.creationTimestamp", "2024-01-02",
         'parsing time "2024-01-02" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"'),
        ("metadata.creationTimestamp", "yesterday",
         'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
        ("metadata.creationTimestamp", "2024-13-02T00:00:00Z", 'parsing time "2024-13-02T00:00:00Z": month out of range'),
        ("metadata.creationTimestamp", "2023-02-29T00:00:00Z", 'parsing time "2023-02-29T00:00:00Z": day out of range'),
        ("metadata.creationTimestamp", "2024-01-02T03:04:05Zjunk",
         'parsing time "2024-01-02T03:04:05Zjunk": extra text: "junk"'),
        ("kind", 7, "json: cannot unmarshal number into Go struct field Deployment.kind of type string"),
    ],
)  # fmt: skip
def test_type_errors_read_like_gos_decoder(path: str, value: Any, message: str) -> None:
    obj = deployment()
    _set(path, value)(obj)
    with pytest.raises(BadRequest) as caught:
        _decode_deployment(obj)
    assert caught.value.message == PREFIX + message
    assert caught.value.code == 400


def test_a_non_object_body_names_the_go_type() -> None:
    with pytest.raises(BadRequest) as caught:
        decode([], DEPLOYMENT, kind="Deployment", api_version="apps/v1")  # type: ignore[arg-type]
    assert caught.value.message == PREFIX + "json: cannot unmarshal array into Go value of type v1.Deployment"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.strategy.rollingUpdate.maxSurge", 2),
        ("spec.strategy.rollingUpdate.maxSurge", "50%"),
        ("spec.template.spec.containers[0].resources.limits.cpu", 2),
        ("spec.template.spec.containers[0].resources.limits.cpu", "1.5"),
        ("spec.template.spec.containers[0].resources.limits.memory", "1e3"),
        ("spec.template.spec.containers[0].resources.limits.memory", " 64Gi "),
        ("metadata.creationTimestamp", "2024-01-02T03:04:05Z"),
        ("metadata.creationTimestamp", "2024-01-02T03:04:05.123+02:00"),
        ("metadata.creationTimestamp", "2024-02-29T03:04:05Z"),
        ("spec.replicas", 0),
        ("spec.replicas", -(2**31)),
    ],
)
def test_values_go_accepts_pass_untouched(path: str, value: Any) -> None:
    obj = deployment()
    _set(path, value)(obj)
    expected = copy.deepcopy(obj)
    assert _decode_deployment(obj).unknown_fields == []
    assert obj == expected


def test_nulls_become_what_go_leaves_behind() -> None:
    obj = deployment()
    obj["spec"]["replicas"] = None
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = None
    obj["metadata"]["labels"]["gone"] = None
    obj["spec"]["template"]["spec"]["volumes"].append(None)
    obj["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", None]
    _decode_deployment(obj)
    assert "replicas" not in obj["spec"]
    assert "ports" not in obj["spec"]["template"]["spec"]["containers"][0]
    assert obj["metadata"]["labels"] == {"app": "web", "gone": ""}
    assert obj["spec"]["template"]["spec"]["volumes"][-1] == {}
    assert obj["spec"]["template"]["spec"]["containers"][0]["args"] == ["a", ""]


def test_emptied_object_meta_maps_and_lists_disappear_as_omitempty_encodes_them() -> None:
    obj = deployment()
    obj["metadata"].update(annotations={}, finalizers=[], ownerReferences=[], managedFields=[])
    obj["spec"]["template"]["metadata"]["labels"] = {}
    _decode_deployment(obj)
    assert obj["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert obj["spec"]["template"]["metadata"] == {}  # nested ObjectMeta too
    # Only ObjectMeta's fields: an empty struct such as emptyDir means "set", and stays.
    assert obj["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    widget_obj = widget()
    widget_obj["metadata"]["labels"] = {}
    decode_with_schema(widget_obj, compile_schema(WIDGET_SCHEMA), kind="Widget", api_version="example.com/v1")
    assert "labels" not in widget_obj["metadata"]


@pytest.mark.parametrize(
    ("definition", "kind", "api_version", "obj"),
    [
        ("io.k8s.api.apps.v1.ControllerRevision", "ControllerRevision", "apps/v1",
         {"metadata": {"name": "r"}, "revision": 1, "data": {"anything": [1, {"nested": None}], "x": None}}),
        ("io.k8s.api.core.v1.ConfigMap", "ConfigMap", "v1",
         {"metadata": {"name": "c", "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {"f:a": {}}}}]}}),
    ],
)  # fmt: skip
def test_free_form_fields_keep_everything(definition: str, kind: str, api_version: str, obj: dict) -> None:
    expected = copy.deepcopy(obj)
    assert decode(obj, definition, kind=kind, api_version=api_version).unknown_fields == []
    assert obj == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": "aGVsbG8="}, None),
        ({"a": "aGVs\nbG8="}, None),
        ({"a": ""}, None),
        ({"a": "not base64!"}, "illegal base64 data at input byte 3"),
        ({"a": "aGVsbG8"}, "illegal base64 data at input byte 4"),
        ({"a": 5}, "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"),
    ],
)
def test_secret_data_must_be_base64(data: dict[str, Any], message: str | None) -> None:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data}
    if message is None:
        assert decode(obj, "io.k8s.api.core.v1.Secret", kind="Secret", api_version="v1").unknown_fields == []
        return
    with pytest.raises(BadRequest) as caught:
        decode(obj, "io.k8s.api.core.v1.Secret", kind="Secret", api_version="v1")
    assert caught.value.message == f'Secret in version "v1" cannot be handled as a Secret: {message}'


def test_micro_time_needs_exactly_six_fraction_digits() -> None:
    base = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}}
    good = {**base, "spec": {"renewTime": "2024-01-02T03:04:05.123456Z"}}
    bad = {**base, "spec": {"renewTime": "2024-01-02T03:04:05Z"}}
    lease = "io.k8s.api.coordination.v1.Lease"
    assert decode(good, lease, kind="Lease", api_version="coordination.k8s.io/v1").unknown_fields == []
    with pytest.raises(BadRequest) as caught:
        decode(bad, lease, kind="Lease", api_version="coordination.k8s.io/v1")
    assert caught.value.message.endswith(
        'parsing time "2024-01-02T03:04:05Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"'
    )


# --- CRDs: JSONSchemaProps is recursive, and its Or* wrappers decode without strictness ---------------


def _crd(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


def test_crd_schemas_decode_recursively() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "typo": 1,
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "x-kubernetes-int-or-string": False}
                },
                "additionalProperties": False,
            },
            "list": {"type": "array", "items": {"type": "string", "hidden": True}},
        },
    }
    obj = _crd(schema)
    result = decode(
        obj,
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        kind="CustomResourceDefinition",
        api_version="apiextensions.k8s.io/v1",
    )
    # The Or* wrappers (items, additionalProperties) decode non-strictly: pruned, never reported.
    # Map keys join the path with a dot, as sigs.k8s.io/json's strict field stack does.
    assert result.unknown_fields == ["spec.versions[0].schema.openAPIV3Schema.properties.spec.typo"]
    stored = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert "typo" not in stored["spec"]
    assert stored["list"]["items"] == {"type": "string"}
    assert stored["spec"]["additionalProperties"] is False


# --- decode_with_schema: structural schemas of custom resources -----------------------------------------

WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                },
                "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                },
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "unknown", "pruned"),
    [
        ({"size": 1, "port": "http"}, [], {"size": 1, "port": "http"}),
        ({"size": 1, "color": "red"}, ["spec.color"], {"size": 1}),
        ({"tags": [{"k": "a", "v": "b"}]}, ["spec.tags[0].v"], {"tags": [{"k": "a"}]}),
        ({"limits": {"cpu": 2}}, [], {"limits": {"cpu": 2}}),
        ({"config": {"free": {"form": [1, None]}}}, [], {"config": {"free": {"form": [1, None]}}}),
        (
            {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "bogus": 1}, "spec": {"a": 1},
                          "extra": 1}},
            ["spec.template.metadata.bogus", "spec.template.extra"],
            {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"a": 1}}},
        ),
    ],
)  # fmt: skip
def test_decode_with_schema_prunes_custom_resources(spec: dict, unknown: list[str], pruned: dict) -> None:
    obj = widget(**spec)
    result = decode_with_schema(obj, WIDGET_SCHEMA, kind="Widget", api_version="example.com/v1")
    assert result.unknown_fields == unknown
    assert obj == widget(**pruned)


def test_decode_with_schema_checks_types_by_default() -> None:
    with pytest.raises(BadRequest) as caught:
        decode_with_schema(widget(size="big"), WIDGET_SCHEMA, kind="Widget", api_version="example.com/v1")
    assert caught.value.message == (
        'Widget in version "v1" cannot be handled as a Widget: '
        "json: cannot unmarshal string into Go struct field Widget.spec.size of type int64"
    )


def test_untyped_schemas_only_prune() -> None:
    compiled = compile_schema(WIDGET_SCHEMA, typed=False)
    obj = widget(size="big", port=None, tags="nope", color=1)
    result = decode_with_schema(obj, compiled, kind="Widget", api_version="example.com/v1")
    assert result.unknown_fields == ["spec.color"]
    assert obj == widget(size="big", port=None, tags="nope")


def test_metadata_of_a_custom_resource_is_object_meta() -> None:
    obj = widget()
    obj["metadata"]["surprise"] = True
    result = decode_with_schema(
        obj, compile_schema(WIDGET_SCHEMA), kind="Widget", api_version="example.com/v1"
    )
    assert result.unknown_fields == ["metadata.surprise"]
    assert obj == widget()


# --- properties -------------------------------------------------------------------------------------------

_FIELD_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8).map(lambda s: "zz" + s)
_INJECTION_POINTS = [
    "", "metadata", "spec", "spec.selector", "spec.strategy", "spec.strategy.rollingUpdate", "spec.template",
    "spec.template.metadata", "spec.template.spec", "spec.template.spec.containers[0]",
    "spec.template.spec.containers[0].ports[0]", "spec.template.spec.containers[0].readinessProbe.httpGet",
    "spec.template.spec.volumes[0]", "spec.template.spec.volumes[0].emptyDir",
]  # fmt: skip


def _at(obj: dict[str, Any], path: str) -> dict[str, Any]:
    node: Any = obj
    for step in path.replace("[", ".[").split(".") if path else []:
        node = node[int(step[1:-1])] if step.startswith("[") else node[step]
    return node


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_INJECTION_POINTS), _FIELD_NAMES, st.integers()), max_size=6))
def test_exactly_the_injected_fields_are_reported_and_removed(injections: list[tuple[str, str, int]]) -> None:
    obj = deployment()
    expected: set[str] = set()
    for where, name, value in injections:
        _at(obj, where)[name] = value
        expected.add(f"{where}.{name}" if where else name)
    result = _decode_deployment(obj)
    assert sorted(result.unknown_fields) == sorted(expected)
    assert obj == deployment()
    # Decoding is idempotent: a pruned object has nothing left to report.
    assert _decode_deployment(obj).unknown_fields == []
