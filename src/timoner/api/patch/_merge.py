"""JSON merge patch (RFC 7386): apply one, and compute one between two documents.

A merge patch is a partial document: objects merge member by member, `null`
deletes a member, and anything else (lists included) replaces the target
wholesale. Nested patch objects are applied against an empty object when
the target lacks them, which drops their `null` members, as the RFC says.

At the top level kube-apiserver (evanphx/json-patch `MergePatch`) rejects a
patch that is not a JSON object with 400 "Invalid JSON Patch": Kubernetes
objects are objects, so replacing one by a scalar, a list or `null` is
never meaningful. `apply_merge_patch` raises the same.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from timoner.api.errors import BadRequest

__all__ = ["apply_merge_patch", "create_merge_patch"]


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch to `doc` and return the result; `doc` is not mutated.

    Raises BadRequest("Invalid JSON Patch") when `patch` is not an object,
    as kube-apiserver does.
    """
    if not isinstance(patch, Mapping):
        raise BadRequest("Invalid JSON Patch")
    # Untouched members are shared with `doc` until copied here, so callers may mutate the result.
    return copy.deepcopy(_merge(doc, patch))


def create_merge_patch(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning `a` into `b`: changed members, and `null` for removed ones.

    Exact for documents without `null` values (a merge patch cannot set a
    member to `null`).
    """
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise TypeError("create_merge_patch takes two JSON objects")
    patch: dict[str, Any] = {}
    for key in a.keys() - b.keys():
        patch[key] = None
    for key, new in b.items():
        if key not in a:
            patch[key] = copy.deepcopy(new)
            continue
        old = a[key]
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            sub = create_merge_patch(old, new)
            if sub:
                patch[key] = sub
        elif not _same(old, new):
            patch[key] = copy.deepcopy(new)
    return patch


def _same(a: Any, b: Any) -> bool:
    # JSON equality: Python's `True == 1` and `1 == 1.0` must not hide a change of type.
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
