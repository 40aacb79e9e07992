"""CustomSchema: pruning, defaulting and validation of custom resources, as the apiextensions-apiserver does them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timoner.api.crd import CustomSchema
from timoner.api.errors import Cause

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "minLength": 1, "maxLength": 10, "pattern": "^[a-z]+$"},
                "replicas": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 1000000, "default": 1},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "multipleOf": 0.5},
                "mode": {"type": "string", "enum": ["Fast", "Safe"], "default": "Safe"},
                "port": {"x-kubernetes-int-or-string": True},
                "id": {"type": "string", "format": "uuid"},
                "when": {"type": "string", "format": "date-time"},
                "note": {"type": "string", "nullable": True},
                "plain": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
                "anything": {"type": "object", "additionalProperties": True},
                "items": {
                    "type": "array",
                    "maxItems": 3,
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "size": {"type": "integer", "default": 5}},
                    },
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "protocol"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "protocol": {"type": "string", "default": "TCP"},
                            "port": {"type": "integer"},
                        },
                    },
                },
                "tags": {"type": "array", "minItems": 1, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                          "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "choice": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                           "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
                "defaulted": {"type": "object", "default": {},
                              "properties": {"inner": {"type": "string", "default": "x"}}},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


@pytest.fixture(scope="module")
def schema() -> CustomSchema:
    return CustomSchema(SCHEMA)


def cr(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t", "labels": {"a": "b"}},
            "spec": {"image": "nginx", **spec}}


# ---------------------------------------------------------------- pruning


def test_prune_removes_unknown_fields_and_reports_paths(schema: CustomSchema) -> None:
    obj = cr(foo=1, items=[{"name": "a", "bar": 2}], labels={"k": "v"},
             extra={"kept": {"deep": 1}, "known": {"a": "x", "b": "gone"}})
    obj["other"] = {"x": 1}
    removed = schema.prune(obj)
    assert sorted(removed) == ["other", "spec.extra.known.b", "spec.foo", "spec.items[0].bar"]
    assert obj["spec"] == {"image": "nginx", "items": [{"name": "a"}], "labels": {"k": "v"},
                           "extra": {"kept": {"deep": 1}, "known": {"a": "x"}}}
    assert obj["metadata"] == {"name": "t", "labels": {"a": "b"}}
    assert obj["apiVersion"] == "example.com/v1" and obj["kind"] == "Thing"


def test_prune_keeps_preserved_subtrees(schema: CustomSchema) -> None:
    obj = cr()
    obj["status"] = {"anything": [{"goes": True}]}
    assert schema.prune(obj) == []
    assert obj["status"] == {"anything": [{"goes": True}]}


def test_prune_additional_properties_true_keeps_keys_but_not_their_fields(schema: CustomSchema) -> None:
    obj = cr(anything={"a": 1, "b": {"c": 2}})
    assert schema.prune(obj) == ["spec.anything.b.c"]
    assert obj["spec"]["anything"] == {"a": 1, "b": {}}


def test_prune_embedded_resource_metadata_to_object_meta(schema: CustomSchema) -> None:
    obj = cr(template={"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}, "bogus": 1},
                       "spec": {"containers": []}})
    assert schema.prune(obj) == ["spec.template.metadata.bogus"]
    assert obj["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}},
                                       "spec": {"containers": []}}


def test_prune_without_schema_and_with_preserved_root() -> None:
    obj = cr()
    obj["x"] = 1
    assert CustomSchema(None).prune(obj) == ["spec", "x"]
    obj = cr(extra=1)
    obj["other"] = {"x": 1}
    # spec.preserveUnknownFields: true (legacy) switches pruning off altogether.
    assert CustomSchema(SCHEMA, preserve_unknown_root=True).prune(obj) == []
    assert obj["spec"]["extra"] == 1 and obj["other"] == {"x": 1}


def test_prune_is_the_api_servers_pruner() -> None:
    # One pruner (timoner.api.structural, untyped) serves CustomSchema and the decoder of the API server.
    from timoner.api.structural import compile_schema, decode_with_schema

    obj = cr(foo=1, items=[{"name": "a", "bar": 2}], anything={"b": {"c": 2}})
    served = copy.deepcopy(obj)
    result = decode_with_schema(served, compile_schema(SCHEMA, typed=False), kind="Thing",
                                api_version="example.com/v1")
    assert CustomSchema(SCHEMA).prune(obj) == sorted(result.unknown_fields)
    assert obj == served


def test_prune_by_the_values_shape_as_upstream() -> None:
    item = {"type": "object", "properties": {"a": {"type": "string"}}}
    schema = CustomSchema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string"},
        "free": {"type": "object"},
        "either": {"x-kubernetes-int-or-string": True},
        "kept": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"list": {"type": "array", "items": item}, "raw": {"type": "array"}}},
        "loose": {"type": "array", "x-kubernetes-preserve-unknown-fields": True, "items": item},
    }}}})
    obj = cr(name={"x": 1}, free={"y": 2}, either=[{"z": 3}], loose=[{"a": "1", "b": 2}],
             kept={"other": {"o": 1}, "list": [{"a": "1", "b": 2}], "raw": [{"r": 1}]})
    del obj["spec"]["image"]
    # An object where the schema has a string, or no properties, loses its fields (prune goes by the
    # value's shape). Below x-kubernetes-preserve-unknown-fields the known fields are pruned as usual,
    # but the items of a preserving list are skipPruned: their unknown fields stay.
    assert schema.prune(obj) == ["spec.either[0].z", "spec.free.y", "spec.kept.list[0].b", "spec.kept.raw[0].r",
                                 "spec.name.x"]
    assert obj["spec"] == {"name": {}, "free": {}, "either": [{}], "loose": [{"a": "1", "b": 2}],
                           "kept": {"other": {"o": 1}, "list": [{"a": "1"}], "raw": [{}]}}


def test_prune_metadata_to_object_meta() -> None:
    obj = cr()
    obj["metadata"]["bogus"] = {"x": 1}
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "extra": 1}]
    assert CustomSchema(SCHEMA).prune(obj) == ["metadata.bogus", "metadata.ownerReferences[0].extra"]
    assert obj["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}]


# ---------------------------------------------------------------- defaulting


def test_default_fills_missing_fields_items_and_defaults_of_defaults(schema: CustomSchema) -> None:
    obj = cr(items=[{"name": "a"}, {"name": "b", "size": 1}], ports=[{"name": "http"}])
    schema.default(obj)
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["mode"] == "Safe"
    assert spec["items"] == [{"name": "a", "size": 5}, {"name": "b", "size": 1}]
    assert spec["ports"] == [{"name": "http", "protocol": "TCP"}]
    assert spec["defaulted"] == {"inner": "x"}
    assert "status" not in obj  # no default, nothing made up


def test_default_copies_values() -> None:
    schema = CustomSchema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "list": {"type": "array", "items": {"type": "string"}, "default": ["a"]}}}}})
    one, two = {"spec": {}}, {"spec": {}}
    schema.default(one)
    schema.default(two)
    one["spec"]["list"].append("b")
    assert two["spec"]["list"] == ["a"]


def test_default_null_handling(schema: CustomSchema) -> None:
    obj = cr(replicas=None, note=None, plain=None, labels={"k": None})
    schema.default(obj)
    spec = obj["spec"]
    assert spec["replicas"] == 1  # non-nullable null with a default gets the default
    assert spec["note"] is None  # nullable: kept
    assert "plain" not in spec  # non-nullable without default: pruned
    assert spec["labels"] == {}


# ---------------------------------------------------------------- validation


def test_valid_object(schema: CustomSchema) -> None:
    obj = cr(replicas=3, ratio=1.5, port="http", id="123e4567-e89b-12d3-a456-426614174000",
             when="2024-01-02T03:04:05Z", labels={"a": "b"}, tags=["x", "y"], choice={"a": "1"},
             ports=[{"name": "a", "protocol": "TCP"}, {"name": "a", "protocol": "UDP"}],
             template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    assert schema.validate(obj) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"replicas": "3"},
         Cause("FieldValueTypeInvalid", 'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
               "spec.replicas")),
        ({"replicas": 1.5},
         Cause("FieldValueTypeInvalid", 'Invalid value: "number": spec.replicas in body must be of type integer: "number"',
               "spec.replicas")),
        ({"plain": None},
         Cause("FieldValueTypeInvalid", 'Invalid value: "null": spec.plain in body must be of type string: "null"',
               "spec.plain")),
        ({"replicas": -1},
         Cause("FieldValueInvalid", "Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
               "spec.replicas")),
        ({"replicas": 2000000},
         Cause("FieldValueInvalid",
               "Invalid value: 2000000: spec.replicas in body should be less than or equal to 1e+06", "spec.replicas")),
        ({"ratio": 0},
         Cause("FieldValueInvalid", "Invalid value: 0: spec.ratio in body should be greater than 0", "spec.ratio")),
        ({"ratio": 0.7},
         Cause("FieldValueInvalid", "Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5", "spec.ratio")),
        ({"mode": "Slow"},
         Cause("FieldValueNotSupported", 'Unsupported value: "Slow": supported values: "Fast", "Safe"', "spec.mode")),
        ({"image": "Nginx"},
         Cause("FieldValueInvalid", "Invalid value: \"Nginx\": spec.image in body should match '^[a-z]+$'", "spec.image")),
        ({"image": "ab1"},
         Cause("FieldValueInvalid", "Invalid value: \"ab1\": spec.image in body should match '^[a-z]+$'", "spec.image")),
        ({"image": "abcdefghijkl"},
         Cause("FieldValueTooLong", "Too long: must have at most 10 bytes", "spec.image")),
        ({"id": "not-a-uuid"},
         Cause("FieldValueTypeInvalid", 'Invalid value: "not-a-uuid": spec.id in body must be of type uuid: "not-a-uuid"',
               "spec.id")),
        ({"when": "yesterday"},
         Cause("FieldValueTypeInvalid",
               'Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"', "spec.when")),
        ({"labels": {"a": "1", "b": "2", "c": "3"}},
         Cause("FieldValueTooMany", "Too many: 3: must have at most 2 items", "spec.labels")),
        ({"labels": {"a": 1}},
         Cause("FieldValueTypeInvalid", 'Invalid value: "integer": spec.labels.a in body must be of type string: "integer"',
               "spec.labels.a")),
        ({"items": [{}, {}, {}, {}]},
         Cause("FieldValueTooMany", "Too many: 4: must have at most 3 items", "spec.items")),
        ({"items": [{"name": 1}]},
         Cause("FieldValueTypeInvalid",
               'Invalid value: "integer": spec.items[0].name in body must be of type string: "integer"',
               "spec.items[0].name")),
        ({"tags": []},
         Cause("FieldValueInvalid", "Invalid value: 0: spec.tags in body should have at least 1 items", "spec.tags")),
        ({"tags": ["a", "b", "a"]},
         Cause("FieldValueDuplicate", 'Duplicate value: "a"', "spec.tags[2]")),
        ({"ports": [{"name": "a", "protocol": "TCP"}, {"name": "a", "protocol": "TCP", "port": 1}]},
         Cause("FieldValueDuplicate", 'Duplicate value: map[string]interface {}{"name":"a", "protocol":"TCP"}',
               "spec.ports[1]")),
        ({"ports": [{"port": 1}]},
         Cause("FieldValueRequired", "Required value", "spec.ports[0].name")),
        # Composite errors are not kube-openapi *Validation errors: upstream reports them at <nil>.
        ({"choice": {"a": "1", "b": "2"}},
         Cause("FieldValueInvalid",
               'Invalid value: "": "spec.choice" must validate one and only one schema (oneOf). '
               "Found 2 valid alternatives", "<nil>")),
        ({"template": {"kind": "Pod"}},
         Cause("FieldValueRequired", "Required value", "spec.template.apiVersion")),
        ({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"bad key!": "x"}}}},
         None),
    ],
)
def test_validation_errors(schema: CustomSchema, spec: dict, expected: Cause | None) -> None:
    causes = schema.validate(cr(**spec))
    if expected is None:
        assert [c.field for c in causes] == ["spec.template.metadata.labels"]
    else:
        assert causes == [expected]


def test_string_length_and_pattern_are_both_checked(schema: CustomSchema) -> None:
    assert schema.validate(cr(image="")) == [
        Cause("FieldValueInvalid", 'Invalid value: "": spec.image in body should be at least 1 chars long', "spec.image"),
        Cause("FieldValueInvalid", "Invalid value: \"\": spec.image in body should match '^[a-z]+$'", "spec.image"),
    ]


def test_missing_required_field(schema: CustomSchema) -> None:
    obj = cr()
    del obj["spec"]["image"]
    assert schema.validate(obj) == [Cause("FieldValueRequired", "Required value", "spec.image")]


def test_int_or_string_rejects_other_types(schema: CustomSchema) -> None:
    assert schema.validate(cr(port=True)) == [
        Cause("FieldValueInvalid", 'Invalid value: "": "spec.port" must validate at least one schema (anyOf)', "<nil>"),
        Cause("FieldValueTypeInvalid", 'Invalid value: "boolean": spec.port in body must be of type integer: "boolean"',
              "spec.port"),
    ]
    assert schema.validate(cr(port=80)) == [] and schema.validate(cr(port="80%")) == []


def test_one_of_with_no_valid_branch_reports_the_closest(schema: CustomSchema) -> None:
    assert schema.validate(cr(choice={})) == [
        Cause("FieldValueInvalid",
              'Invalid value: "": "spec.choice" must validate one and only one schema (oneOf). Found none valid', "<nil>"),
        Cause("FieldValueRequired", "Required value", "spec.choice.a"),
    ]


def test_metadata_name_restrictions_apply() -> None:
    schema = CustomSchema({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}}}})
    assert schema.validate({"metadata": {"name": "abcd"}}) == [
        Cause("FieldValueTooLong", "Too long: must have at most 3 bytes", "metadata.name")]
    assert schema.validate({"metadata": {"name": "abc", "labels": {"x": "y"}}}) == []


def test_subschema(schema: CustomSchema) -> None:
    assert schema.subschema(["spec", "replicas"]) == SCHEMA["properties"]["spec"]["properties"]["replicas"]
    assert schema.subschema(["spec", "labels", "anykey"]) == {"type": "string"}
    assert schema.subschema(["spec", "items", "name"]) == {"type": "string"}
    assert schema.subschema(["spec", "nope"]) is None
    assert schema.subschema([]) == SCHEMA
    assert CustomSchema(None).subschema(["spec"]) is None


# ---------------------------------------------------------------- properties

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("abc", max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["image", "replicas", "items", "name", "size", "labels", "extra", "known", "a", "b", "zz"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(list(SCHEMA["properties"]["spec"]["properties"]) + ["junk"]), _json,
                            max_size=6))
def test_prune_is_idempotent_and_default_is_idempotent(spec: dict) -> None:
    schema = CustomSchema(SCHEMA)
    obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}
    schema.prune(obj)
    once = copy.deepcopy(obj)
    assert schema.prune(obj) == []
    assert obj == once
    schema.default(obj)
    defaulted = copy.deepcopy(obj)
    schema.default(obj)
    assert obj == defaulted
    schema.validate(obj)  # never raises, whatever the input


# ---------------------------------------------------------------- upstream corner cases


def test_preserved_object_prunes_inside_additional_properties_true() -> None:
    # skipPrune follows additionalProperties even when it is `true` (no schema): nested objects empty out.
    schema = CustomSchema({"type": "object", "properties": {"spec": {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True, "additionalProperties": True}}})
    obj = {"spec": {"a": {"b": 1}, "c": 2}}
    assert schema.prune(obj) == ["spec.a.b"]
    assert obj == {"spec": {"a": {}, "c": 2}}


def test_prune_reports_sorted_paths() -> None:
    schema = CustomSchema({"type": "object", "properties": {"spec": {"type": "object"}}})
    obj = {"spec": {"z": 1, "a": 2, "m": {"x": 1}}, "b": 1}
    assert schema.prune(obj) == ["b", "spec.a", "spec.m", "spec.z"]


def test_set_duplicates_are_reported_once_at_the_first_repeat() -> None:
    schema = CustomSchema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}},
        "byName": {"type": "object", "additionalProperties": {
            "type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}},
    }}}})
    assert schema.validate({"spec": {"tags": [1, 2, 1, 1, 2]}}) == [
        Cause("FieldValueDuplicate", "Duplicate value: 1", "spec.tags[2]"),
        Cause("FieldValueDuplicate", "Duplicate value: 2", "spec.tags[4]"),
    ]
    # listtype addresses map values with a key, not a dot.
    assert schema.validate({"spec": {"byName": {"k": ["a", "a"]}}}) == [
        Cause("FieldValueDuplicate", 'Duplicate value: "a"', "spec.byName[k][1]")]


def test_list_map_items_must_be_objects(schema: CustomSchema) -> None:
    causes = schema.validate(cr(ports=[{"name": "a"}, "b"]))
    assert Cause("FieldValueInvalid", 'Invalid value: "b": must be an object for an array of list-type map',
                 "spec.ports[1]") in causes


def test_embedded_resource_checks(schema: CustomSchema) -> None:
    assert schema.validate(cr(template={"apiVersion": "a/b/c", "kind": "my_kind"})) == [
        Cause("FieldValueInvalid", 'Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c',
              "spec.template.apiVersion"),
        Cause("FieldValueInvalid",
              'Invalid value: "my_kind": may have mixed case, but should otherwise match: a DNS-1035 label must '
              "consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end "
              "with an alphanumeric character (e.g. 'my-name' or 'abc-123', regex used for validation is "
              "'[a-z]([-a-z0-9]*[a-z0-9])?')", "spec.template.kind"),
    ]
    causes = schema.validate(cr(template={"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "Bad"}}))
    assert [c.field for c in causes] == ["spec.template.metadata.namespace"]
