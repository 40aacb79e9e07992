"""Server-side apply and field ownership, as structured-merge-diff v4 and kube-apiserver's fieldmanager do it.

`metadata.managedFields` lists, per manager, the fields it owns. A manager is
identified by its name, operation (`Apply` or `Update`), subresource and, for
`Update` only, the API version: upstream's `BuildManagerIdentifier`.

`apply_config` is the Apply operation: the configuration is merged onto the
live object; the applier then owns exactly the configuration's fields; the
fields it applied before and omits now are removed unless some manager
still owns them; and any field another manager owns that the result would
add or change is a conflict (409 with one `FieldManagerConflict` cause per
field) unless `force` moves its ownership to the applier. Setting a field to
the value it already has is no conflict: both managers then own it.

`track_update` is the Update operation (create, PUT, non-apply PATCH): the
manager gains the fields it added or changed, loses the ones it removed, and
every other manager loses the fields that changed under it.

Both work on objects without `metadata.managedFields` and return the new
entries, sorted as upstream sorts them. System fields of `metadata`
(`name`, `uid`, `resourceVersion`, ...), `apiVersion` and `kind` are never
owned, as upstream's StripMeta has it; nor is anything under the `ignored`
paths (upstream's reset fields: `status` for writes of the main resource of
a kind with a status subresource, `spec` for writes of `/status`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from timoner.api.errors import BadRequest, Cause, Conflict
from timoner.api.patch._fieldset import Path, decode_fields, encode_fields, path_string
from timoner.api.patch._typed import compare, field_set, merge, remove_paths, root_node

__all__ = [
    "ApplyConflict",
    "ApplyResult",
    "FieldConflict",
    "ManagedEntry",
    "apply_config",
    "decode_managed_fields",
    "encode_managed_fields",
    "track_update",
]

APPLY = "Apply"
UPDATE = "Update"

_STRIPPED: frozenset[Path] = frozenset(
    [(("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),)]
    + [(("f", "metadata"), ("f", name)) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
        "managedFields", "resourceVersion")]
)


@dataclass(frozen=True, slots=True)
class ManagedEntry:
    """One `managedFields` entry: who owns `fields`, through which operation and version."""

    manager: str
    operation: str
    api_version: str
    fields: frozenset[Path]
    time: str | None = None
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str, str]:
        # Appliers keep one identity across versions; updaters get one per version.
        return (self.manager, self.operation, self.subresource,
                self.api_version if self.operation == UPDATE else "")

    def describe(self) -> str:
        """The manager as upstream's conflict messages print it."""
        if self.operation != UPDATE:
            return f'"{self.manager}"'
        if self.subresource:
            return f'"{self.manager}" with subresource "{self.subresource}" using {self.api_version}'
        return f'"{self.manager}" using {self.api_version}'


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """A field the applier would change that `owner` owns."""

    owner: ManagedEntry
    path: Path


class ApplyConflict(Conflict):
    """409 Conflict of an apply, with upstream's message and one `FieldManagerConflict` cause per field."""

    def __init__(self, conflicts: Sequence[FieldConflict]) -> None:
        self.conflicts = list(conflicts)
        causes = [Cause("FieldManagerConflict", f"conflict with {c.owner.describe()}", path_string(c.path))
                  for c in self.conflicts]
        if len(self.conflicts) == 1:
            c = self.conflicts[0]
            message = f"Apply failed with 1 conflict: conflict with {c.owner.describe()}: {path_string(c.path)}"
        else:
            lines = []
            by_owner: dict[str, list[Path]] = {}
            for c in self.conflicts:
                by_owner.setdefault(c.owner.describe(), []).append(c.path)
            for owner in sorted(by_owner):
                lines.append(f"conflicts with {owner}:")
                lines.extend(f"- {path_string(p)}" for p in by_owner[owner])
            message = f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)
        super().__init__("", "", causes=causes, message=message)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The object an apply produces and its new `managedFields`."""

    object: dict[str, Any]
    managed_fields: list[dict[str, Any]]


def decode_managed_fields(raw: Any) -> list[ManagedEntry]:
    """Entries of a `metadata.managedFields` value; BadRequest when one is malformed."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("metadata.managedFields must be a list")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise BadRequest(f"metadata.managedFields[{i}] must be an object")
        fields_type = entry.get("fieldsType")
        if fields_type != "FieldsV1":
            raise BadRequest(f'metadata.managedFields[{i}].fieldsType: unsupported value "{fields_type}"; '
                             'only "FieldsV1" is supported')
        operation = entry.get("operation")
        if operation not in (APPLY, UPDATE):
            raise BadRequest(f'metadata.managedFields[{i}].operation: unsupported value "{operation}"')
        out.append(ManagedEntry(
            manager=str(entry.get("manager") or ""), operation=operation,
            api_version=str(entry.get("apiVersion") or ""), fields=decode_fields(entry.get("fieldsV1") or {}),
            time=entry.get("time"), subresource=str(entry.get("subresource") or "")))
    return out


def _sort_key(e: ManagedEntry) -> tuple[str, str, str, str, str]:
    return (e.operation, e.time or "", e.manager, e.api_version, e.subresource)


def encode_managed_fields(entries: Sequence[ManagedEntry]) -> list[dict[str, Any]]:
    """The `metadata.managedFields` value of `entries`, in upstream's order, empty sets dropped."""
    out = []
    for e in sorted((e for e in entries if e.fields), key=_sort_key):
        item: dict[str, Any] = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        if e.time:
            item["time"] = e.time
        item["fieldsType"] = "FieldsV1"
        item["fieldsV1"] = encode_fields(e.fields)
        if e.subresource:
            item["subresource"] = e.subresource
        out.append(item)
    return out


def _strip(paths: set[Path] | frozenset[Path], ignored: frozenset[Path]) -> frozenset[Path]:
    managed = ("f", "metadata"), ("f", "managedFields")
    return frozenset(p for p in paths if p not in _STRIPPED and p[:2] != managed
                     and not any(p[:len(i)] == i for i in ignored))


def _without_managed(obj: Any) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and "managedFields" in obj["metadata"]:
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    return obj


def _coalesce(entries: Sequence[ManagedEntry]) -> dict[tuple[str, str, str, str], ManagedEntry]:
    """Entries by identity; duplicates (possible in hand-written managedFields) are united."""
    out: dict[tuple[str, str, str, str], ManagedEntry] = {}
    for e in entries:
        seen = out.get(e.identity)
        out[e.identity] = e if seen is None else replace(seen, fields=seen.fields | e.fields)
    return out


def _has_descendant(owned: set[Path], path: Path) -> bool:
    n = len(path)
    return any(len(q) >= n and q[:n] == path for q in owned)


def _finish(managers: dict[tuple[str, str, str, str], ManagedEntry], before: Mapping[Any, ManagedEntry],
            me: tuple[str, str, str, str], now: str) -> list[dict[str, Any]]:
    entries = []
    for key, e in managers.items():
        old = before.get(key)
        if key == me and (old is None or old.fields != e.fields or old.api_version != e.api_version):
            e = replace(e, time=now)
        entries.append(e)
    return encode_managed_fields(entries)


def track_update(live: Any, new: dict[str, Any], *, managed_fields: Any, manager: str, api_version: str,
                 definition: str | Mapping[str, Any] | None, now: str, subresource: str = "",
                 ignored: frozenset[Path] = frozenset()) -> list[dict[str, Any]]:
    """The `managedFields` after `manager` changed `live` (None when creating) into `new` by an Update."""
    node = root_node(definition)
    before = _coalesce(decode_managed_fields(managed_fields))
    added, modified, removed = compare(_without_managed(live) or {}, _without_managed(new), node)
    changed = _strip(added | modified, ignored)
    gone = _strip(removed, ignored)
    me = ManagedEntry(manager, UPDATE, api_version, frozenset(), subresource=subresource)
    managers = {}
    for key, e in before.items():
        if key != me.identity:
            managers[key] = replace(e, fields=e.fields - changed - gone)
    mine = before.get(me.identity, me)
    managers[me.identity] = replace(mine, fields=(mine.fields - gone) | changed, api_version=api_version)
    return _finish(managers, before, me.identity, now)


def apply_config(live: dict[str, Any] | None, config: dict[str, Any], *, managed_fields: Any, manager: str,
                 api_version: str, definition: str | Mapping[str, Any] | None, force: bool, now: str,
                 subresource: str = "", ignored: frozenset[Path] = frozenset()) -> ApplyResult:
    """Apply `config` as `manager` onto `live` (None to create); ApplyConflict unless `force`."""
    node = root_node(definition)
    before = _coalesce(decode_managed_fields(managed_fields))
    live_obj = _without_managed(live) or {}
    config = _without_managed(config)
    me = ManagedEntry(manager, APPLY, api_version, frozenset(), subresource=subresource)
    applied = _strip(field_set(config, node), ignored)
    last = before.get(me.identity)
    managers = {k: e for k, e in before.items() if k != me.identity}
    managers[me.identity] = replace(last or me, fields=applied, api_version=api_version)

    merged = merge(live_obj, config, node)
    if last is not None and last.fields:
        owned: set[Path] = set().union(*(e.fields for e in managers.values()))
        present = field_set(merged, node, strict=False)
        dropped = {p for p in last.fields & present if not _has_descendant(owned, p)}
        merged = remove_paths(merged, node, dropped)

    added, modified, removed = compare(live_obj, merged, node)
    changed = _strip(added | modified, ignored)
    gone = _strip(removed, ignored)
    conflicts: list[FieldConflict] = []
    for key, e in sorted(managers.items(), key=lambda kv: _sort_key(kv[1])):
        if key == me.identity:
            continue
        clash = e.fields & changed
        conflicts.extend(FieldConflict(e, p) for p in sorted(clash, key=path_string))
        managers[key] = replace(e, fields=e.fields - clash - gone)
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    return ApplyResult(merged, _finish(managers, before, me.identity, now))

