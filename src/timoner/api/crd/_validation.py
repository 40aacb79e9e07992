"""`ValidateCustomResourceDefinition` and `...Update` of apiextensions-apiserver, over v1 CRD dicts.

Upstream validates the internal CRD type after converting from v1, so a few
paths are the internal type's, not v1's: `spec.conversion.webhookClientConfig`
and `spec.conversion.conversionReviewVersions` (v1 nests both under
`webhook`), and printer columns' `JSONPath` (capitalised). The schema of each
version is checked in `_openapi` (OpenAPI keywords, list and map types) and
`_structural` (structural-schema invariants, defaults).

Where upstream prints a Go struct with `%#v` (the whole `spec.versions` for
"must have exactly one version marked as storage version"), the value is
shown as compact JSON instead: Go's rendering of internal types is not
something a client can rely on.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import urlparse

from timoner.api.crd._conversion import validate_conversion
from timoner.api.crd._json import as_dict as _dict
from timoner.api.crd._json import as_list as _list
from timoner.api.crd._json import as_str as _str
from timoner.api.crd._openapi import validate_openapi_schema
from timoner.api.crd._structural import validate_defaults, validate_structural
from timoner.api.errors import Cause
from timoner.api.validation._field import Path, Raw, forbidden, invalid, not_supported, required
from timoner.api.validation._meta import immutable, validate_object_meta
from timoner.api.validation._names import (
    is_dns1035_label,
    is_dns1123_subdomain,
    name_is_dns1123_subdomain,
)

__all__ = ["validate_crd", "validate_crd_update"]

_SCOPES = ("Cluster", "Namespaced")
_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
_APPROVAL = "api-approved.kubernetes.io"
# Only these may be set at the root of a schema when the status subresource is on (Go field names,
# as upstream's message prints them, and the JSON keys they are).
_ROOT_ALLOWED = (
    ("Description", "description"), ("Type", "type"), ("Format", "format"), ("Title", "title"),
    ("Maximum", "maximum"), ("ExclusiveMaximum", "exclusiveMaximum"), ("Minimum", "minimum"),
    ("ExclusiveMinimum", "exclusiveMinimum"), ("MaxLength", "maxLength"), ("MinLength", "minLength"),
    ("Pattern", "pattern"), ("MaxItems", "maxItems"), ("MinItems", "minItems"), ("UniqueItems", "uniqueItems"),
    ("MultipleOf", "multipleOf"), ("Required", "required"), ("Items", "items"), ("Properties", "properties"),
    ("ExternalDocs", "externalDocs"), ("Example", "example"),
    ("XPreserveUnknownFields", "x-kubernetes-preserve-unknown-fields"),
    ("XValidations", "x-kubernetes-validations"),
)
_ROOT_ALLOWED_KEYS = frozenset(k for _, k in _ROOT_ALLOWED)
_FIELD_ORDER = {k: i for i, k in enumerate((
    "id", "$schema", "$ref", "description", "type", "nullable", "format", "title", "default", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "multipleOf", "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf",
    "anyOf", "not", "properties", "additionalProperties", "patternProperties", "dependencies", "additionalItems",
    "definitions", "externalDocs", "example", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type", "x-kubernetes-map-type", "x-kubernetes-validations",
))}
_ROOT_ALLOWED_TEXT = "[" + " ".join(n for n, _ in _ROOT_ALLOWED) + "]"


def validate_crd(crd: dict) -> list[Cause]:
    """`ValidateCustomResourceDefinition`: a CRD on create, after v1 defaulting."""
    return _validate(crd, None)


def validate_crd_update(crd: dict, old: dict) -> list[Cause]:
    """`ValidateCustomResourceDefinitionUpdate`: the create rules (relaxed where `old` was already
    accepted under older rules) plus what may not change once a CRD exists or is established.

    `crd.status` is validated as given: upstream's PrepareForUpdate first copies the old
    status and appends the new storage version to `storedVersions`; the caller does that.
    """
    return _validate(crd, old)


def _validate(crd: dict, old: dict | None) -> list[Cause]:
    spec = _dict(crd.get("spec"))
    names = _dict(spec.get("names"))
    required_name = f"{_str(names.get('plural'))}.{_str(spec.get('group'))}"

    def name_fn(name: str, prefix: bool) -> list[str]:
        errs = name_is_dns1123_subdomain(name, prefix)
        if name != required_name:
            errs = [*errs, 'must be spec.names.plural+"."+spec.group']
        return errs

    causes: list[Cause] = []
    if old is None:
        causes.extend(validate_object_meta(crd.get("metadata"), False, name_fn))
    old_spec = _dict(old.get("spec")) if old is not None else None
    causes.extend(_spec(spec, old_spec, Path("spec")))
    if old is not None and old_spec is not None:
        causes.extend(_spec_update(spec, old_spec, established=_established(old)))
    status = _dict(crd.get("status"))
    if old is None:
        # PrepareForCreate drops the client's status and records the (first) storage version.
        storage = [v.get("name") for v in _list(spec.get("versions")) if _dict(v).get("storage")][:1]
        status = {"storedVersions": storage}
    causes.extend(_names(_dict(status.get("acceptedNames")), Path("status").child("acceptedNames")))
    causes.extend(_stored_versions(_list(status.get("storedVersions")), _list(spec.get("versions"))))
    causes.extend(_api_approval(crd, old))
    causes.extend(_preserve_unknown_fields(spec, old_spec))
    return causes


def _established(crd: dict) -> bool:
    for cond in _list(_dict(crd.get("status")).get("conditions")):
        if _dict(cond).get("type") == "Established" and _dict(cond).get("status") == "True":
            return True
    return False


def _stored_versions(stored: list, versions: list) -> list[Cause]:
    path = Path("status").child("storedVersions")
    if not stored:
        return [invalid(path, stored, "must have at least one stored version")]
    causes: list[Cause] = []
    remaining = {v: i for i, v in enumerate(stored)}
    for version in versions:
        version = _dict(version)
        name = version.get("name")
        found = name in remaining
        if version.get("storage") and not found:
            causes.append(invalid(path, stored, f"must have the storage version {name}"))
        if found:
            del remaining[name]
    for v, i in remaining.items():
        causes.append(invalid(
            path.index(i), v,
            f"missing from spec.versions; {v} was previously a storage version, and must remain in "
            f"spec.versions until a storage migration ensures no data remains persisted in {v} and "
            f"removes {v} from status.storedVersions",
        ))
    return causes


def _protected_group(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


def _api_approval(crd: dict, old: dict | None) -> list[Cause]:
    """validateAPIApproval: CRDs in *.k8s.io and *.kubernetes.io need the approval annotation."""
    group = _str(_dict(crd.get("spec")).get("group"))
    if not _protected_group(group):
        return []
    annotations = _dict(_dict(crd.get("metadata")).get("annotations"))
    state = _approval_state(annotations)
    if old is not None and _approval_state(_dict(_dict(old.get("metadata")).get("annotations"))) == state:
        # An unchanged approval state never fails, so controllers updating only the spec are not rejected.
        return []
    path = Path("metadata").child("annotations").key(_APPROVAL)
    if state == "missing":
        return [required(path, f'protected groups must have approval annotation "{_APPROVAL}", '
                               "see https://github.com/kubernetes/enhancements/pull/1111")]
    if state == "invalid":
        return [invalid(path, annotations[_APPROVAL],
                        'protected groups must have approval annotation "api-approved.kubernetes.io" with either '
                        'a URL or a reason starting with "unapproved", '
                        "see https://github.com/kubernetes/enhancements/pull/1111")]
    return []


def _approval_state(annotations: dict) -> str:
    if _APPROVAL not in annotations:
        return "missing"
    value = _str(annotations[_APPROVAL])
    if value.startswith("unapproved"):
        return "bypassed"
    parsed = urlparse(value)
    return "approved" if parsed.scheme and parsed.netloc else "invalid"


def _preserve_unknown_fields(spec: dict, old_spec: dict | None) -> list[Cause]:
    if old_spec is not None and old_spec.get("preserveUnknownFields") is True:
        return []
    if spec.get("preserveUnknownFields") is True:
        return [invalid(Path("spec").child("preserveUnknownFields"), True,
                        "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
                        "spec.versions[*].schema instead")]
    return []


def _has_schema(version: dict) -> bool:
    return isinstance(_dict(version.get("schema")).get("openAPIV3Schema"), dict)


def _spec(spec: dict, old_spec: dict | None, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    group = _str(spec.get("group"))
    if not group:
        causes.append(required(path.child("group")))
    elif errs := is_dns1123_subdomain(group):
        causes.append(invalid(path.child("group"), group, ",".join(errs)))
    elif len(group.split(".")) < 2:
        causes.append(invalid(path.child("group"), group, "should be a domain with at least one dot"))
    scope = _str(spec.get("scope"))
    if not scope:
        causes.append(required(path.child("scope")))
    elif scope not in _SCOPES:
        causes.append(not_supported(path.child("scope"), scope, _SCOPES))

    versions = [_dict(v) for v in _list(spec.get("versions"))]
    preserve = spec.get("preserveUnknownFields") is True
    # Rules that came later are not applied to CRDs stored before them (requireOpenAPISchema & co).
    old_versions = [_dict(v) for v in _list(old_spec.get("versions"))] if old_spec is not None else None
    require_schema = old_versions is None or all(_has_schema(v) for v in old_versions)
    if require_schema:
        for i, version in enumerate(versions):
            if not _has_schema(version):
                causes.append(required(path.child("versions").index(i).child("schema", "openAPIV3Schema")))
    elif not preserve:
        for i, version in enumerate(versions):
            if version.get("served") and not _has_schema(version):
                causes.append(required(path.child("versions").index(i).child("schema", "openAPIV3Schema"),
                                       "because otherwise all fields are pruned"))
    if preserve and any(_has_defaults(_dict(v.get("schema")).get("openAPIV3Schema")) for v in versions):
        causes.append(invalid(path.child("preserveUnknownFields"), True,
                              "must be false in order to use defaults in the schema"))

    # Pruning needs structural schemas, and so do defaults and the x-kubernetes-* extensions.
    schemas = [_dict(v.get("schema")).get("openAPIV3Schema") for v in versions]
    structural = not preserve or any(_has_defaults(s) or _has_extensions(s) for s in schemas)
    storage = 0
    seen: set[str] = set()
    unique = True
    for i, version in enumerate(versions):
        vpath = path.child("versions").index(i)
        if version.get("storage"):
            storage += 1
        name = _str(version.get("name"))
        if name in seen:
            unique = False
        seen.add(name)
        if errs := is_dns1035_label(name):
            causes.append(invalid(vpath.child("name"), name, ",".join(errs)))
        old_version = _old_version(old_versions, name)
        causes.extend(_version(version, vpath, old_version=old_version, structural=structural))
    if not unique:
        causes.append(invalid(path.child("versions"), _versions_shown(versions), "must contain unique version names"))
    if storage != 1:
        causes.append(invalid(path.child("versions"), _versions_shown(versions),
                              "must have exactly one version marked as storage version"))

    for key in ("plural", "singular", "kind", "listKind"):
        if not _str(names_of(spec).get(key)):
            causes.append(required(path.child("names", key)))
    causes.extend(_names(names_of(spec), path.child("names")))
    causes.extend(validate_conversion(spec.get("conversion"), old_spec, preserve, path.child("conversion")))
    return causes


def names_of(spec: dict) -> dict:
    return _dict(spec.get("names"))


def _old_version(old_versions: list[dict] | None, name: str) -> dict | None:
    if old_versions is None:
        return None
    for v in old_versions:
        if v.get("name") == name:
            return v
    return None


def _versions_shown(versions: list[dict]) -> Raw:
    return Raw(json.dumps(versions, separators=(",", ":"), sort_keys=True))


def _has_defaults(schema: Any) -> bool:
    """specHasDefaults: a `default` anywhere in the schema tree (not in a property *named* default)."""
    if not isinstance(schema, dict):
        return False
    if schema.get("default") is not None:
        return True
    subs: list[Any] = list(_dict(schema.get("properties")).values())
    subs += [schema.get("items"), schema.get("additionalProperties"), schema.get("not")]
    for keyword in ("allOf", "anyOf", "oneOf"):
        subs += _list(schema.get(keyword))
    return any(_has_defaults(sub) for sub in subs)


def _has_extensions(schema: Any) -> bool:
    """specHasKubernetesExtensions: any x-kubernetes-* keyword in the schema tree."""
    if isinstance(schema, dict):
        return any(k.startswith("x-kubernetes-") and k != "x-kubernetes-validations" for k in schema) or any(
            _has_extensions(v) for k, v in schema.items() if k not in ("enum", "example", "default"))
    if isinstance(schema, list):
        return any(_has_extensions(v) for v in schema)
    return False


def _names(names: dict, path: Path) -> list[Cause]:
    """`ValidateCustomResourceDefinitionNames`, for spec.names and status.acceptedNames."""
    causes: list[Cause] = []
    for key in ("plural", "singular"):
        value = _str(names.get(key))
        if value and (errs := is_dns1035_label(value)):
            causes.append(invalid(path.child(key), value, ",".join(errs)))
    for key in ("kind", "listKind"):
        value = _str(names.get(key))
        if value and (errs := is_dns1035_label(value.lower())):
            causes.append(invalid(path.child(key), value,
                                  "may have mixed case, but should otherwise match: " + ",".join(errs)))
    for i, short in enumerate(_list(names.get("shortNames"))):
        if errs := is_dns1035_label(_str(short)):
            causes.append(invalid(path.child("shortNames").index(i), short, ",".join(errs)))
    kind = _str(names.get("kind"))
    if kind and kind == names.get("listKind"):
        causes.append(invalid(path.child("listKind"), kind, "kind and listKind may not be the same"))
    for i, category in enumerate(_list(names.get("categories"))):
        if errs := is_dns1035_label(_str(category)):
            causes.append(invalid(path.child("categories").index(i), category, ",".join(errs)))
    return causes


def _deprecation_warning(version: dict) -> list[str]:
    warning = version.get("deprecationWarning")
    if not version.get("deprecated") and warning is not None:
        return ["can only be set for deprecated versions"]
    if warning is None:
        return []
    text = _str(warning)
    errs: list[str] = []
    if len(text.encode()) > 256:
        errs.append("must be <= 256 characters long")
    if not text:
        errs.append("must not be an empty string")
    offset = 0
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            errs.append(f"must only contain printable UTF-8 characters; control character found at index {offset}")
            break
        if category in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp") or (category == "Zs" and ch != " "):
            errs.append(f"must only contain printable UTF-8 characters; non-printable character found at index {offset}")
            break
        offset += len(ch.encode())
    return errs


def _version(version: dict, path: Path, *, old_version: dict | None, structural: bool) -> list[Cause]:
    causes: list[Cause] = []
    for msg in _deprecation_warning(version):
        causes.append(invalid(path.child("deprecationWarning"), version.get("deprecationWarning"), msg))
    subresources = version.get("subresources")
    status_enabled = isinstance(subresources, dict) and isinstance(subresources.get("status"), dict)
    schema_holder = version.get("schema")
    old_schema = _dict(_dict(old_version or {}).get("schema")).get("openAPIV3Schema")
    if isinstance(schema_holder, dict):
        causes.extend(_schema(schema_holder.get("openAPIV3Schema"), path.child("schema"), status_enabled,
                              old_schema=old_schema if old_version is not None else None, structural=structural))
    causes.extend(_subresources(subresources, path.child("subresources")))
    for i, column in enumerate(_list(version.get("additionalPrinterColumns"))):
        causes.extend(_column(_dict(column), path.child("additionalPrinterColumns").index(i)))
    fields = _list(version.get("selectableFields"))
    if fields:
        causes.extend(_selectable_fields(fields, _dict(schema_holder).get("openAPIV3Schema"),
                                         path.child("selectableFields")))
    return causes


def _schema(schema: Any, path: Path, status_enabled: bool, *, old_schema: Any, structural: bool) -> list[Cause]:
    """validateCustomResourceDefinitionValidation for one version's `schema`."""
    if not isinstance(schema, dict):
        return []
    causes: list[Cause] = []
    schema_path = path.child("openAPIV3Schema")
    if status_enabled:
        # Upstream walks JSONSchemaProps' fields in declaration order and stops at the first offender.
        for key in sorted(schema, key=lambda k: _FIELD_ORDER.get(k, len(_FIELD_ORDER))):
            value = schema[key]
            if value in (None, False, "", 0, [], {}):
                continue
            if key == "type":
                if value != "object":
                    causes.append(invalid(path.child("openAPIV3Schema.type"), value,
                                          'only "object" is allowed as the type at the root of the schema '
                                          "if the status subresource is enabled"))
                    break
                continue
            if key not in _ROOT_ALLOWED_KEYS:
                causes.append(invalid(schema_path, _json_raw(schema),
                                      f"only {_ROOT_ALLOWED_TEXT} fields are allowed at the root of the schema "
                                      "if the status subresource is enabled"))
                break
    if schema.get("nullable") is True:
        causes.append(forbidden(path.child("openAPIV3Schema.nullable"), "nullable cannot be true at the root"))
    old_ok = _old_rules(old_schema)
    if structural:
        structural_causes = validate_structural(schema, schema_path)
        if structural_causes:
            causes.extend(structural_causes)
        else:
            causes.extend(validate_defaults(schema, schema_path, require_pruned=old_ok["pruned_defaults"]))
    causes.extend(validate_openapi_schema(
        schema, schema_path,
        require_valid_type=old_ok["valid_type"],
        require_atomic_set=old_ok["atomic_set"],
        require_map_keys=old_ok["map_keys"],
    ))
    return causes


def _old_rules(old_schema: Any) -> dict[str, bool]:
    """Which later-added rules apply: all on create; on update only if the old schema obeyed them."""
    if not isinstance(old_schema, dict):
        return {"valid_type": True, "atomic_set": True, "map_keys": True, "pruned_defaults": True}
    probe = validate_openapi_schema(old_schema, Path("x"), require_valid_type=True, require_atomic_set=True,
                                    require_map_keys=True)
    return {
        "valid_type": not any(c.field.endswith(".type") and c.reason == "FieldValueNotSupported" for c in probe),
        "atomic_set": not any("x-kubernetes-list-type=set" in c.message for c in probe),
        "map_keys": not any("x-kubernetes-list-map-keys, so" in c.message or "cannot be nullable when" in c.message
                            for c in probe),
        "pruned_defaults": not any("must not have unknown fields" in c.message
                                   for c in validate_defaults(old_schema, Path("x"), require_pruned=True)),
    }


def _json_raw(value: Any) -> Raw:
    return Raw(json.dumps(value, separators=(",", ":"), sort_keys=True))


def _simple_json_path(text: str, path: Path) -> list[Cause]:
    if not text:
        return [invalid(path, text, "must not be empty")]
    if text[0] != ".":
        return [invalid(path, text, "must be a simple json path starting with .")]
    return []


def _subresources(subresources: Any, path: Path) -> list[Cause]:
    if not isinstance(subresources, dict):
        return []
    scale = subresources.get("scale")
    if not isinstance(scale, dict):
        return []
    causes: list[Cause] = []
    for key, prefixes, where in (
        ("specReplicasPath", (".spec.",), ".spec"),
        ("statusReplicasPath", (".status.",), ".status"),
    ):
        value = _str(scale.get(key))
        fpath = path.child(f"scale.{key}")
        if not value:
            causes.append(required(fpath))
        elif errs := _simple_json_path(value, fpath):
            causes.extend(errs)
        elif not value.startswith(prefixes):
            causes.append(invalid(fpath, value, f"should be a json path under {where}"))
    selector = _str(scale.get("labelSelectorPath"))
    if selector:
        fpath = path.child("scale.labelSelectorPath")
        if errs := _simple_json_path(selector, fpath):
            causes.extend(errs)
        elif not selector.startswith((".spec.", ".status.")):
            causes.append(invalid(fpath, selector, "should be a json path under either .spec or .status"))
    return causes


def _column(column: dict, path: Path) -> list[Cause]:
    """`ValidateCustomResourceColumnDefinition`."""
    causes: list[Cause] = []
    if not _str(column.get("name")):
        causes.append(required(path.child("name")))
    col_type = _str(column.get("type"))
    one_of = "must be one of " + ",".join(_COLUMN_TYPES)
    if not col_type:
        causes.append(required(path.child("type"), one_of))
    elif col_type not in _COLUMN_TYPES:
        causes.append(invalid(path.child("type"), col_type, one_of))
    fmt = _str(column.get("format"))
    if fmt and fmt not in _COLUMN_FORMATS:
        causes.append(invalid(path.child("format"), fmt, "must be one of " + ",".join(_COLUMN_FORMATS)))
    json_path = _str(column.get("jsonPath"))
    if not json_path:
        causes.append(required(path.child("JSONPath")))
    else:
        causes.extend(_simple_json_path(json_path, path.child("JSONPath")))
    return causes


def _selectable_fields(fields: list, schema: Any, path: Path) -> list[Cause]:
    """`ValidateCustomResourceSelectableFields` for simple dotted paths."""
    from timoner.api.crd._schema import CustomSchema

    causes: list[Cause] = []
    if not isinstance(schema, dict):
        return [invalid(path, "", "may only be set when `version.schema.openAPIV3Schema` is not included")]
    compiled = CustomSchema(schema)
    unique: set[str] = set()
    for i, item in enumerate(fields):
        fpath = path.index(i).child("jsonPath")
        json_path = _str(_dict(item).get("jsonPath"))
        if not json_path:
            causes.append(required(fpath))
            continue
        parts = json_path.split(".")
        if parts[0] != "" or any(not p for p in parts[1:]) or len(parts) < 2:
            causes.append(invalid(fpath, json_path, "is an invalid path: must start with '.'"))
            continue
        node = compiled.subschema(parts[1:])
        if node is None:
            causes.append(invalid(fpath, json_path, f"is an invalid path: does not refer to a valid field: {json_path}"))
            continue
        if parts[1] == "metadata":
            causes.append(invalid(fpath, json_path, "must not point to fields in metadata"))
        if node.get("type") not in ("string", "boolean", "integer"):
            causes.append(invalid(fpath, json_path, "must point to a field of type string, boolean or integer. "
                                                    "Enum string fields and strings with formats are allowed."))
        if json_path in unique:
            causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{json_path}"', str(fpath)))
        unique.add(json_path)
    if len(unique) > 8:
        causes.append(Cause("FieldValueTooMany", f"Too many: {len(unique)}: must have at most 8 items", str(path)))
    return causes


def _spec_update(spec: dict, old_spec: dict, *, established: bool) -> list[Cause]:
    path = Path("spec")
    causes: list[Cause] = []
    names, old_names = names_of(spec), names_of(old_spec)
    if established:
        causes.extend(immutable(spec.get("scope"), old_spec.get("scope"), path.child("scope")))
        causes.extend(immutable(names.get("kind"), old_names.get("kind"), path.child("names", "kind")))
    causes.extend(immutable(spec.get("group"), old_spec.get("group"), path.child("group")))
    causes.extend(immutable(names.get("plural"), old_names.get("plural"), path.child("names", "plural")))
    return causes
