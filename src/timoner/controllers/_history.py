"""ControllerRevisions: the history StatefulSets and DaemonSets keep of their pod templates (upstream's `history`).

A revision is an apps/v1 ControllerRevision named `<owner>-<hash>`, owned
by its StatefulSet or DaemonSet (a controller reference), labelled with the
template's labels (so the owner's selector finds it, as `kubectl rollout
history` does) plus a hash label, carrying the owner's annotations (the
`kubernetes.io/change-cause` that `rollout history` prints), a `revision`
number, and as `data` a strategic merge patch that puts the template back:

    {"spec": {"template": {...the pod template..., "$patch": "replace"}}}

That is the patch `kubectl rollout undo` sends for these kinds, and
`apply_revision` is what the controllers do with it to build "the set at
revision N".

- `hash_revision` is an FNV-32a of the data's canonical JSON (sorted
  keys, null/empty members dropped) and the collision count, in
  upstream's safe alphabet; it is not the value a real cluster would pick
  for the same template (upstream hashes the raw bytes Go encoded), only as
  stable and as label-safe.
- `create_revision` creates under that name and, when the name is taken
  by different data, bumps the collision count and tries the next name
  (upstream's `CreateControllerRevision`).
- Revisions sort by number, then creation time, then name; the next number
  is the largest + 1.

Everything but `create_revision` and `renumber` is pure.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from timoner.api.errors import AlreadyExists
from timoner.client import Client, resource_for

from ._pods import parse_time
from ._refs import new_controller_ref

__all__ = [
    "CONTROLLER_REVISIONS",
    "HASH_LABEL",
    "REVISION_HASH_LABEL",
    "CreatedRevision",
    "apply_revision",
    "create_revision",
    "equal_revision",
    "find_equal_revisions",
    "hash_revision",
    "live_hashes",
    "new_revision",
    "next_revision",
    "prune_unset",
    "renumber",
    "revision_name",
    "sort_revisions",
    "template_patch",
]

Obj = dict[str, Any]

CONTROLLER_REVISIONS = resource_for("apps/v1", "ControllerRevision")
# Upstream's history.ControllerRevisionHashLabel (StatefulSet revisions carry it)...
HASH_LABEL = "controller.kubernetes.io/hash"
# ...and apps/v1's ControllerRevisionHashLabelKey: the revision a pod was made from (and DaemonSet revisions' hash).
REVISION_HASH_LABEL = "controller-revision-hash"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_PREFIX = 223  # 253 (a DNS subdomain) less room for "-" and a hash


def prune_unset(value: Any) -> Any:
    """`value` without what is unset, for semantic equality as apimachinery's: null, empty maps and lists."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = prune_unset(item)
            if item is None or item == {} or item == []:
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [prune_unset(item) for item in value]
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def template_patch(owner: Obj) -> Obj:
    """The revision data of a StatefulSet or DaemonSet: a patch that replaces `spec.template` (upstream's getPatch).

    Shaped as Go prints it (keys sorted at every level, the template's
    `creationTimestamp: null`), so kubectl's byte comparison of a revision
    with the live object ("skipped rollback") can hold.
    """
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    template["$patch"] = "replace"
    return _sorted({"spec": {"template": template}})


def apply_revision(owner: Obj, revision: Obj) -> Obj:
    """`owner` with the template the revision holds (upstream's ApplyRevision, for template patches)."""
    data = revision.get("data") or {}
    template = copy.deepcopy(((data.get("spec") or {}).get("template")) or {})
    template.pop("$patch", None)
    restored = copy.deepcopy(owner)
    restored.setdefault("spec", {})["template"] = template
    return restored


def hash_revision(data: Any, collision_count: int | None = None) -> str:
    """A stable, label-safe hash of revision data and the collision count (see the module docstring)."""
    raw = orjson.dumps(prune_unset(data), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        raw += (collision_count & 0xFFFFFFFF).to_bytes(4, "little")
    value = 0x811C9DC5
    for byte in raw:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


def revision_name(prefix: str, hash_: str) -> str:
    """`<prefix>-<hash>`, the prefix cut so the name stays a valid object name."""
    return f"{prefix[:_MAX_PREFIX]}-{hash_}"


def new_revision(owner: Obj, data: Obj, number: int, collision_count: int | None, *,
                 hash_label: str = HASH_LABEL) -> Obj:
    """An unsaved ControllerRevision of `owner` (upstream's NewControllerRevision, plus the owner's annotations)."""
    meta = owner["metadata"]
    template_labels = (((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    hash_ = hash_revision(data, collision_count)
    labels = {**template_labels, hash_label: hash_}
    revision_meta: Obj = {"name": revision_name(meta["name"], hash_), "namespace": meta.get("namespace"),
                          "labels": labels, "ownerReferences": [new_controller_ref(owner)]}
    if meta.get("annotations"):
        revision_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": revision_meta,
            "data": copy.deepcopy(data), "revision": number}


def equal_revision(a: Obj | None, b: Obj | None) -> bool:
    """Same data (upstream compares hash labels and bytes; equal data is what those stand for)."""
    if a is None or b is None:
        return a is b
    return prune_unset(a.get("data")) == prune_unset(b.get("data"))


def find_equal_revisions(revisions: Iterable[Obj], needle: Obj) -> list[Obj]:
    return [revision for revision in revisions if equal_revision(revision, needle)]


def _compare(a: Obj, b: Obj) -> int:
    ra, rb = int(a.get("revision") or 0), int(b.get("revision") or 0)
    if ra != rb:
        return -1 if ra < rb else 1
    ta = parse_time(a["metadata"].get("creationTimestamp")) or 0.0
    tb = parse_time(b["metadata"].get("creationTimestamp")) or 0.0
    if ta != tb:
        return -1 if ta < tb else 1
    na, nb = a["metadata"]["name"], b["metadata"]["name"]
    return (na > nb) - (na < nb)


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time, then name (upstream's SortControllerRevisions)."""
    return sorted(revisions, key=functools.cmp_to_key(_compare))


def next_revision(revisions: Sequence[Obj]) -> int:
    """One more than the largest revision number (1 for no history)."""
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


@dataclass(frozen=True, slots=True)
class CreatedRevision:
    """What `create_revision` made (or found): the revision and the collision count it took."""

    revision: Obj
    collision_count: int


async def create_revision(client: Client, owner: Obj, revision: Obj, collision_count: int, *,
                          hash_label: str = HASH_LABEL) -> CreatedRevision:
    """Create `revision`, renaming it past names already taken by other data (upstream's CreateControllerRevision)."""
    namespace = owner["metadata"].get("namespace")
    body = copy.deepcopy(revision)
    while True:
        hash_ = hash_revision(body.get("data"), collision_count)
        body["metadata"]["name"] = revision_name(owner["metadata"]["name"], hash_)
        body["metadata"].setdefault("labels", {})[hash_label] = hash_
        try:
            created = await client.create(CONTROLLER_REVISIONS, body, namespace=namespace)
        except AlreadyExists:
            existing = await client.get(CONTROLLER_REVISIONS, body["metadata"]["name"], namespace=namespace)
            if equal_revision(existing, body):
                return CreatedRevision(existing, collision_count)
            collision_count += 1
            continue
        return CreatedRevision(created, collision_count)


async def renumber(client: Client, revision: Obj, number: int) -> Obj:
    """Give an existing revision a new number (a rollback makes an old template the newest again)."""
    if int(revision.get("revision") or 0) == number:
        return revision
    meta = revision["metadata"]
    return await client.patch(CONTROLLER_REVISIONS, meta["name"],
                              {"metadata": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
                               "revision": number}, namespace=meta.get("namespace"))


def live_hashes(pods: Iterable[Mapping[str, Any]], label: str = REVISION_HASH_LABEL) -> set[str]:
    """The revision hashes pods still carry."""
    return {((pod.get("metadata") or {}).get("labels") or {}).get(label, "") for pod in pods} - {""}
