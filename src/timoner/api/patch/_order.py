"""Element order of merged lists in strategic merge patch.

Upstream (strategicpatch `normalizeElementOrder`) orders a merged list so
that the patch's order wins for the items the patch names (or the order a
`$setElementOrder/<field>` directive gives) and the live object's order
wins for the items only the server has; the two runs are then interleaved,
taking a server-only item first only when it stood before the patch item in
the live list. These helpers reproduce that, with Go's `==` on interface
values (so `1` and `1.0`, or `1` and `true`, are different keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from timoner.api.patch._errors import unclassified
from timoner.api.patch._gofmt import go_type, go_value

__all__ = [
    "Partition",
    "go_equal",
    "hash_key",
    "is_delete_directive",
    "no_merge_key",
    "normalize_element_order",
    "partition",
]


@dataclass(frozen=True, slots=True)
class Partition:
    """A merged list split into the items the patch (or order directive) names and the server-only rest."""

    named: list[Any]
    server_only: list[Any]


def hash_key(value: Any) -> tuple[type, Any]:
    """A dict key that compares like Go's `==` on a JSON scalar."""
    return (type(value), value)


def go_equal(a: Any, b: Any) -> bool:
    """Go's `==` on two interface values holding JSON scalars (maps and lists never compare equal)."""
    if isinstance(a, Mapping | list) or isinstance(b, Mapping | list):
        return False
    return type(a) is type(b) and a == b


def no_merge_key(item: Any, merge_key: str) -> Exception:
    """Upstream's ErrNoMergeKey, which kube-apiserver answers as an unclassified 500."""
    return unclassified(f"map: {go_value(item)} does not contain declared merge key: {merge_key}")


def is_delete_directive(item: Any) -> bool:
    return isinstance(item, Mapping) and item.get("$patch") == "delete"


def _key_of(item: Any, merge_key: str) -> Any:
    if not merge_key:
        return item
    return item.get(merge_key) if isinstance(item, Mapping) else None


def _index(items: Sequence[Any], item: Any, merge_key: str) -> int:
    wanted = _key_of(item, merge_key)
    for i, candidate in enumerate(items):
        have = _key_of(candidate, merge_key)
        # Go compares the interface values; two absent merge keys (nil == nil) match.
        if (wanted is None and have is None) or go_equal(wanted, have):
            return i
    return -1


def partition(merged: Sequence[Any], by: Sequence[Any], merge_key: str) -> Partition:
    """Split `merged` into items present in `by` (by merge key for maps, by value otherwise)."""
    named: list[Any] = []
    server_only: list[Any] = []
    if not merge_key:
        present = {hash_key(v) for v in by if not isinstance(v, Mapping | list)}
        for v in merged:
            (named if not isinstance(v, Mapping | list) and hash_key(v) in present else server_only).append(v)
        return Partition(named, server_only)
    for v in merged:
        if not isinstance(v, Mapping):
            raise unclassified(f"expected a map[string]interface {{}}, but received a {go_type(v)}")
        if merge_key not in v:
            raise no_merge_key(v, merge_key)
        found = False
        for candidate in by:
            if not isinstance(candidate, Mapping):
                raise unclassified(f"value for key {by.index(candidate)} is not a map")
            if merge_key in candidate and go_equal(candidate[merge_key], v[merge_key]):
                found = True
                break
        (named if found else server_only).append(v)
    return Partition(named, server_only)


def _sort_by(items: list[Any], order: Sequence[Any], merge_key: str, *, maps: bool) -> list[Any]:
    deletions: list[Any] = []
    if maps:
        for item in [*items, *order]:
            if not isinstance(item, Mapping):
                raise unclassified(f"expected a map[string]interface {{}}, but received a {go_type(item)}")
            if merge_key not in item:
                raise no_merge_key(item, merge_key)
        deletions = [i for i in items if is_delete_directive(i)]
        items = [i for i in items if not is_delete_directive(i)]
    # Items missing from `order` keep their relative order after the known ones.
    positions = [_index(order, item, merge_key) for item in items]
    ranked = sorted(range(len(items)), key=lambda i: (positions[i] < 0, positions[i]))
    return [items[i] for i in ranked] + deletions


def normalize_element_order(
    parts: Partition,
    patch_order: Sequence[Any],
    server_order: Sequence[Any],
    *,
    merge_key: str,
    maps: bool,
) -> list[Any]:
    """Order the named items by `patch_order`, the rest by `server_order`, then interleave them."""
    named = _sort_by(parts.named, patch_order, merge_key, maps=maps)
    server_only = _sort_by(parts.server_only, server_order, merge_key, maps=maps)
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(named):
        if j >= len(named):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(named[j])
            j += 1
        else:
            left = _index(server_order, server_only[i], merge_key)
            right = _index(server_order, named[j], merge_key)
            if left >= 0 and right >= 0 and left < right:
                out.append(server_only[i])
                i += 1
            else:
                out.append(named[j])
                j += 1
    return out
