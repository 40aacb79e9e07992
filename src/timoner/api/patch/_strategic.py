"""Strategic merge patch, applied the way kube-apiserver applies it.

A strategic merge patch is a JSON merge patch that knows, per field, how to
merge lists: the OpenAPI definitions carry `x-kubernetes-patch-strategy`
(`merge`, `replace`, `retainKeys`, or `merge,retainKeys`) and
`x-kubernetes-patch-merge-key`. Lists whose strategy contains `merge` are
merged item by item on the merge key (lists of scalars become an ordered
set union); every other list is replaced. Maps merge recursively and `null`
deletes, as in a merge patch. Fields the schema does not describe (free-form
objects, unknown fields) merge like a plain merge patch.

Directives, as upstream's strategicpatch package (apply half, with
MergeParallelList and IgnoreUnmatchedNulls) interprets them:

- `$patch: replace` on a map replaces the map; `$patch: delete` empties it;
  in a merging list `{"<key>": v, "$patch": "delete"}` removes the item and
  `{"$patch": "replace"}` makes the rest of the patch list the new list.
  `$patch: merge` is refused, as upstream refuses it.
- `$retainKeys: [...]` drops the members of the live map not listed
  (Deployment `spec.strategy`, volume sources).
- `$setElementOrder/<field>: [...]` fixes the order of the merged list.
- `$deleteFromPrimitiveList/<field>: [...]` removes scalars from a list.

New values (a member the live object lacks, or an item appended to a list)
are inserted without their `null` members and without `$patch` maps, which
is what upstream's decode into typed objects leaves of them.

Lookups of the patch metadata are cached per schema node, so repeated
patches of one kind walk the definitions once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import BadRequest
from timoner.api.patch._errors import PatchFailed, unclassified
from timoner.api.patch._gofmt import go_type, go_value, json_kind
from timoner.api.patch._order import (
    go_equal,
    hash_key,
    is_delete_directive,
    no_merge_key,
    normalize_element_order,
    partition,
)
from timoner.api.schema import definitions, resolve

__all__ = ["apply_strategic_merge_patch"]

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList"

_BAD_JSON_DOC = "invalid JSON document"
_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_SET_ORDER = "invalid patch format of setElementOrder list"
_NO_LIST_OF_LISTS = "lists of lists are not supported"

Schema = Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class _FieldMeta:
    """How one field patches: the schema of its value (of its items, for lists), strategy and merge key."""

    schema: Schema
    strategy: str
    merge_key: str


_FREE_FORM = _FieldMeta(None, "", "")
_META_CACHE: dict[tuple[int, str, bool], _FieldMeta] = {}


def _strategy(strategies: list[str]) -> str:
    """The list/map strategy once `retainKeys` is set aside (upstream's extractRetainKeysPatchStrategy)."""
    others = [s for s in strategies if s != "retainKeys"]
    if len(strategies) > 2 or (len(strategies) == 2 and len(others) != 1):
        raise unclassified(f"unexpected patch strategy: [{' '.join(strategies)}]")
    return others[0] if others else ""


def _lookup(schema: Schema, key: str, *, items: bool) -> _FieldMeta:
    """Patch metadata of field `key` of an object schema; `items=True` gives the list's item schema."""
    if schema is None:
        return _FREE_FORM
    cache_key = (id(schema), key, items)
    hit = _META_CACHE.get(cache_key)
    if hit is not None:
        return hit
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if isinstance(properties, Mapping) and key in properties:
        prop = properties[key]
        raw = prop.get("x-kubernetes-patch-strategy", "")
        strategy = _strategy([s for s in raw.split(",") if s])
        merge_key = prop.get("x-kubernetes-patch-merge-key", "")
        child: Schema = resolve(prop)
    elif isinstance(extra, Mapping):
        strategy, merge_key, child = "", "", resolve(extra)
    else:
        child, strategy, merge_key = None, "", ""
    if items and child is not None:
        element = child.get("items")
        child = resolve(element) if isinstance(element, Mapping) else None
    meta = _FieldMeta(child, strategy, merge_key)
    # Schema nodes live as long as the process (definitions() is cached), so their ids are stable keys.
    _META_CACHE[cache_key] = meta
    return meta


# --------------------------------------------------------------------- new values


_DROP = object()


def _clean(value: Any) -> Any:
    """A patch value as inserted fresh: no null members, no `$patch` maps, no directive keys."""
    if isinstance(value, Mapping):
        if _DIRECTIVE in value:
            return _DROP
        out = {}
        for k, v in value.items():
            if v is None or k == _RETAIN_KEYS or k.startswith((_SET_ORDER + "/", _DELETE_PRIMITIVE + "/")):
                continue
            cleaned = _clean(v)
            if cleaned is not _DROP:
                out[k] = cleaned
        return out
    if isinstance(value, list):
        return [c for c in (_clean(v) for v in value) if c is not _DROP]
    return value


def _set_fresh(original: dict[str, Any], key: str, value: Any) -> None:
    cleaned = _clean(value)
    if cleaned is _DROP:
        original.pop(key, None)
    else:
        original[key] = cleaned


# --------------------------------------------------------------------- maps


def _extract_key(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise BadRequest(error)
    return rest


def _map_directive(directive: Any, patch: dict[str, Any]) -> dict[str, Any]:
    if directive == "replace":
        del patch[_DIRECTIVE]
        cleaned = _clean(patch)
        return cleaned if isinstance(cleaned, dict) else {}
    if directive == "delete":
        return {}
    raise unclassified(f"unknown patch type: {go_value(directive)} in map: {go_value(patch)}")


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list) or any(isinstance(v, Mapping | list) for v in retain):
        raise BadRequest(_BAD_RETAIN_KEYS)
    allowed = {hash_key(v) for v in retain}
    for k, v in patch.items():
        if v is None or k.startswith((_DELETE_PRIMITIVE, _SET_ORDER)):
            continue
        if hash_key(k) not in allowed:
            raise BadRequest(_BAD_RETAIN_KEYS)
    for k in list(original):
        if hash_key(k) not in allowed:
            del original[k]


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    if _DIRECTIVE in patch:
        return _map_directive(patch[_DIRECTIVE], patch)
    _apply_retain_keys(original, patch)
    _apply_element_orders(original, patch, schema)
    for raw_key, value in list(patch.items()):
        key = raw_key
        delete_list = raw_key.startswith(_DELETE_PRIMITIVE)
        if delete_list:
            key = _extract_key(raw_key, _DELETE_PRIMITIVE, _BAD_PRIMITIVE_LIST)
        if value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not delete_list:
                _set_fresh(original, key, value)
            continue
        current = original[key]
        if isinstance(current, dict) and isinstance(value, dict):
            if delete_list:
                continue
            meta = _lookup(schema, key, items=False)
            if meta.strategy == "replace":
                _set_fresh(original, key, value)
            else:
                original[key] = _merge_map(current, value, meta.schema)
        elif isinstance(current, list) and isinstance(value, list):
            meta = _lookup(schema, key, items=True)
            original[key] = _merge_list_field(current, value, meta, delete_list=delete_list)
        elif not delete_list:
            _set_fresh(original, key, value)
    return original


# --------------------------------------------------------------------- lists


def _element_kind(*lists: list[Any]) -> str | None:
    """Element kind, "map" or "scalar", or None when there are no items, checked what upstream's sliceElementType checks."""
    first: Any = _DROP
    for items in lists:
        for v in items:
            if first is _DROP:
                first = v
                if isinstance(v, list):
                    raise PatchFailed(_NO_LIST_OF_LISTS)
            elif go_type(v) != go_type(first):
                raise unclassified(f"list element types are not identical: {go_value(list(lists))}")
    if first is _DROP:
        return None
    return "map" if isinstance(first, Mapping) else "scalar"


def _merge_list_field(
    original: list[Any], patch: list[Any], meta: _FieldMeta, *, delete_list: bool
) -> list[Any]:
    # Delete lists work whatever the field's strategy is (as in current upstream).
    if meta.strategy == "merge" or delete_list:
        return _merge_list(original, patch, meta, delete_list=delete_list)
    return _clean(patch)


def _merge_list(original: list[Any], patch: list[Any], meta: _FieldMeta, *, delete_list: bool) -> list[Any]:
    kind = _element_kind(original, patch)
    if kind is None:
        return original
    merge_key = meta.merge_key
    if kind == "scalar":
        if delete_list:
            doomed = {hash_key(v) for v in patch}
            return [v for v in original if hash_key(v) not in doomed]
        merged = _dedup([*original, *patch])
        server_order = original
    else:
        if not merge_key:
            raise unclassified("cannot merge lists without merge key for type map")
        server_order, patch = _apply_list_directives(original, patch, merge_key)
        merged = _merge_by_key(server_order, patch, meta)
    parts = partition(merged, patch, merge_key if kind == "map" else "")
    return normalize_element_order(
        parts, patch, server_order, merge_key=merge_key if kind == "map" else "", maps=kind == "map"
    )


def _dedup(items: list[Any]) -> list[Any]:
    seen: set[tuple[type, Any]] = set()
    out = []
    for v in items:
        if hash_key(v) not in seen:
            seen.add(hash_key(v))
            out.append(v)
    return out


def _find(items: list[Any], merge_key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise unclassified(f"value for key {i} is not a map")
        if merge_key in item and go_equal(item[merge_key], value):
            return i
    return -1


def _apply_list_directives(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """Handle `$patch` items: returns the live list after deletions (or replacement) and the plain patch items."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise no_merge_key(item, merge_key)
            original = [o for o in original if not _matches_key(o, merge_key, item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise unclassified("merging lists cannot yet be specified in the patch")
        else:
            raise unclassified(f"unknown patch type: {go_value(directive)} in map: {go_value(item)}")
    if replace:
        return [c for c in (_clean(v) for v in plain) if c is not _DROP], []
    return original, plain


def _matches_key(item: Any, merge_key: str, value: Any) -> bool:
    if not isinstance(item, Mapping):
        raise unclassified("value for key is not a map")
    return merge_key in item and go_equal(item[merge_key], value)


def _merge_by_key(original: list[Any], patch: list[Any], meta: _FieldMeta) -> list[Any]:
    merged = list(original)
    for item in patch:
        if meta.merge_key not in item:
            raise no_merge_key(item, meta.merge_key)
        at = _find(merged, meta.merge_key, item[meta.merge_key])
        if at >= 0:
            merged[at] = _merge_map(merged[at], item, meta.schema)
        else:
            cleaned = _clean(item)
            if cleaned is not _DROP:
                merged.append(cleaned)
    return merged


# --------------------------------------------------------------------- $setElementOrder


def _apply_element_orders(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> None:
    """Merge every list named by a `$setElementOrder/<field>` and order it as the directive says."""
    for directive_key in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = patch.pop(directive_key)
        if not isinstance(order, list):
            raise unclassified(f"expected a []interface {{}}, but received a {go_type(order)}")
        key = _extract_key(directive_key, _SET_ORDER, _BAD_SET_ORDER)
        live, in_patch = original.get(key, _DROP), patch.get(key, _DROP)
        for value in (live, in_patch):
            if value is not _DROP and not isinstance(value, list):
                raise unclassified(f"expected a []interface {{}}, but received a {go_type(value)}")
        live_list = live if isinstance(live, list) else []
        patch_list = in_patch if isinstance(in_patch, list) else []
        meta = _lookup(schema, key, items=True)
        _validate_order(patch_list, order, meta.merge_key)
        if live is _DROP and in_patch is _DROP:
            continue
        if in_patch is _DROP:
            merged = live_list
        elif live is _DROP:
            merged = _clean(patch_list)
        else:
            merged = _merge_list_field(live_list, patch_list, meta, delete_list=False)
        kind = _element_kind(live_list, patch_list)
        if kind is not None:
            maps = kind == "map"
            parts = partition(merged, order, meta.merge_key if maps else "")
            merged = normalize_element_order(
                parts, order, live_list, merge_key=meta.merge_key if maps else "", maps=maps
            )
        original[key] = merged
        patch.pop(key, None)


def _validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch list must name its items in the directive's relative order (upstream's check)."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for item in patch_list:
            if not isinstance(item, Mapping):
                raise unclassified(f"expected a map[string]interface {{}}, but received a {go_type(item)}")
        items = [i for i in patch_list if not is_delete_directive(i)]
    p = o = 0
    while p < len(items) and o < len(order):
        if isinstance(items[p], Mapping) and _DIRECTIVE in items[p]:
            p += 1
            continue
        if _order_key_equal(items[p], order[o], merge_key):
            p += 1
        o += 1
    if p < len(items) and o >= len(order):
        raise unclassified(
            f"The order in patch list:\n{go_value(patch_list)}\n doesn't match {_SET_ORDER} list:\n{go_value(order)}\n"
        )


def _order_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return go_equal(left, right)
    for side in (left, right):
        if not isinstance(side, Mapping):
            raise unclassified(f"expected a map[string]interface {{}}, but received a {go_type(side)}")
        if merge_key not in side:
            raise no_merge_key(side, merge_key)
    return go_equal(left[merge_key], right[merge_key])


# --------------------------------------------------------------------- entry point


def apply_strategic_merge_patch(
    original: dict[str, Any], patch: dict[str, Any] | None, *, definition: str
) -> dict[str, Any]:
    """Apply a strategic merge patch to `original`, whose type is the OpenAPI definition `definition`.

    Neither argument is mutated. Raises BadRequest for malformed directives
    and documents, PatchFailed (422) for lists of lists, and an
    unclassified 500 APIError for the errors upstream leaves unclassified
    (a merge-list item without its merge key, an unknown `$patch` value).
    Raises KeyError for an unknown definition name: that is a caller bug.
    """
    if patch is None:
        patch = {}  # a `null` body decodes to an empty patch upstream
    if not isinstance(patch, Mapping):
        raise BadRequest(
            f"json: cannot unmarshal {json_kind(patch)} into Go value of type map[string]interface {{}}"
        )
    if not isinstance(original, Mapping):
        raise BadRequest(_BAD_JSON_DOC)
    schema = resolve(definitions()[definition])
    result = _merge_map(copy.deepcopy(dict(original)), copy.deepcopy(dict(patch)), schema)
    return result


