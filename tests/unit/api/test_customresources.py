"""What a CustomResourceDefinition serves: ResourceInfos per served version, ordering, apply schema, printer."""

from __future__ import annotations

import datetime as dt

from timoner.api.customresources import apply_schema, crd_defaults, resources_for_crd, version_priority
from timoner.api.tables import to_table


def crd(**spec) -> dict:
    body = {
        "metadata": {"name": "widgets.example.com", "uid": "u1"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
                 "versions": [
                     {"name": "v1alpha1", "served": True, "storage": False},
                     {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}, "scale": {
                         "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                      "schema": {"openAPIV3Schema": {"type": "object"}}},
                     {"name": "v2beta1", "served": False, "storage": False},
                 ], **spec},
    }
    crd_defaults(body)
    return body


def test_versions_sort_as_upstream_discovery_orders_them():
    versions = ["v1alpha1", "v11alpha2", "foo1", "v10beta3", "v2", "foo10", "v1", "v3beta1", "v10", "v12alpha1",
                "v11beta2"]
    assert sorted(versions, key=version_priority) == [
        "v10", "v2", "v1", "v11beta2", "v10beta3", "v3beta1", "v12alpha1", "v11alpha2", "v1alpha1", "foo1",
        "foo10"]


def test_defaults_fill_names_and_conversion():
    body = crd()
    names = body["spec"]["names"]
    assert (names["singular"], names["listKind"]) == ("widget", "WidgetList")
    assert body["spec"]["conversion"] == {"strategy": "None"}


def test_one_resource_per_served_version_preferred_first():
    infos = resources_for_crd(crd())
    assert [i.version for i in infos] == ["v1", "v1alpha1"]
    v1, alpha = infos
    assert (v1.group, v1.kind, v1.plural, v1.singular, v1.namespaced) == ("example.com", "Widget", "widgets",
                                                                         "widget", True)
    assert v1.short_names == ("wd",) and v1.categories == ("all",) and v1.list_kind == "WidgetList"
    assert [s.name for s in v1.subresources] == ["status", "scale"] and v1.has_status
    assert alpha.subresources == () and not alpha.has_status
    assert v1.custom.storage_version == "v1" and v1.custom.multi_version
    assert v1.storage_prefix == alpha.storage_prefix == "/registry/example.com/widgets/"


def test_apply_schema_types_metadata_as_object_meta():
    schema = apply_schema({"type": "object", "properties": {"spec": {"type": "object"}}})
    assert schema["properties"]["metadata"] == {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    assert schema["properties"]["spec"] == {"type": "object"}
    assert apply_schema(None) is None


def test_printer_columns_make_the_table():
    body = crd()
    body["spec"]["versions"][1]["additionalPrinterColumns"] = [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
        {"name": "Started", "type": "date", "jsonPath": ".status.startTime", "description": "when"},
    ]
    [v1, alpha] = resources_for_crd(body)
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    obj = {"metadata": {"name": "w", "creationTimestamp": "2026-11-27T11:00:00Z"},
           "spec": {"replicas": 2.0, "paused": "no"},
           "status": {"conditions": [{"type": "Ready", "status": "True"}], "startTime": "2026-11-27T11:55:00Z"}}
    table = to_table(v1, [obj], now=now)
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0), ("Replicas", "integer", 0), ("Ready", "string", 0), ("Paused", "boolean", 1),
        ("Started", "date", 0)]
    assert table["columnDefinitions"][4]["description"] == "when"
    assert table["columnDefinitions"][1]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.replicas")
    assert table["rows"][0]["cells"] == ["w", 2, "True", None, "5m"]
    # a version without columns shows Name and Age
    plain = to_table(alpha, [obj], now=now)
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Age"]
    assert plain["rows"][0]["cells"] == ["w", "60m"]
