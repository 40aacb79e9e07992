"""Field managers of writes: who a request writes as, and the `managedFields` every write leaves.

The engine is `timoner.api.patch` (`apply_config`, `track_update`); this
module holds the request-facing rules of kube-apiserver's fieldmanager:

- the manager is the `fieldManager` query parameter, or else the User-Agent
  up to its first `/` (`kubectl` for `kubectl/v1.32.0 (linux/amd64) ...`);
  apply requires the parameter (422 on `PatchOptions`), and at most 128
  characters are allowed;
- `force` is only for apply;
- an Update keeps the `managedFields` the request sends when they decode
  and are not empty, resets them when it sends `[]` or `[{}]`, and
  otherwise keeps the live object's; writes to a subresource always keep
  the live object's;
- `status` is nobody's on the main resource of a kind with a status
  subresource, and `spec` is nobody's through `/status`, because the
  strategy resets them there (upstream's ResetFields).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timoner.api import errors
from timoner.api.errors import Cause
from timoner.api.patch import decode_managed_fields, track_update
from timoner.api.registry import ResourceInfo

from ._http import Request
from .store import now_rfc3339

__all__ = [
    "field_manager",
    "force_flag",
    "ignored_paths",
    "live_managed_fields",
    "resets_managed_fields",
    "update_tracker",
]

MAX_MANAGER_LENGTH = 128


def _invalid_options(kind: str, cause: Cause) -> errors.Invalid:
    return errors.Invalid(kind, "", [cause], group="meta.k8s.io")


def field_manager(req: Request, *, apply: bool, options_kind: str = "PatchOptions") -> str:
    """The manager a write records its fields under."""
    name = req.arg("fieldManager")
    if name:
        if len(name) > MAX_MANAGER_LENGTH:
            raise _invalid_options(options_kind, Cause(
                "FieldValueTooLong", f"Too long: may not be more than {MAX_MANAGER_LENGTH} bytes", "fieldManager"))
        if not name.isprintable():
            raise _invalid_options(options_kind, Cause(
                "FieldValueInvalid", f'Invalid value: "{name}": must only contain printable characters',
                "fieldManager"))
        return name
    if apply:
        raise _invalid_options(options_kind, Cause(
            "FieldValueRequired", "Required value: is required for apply patch", "fieldManager"))
    return req.headers.get("user-agent", "").split("/", 1)[0][:MAX_MANAGER_LENGTH]


def force_flag(req: Request, *, apply: bool) -> bool:
    """The `force` parameter: only apply may set it."""
    value = req.arg("force")
    if value is None:
        return False
    if not apply:
        raise _invalid_options("PatchOptions", Cause(
            "FieldValueForbidden", "Forbidden: may not be specified for non-apply patch", "force"))
    if value.lower() not in ("true", "false", "1", "0", ""):
        raise errors.BadRequest(f'invalid value for force: "{value}"')
    return value.lower() in ("true", "1", "")


def apply_type(info: ResourceInfo) -> str | dict | None:
    """What server-side apply walks objects of `info` by: its definition, or a custom resource's schema."""
    if info.custom is not None:
        return info.custom.apply_root
    return info.definition or None


def ignored_paths(info: ResourceInfo, subresource: str) -> frozenset[tuple[tuple[str, Any], ...]]:
    if subresource == "status":
        return frozenset({(("f", "spec"),)})
    if subresource == "" and info.has_status:
        return frozenset({(("f", "status"),)})
    return frozenset()


def resets_managed_fields(body: Any) -> bool:
    """Whether a request body asks to clear `managedFields` (`[]` or `[{}]`), as upstream reads it."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    value = meta.get("managedFields") if isinstance(meta, dict) else None
    return value == [] or value == [{}]


def _decodes(raw: Any) -> bool:
    try:
        return bool(decode_managed_fields(raw))
    except errors.APIError:
        return False


def live_managed_fields(current: dict | None) -> Any:
    """The stored object's `managedFields`, or none when they do not decode (upstream starts afresh)."""
    live = (current or {}).get("metadata", {}).get("managedFields")
    return live if _decodes(live) else []


def update_tracker(info: ResourceInfo, *, manager: str, subresource: str = "",
                   reset: bool = False) -> Callable[[dict | None, dict], None]:
    """What the store calls on the final new object of a create or update to record its `managedFields`."""
    ignored = ignored_paths(info, subresource)

    def track(current: dict | None, new: dict) -> None:
        meta = new.setdefault("metadata", {})
        sent = meta.pop("managedFields", None)
        if reset and not subresource:
            base: Any = []
        elif not subresource and _decodes(sent):
            base = sent
        else:
            base = live_managed_fields(current)
        fields = track_update(current, new, managed_fields=base, manager=manager, api_version=info.group_version,
                              definition=apply_type(info), now=now_rfc3339(), subresource=subresource,
                              ignored=ignored)
        if fields:
            meta["managedFields"] = fields

    return track
