"""kube-openapi's validation of a custom resource, with the causes apiextensions turns it into.

`Validator.run` walks a value and its compiled schema the way kube-openapi's
SchemaValidator does and records, through `Errors`, what
`apiserver/validation.ValidateCustomResource` makes of each error:
`FieldValueTypeInvalid` for type and format errors, `FieldValueRequired`,
`FieldValueNotSupported` for enums, `FieldValueTooLong`/`TooMany` for
lengths, `FieldValueInvalid` for the rest, and composite (allOf/anyOf/oneOf/
not) errors on the validated root (`<nil>` for a custom resource). Also here:
`x-kubernetes-list-type` uniqueness (schema/listtype) and embedded-resource
checks (schema/objectmeta).
"""

from __future__ import annotations

import json
from typing import Any

from timoner.api.crd._formats import FORMATS
from timoner.api.crd._gofmt import go_interface, go_number
from timoner.api.crd._node import Node, join
from timoner.api.errors import Cause
from timoner.api.validation._field import (
    Path,
    Raw,
    duplicate,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
)
from timoner.api.validation._meta import validate_object_meta
from timoner.api.validation._names import is_dns1035_label, name_is_path_segment

__all__ = ["Errors", "Validator", "embedded_resources", "go_shown", "list_sets_and_maps"]

# ---------------------------------------------------------------- validation


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


def _type_ok(value: Any, want: str) -> bool:
    got = _json_type(value)
    if want == "number":
        return got in ("integer", "number")
    return got == want


class Errors:
    """kube-openapi's errors, converted as `ValidateCustomResource` converts them.

    `path` arguments are kube-openapi's names (relative to the validated value, used in
    messages); the cause's field is `prefix` joined with that name. Composite errors
    (allOf/anyOf/oneOf/not) are not `*Validation` errors upstream and land on the prefix
    itself, `<nil>` for a custom resource (ValidateCustomResource is called with a nil path).
    """

    __slots__ = ("causes", "prefix")

    def __init__(self, prefix: str = "") -> None:
        self.causes: list[Cause] = []
        self.prefix = prefix

    def _field(self, path: str) -> Path:
        if not self.prefix:
            return Path(path)
        if not path:
            return Path(self.prefix)
        return Path(self.prefix + path if path.startswith("[") else f"{self.prefix}.{path}")

    def type_invalid(self, path: str, value: Any, message: str) -> None:
        cause = invalid(self._field(path), value, message)
        self.causes.append(Cause("FieldValueTypeInvalid", cause.message, cause.field))

    def invalid(self, path: str, value: Any, message: str) -> None:
        self.causes.append(invalid(self._field(path), go_shown(value), message))

    def required(self, path: str) -> None:
        self.causes.append(required(self._field(path)))

    def not_supported(self, path: str, value: Any, supported: list[str]) -> None:
        self.causes.append(not_supported(self._field(path), value, supported))

    def too_long(self, path: str, max_length: int) -> None:
        self.causes.append(too_long(self._field(path), max_length))

    def too_many(self, path: str, actual: int, max_items: int) -> None:
        self.causes.append(too_many(self._field(path), actual, max_items))

    def composite(self, message: str) -> None:
        self.causes.append(invalid(Path(self.prefix or "<nil>"), "", message))


def _name(path: str) -> str:
    return path


class Validator:
    def __init__(self, errs: Errors) -> None:
        self.errs = errs

    def run(self, value: Any, node: Node, path: str) -> None:
        errs = self.errs
        if value is None and node.nullable:
            return
        want = node.type
        if want and not _type_ok(value, want):
            got = _json_type(value)
            errs.type_invalid(path, got, f"{_name(path)} in body must be of type {want}: {_q(got)}")
            return
        self._composition(value, node, path)
        if node.enum is not None and not any(_json_equal(value, e) for e in node.enum):
            supported = [e if isinstance(e, str) else _json_text(e) for e in node.enum]
            errs.not_supported(path, value, supported)
        if isinstance(value, str):
            self._string(value, node, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, node, path)
        elif isinstance(value, list):
            self._array(value, node, path)
        elif isinstance(value, dict):
            self._object(value, node, path)

    def _string(self, value: str, node: Node, path: str) -> None:
        errs = self.errs
        check = FORMATS.get(node.format)
        if check is not None and not check(value):
            errs.type_invalid(path, value, f"{_name(path)} in body must be of type {node.format}: {_q(value)}")
        length = len(value)
        if node.max_length is not None and length > node.max_length:
            errs.too_long(path, node.max_length)
        if node.min_length is not None and length < node.min_length:
            errs.invalid(path, value, f"{_name(path)} in body should be at least {node.min_length} chars long")
        if node.pattern is not None and not node.pattern.search(value):
            errs.invalid(path, value, f"{_name(path)} in body should match '{node.pattern_text}'")

    def _number(self, value: float, node: Node, path: str) -> None:
        errs = self.errs
        if node.multiple_of is not None and node.multiple_of > 0:
            quotient = value / node.multiple_of
            if quotient != int(quotient):
                errs.invalid(path, value, f"{_name(path)} in body should be a multiple of {go_number(node.multiple_of)}")
        if node.maximum is not None:
            if node.exclusive_maximum and value >= node.maximum:
                errs.invalid(path, value, f"{_name(path)} in body should be less than {go_number(node.maximum)}")
            elif value > node.maximum:
                errs.invalid(
                    path, value, f"{_name(path)} in body should be less than or equal to {go_number(node.maximum)}"
                )
        if node.minimum is not None:
            if node.exclusive_minimum and value <= node.minimum:
                errs.invalid(path, value, f"{_name(path)} in body should be greater than {go_number(node.minimum)}")
            elif value < node.minimum:
                errs.invalid(
                    path, value,
                    f"{_name(path)} in body should be greater than or equal to {go_number(node.minimum)}",
                )

    def _array(self, value: list, node: Node, path: str) -> None:
        errs = self.errs
        size = len(value)
        if node.min_items is not None and size < node.min_items:
            errs.invalid(path, size, f"{_name(path)} in body should have at least {node.min_items} items")
        if node.max_items is not None and size > node.max_items:
            errs.too_many(path, size, node.max_items)
        if node.unique_items:
            seen: list[Any] = []
            for v in value:
                if any(_json_equal(v, s) for s in seen):
                    errs.invalid(path, value, f"{_name(path)} in body shouldn't contain duplicates")
                    break
                seen.append(v)
        if node.items is not None:
            for i, v in enumerate(value):
                self.run(v, node.items, f"{path}[{i}]")

    def _object(self, value: dict, node: Node, path: str) -> None:
        errs = self.errs
        size = len(value)
        if node.max_properties is not None and size > node.max_properties:
            errs.too_many(path, size, node.max_properties)
        if node.min_properties is not None and size < node.min_properties:
            errs.invalid(path, size, f"{_name(path)} in body should have at least {node.min_properties} properties")
        for key in node.required:
            if key not in value:
                errs.required(join(path, key))
        for key, v in value.items():
            prop = node.properties.get(key)
            if prop is not None:
                self.run(v, prop, join(path, key))
            elif node.additional is not None:
                self.run(v, node.additional, join(path, key))
            elif node.additional_allowed is False and not node.properties:
                errs.invalid(path, key, f"{join(path, key)} in body is a forbidden property")

    def _composition(self, value: Any, node: Node, path: str) -> None:
        # go-openapi's schemaPropsValidator: a composite message, plus the errors of the failed
        # branches (all of them for allOf, the closest one for anyOf/oneOf).
        errs = self.errs
        if node.all_of:
            failures = [self._try(value, sub, path) for sub in node.all_of]
            failed = [f for f in failures if f]
            if failed:
                errs.causes.extend(c for f in failed for c in f)
                extra = ". None validated" if len(failed) == len(failures) else ""
                errs.composite(f"{_q(path)} must validate all the schemas (allOf){extra}")
        if node.any_of:
            failures = [self._try(value, sub, path) for sub in node.any_of]
            if all(failures):
                errs.composite(f"{_q(path)} must validate at least one schema (anyOf)")
                errs.causes.extend(min(failures, key=len))
        if node.one_of:
            failures = [self._try(value, sub, path) for sub in node.one_of]
            passed = sum(1 for f in failures if not f)
            if passed != 1:
                detail = "Found none valid" if passed == 0 else f"Found {passed} valid alternatives"
                errs.composite(f"{_q(path)} must validate one and only one schema (oneOf). {detail}")
                if passed == 0:
                    errs.causes.extend(min(failures, key=len))
        if node.not_ is not None and not self._try(value, node.not_, path):
            errs.composite(f"{_q(path)} must not validate the schema (not)")

    def _try(self, value: Any, node: Node, path: str) -> list[Cause]:
        saved = self.errs
        self.errs = Errors(saved.prefix)
        try:
            self.run(value, node, path)
            return self.errs.causes
        finally:
            self.errs = saved


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def list_sets_and_maps(value: Any, node: Node | None, path: str, out: list[Cause]) -> None:
    """schema/listtype.ValidateListSetsAndMaps: no duplicate items in sets, no duplicate keys in maps.

    As upstream, each repeated value is reported once, at its first repetition, and map
    values are addressed as `spec.labels[key]`.
    """
    if node is None:
        return
    if isinstance(value, dict):
        if node.additional is not None:
            for key, v in value.items():
                list_sets_and_maps(v, node.additional, f"{path}[{key}]", out)
        for key, v in value.items():
            sub = node.properties.get(key)
            if sub is not None:
                list_sets_and_maps(v, sub, join(path, key), out)
    elif isinstance(value, list):
        if node.list_type == "set":
            for i in _first_repeats(value):
                out.append(duplicate(Path(f"{path}[{i}]"), go_shown(value[i])))
        elif node.list_type == "map":
            out.extend(_list_map(value, node, path))
        if node.items is not None:
            for i, v in enumerate(value):
                list_sets_and_maps(v, node.items, f"{path}[{i}]", out)


def _first_repeats(values: list) -> list[int]:
    seen: dict[str, int] = {}
    repeats: list[int] = []
    for i, v in enumerate(values):
        key = json.dumps(v, sort_keys=True, separators=(",", ":"))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            repeats.append(i)
    return repeats


def _list_map(value: list, node: Node, path: str) -> list[Cause]:
    for i, item in enumerate(value):
        if item is not None and not isinstance(item, dict):
            return [invalid(Path(f"{path}[{i}]"), go_shown(item), "must be an object for an array of list-type map")]
    if len(value) <= 1:
        return []
    keys = [{k: item[k] for k in node.list_map_keys if k in item} if isinstance(item, dict) else {}
            for item in value]
    return [duplicate(Path(f"{path}[{i}]"), go_shown(keys[i])) for i in _first_repeats(keys)]


def go_shown(value: Any) -> Any:
    """A decoded JSON value as `field.Error` prints it: maps and slices with Go's `%#v`."""
    if isinstance(value, dict | list):
        return Raw(go_interface(value))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def embedded_resources(value: Any, node: Node | None, path: str, out: list[Cause], *, root: bool) -> None:
    """schema/objectmeta.Validate for every x-kubernetes-embedded-resource below the root."""
    if node is None:
        return
    if isinstance(value, dict):
        if node.embedded and not root:
            out.extend(_validate_embedded(value, Path(path)))
        for key, v in value.items():
            prop = node.properties.get(key)
            if prop is not None:
                embedded_resources(v, prop, join(path, key), out, root=False)
            elif node.additional is not None:
                embedded_resources(v, node.additional, f"{path}[{key}]", out, root=False)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            embedded_resources(v, node.items, f"{path}[{i}]", out, root=False)


def _validate_embedded(obj: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if "apiVersion" not in obj:
        causes.append(required(path.child("apiVersion")))
    if "kind" not in obj:
        causes.append(required(path.child("kind")))
    api_version = obj.get("apiVersion")
    if "apiVersion" in obj:
        if not isinstance(api_version, str):
            causes.append(invalid(path.child("apiVersion"), go_shown(api_version), "must be a string"))
        elif not api_version:
            causes.append(invalid(path.child("apiVersion"), api_version, "must not be empty"))
        elif api_version.count("/") > 1:
            causes.append(invalid(path.child("apiVersion"), api_version,
                                  f"unexpected GroupVersion string: {api_version}"))
    kind = obj.get("kind")
    if "kind" in obj:
        if not isinstance(kind, str):
            causes.append(invalid(path.child("kind"), go_shown(kind), "must be a string"))
        elif not kind:
            causes.append(invalid(path.child("kind"), kind, "must not be empty"))
        elif errs := is_dns1035_label(kind.lower()):
            causes.append(invalid(path.child("kind"), kind,
                                  "may have mixed case, but should otherwise match: " + ",".join(errs)))
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        # Upstream fills in a fake name (pod templates have none) and treats the object as
        # namespaced only when it names a namespace.
        meta = {**meta, "name": meta.get("name") or "fakename"}
        causes.extend(validate_object_meta(meta, bool(meta.get("namespace")), name_is_path_segment,
                                           path=path.child("metadata")))
    elif "metadata" in obj and meta is not None:
        causes.append(invalid(path.child("metadata"), go_shown(meta), "must be an object"))
    return causes


