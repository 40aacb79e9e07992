"""Patch engines for the PATCH verb: JSON patch, JSON merge patch and strategic merge patch.

Each engine takes already-decoded JSON, returns a new document without
mutating its inputs, and raises the `timoner.api.errors` class that
kube-apiserver answers for the same failure (see `_errors` for the 422 and
500 shapes upstream uses).

Server-side apply (`apply_config`) and the field ownership every write keeps
in `metadata.managedFields` (`track_update`) live in `_apply`, over the field
sets of `_fieldset` and the schema-aware walks of `_typed`.
"""

from __future__ import annotations

from timoner.api.patch._apply import (
    ApplyConflict,
    ApplyResult,
    FieldConflict,
    ManagedEntry,
    apply_config,
    decode_managed_fields,
    encode_managed_fields,
    track_update,
)
from timoner.api.patch._errors import GENERIC_INVALID_MESSAGE, PatchFailed
from timoner.api.patch._fieldset import decode_fields, encode_fields, path_string
from timoner.api.patch._json import MAX_JSON_PATCH_OPERATIONS, apply_json_patch
from timoner.api.patch._merge import apply_merge_patch, create_merge_patch
from timoner.api.patch._strategic import apply_strategic_merge_patch

__all__ = [
    "GENERIC_INVALID_MESSAGE",
    "ApplyConflict",
    "ApplyResult",
    "FieldConflict",
    "ManagedEntry",
    "apply_config",
    "decode_fields",
    "decode_managed_fields",
    "encode_fields",
    "encode_managed_fields",
    "path_string",
    "track_update",
    "MAX_JSON_PATCH_OPERATIONS",
    "PatchFailed",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
]
