"""Patch engines for the PATCH verb: JSON patch, JSON merge patch and strategic merge patch.

Each engine takes already-decoded JSON, returns a new document without
mutating its inputs, and raises the `timoner.api.errors` class that
kube-apiserver answers for the same failure (see `_errors` for the 422 and
500 shapes upstream uses). Server-side apply lives elsewhere.
"""

from __future__ import annotations

from timoner.api.patch._errors import GENERIC_INVALID_MESSAGE, PatchFailed
from timoner.api.patch._json import MAX_JSON_PATCH_OPERATIONS, apply_json_patch
from timoner.api.patch._merge import apply_merge_patch, create_merge_patch
from timoner.api.patch._strategic import apply_strategic_merge_patch

__all__ = [
    "GENERIC_INVALID_MESSAGE",
    "MAX_JSON_PATCH_OPERATIONS",
    "PatchFailed",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
]
