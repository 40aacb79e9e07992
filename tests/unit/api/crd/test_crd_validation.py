"""CRD validation: the causes upstream's ValidateCustomResourceDefinition(Update) gives, word for word."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from timoner.api.crd import validate_crd, validate_crd_update
from timoner.api.errors import Cause

DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name' or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def kopf_peering(scope: str = "Namespaced") -> dict[str, Any]:
    """The peering CRDs kopf ships (peering.yaml), as kubectl sends them."""
    cluster = scope == "Cluster"
    kind = "ClusterKopfPeering" if cluster else "KopfPeering"
    plural = "clusterkopfpeerings" if cluster else "kopfpeerings"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }},
            }],
            "conversion": {"strategy": "None"},
        },
    }


def kubebuilder_crd() -> dict[str, Any]:
    """A typical controller-gen CRD: two versions, status and scale, printer columns, defaults, list types."""
    schema = {
        "description": "Guestbook is the Schema for the guestbooks API",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "minLength": 1},
                    "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
                    "mode": {"type": "string", "enum": ["Fast", "Safe"], "default": "Safe"},
                    "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "selector": {
                        "type": "object",
                        "x-kubernetes-map-type": "atomic",
                        "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                    },
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        },
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": True,
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "selector": {"type": "string"},
                    "conditions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "status"],
                            "properties": {
                                "type": {"type": "string", "maxLength": 316},
                                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                "lastTransitionTime": {"type": "string", "format": "date-time"},
                            },
                        },
                    },
                },
            },
        },
    }
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        "additionalPrinterColumns": [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    old = copy.deepcopy(version)
    old.update(name="v1alpha1", storage=False, deprecated=True, deprecationWarning="use v1")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "guestbooks.webapp.example.com", "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.1"}},
        "spec": {
            "group": "webapp.example.com",
            "names": {"kind": "Guestbook", "listKind": "GuestbookList", "plural": "guestbooks",
                      "singular": "guestbook", "shortNames": ["gb"], "categories": ["all"]},
            "scope": "Namespaced",
            "versions": [version, old],
            "conversion": {"strategy": "None"},
        },
    }


def simple_crd(schema: dict | None = None, **version: Any) -> dict[str, Any]:
    crd = kopf_peering()
    if schema is not None:
        crd["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": schema}
    crd["spec"]["versions"][0].update(version)
    return crd


def obj_schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


SCHEMA = "spec.versions[0].schema.openAPIV3Schema"


@pytest.mark.parametrize("scope", ["Namespaced", "Cluster"])
def test_kopf_peering_crds_are_valid(scope: str) -> None:
    assert validate_crd(kopf_peering(scope)) == []


def test_kubebuilder_crd_is_valid() -> None:
    assert validate_crd(kubebuilder_crd()) == []


def test_kubebuilder_crd_update_without_changes_is_valid() -> None:
    crd = kubebuilder_crd()
    crd["status"] = {"storedVersions": ["v1"], "conditions": [{"type": "Established", "status": "True"}]}
    assert validate_crd_update(copy.deepcopy(crd), crd) == []


def mutate(crd: dict, path: str, value: Any) -> dict:
    """Set a dotted path (`spec.names.kind`, `spec.versions.0.name`) in a copy."""
    crd = copy.deepcopy(crd)
    *parents, last = path.split(".")
    node: Any = crd
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return crd


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("metadata.name", "peerings.kopf.dev",
         Cause("FieldValueInvalid", 'Invalid value: "peerings.kopf.dev": must be spec.names.plural+"."+spec.group',
               "metadata.name")),
        ("spec.group", "kopf",
         Cause("FieldValueInvalid", 'Invalid value: "kopf": should be a domain with at least one dot', "spec.group")),
        ("spec.scope", "Global",
         Cause("FieldValueNotSupported", 'Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
               "spec.scope")),
        ("spec.scope", "", Cause("FieldValueRequired", "Required value", "spec.scope")),
        ("spec.names.singular", "", Cause("FieldValueRequired", "Required value", "spec.names.singular")),
        ("spec.names.listKind", "", Cause("FieldValueRequired", "Required value", "spec.names.listKind")),
        ("spec.names.listKind", "KopfPeering",
         Cause("FieldValueInvalid", 'Invalid value: "KopfPeering": kind and listKind may not be the same',
               "spec.names.listKind")),
        ("spec.names.singular", "Kopf_Peering",
         Cause("FieldValueInvalid", f'Invalid value: "Kopf_Peering": {DNS1035}', "spec.names.singular")),
        ("spec.names.kind", "Kopf_Peering",
         Cause("FieldValueInvalid",
               f'Invalid value: "Kopf_Peering": may have mixed case, but should otherwise match: {DNS1035}',
               "spec.names.kind")),
        ("spec.names.shortNames", ["ok", "Bad"],
         Cause("FieldValueInvalid", f'Invalid value: "Bad": {DNS1035}', "spec.names.shortNames[1]")),
        ("spec.names.categories", ["a_b"],
         Cause("FieldValueInvalid", f'Invalid value: "a_b": {DNS1035}', "spec.names.categories[0]")),
        ("spec.versions.0.name", "V1",
         Cause("FieldValueInvalid", f'Invalid value: "V1": {DNS1035}', "spec.versions[0].name")),
        ("spec.versions.0.schema", _DELETE,
         Cause("FieldValueRequired", "Required value", "spec.versions[0].schema.openAPIV3Schema")),
        ("spec.versions.0.deprecationWarning", "soon",
         Cause("FieldValueInvalid", 'Invalid value: "soon": can only be set for deprecated versions',
               "spec.versions[0].deprecationWarning")),
        ("spec.conversion.strategy", "Magic",
         Cause("FieldValueNotSupported", 'Unsupported value: "Magic": supported values: "None", "Webhook"',
               "spec.conversion.strategy")),
        ("spec.conversion.strategy", "Webhook",
         Cause("FieldValueRequired", "Required value: required when strategy is set to Webhook",
               "spec.conversion.webhookClientConfig")),
        ("spec.preserveUnknownFields", True,
         Cause("FieldValueInvalid",
               "Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
               "spec.versions[*].schema instead", "spec.preserveUnknownFields")),
    ],
)
def test_crd_field_errors(path: str, value: Any, expected: Cause) -> None:
    assert expected in validate_crd(mutate(kopf_peering(), path, value))


def test_storage_version_rules() -> None:
    crd = kubebuilder_crd()
    crd["spec"]["versions"][1]["storage"] = True
    causes = validate_crd(crd)
    # As upstream, the create strategy records the first storage version, so the second is also reported.
    assert [(c.reason, c.field) for c in causes] == [
        ("FieldValueInvalid", "spec.versions"), ("FieldValueInvalid", "status.storedVersions")]
    assert causes[0].message.endswith(": must have exactly one version marked as storage version")
    assert causes[1].message == 'Invalid value: []string{"v1"}: must have the storage version v1alpha1'
    crd["spec"]["versions"][1]["name"] = "v1"
    messages = [c.message.rsplit(": ", 1)[-1] for c in validate_crd(crd)]
    assert "must contain unique version names" in messages


def test_webhook_conversion_is_accepted_with_v1_review_versions() -> None:
    crd = kopf_peering()
    crd["spec"]["conversion"] = {
        "strategy": "Webhook",
        "webhook": {"clientConfig": {"service": {"name": "conv", "namespace": "system", "path": "/convert", "port": 443}},
                    "conversionReviewVersions": ["v1"]},
    }
    assert validate_crd(crd) == []
    crd["spec"]["conversion"]["webhook"]["conversionReviewVersions"] = ["v2"]
    assert validate_crd(crd) == [Cause(
        "FieldValueInvalid", 'Invalid value: []string{"v2"}: must include at least one of v1, v1beta1',
        "spec.conversion.conversionReviewVersions")]


def test_none_strategy_forbids_webhook_settings() -> None:
    crd = kopf_peering()
    crd["spec"]["conversion"]["webhook"] = {"conversionReviewVersions": ["v1"]}
    assert validate_crd(crd) == [Cause(
        "FieldValueForbidden", "Forbidden: should not be set when strategy is not set to Webhook",
        "spec.conversion.conversionReviewVersions")]


def test_protected_groups_need_api_approval() -> None:
    crd = mutate(mutate(kopf_peering(), "spec.group", "x.k8s.io"), "metadata.name", "kopfpeerings.x.k8s.io")
    assert validate_crd(crd) == [Cause(
        "FieldValueRequired",
        'Required value: protected groups must have approval annotation "api-approved.kubernetes.io", '
        "see https://github.com/kubernetes/enhancements/pull/1111",
        "metadata.annotations[api-approved.kubernetes.io]")]
    crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/1"}
    assert validate_crd(crd) == []


# ---------------------------------------------------------------- printer columns and subresources


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ({"type": "string", "jsonPath": ".spec.x"},
         Cause("FieldValueRequired", "Required value", "spec.versions[0].additionalPrinterColumns[0].name")),
        ({"name": "X", "type": "str", "jsonPath": ".spec.x"},
         Cause("FieldValueInvalid", 'Invalid value: "str": must be one of boolean,date,integer,number,string',
               "spec.versions[0].additionalPrinterColumns[0].type")),
        ({"name": "X", "jsonPath": ".spec.x"},
         Cause("FieldValueRequired", "Required value: must be one of boolean,date,integer,number,string",
               "spec.versions[0].additionalPrinterColumns[0].type")),
        ({"name": "X", "type": "string", "format": "hex", "jsonPath": ".spec.x"},
         Cause("FieldValueInvalid",
               'Invalid value: "hex": must be one of byte,date,date-time,double,float,int32,int64,password',
               "spec.versions[0].additionalPrinterColumns[0].format")),
        ({"name": "X", "type": "string"},
         Cause("FieldValueRequired", "Required value", "spec.versions[0].additionalPrinterColumns[0].JSONPath")),
        ({"name": "X", "type": "string", "jsonPath": "spec.x"},
         Cause("FieldValueInvalid", 'Invalid value: "spec.x": must be a simple json path starting with .',
               "spec.versions[0].additionalPrinterColumns[0].JSONPath")),
    ],
)
def test_printer_column_errors(column: dict, expected: Cause) -> None:
    assert validate_crd(simple_crd(additionalPrinterColumns=[column])) == [expected]


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ({"statusReplicasPath": ".status.r"},
         Cause("FieldValueRequired", "Required value", "spec.versions[0].subresources.scale.specReplicasPath")),
        ({"specReplicasPath": ".status.r", "statusReplicasPath": ".status.r"},
         Cause("FieldValueInvalid", 'Invalid value: ".status.r": should be a json path under .spec',
               "spec.versions[0].subresources.scale.specReplicasPath")),
        ({"specReplicasPath": ".spec.r", "statusReplicasPath": ".spec.r"},
         Cause("FieldValueInvalid", 'Invalid value: ".spec.r": should be a json path under .status',
               "spec.versions[0].subresources.scale.statusReplicasPath")),
        ({"specReplicasPath": ".spec.r", "statusReplicasPath": ".status.r", "labelSelectorPath": ".metadata.l"},
         Cause("FieldValueInvalid", 'Invalid value: ".metadata.l": should be a json path under either .spec or .status',
               "spec.versions[0].subresources.scale.labelSelectorPath")),
    ],
)
def test_scale_subresource_errors(scale: dict, expected: Cause) -> None:
    assert validate_crd(simple_crd(subresources={"scale": scale})) == [expected]


def test_status_subresource_restricts_the_root_schema() -> None:
    schema = obj_schema(status={"type": "object"})
    schema["anyOf"] = [{"required": ["status"]}]
    causes = validate_crd(simple_crd(schema, subresources={"status": {}}))
    assert [c.field for c in causes] == [SCHEMA]
    assert causes[0].message.endswith(
        "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength "
        "Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example "
        "XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status "
        "subresource is enabled")


# ---------------------------------------------------------------- structural schemas


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (obj_schema(spec={"properties": {"a": {"type": "string"}}}),
         [Cause("FieldValueRequired", "Required value: must not be empty for specified object fields",
                f"{SCHEMA}.properties[spec].type")]),
        (obj_schema(spec={"type": "array"}),
         [Cause("FieldValueRequired", "Required value: must be specified", f"{SCHEMA}.properties[spec].items")]),
        (obj_schema(spec={"type": "array", "items": {}}),
         [Cause("FieldValueRequired", "Required value: must not be empty for specified array items",
                f"{SCHEMA}.properties[spec].items.type")]),
        ({"type": "string"},
         [Cause("FieldValueInvalid", 'Invalid value: "string": must be object at the root', f"{SCHEMA}.type")]),
        ({"properties": {}},
         [Cause("FieldValueRequired", "Required value: must not be empty at the root", f"{SCHEMA}.type")]),
        (obj_schema(port={"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True}),
         [Cause("FieldValueInvalid", "Invalid value: true: must be false if x-kubernetes-int-or-string is true",
                f"{SCHEMA}.properties[port].x-kubernetes-preserve-unknown-fields")]),
        (obj_schema(tpl={"type": "object", "x-kubernetes-embedded-resource": True,
                         "x-kubernetes-preserve-unknown-fields": True, "additionalProperties": {"type": "string"}}),
         [Cause("FieldValueForbidden", "Forbidden: must not be used if x-kubernetes-embedded-resource is set",
                f"{SCHEMA}.properties[tpl].additionalProperties")]),
        (obj_schema(metadata={"type": "object", "description": "standard object metadata"}),
         [Cause("FieldValueForbidden",
                "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly "
                "specified", f"{SCHEMA}.properties[metadata]")]),
        (obj_schema(a={"type": "string", "pattern": "(("}),
         [Cause("FieldValueInvalid",
                'Invalid value: "((": must be a valid regular expression, but isn\'t: error parsing regexp: '
                "missing closing ): `((`", f"{SCHEMA}.properties[a].pattern")]),
        (obj_schema(tpl={"type": "string", "x-kubernetes-embedded-resource": True}),
         [Cause("FieldValueRequired",
                "Required value: must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields", f"{SCHEMA}.properties[tpl].properties"),
          Cause("FieldValueInvalid",
                'Invalid value: "string": must be object if x-kubernetes-embedded-resource is true',
                f"{SCHEMA}.properties[tpl].type")]),
        (obj_schema(tpl={"type": "object", "x-kubernetes-embedded-resource": True}),
         [Cause("FieldValueRequired",
                "Required value: must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields", f"{SCHEMA}.properties[tpl].properties")]),
        (obj_schema(metadata={"type": "object", "properties": {"labels": {"type": "object"}}}),
         [Cause("FieldValueForbidden",
                "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly "
                "specified", f"{SCHEMA}.properties[metadata]")]),
        (obj_schema(kind={"type": "integer"}),
         [Cause("FieldValueInvalid", 'Invalid value: "integer": must be string', f"{SCHEMA}.properties[kind].type")]),
        ({"type": "object", "additionalProperties": {"type": "string"}},
         [Cause("FieldValueForbidden", "Forbidden: must not be used at the root", f"{SCHEMA}.additionalProperties")]),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"properties": {"b": {"type": "string"}}}]},
         [Cause("FieldValueForbidden", "Forbidden: must be empty to be structural",
                f"{SCHEMA}.anyOf[0].properties[b].type"),
          Cause("FieldValueRequired", f"Required value: because it is defined in {SCHEMA}.anyOf[0].properties[b]",
                f"{SCHEMA}.properties[b]")]),
    ],
)
def test_structural_errors(schema: dict, expected: list[Cause]) -> None:
    assert validate_crd(simple_crd(schema)) == expected


def test_metadata_may_restrict_name() -> None:
    schema = obj_schema(metadata={"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}})
    assert validate_crd(simple_crd(schema)) == []


def test_int_or_string_patterns_are_structural() -> None:
    schema = obj_schema(
        a={"x-kubernetes-int-or-string": True},
        b={"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        c={"x-kubernetes-int-or-string": True,
           "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9]+%?$"}]},
        d={"x-kubernetes-preserve-unknown-fields": True},
    )
    assert validate_crd(simple_crd(schema)) == []


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (obj_schema(a={"type": "string", "$ref": "#/x"}),
         Cause("FieldValueForbidden", "Forbidden: $ref is not supported", f"{SCHEMA}.properties[a].$ref")),
        (obj_schema(a={"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
         Cause("FieldValueForbidden",
               "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
               f"{SCHEMA}.properties[a].uniqueItems")),
        (obj_schema(a={"type": "object", "properties": {"x": {"type": "string"}},
                       "additionalProperties": {"type": "string"}}),
         Cause("FieldValueForbidden", "Forbidden: additionalProperties and properties are mutual exclusive",
               f"{SCHEMA}.properties[a].additionalProperties")),
        (obj_schema(a={"type": "strin"}),
         Cause("FieldValueNotSupported",
               'Unsupported value: "strin": supported values: "array", "boolean", "integer", "number", "object", '
               '"string"', f"{SCHEMA}.properties[a].type")),
        (obj_schema(a={"type": "object", "x-kubernetes-preserve-unknown-fields": False}),
         Cause("FieldValueInvalid", "Invalid value: false: must be true or undefined",
               f"{SCHEMA}.properties[a].x-kubernetes-preserve-unknown-fields")),
        (obj_schema(a={"type": "object", "x-kubernetes-map-type": "merge"}),
         Cause("FieldValueNotSupported", 'Unsupported value: "merge": supported values: "atomic", "granular"',
               f"{SCHEMA}.properties[a].x-kubernetes-map-type")),
        (obj_schema(a={"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                       "x-kubernetes-list-type": "map"}),
         Cause("FieldValueRequired", "Required value: must not be empty if x-kubernetes-list-type is map",
               f"{SCHEMA}.properties[a].x-kubernetes-list-map-keys")),
        (obj_schema(a={"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                       "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]}),
         Cause("FieldValueRequired",
               "Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a "
               "required property", f"{SCHEMA}.properties[a].items.properties[k].default")),
        (obj_schema(a={"type": "array", "items": {"type": "object", "required": ["k"],
                                                   "properties": {"k": {"type": "object"}}},
                       "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]}),
         Cause("FieldValueInvalid",
               "Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is map",
               f"{SCHEMA}.properties[a].items.properties[k].type")),
        (obj_schema(a={"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "set"}),
         Cause("FieldValueInvalid", "Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set",
               f"{SCHEMA}.properties[a].items.x-kubernetes-map-type")),
        (obj_schema(a={"type": "string", "x-kubernetes-list-type": "set"}),
         Cause("FieldValueInvalid", 'Invalid value: "string": must be array if x-kubernetes-list-type is specified',
               f"{SCHEMA}.properties[a].type")),
        (obj_schema(metadata={"type": "object", "default": {}}),
         Cause("FieldValueForbidden", "Forbidden: must not be set in top-level metadata",
               f"{SCHEMA}.properties[metadata].default")),
        (obj_schema(a={"type": "string", "x-kubernetes-validations": [{"rule": " "}]}),
         Cause("FieldValueRequired", "Required value: rule is not specified",
               f"{SCHEMA}.properties[a].x-kubernetes-validations[0].rule")),
        ({"type": "object", "nullable": True},
         Cause("FieldValueForbidden", "Forbidden: nullable cannot be true at the root", f"{SCHEMA}.nullable")),
    ],
)
def test_openapi_schema_errors(schema: dict, expected: Cause) -> None:
    assert expected in validate_crd(simple_crd(schema))


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "integer", "default": "a"},
         Cause("FieldValueTypeInvalid",
               # kube-openapi validates the default alone, so the name in its message is empty.
               'Invalid value: "string":  in body must be of type integer: "string"',
               f"{SCHEMA}.properties[a].default")),
        ({"type": "object", "properties": {"x": {"type": "integer", "maximum": 3}}, "default": {"x": 5}},
         Cause("FieldValueInvalid", "Invalid value: 5: x in body should be less than or equal to 3",
               f"{SCHEMA}.properties[a].default.x")),
        ({"type": "object", "properties": {"x": {"type": "string"}}, "default": {"x": "a", "y": 1}},
         Cause("FieldValueInvalid", 'Invalid value: map[string]interface {}{"x":"a", "y":1}: must not have unknown fields',
               f"{SCHEMA}.properties[a].default")),
        ({"type": "string", "enum": ["a", "b"], "default": "c"},
         Cause("FieldValueNotSupported", 'Unsupported value: "c": supported values: "a", "b"',
               f"{SCHEMA}.properties[a].default")),
        ({"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}, "default": {}},
         Cause("FieldValueRequired", "Required value", f"{SCHEMA}.properties[a].default.x")),
    ],
)
def test_default_errors(prop: dict, expected: Cause) -> None:
    assert validate_crd(simple_crd(obj_schema(a=prop))) == [expected]


def test_defaults_are_validated_as_written() -> None:
    # Nested defaults are applied to requests, not to the default itself (ValidateDefaults).
    prop = {"type": "object", "required": ["x"], "properties": {"x": {"type": "string", "default": "d"}},
            "default": {}}
    assert validate_crd(simple_crd(obj_schema(a=prop))) == [
        Cause("FieldValueRequired", "Required value", f"{SCHEMA}.properties[a].default.x")]
    prop["default"] = {"x": "given"}
    assert validate_crd(simple_crd(obj_schema(a=prop))) == []


def test_item_defaults_are_validated() -> None:
    prop = {"type": "array", "items": {"type": "integer", "default": "one"}}
    assert validate_crd(simple_crd(obj_schema(a=prop))) == [Cause(
        "FieldValueTypeInvalid", 'Invalid value: "string":  in body must be of type integer: "string"',
        f"{SCHEMA}.properties[a].items.default")]


# ---------------------------------------------------------------- update


def established(crd: dict) -> dict:
    crd = copy.deepcopy(crd)
    crd["status"] = {"storedVersions": ["v1"], "conditions": [{"type": "Established", "status": "True"}]}
    return crd


def test_update_immutable_fields() -> None:
    old = established(kopf_peering())
    new = mutate(mutate(old, "spec.scope", "Cluster"), "spec.names.kind", "Peering")
    new = mutate(new, "spec.names.listKind", "PeeringList")
    assert validate_crd_update(new, old) == [
        Cause("FieldValueInvalid", 'Invalid value: "Cluster": field is immutable', "spec.scope"),
        Cause("FieldValueInvalid", 'Invalid value: "Peering": field is immutable', "spec.names.kind"),
    ]
    renamed = mutate(old, "spec.group", "kopf.example.dev")
    assert Cause("FieldValueInvalid", 'Invalid value: "kopf.example.dev": field is immutable', "spec.group") in (
        validate_crd_update(renamed, old))


def test_scope_may_change_before_established() -> None:
    old = kopf_peering()
    old["status"] = {"storedVersions": ["v1"]}
    assert validate_crd_update(mutate(old, "spec.scope", "Cluster"), old) == []


def test_update_stored_versions() -> None:
    old = established(kubebuilder_crd())
    old["status"]["storedVersions"] = ["v1alpha1", "v1"]
    new = copy.deepcopy(old)
    del new["spec"]["versions"][1]
    assert validate_crd_update(new, old) == [Cause(
        "FieldValueInvalid",
        'Invalid value: "v1alpha1": missing from spec.versions; v1alpha1 was previously a storage version, and must '
        "remain in spec.versions until a storage migration ensures no data remains persisted in v1alpha1 and removes "
        "v1alpha1 from status.storedVersions",
        "status.storedVersions[0]")]
    new = copy.deepcopy(old)
    new["status"]["storedVersions"] = ["v1alpha1"]
    assert validate_crd_update(new, old) == [Cause(
        "FieldValueInvalid", 'Invalid value: []string{"v1alpha1"}: must have the storage version v1',
        "status.storedVersions")]
    new["status"]["storedVersions"] = []
    assert validate_crd_update(new, old) == [Cause(
        "FieldValueInvalid", "Invalid value: []string{}: must have at least one stored version", "status.storedVersions")]


def test_update_keeps_accepting_what_was_accepted() -> None:
    # A set of objects without x-kubernetes-map-type: atomic was accepted before 1.19 and stays accepted.
    schema = obj_schema(a={"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "set"})
    old = established(simple_crd(schema))
    new = copy.deepcopy(old)
    new["spec"]["versions"][0]["served"] = False
    assert validate_crd_update(new, old) == []
    assert validate_crd(new) != []


def test_kubebuilder_custom_resource_round_trip() -> None:
    """A CR of the kubebuilder CRD goes through prune, default and validate as on upstream's create path."""
    from timoner.api.crd import CustomSchema

    crd = kubebuilder_crd()
    assert validate_crd(crd) == []
    schema = CustomSchema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    cr = {
        "apiVersion": "webapp.example.com/v1", "kind": "Guestbook",
        "metadata": {"name": "gb", "namespace": "default"},
        "spec": {"image": "nginx", "unknown": True, "ports": [{"name": "http", "port": 80, "extra": 1}],
                 "template": {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c"}]}}},
    }
    assert schema.prune(cr) == ["spec.ports[0].extra", "spec.unknown"]
    schema.default(cr)
    assert cr["spec"]["replicas"] == 1 and cr["spec"]["mode"] == "Safe"
    assert schema.validate(cr) == []
    cr["spec"]["replicas"] = -1
    cr["spec"]["ports"].append({"name": "http"})
    assert schema.validate(cr) == [
        Cause("FieldValueInvalid", "Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
              "spec.replicas"),
        Cause("FieldValueDuplicate", 'Duplicate value: map[string]interface {}{"name":"http"}', "spec.ports[1]"),
    ]


def test_create_ignores_the_clients_status() -> None:
    crd = kopf_peering()
    crd["status"] = {"storedVersions": ["v9"], "acceptedNames": {"plural": "Not_Valid"}}
    assert validate_crd(crd) == []


def test_crd_schema_keyword_without_structural_problems_reports_them_sorted() -> None:
    schema = obj_schema(b={"properties": {}}, a={"type": "array"})
    assert [c.field for c in validate_crd(simple_crd(schema))] == [
        f"{SCHEMA}.properties[a].items", f"{SCHEMA}.properties[b].type"]


def test_prometheus_operator_style_schema_is_valid() -> None:
    """controller-gen output for corev1 types embedded in a CRD: quantities, selectors, tolerations."""
    quantity = {"anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
                "x-kubernetes-int-or-string": True}
    selector = {
        "type": "object",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "matchExpressions": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {
                "type": "object", "required": ["key", "operator"],
                "properties": {"key": {"type": "string"}, "operator": {"type": "string"},
                               "values": {"type": "array", "items": {"type": "string"},
                                          "x-kubernetes-list-type": "atomic"}}}},
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema = obj_schema(spec={"type": "object", "properties": {
        "resources": {"type": "object", "properties": {
            "limits": {"type": "object", "additionalProperties": quantity},
            "requests": {"type": "object", "additionalProperties": quantity}}},
        "selector": selector,
        "retention": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
        "podMetadata": {"type": "object", "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "name": {"type": "string"}}},
        "containers": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "paused": {"type": "boolean"},
        "replicas": {"type": "integer", "format": "int32"},
    }}, status={"type": "object", "properties": {"conditions": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
        "items": {"type": "object", "required": ["type", "status"], "properties": {
            "type": {"type": "string", "minLength": 1}, "status": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0}}}}}})
    crd = simple_crd(schema, subresources={"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}})
    assert validate_crd(crd) == []
