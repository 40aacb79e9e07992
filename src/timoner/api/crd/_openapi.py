"""`ValidateCustomResourceDefinitionOpenAPISchema`: the OpenAPI keywords a CRD schema may use.

A recursive walk over `properties`, `additionalProperties`, `items` and the
value validations (`allOf`, `anyOf`, `oneOf`, `not`), carrying what upstream's
`specStandardValidatorV3` carries: whether `default` is allowed here (not in
top-level `metadata`, `apiVersion`, `kind`, nor in maps inside resource
metadata) and whether we are inside resource metadata. The
`x-kubernetes-validations` checks here are the static ones (empty rule,
message shape, reason); compiling the CEL rules is `crd.cel`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from timoner.api.errors import Cause
from timoner.api.validation._field import Path, forbidden, invalid, not_supported, required

__all__ = ["validate_openapi_schema"]

_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_META_FIELDS = ("metadata", "kind", "apiVersion")
_RULE_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")


@dataclass(frozen=True, slots=True)
class _Context:
    allow_defaults: bool = True
    disallow_reason: str = ""
    inside_meta: bool = False
    require_valid_type: bool = True
    require_atomic_set: bool = True
    require_map_keys: bool = True


def validate_openapi_schema(
    schema: dict, path: Path, *, require_valid_type: bool = True, require_atomic_set: bool = True,
    require_map_keys: bool = True,
) -> list[Cause]:
    ctx = _Context(require_valid_type=require_valid_type, require_atomic_set=require_atomic_set,
                   require_map_keys=require_map_keys)
    causes: list[Cause] = []
    _walk(schema, path, ctx, True, causes)
    return causes


def _standard(schema: dict, path: Path, ctx: _Context, out: list[Cause]) -> None:
    """specStandardValidatorV3.validate."""
    schema_type = schema.get("type")
    if ctx.require_valid_type and isinstance(schema_type, str) and schema_type and schema_type not in _TYPES:
        out.append(not_supported(path.child("type"), schema_type, _TYPES))
    if schema.get("default") is not None and not ctx.allow_defaults:
        detail = "must not be set" + (f" {ctx.disallow_reason}" if ctx.disallow_reason else "")
        out.append(forbidden(path.child("default"), detail))
    if schema.get("id"):
        out.append(forbidden(path.child("id"), "id is not supported"))
    if schema.get("additionalItems") is not None:
        out.append(forbidden(path.child("additionalItems"), "additionalItems is not supported"))
    if schema.get("patternProperties"):
        out.append(forbidden(path.child("patternProperties"), "patternProperties is not supported"))
    if schema.get("definitions"):
        out.append(forbidden(path.child("definitions"), "definitions is not supported"))
    if schema.get("dependencies") is not None:
        out.append(forbidden(path.child("dependencies"), "dependencies is not supported"))
    if schema.get("$ref") is not None:
        out.append(forbidden(path.child("$ref"), "$ref is not supported"))
    if schema_type == "null":
        out.append(forbidden(path.child("type"), "type cannot be set to null, use nullable as an alternative"))
    if isinstance(schema.get("items"), list) and schema["items"]:
        out.append(forbidden(path.child("items"), "items must be a schema object and not an array"))
    if ctx.inside_meta and schema.get("x-kubernetes-embedded-resource") is True:
        out.append(forbidden(path.child("x-kubernetes-embedded-resource"), "must not be used inside of resource meta"))


def _walk(schema: Any, path: Path, ctx: _Context, is_root: bool, out: list[Cause]) -> None:
    if not isinstance(schema, dict):
        return
    _standard(schema, path, ctx, out)
    if schema.get("uniqueItems") is True:
        out.append(forbidden(path.child("uniqueItems"),
                             "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    additional = schema.get("additionalProperties")
    if additional is not None:
        if properties and (additional is False or isinstance(additional, dict)):
            out.append(forbidden(path.child("additionalProperties"),
                                 "additionalProperties and properties are mutual exclusive"))
        sub = ctx
        if ctx.inside_meta:
            sub = replace(ctx, allow_defaults=False,
                          disallow_reason="inside additionalProperties applying to object metadata")
        _walk(additional, path.child("additionalProperties"), sub, False, out)
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    for name in sorted(properties):
        sub = ctx
        if (is_root or embedded) and name in _META_FIELDS:
            sub = replace(sub, inside_meta=True)
            if is_root:
                sub = replace(sub, allow_defaults=False, disallow_reason=f"in top-level {name}")
        _walk(properties[name], path.child("properties").key(name), sub, False, out)
    _walk(schema.get("not"), path.child("not"), ctx, False, out)
    for keyword in ("allOf", "oneOf", "anyOf"):
        subs = schema.get(keyword)
        for i, sub_schema in enumerate(subs if isinstance(subs, list) else []):
            _walk(sub_schema, path.child(keyword).index(i), ctx, False, out)
    definitions = schema.get("definitions")
    for name in sorted(definitions if isinstance(definitions, dict) else {}):
        _walk(definitions[name], path.child("definitions").key(name), ctx, False, out)
    items = schema.get("items")
    if isinstance(items, dict):
        _walk(items, path.child("items"), ctx, False, out)
    elif isinstance(items, list):
        for i, item in enumerate(items):
            _walk(item, path.child("items").index(i), ctx, False, out)
    _extensions(schema, path, ctx, out)
    _rules(schema, path, out)


def _extensions(schema: dict, path: Path, ctx: _Context, out: list[Cause]) -> None:
    schema_type = schema.get("type") or ""
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        out.append(invalid(path.child("x-kubernetes-preserve-unknown-fields"), False, "must be true or undefined"))
    map_type = schema.get("x-kubernetes-map-type")
    if map_type is not None and schema_type != "object":
        if not schema_type:
            out.append(required(path.child("type"), "must be object if x-kubernetes-map-type is specified"))
        else:
            out.append(invalid(path.child("type"), schema_type, "must be object if x-kubernetes-map-type is specified"))
    if map_type is not None and map_type not in ("atomic", "granular"):
        out.append(not_supported(path.child("x-kubernetes-map-type"), map_type, ("atomic", "granular")))
    list_type = schema.get("x-kubernetes-list-type")
    items = schema.get("items") if isinstance(schema.get("items"), dict) else None
    if list_type is not None and schema_type != "array":
        if not schema_type:
            out.append(required(path.child("type"), "must be array if x-kubernetes-list-type is specified"))
        else:
            out.append(invalid(path.child("type"), schema_type, "must be array if x-kubernetes-list-type is specified"))
    elif ctx.require_atomic_set and list_type == "set" and items is not None:
        if items.get("type") == "array":
            item_list = items.get("x-kubernetes-list-type")
            if item_list is not None and item_list != "atomic":
                out.append(invalid(path.child("items").child("x-kubernetes-list-type"), item_list,
                                   "must be atomic as item of a list with x-kubernetes-list-type=set"))
        elif items.get("type") == "object":
            if items.get("x-kubernetes-map-type") != "atomic":
                # Upstream reports the items' list type here (nil for objects), a quirk kept as is.
                out.append(invalid(path.child("items").child("x-kubernetes-map-type"), items.get("x-kubernetes-list-type"),
                                   "must be atomic as item of a list with x-kubernetes-list-type=set"))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        out.append(not_supported(path.child("x-kubernetes-list-type"), list_type, ("atomic", "set", "map")))
    map_keys = schema.get("x-kubernetes-list-map-keys") or []
    if map_keys:
        if list_type is None:
            out.append(required(path.child("x-kubernetes-list-type"), "must be map if x-kubernetes-list-map-keys is non-empty"))
        elif list_type != "map":
            out.append(invalid(path.child("x-kubernetes-list-type"), list_type,
                               "must be map if x-kubernetes-list-map-keys is non-empty"))
    if list_type == "map":
        _list_map(schema, map_keys, path, out)
    if ctx.require_map_keys:
        _map_list_keys_map_set(schema, path, out)


def _list_map(schema: dict, map_keys: list, path: Path, out: list[Cause]) -> None:
    items = schema.get("items")
    if not map_keys:
        out.append(required(path.child("x-kubernetes-list-map-keys"), "must not be empty if x-kubernetes-list-type is map"))
    if items is None:
        out.append(required(path.child("items"), "must have a schema if x-kubernetes-list-type is map"))
        return
    if not isinstance(items, dict):
        out.append(invalid(path.child("items"), items, "must only have a single schema if x-kubernetes-list-type is map"))
        return
    if items.get("type") != "object":
        out.append(invalid(path.child("items").child("type"), items.get("type") or "",
                           "must be object if parent array's x-kubernetes-list-type is map"))
        return
    properties = items.get("properties") if isinstance(items.get("properties"), dict) else {}
    seen: set[str] = set()
    for key in map_keys:
        prop = properties.get(key)
        if isinstance(prop, dict):
            if prop.get("type") in ("array", "object"):
                # Upstream prints the items' type ("object") here, not the key's.
                out.append(invalid(path.child("items").child("properties").key(key).child("type"), "object",
                                   "must be a scalar type if parent array's x-kubernetes-list-type is map"))
        else:
            out.append(invalid(path.child("x-kubernetes-list-map-keys"), map_keys,
                               "entries must all be names of item properties"))
        if key in seen:
            out.append(invalid(path.child("x-kubernetes-list-map-keys"), map_keys, "must not contain duplicate entries"))
        seen.add(key)


def _map_list_keys_map_set(schema: dict, path: Path, out: list[Cause]) -> None:
    items = schema.get("items")
    list_type = schema.get("x-kubernetes-list-type")
    if not isinstance(items, dict) or list_type not in ("set", "map"):
        return
    if items.get("nullable") is True:
        out.append(forbidden(path.child("items").child("nullable"), f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
    if list_type != "map":
        return
    required_keys = set(items.get("required") or [])
    properties = items.get("properties") if isinstance(items.get("properties"), dict) else {}
    for key in schema.get("x-kubernetes-list-map-keys") or []:
        prop = properties.get(key)
        if not isinstance(prop, dict):
            continue
        ppath = path.child("items").child("properties").key(key)
        if key not in required_keys and prop.get("default") is None:
            out.append(required(ppath.child("default"),
                                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"))
        if prop.get("nullable") is True:
            out.append(forbidden(ppath.child("nullable"), "this property is in x-kubernetes-list-map-keys, so it cannot be nullable"))


def _rules(schema: dict, path: Path, out: list[Cause]) -> None:
    rules = schema.get("x-kubernetes-validations")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict):
            continue
        rpath = path.child("x-kubernetes-validations").index(i)
        text = str(rule.get("rule") or "")
        message = str(rule.get("message") or "")
        message_expr = str(rule.get("messageExpression") or "")
        trimmed_rule, trimmed_msg = text.strip(), message.strip()
        if not trimmed_rule:
            out.append(required(rpath.child("rule"), "rule is not specified"))
        elif message and not trimmed_msg:
            out.append(invalid(rpath.child("message"), message, "must be non-empty if specified"))
        elif _has_newlines(trimmed_msg):
            out.append(invalid(rpath.child("message"), message, "must not contain line breaks"))
        elif _has_newlines(trimmed_rule) and not trimmed_msg:
            out.append(required(rpath.child("message"), "message must be specified if rule contains line breaks"))
        if message_expr and not message_expr.strip():
            out.append(required(rpath.child("messageExpression"), "messageExpression must be non-empty if specified"))
        reason = rule.get("reason")
        if reason is not None and reason not in _RULE_REASONS:
            out.append(not_supported(rpath.child("reason"), reason, _RULE_REASONS))
        field_path = str(rule.get("fieldPath") or "")
        if field_path and not field_path.strip():
            out.append(invalid(rpath.child("fieldPath"), field_path, "must be non-empty if specified"))
        if _has_newlines(field_path):
            out.append(invalid(rpath.child("fieldPath"), field_path, "must not contain line breaks"))


def _has_newlines(text: str) -> bool:
    return "\n" in text or "\r" in text
