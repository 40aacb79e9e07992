"""Structural-schema rules (apiextensions `schema.ValidateStructural`) and default validation.

A structural schema says, outside of any `allOf`/`anyOf`/`oneOf`/`not`, what
every field is: each specified field and array item has a `type` (unless it
is `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`),
the value validations only restrict what is already specified, and the
root's `metadata` may only restrict `name` and `generateName`. Upstream sorts
these errors by their text, which makes the output stable; so do we.

`validate_defaults` is `structuraldefaulting.ValidateDefaults`: every
`default` must survive pruning unchanged and must validate against the
schema it sits in (after that schema's own nested defaults are applied).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from timoner.api.crd._json import as_dict as _dict
from timoner.api.crd._node import compile_node
from timoner.api.crd._schema import prune_value
from timoner.api.crd._values import Errors, Validator, go_shown
from timoner.api.errors import Cause
from timoner.api.validation._field import Path, forbidden, invalid, required

__all__ = ["validate_defaults", "validate_structural"]

_ROOT, _ITEM, _FIELD = "root", "item", "field"
_COMPOSITIONS = ("allOf", "anyOf", "oneOf")
# Generic and extension keywords that may not appear inside a value validation.
_NESTED_FORBIDDEN = (
    ("type", lambda v: bool(v), "must be empty to be structural"),
    ("additionalProperties", lambda v: v is not None, "must be undefined to be structural"),
    ("default", lambda v: v is not None, "must be undefined to be structural"),
    ("title", lambda v: bool(v), "must be empty to be structural"),
    ("description", lambda v: bool(v), "must be empty to be structural"),
    ("nullable", lambda v: v is True, "must be false to be structural"),
    ("x-kubernetes-preserve-unknown-fields", lambda v: v is True, "must be false to be structural"),
    ("x-kubernetes-embedded-resource", lambda v: v is True, "must be false to be structural"),
    ("x-kubernetes-int-or-string", lambda v: v is True, "must be false to be structural"),
    ("x-kubernetes-list-map-keys", lambda v: bool(v), "must be empty to be structural"),
    ("x-kubernetes-list-type", lambda v: v is not None, "must be undefined to be structural"),
)


def _props(schema: dict) -> dict[str, dict]:
    props = schema.get("properties")
    return {k: v for k, v in props.items() if isinstance(v, dict)} if isinstance(props, dict) else {}


def validate_structural(schema: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    _invariants(schema, _ROOT, path, causes)
    _completeness(schema, schema, path, path, causes)
    causes.sort(key=lambda c: f"{c.field}: {c.message}")
    return causes


def _is_int_or_string_any_of(any_of: Any) -> bool:
    if not isinstance(any_of, list) or len(any_of) != 2:
        return False
    types = [_dict(s).get("type") for s in any_of]
    return types == ["integer", "string"] and all(len(_dict(s)) == 1 for s in any_of)


def _invariants(s: dict, lvl: str, path: Path, out: list[Cause]) -> None:
    schema_type = s.get("type") or ""
    items = s.get("items")
    if schema_type == "array" and items is None:
        out.append(required(path.child("items"), "must be specified"))
    if isinstance(items, dict):
        _invariants(items, _ITEM, path.child("items"), out)
    properties = _props(s)
    for name, prop in properties.items():
        _invariants(prop, _FIELD, path.child("properties").key(name), out)
    additional = s.get("additionalProperties")
    if additional is not None:
        if lvl == _ROOT:
            out.append(forbidden(path.child("additionalProperties"), "must not be used at the root"))
        if isinstance(additional, dict):
            _invariants(additional, _FIELD, path.child("additionalProperties"), out)
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True
    if int_or_string and preserve:
        out.append(invalid(path.child("x-kubernetes-preserve-unknown-fields"), True,
                           "must be false if x-kubernetes-int-or-string is true"))
    if int_or_string and embedded:
        out.append(invalid(path.child("x-kubernetes-embedded-resource"), True,
                           "must be false if x-kubernetes-int-or-string is true"))

    # The two int-or-string spellings: anyOf [integer, string], or allOf [anyOf [...], ...].
    skip_any_of = _is_int_or_string_any_of(s.get("anyOf"))
    all_of = s.get("allOf") if isinstance(s.get("allOf"), list) else []
    skip_first_all_of_any_of = bool(all_of) and _is_int_or_string_any_of(_dict(all_of[0]).get("anyOf"))
    _value_validation(s, skip_any_of, skip_first_all_of_any_of, lvl, path, out)

    if embedded and schema_type != "object":
        if not schema_type:
            out.append(required(path.child("type"), "must be object if x-kubernetes-embedded-resource is true"))
        else:
            out.append(invalid(path.child("type"), schema_type, "must be object if x-kubernetes-embedded-resource is true"))
    elif not schema_type and not embedded and not int_or_string and not preserve:
        detail = {
            _ROOT: "must not be empty at the root",
            _ITEM: "must not be empty for specified array items",
            _FIELD: "must not be empty for specified object fields",
        }[lvl]
        out.append(required(path.child("type"), detail))
    if embedded and additional is not None:
        out.append(forbidden(path.child("additionalProperties"), "must not be used if x-kubernetes-embedded-resource is set"))
    if lvl == _ROOT and schema_type and schema_type != "object":
        out.append(invalid(path.child("type"), schema_type, "must be object at the root"))

    check_meta = lvl == _ROOT or embedded
    if check_meta:
        for name, want in (("kind", "string"), ("apiVersion", "string"), ("metadata", "object")):
            prop = properties.get(name)
            if prop is not None and prop.get("type") != want:
                out.append(invalid(path.child("properties").key(name).child("type"), prop.get("type") or "",
                                   f"must be {want}"))
    metadata = properties.get("metadata")
    if metadata is not None and lvl == _ROOT and not _only_name_restrictions(metadata):
        out.append(forbidden(path.child("properties").key("metadata"),
                             "must not specify anything other than name and generateName, "
                             "but metadata is implicitly specified"))
    if embedded and not preserve and not properties:
        out.append(required(path.child("properties"),
                            "must not be empty if x-kubernetes-embedded-resource is true without "
                            "x-kubernetes-preserve-unknown-fields"))


def _only_name_restrictions(metadata: dict) -> bool:
    """Root metadata may say `type: object` and restrict `name`/`generateName`, nothing else
    (not even a description: upstream compares everything else with the zero value)."""
    rest = {k: v for k, v in metadata.items() if k not in ("type", "default", "properties")}
    props = _props(metadata)
    if set(props) - {"name", "generateName"}:
        return False
    return not any(v not in (None, False, "", [], {}) for v in rest.values())


def _value_validation(s: dict, skip_any_of: bool, skip_first_all_of_any_of: bool, lvl: str, path: Path,
                      out: list[Cause]) -> None:
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") if isinstance(s.get("anyOf"), list) else []):
            _nested(_dict(sub), False, lvl, path.child("anyOf").index(i), out)
    for i, sub in enumerate(s.get("allOf") if isinstance(s.get("allOf"), list) else []):
        _nested(_dict(sub), skip_first_all_of_any_of and i == 0, lvl, path.child("allOf").index(i), out)
    for i, sub in enumerate(s.get("oneOf") if isinstance(s.get("oneOf"), list) else []):
        _nested(_dict(sub), False, lvl, path.child("oneOf").index(i), out)
    if isinstance(s.get("not"), dict):
        _nested(s["not"], False, lvl, path.child("not"), out)
    pattern = s.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            re.compile(pattern)
        except re.error as err:
            out.append(invalid(path.child("pattern"), pattern,
                               f"must be a valid regular expression, but isn't: {_go_regexp_error(err, pattern)}"))


# Go's regexp error codes for the mistakes Python's `re` reports differently.
_GO_REGEXP_CODES = (
    ("missing ), unterminated subpattern", "missing closing )"),
    ("unbalanced parenthesis", "unexpected )"),
    ("unterminated character set", "missing closing ]"),
    ("nothing to repeat", "missing argument to repetition operator"),
    ("multiple repeat", "invalid nested repetition operator"),
    ("bad escape", "invalid escape sequence"),
)


def _go_regexp_error(err: re.error, pattern: str) -> str:
    text = str(err)
    for python, go in _GO_REGEXP_CODES:
        if text.startswith(python):
            return f"error parsing regexp: {go}: `{pattern}`"
    return f"error parsing regexp: {text}"


def _nested(v: dict, skip_any_of: bool, lvl: str, path: Path, out: list[Cause]) -> None:
    _value_validation(v, skip_any_of, False, lvl, path, out)
    if isinstance(v.get("items"), dict):
        _nested(v["items"], False, lvl, path.child("items"), out)
    for name, prop in _props(v).items():
        _nested(prop, False, _FIELD, path.child("properties").key(name), out)
    for key, present, detail in _NESTED_FORBIDDEN:
        if key in v and present(v[key]):
            out.append(forbidden(path.child(key), detail))
    if "metadata" in _props(v):
        out.append(forbidden(path.child("properties").key("metadata"), "must not be specified in a nested context"))


def _completeness(v: dict, s: dict | None, s_path: Path, v_path: Path, out: list[Cause]) -> None:
    """Every field or item a value validation mentions must be specified structurally too."""
    for keyword in _COMPOSITIONS:
        subs = v.get(keyword)
        for i, sub in enumerate(subs if isinstance(subs, list) else []):
            _nested_completeness(_dict(sub), s, s_path, v_path.child(keyword).index(i), out)
    if isinstance(v.get("not"), dict):
        _nested_completeness(v["not"], s, s_path, v_path.child("not"), out)


def _nested_completeness(v: dict, s: dict | None, s_path: Path, v_path: Path, out: list[Cause]) -> None:
    if s is None:
        out.append(required(s_path, f"because it is defined in {v_path}"))
        return
    _completeness(v, s, s_path, v_path, out)
    if isinstance(v.get("items"), dict):
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        _nested_completeness(v["items"], items, s_path.child("items"), v_path.child("items"), out)
    s_props = _props(s)
    for name, prop in _props(v).items():
        sub_s = s_path.child("properties").key(name)
        sub_v = v_path.child("properties").key(name)
        if name not in s_props:
            out.append(required(sub_s, f"because it is defined in {sub_v}"))
        else:
            _nested_completeness(prop, s_props[name], sub_s, sub_v, out)


# ---------------------------------------------------------------- defaults


def validate_defaults(schema: dict, path: Path, *, require_pruned: bool = True) -> list[Cause]:
    causes: list[Cause] = []
    _defaults(schema, path, True, require_pruned, causes)
    return causes


def _defaults(s: dict, path: Path, is_root: bool, require_pruned: bool, out: list[Cause]) -> None:
    # The default is checked as written: upstream applies nested defaults at request time only.
    default = s.get("default")
    if default is not None and not is_root:
        node = compile_node(s)
        dpath = path.child("default")
        if require_pruned:
            pruned = copy.deepcopy(default)
            prune_value(pruned, node)
            if pruned != default:
                out.append(invalid(dpath, go_shown(default), "must not have unknown fields"))
        # kube-openapi validates the default on its own: its messages name paths relative to it.
        errs = Errors(str(dpath))
        Validator(errs).run(default, node, "")
        out.extend(errs.causes)
    # additionalProperties is not followed, as upstream: defaults are not allowed to matter there.
    if isinstance(s.get("items"), dict):
        _defaults(s["items"], path.child("items"), False, require_pruned, out)
    embedded = is_root or s.get("x-kubernetes-embedded-resource") is True
    for name, prop in sorted(_props(s).items()):
        if embedded and name in ("metadata", "apiVersion", "kind"):
            # Resource metadata: forbidden at the top level (reported by the OpenAPI checks); inside
            # embedded resources upstream checks the surrounding object, which is not done here.
            continue
        _defaults(prop, path.child("properties").key(name), False, require_pruned, out)
