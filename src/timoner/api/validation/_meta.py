"""ObjectMeta, labels, annotations, owner references, finalizers and label selectors.

Mirrors `apimachinery/pkg/api/validation/objectmeta.go` and
`apimachinery/pkg/apis/meta/v1/validation`. Note the upstream quirks kept on
purpose: label and annotation errors point at the map (`metadata.labels`),
not at the key, and owner-reference errors carry no list index
(`metadata.ownerReferences.uid`).

Also here: the small generic checks every kind uses (non-negative integers,
immutable fields) and a label-selector matcher, needed to check that a
workload's selector selects its own pod template.
"""

from __future__ import annotations

from typing import Any

from timoner.api.errors import Cause
from timoner.api.validation._field import Path, forbidden, invalid, required, too_long
from timoner.api.validation._names import (
    NameFunc,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns1123_label,
)

__all__ = [
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "immutable",
    "nonnegative",
    "selector_is_empty",
    "selector_matches",
    "validate_annotations",
    "validate_label_selector",
    "validate_labels",
    "validate_object_meta",
]

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)
_ORPHAN = "orphan"
_FOREGROUND = "foregroundDeletion"


def nonnegative(value: Any, path: Path) -> list[Cause]:
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def immutable(new: Any, old: Any, path: Path) -> list[Cause]:
    """`ValidateImmutableField`: the new value is reported, as upstream does."""
    if new != old:
        return [invalid(path, new, "field is immutable")]
    return []


def validate_labels(labels: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(labels, dict):
        return causes
    for key, value in labels.items():
        causes.extend(invalid(path, key, msg) for msg in is_qualified_name(key))
        causes.extend(invalid(path, value, msg) for msg in is_valid_label_value(str(value)))
    return causes


def validate_annotations(annotations: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(annotations, dict):
        return causes
    size = 0
    for key, value in annotations.items():
        # Annotation keys are qualified names except that case does not matter.
        causes.extend(invalid(path, key, msg) for msg in is_qualified_name(key.lower()))
        size += len(key.encode()) + len(str(value).encode())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def _owner_reference(ref: dict, path: Path) -> list[Cause]:
    causes = []
    api_version = ref.get("apiVersion") or ""
    parts = api_version.split("/")
    # schema.FromAPIVersionAndKind: "v1" is core, "g/v" is grouped; anything else parses to no version.
    version = parts[0] if len(parts) == 1 else parts[1] if len(parts) == 2 else ""
    kind = ref.get("kind") or ""
    if not version:
        causes.append(invalid(path.child("apiVersion"), api_version, "version must not be empty"))
    if not kind:
        causes.append(invalid(path.child("kind"), kind, "kind must not be empty"))
    if not ref.get("name"):
        causes.append(invalid(path.child("name"), ref.get("name") or "", "name must not be empty"))
    if not ref.get("uid"):
        causes.append(invalid(path.child("uid"), ref.get("uid") or "", "uid must not be empty"))
    if api_version == "v1" and kind == "Event":  # upstream's BannedOwners
        causes.append(invalid(path, ref, f"{_gvk_string(api_version, kind)} is disallowed from being an owner"))
    return causes


def _gvk_string(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _owner_references(refs: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(refs, list):
        return causes
    first_controller = ""
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        causes.extend(_owner_reference(ref, path))
        if ref.get("controller") is True:
            current = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if first_controller:
                causes.append(invalid(
                    path, refs,
                    "Only one reference can have Controller set to true. "
                    f'Found "true" in references for {first_controller} and {current}',
                ))
            else:
                first_controller = current
    return causes


def _finalizers(finalizers: Any, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(finalizers, list):
        return causes
    for name in finalizers:
        causes.extend(invalid(path, name, msg) for msg in is_qualified_name(str(name)))
    if _ORPHAN in finalizers and _FOREGROUND in finalizers:
        causes.append(invalid(path, finalizers, f"finalizer {_ORPHAN} and {_FOREGROUND} cannot be both set"))
    return causes


def validate_object_meta(
    meta: Any, namespaced: bool, name_fn: NameFunc, *, path: Path = Path("metadata")
) -> list[Cause]:
    """`ValidateObjectMeta`: name (or generateName), namespace, labels, annotations, owners, finalizers."""
    meta = meta if isinstance(meta, dict) else {}
    causes: list[Cause] = []
    generate_name = meta.get("generateName") or ""
    if generate_name:
        causes.extend(invalid(path.child("generateName"), generate_name, m) for m in name_fn(generate_name, True))
    name = meta.get("name") or ""
    if not name:
        causes.append(required(path.child("name"), "name or generateName is required"))
    else:
        causes.extend(invalid(path.child("name"), name, m) for m in name_fn(name, False))
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            causes.append(required(path.child("namespace")))
        else:
            causes.extend(invalid(path.child("namespace"), namespace, m) for m in name_is_dns1123_label(namespace))
    elif namespace:
        causes.append(forbidden(path.child("namespace"), "not allowed on this type"))
    causes.extend(nonnegative(meta.get("generation", 0), path.child("generation")))
    causes.extend(validate_labels(meta.get("labels"), path.child("labels")))
    causes.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    causes.extend(_owner_references(meta.get("ownerReferences"), path.child("ownerReferences")))
    causes.extend(_finalizers(meta.get("finalizers"), path.child("finalizers")))
    return causes


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: Any, path: Path) -> list[Cause]:
    """`metav1 ValidateLabelSelector` with label values checked strictly."""
    causes: list[Cause] = []
    if not isinstance(selector, dict):
        return causes
    causes.extend(validate_labels(selector.get("matchLabels"), path.child("matchLabels")))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        causes.extend(_selector_requirement(expr if isinstance(expr, dict) else {}, path.child("matchExpressions").index(i)))
    return causes


def _selector_requirement(expr: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    operator = expr.get("operator") or ""
    values = expr.get("values") or []
    if operator in ("In", "NotIn"):
        if not values:
            causes.append(required(path.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            causes.append(forbidden(path.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    else:
        causes.append(invalid(path.child("operator"), operator, "not a valid selector operator"))
    key = expr.get("key") or ""
    causes.extend(invalid(path.child("key"), key, m) for m in is_qualified_name(key))
    for i, value in enumerate(values):
        causes.extend(invalid(path.child("values").index(i), value, m) for m in is_valid_label_value(str(value)))
    return causes


def selector_is_empty(selector: Any) -> bool:
    return not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions"))


def selector_matches(selector: Any, labels: Any) -> bool:
    """Whether a `LabelSelector` selects the labels; a missing selector selects nothing, as upstream."""
    if not isinstance(selector, dict):
        return False
    labels = labels if isinstance(labels, dict) else {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
