"""What a StatefulSet's pods and claims should look like, as pure functions (upstream's `stateful_set_utils`).

- Identity: pod `<set>-<ordinal>` (ordinals from `spec.ordinals.start`),
  labelled `statefulset.kubernetes.io/pod-name` and
  `apps.kubernetes.io/pod-index`, with `hostname` = its name and
  `subdomain` = `spec.serviceName`; a pod's ordinal is read back from its
  name (`(.*)-([0-9]+)$`), never from a label.
- Storage: for each `volumeClaimTemplates` entry a PVC
  `<template>-<set>-<ordinal>` (the template's labels plus the selector's
  `matchLabels`) and a `persistentVolumeClaim` volume of the template's
  name in the pod, ahead of the template's own volumes.
- Revisions: a pod carries `controller-revision-hash: <revision name>`;
  `new_versioned_pod` makes ordinals below the partition at the current
  revision and the rest at the update revision.
- Retention (`persistentVolumeClaimRetentionPolicy`): which controller
  ownerReferences a claim should carry so the garbage collector deletes it
  on set deletion (`whenDeleted: Delete` → a reference to the set) or on
  scale-down (`whenScaled: Delete` → a reference to the condemned pod),
  as upstream 1.32 (`isClaimOwnerUpToDate`, `updateClaimOwnerRefForSetAndPod`).
- Status: replicas, ready, available, current and updated counts, and the
  rule that a finished rolling update makes the update revision current.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ._history import REVISION_HASH_LABEL
from ._pods import is_available, is_ready
from ._refs import new_controller_ref

__all__ = [
    "POD_INDEX_LABEL",
    "POD_NAME_LABEL",
    "claim_is_stale",
    "claim_name",
    "claim_owner_refs",
    "claims_for",
    "complete_rolling_update",
    "compute_status",
    "identity_matches",
    "in_ordinal_range",
    "inconsistent_status",
    "is_claim_owner_up_to_date",
    "is_created",
    "is_healthy",
    "is_member",
    "is_running_and_available",
    "is_running_and_ready",
    "is_terminating",
    "max_unavailable",
    "new_stateful_pod",
    "new_versioned_pod",
    "ordinal",
    "parent_and_ordinal",
    "pod_name",
    "pod_revision",
    "replicas",
    "retention_policy",
    "start_ordinal",
    "storage_matches",
    "update_identity",
    "update_storage",
]

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_POD_NAME = re.compile(r"(.*)-([0-9]+)$")
_MAX_INT32 = 2**31 - 1
RETAIN, DELETE = "Retain", "Delete"


# -- identity ---------------------------------------------------------------------------------


def parent_and_ordinal(pod: Obj) -> tuple[str, int]:
    """The set a pod's name says it belongs to, and its ordinal; ("", -1) for other names."""
    match = _POD_NAME.match((pod.get("metadata") or {}).get("name") or "")
    if match is None:
        return "", -1
    number = int(match.group(2))
    return match.group(1), number if number <= _MAX_INT32 else -1


def ordinal(pod: Obj) -> int:
    return parent_and_ordinal(pod)[1]


def replicas(sts: Obj) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def start_ordinal(sts: Obj) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def in_ordinal_range(pod: Obj, sts: Obj) -> bool:
    n = ordinal(pod)
    return start_ordinal(sts) <= n <= start_ordinal(sts) + replicas(sts) - 1


def pod_name(sts: Obj, n: int) -> str:
    return f"{sts['metadata']['name']}-{n}"


def is_member(sts: Obj, pod: Obj) -> bool:
    return parent_and_ordinal(pod)[0] == sts["metadata"]["name"]


def identity_matches(sts: Obj, pod: Obj) -> bool:
    parent, n = parent_and_ordinal(pod)
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (n >= 0 and parent == sts["metadata"]["name"] and meta.get("name") == pod_name(sts, n)
            and meta.get("namespace") == sts["metadata"].get("namespace")
            and labels.get(POD_NAME_LABEL) == meta.get("name") and labels.get(POD_INDEX_LABEL) == str(n))


def update_identity(sts: Obj, pod: Obj) -> None:
    """Name, namespace and identity labels as the set says (the mutable part of the identity)."""
    n = ordinal(pod)
    meta = pod.setdefault("metadata", {})
    meta["name"] = pod_name(sts, n)
    meta["namespace"] = sts["metadata"].get("namespace")
    labels = meta.setdefault("labels", {})
    labels[POD_NAME_LABEL] = meta["name"]
    labels[POD_INDEX_LABEL] = str(n)


def _init_identity(sts: Obj, pod: Obj) -> None:
    update_identity(sts, pod)
    spec = pod.setdefault("spec", {})
    spec["hostname"] = pod["metadata"]["name"]
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        spec["subdomain"] = service


# -- storage ----------------------------------------------------------------------------------


def _templates(sts: Obj) -> list[Obj]:
    return [t for t in (sts.get("spec") or {}).get("volumeClaimTemplates") or () if isinstance(t, dict)]


def claim_name(sts: Obj, template: Obj, n: int) -> str:
    return f"{(template.get('metadata') or {}).get('name', '')}-{sts['metadata']['name']}-{n}"


def claims_for(sts: Obj, n: int) -> dict[str, Obj]:
    """The PVCs the pod of ordinal `n` uses, by template name (upstream's getPersistentVolumeClaims)."""
    match_labels = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    out = {}
    for template in _templates(sts):
        claim = copy.deepcopy(template)
        meta = claim.setdefault("metadata", {})
        meta["name"] = claim_name(sts, template, n)
        meta["namespace"] = sts["metadata"].get("namespace")
        meta["labels"] = {**(meta.get("labels") or {}), **match_labels}
        claim.pop("status", None)
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        out[template["metadata"]["name"]] = claim
    return out


def storage_matches(sts: Obj, pod: Obj) -> bool:
    n = ordinal(pod)
    if n < 0:
        return False
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or ()}
    for template in _templates(sts):
        volume = volumes.get((template.get("metadata") or {}).get("name"))
        source = (volume or {}).get("persistentVolumeClaim")
        if not source or source.get("claimName") != claim_name(sts, template, n):
            return False
    return True


def update_storage(sts: Obj, pod: Obj) -> None:
    """Claim volumes first, in template order, then the pod's other volumes (same-named ones are replaced)."""
    claims = claims_for(sts, ordinal(pod))
    spec = pod.setdefault("spec", {})
    volumes = [{"name": name, "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
               for name, claim in claims.items()]
    volumes += [v for v in spec.get("volumes") or () if v.get("name") not in claims]
    if volumes:
        spec["volumes"] = volumes


# -- pods -------------------------------------------------------------------------------------


def _phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_created(pod: Obj) -> bool:
    """Saved by the API server (which gives every pod a phase); pods this sync means to create have none."""
    return _phase(pod) != ""


def is_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_running_and_ready(pod: Obj) -> bool:
    return _phase(pod) == "Running" and is_ready(pod)


def is_running_and_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    return is_available(pod, min_ready_seconds, now)


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def pod_revision(pod: Obj) -> str:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_HASH_LABEL, "")


def new_stateful_pod(sts: Obj, n: int) -> Obj:
    """The pod of ordinal `n` from the set's template (not yet created: no phase)."""
    template = (sts.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata") or {}
    meta: Obj = {"name": pod_name(sts, n), "namespace": sts["metadata"].get("namespace"),
                 "ownerReferences": [new_controller_ref(sts)]}
    for key in ("labels", "annotations", "finalizers"):
        if template_meta.get(key):
            meta[key] = copy.deepcopy(template_meta[key])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}
    _init_identity(sts, pod)
    update_storage(sts, pod)
    return pod


def new_versioned_pod(current_set: Obj, update_set: Obj, current_revision: str, update_revision: str, n: int) -> Obj:
    """Ordinals below the partition are made at the current revision, the rest at the update revision.

    Upstream's condition (with its operator precedence, which makes OnDelete
    sets always use the update revision for new pods).
    """
    strategy = (current_set.get("spec") or {}).get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate")
    start = start_ordinal(current_set)
    current_replicas = int((current_set.get("status") or {}).get("currentReplicas") or 0)
    at_current = ((strategy.get("type", "RollingUpdate") == "RollingUpdate" and rolling is None
                   and n < start + current_replicas)
                  or (rolling is not None and n < start + int(rolling.get("partition") or 0)))
    pod = new_stateful_pod(current_set if at_current else update_set, n)
    pod["metadata"].setdefault("labels", {})[REVISION_HASH_LABEL] = current_revision if at_current else update_revision
    return pod


def max_unavailable(sts: Obj) -> int | None:
    """`rollingUpdate.maxUnavailable` resolved against the replicas (rounded down, at least 1); None when unset."""
    value = (((sts.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable")
    if value is None:
        return None
    if isinstance(value, str) and value.endswith("%"):
        try:
            number = int(value[:-1]) * replicas(sts) // 100
        except ValueError:
            number = 1
    else:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 1
    return max(number, 1)


# -- status -----------------------------------------------------------------------------------


def compute_status(pods: list[Obj], min_ready_seconds: int, current_revision: str, update_revision: str, *,
                   now: float) -> dict[str, int]:
    """replicas (created), readyReplicas, availableReplicas, currentReplicas, updatedReplicas of `pods`."""
    counts = dict.fromkeys(("replicas", "readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"), 0)
    for pod in pods:
        if is_created(pod):
            counts["replicas"] += 1
        if is_running_and_ready(pod):
            counts["readyReplicas"] += 1
            if is_running_and_available(pod, min_ready_seconds, now):
                counts["availableReplicas"] += 1
        if is_created(pod) and not is_terminating(pod):
            revision = pod_revision(pod)
            if revision == current_revision:
                counts["currentReplicas"] += 1
            if revision == update_revision:
                counts["updatedReplicas"] += 1
    return counts


def complete_rolling_update(sts: Obj, status: Obj) -> None:
    """Once every replica is updated and ready, the update revision becomes the current one."""
    strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
    want = replicas(sts)
    if (strategy == "RollingUpdate" and status.get("updatedReplicas", 0) == want
            and status.get("readyReplicas", 0) == want and status.get("replicas", 0) == want):
        status["currentReplicas"] = status.get("updatedReplicas", 0)
        status["currentRevision"] = status.get("updateRevision", "")


_STATUS_FIELDS = ("replicas", "currentReplicas", "readyReplicas", "updatedReplicas", "availableReplicas")


def inconsistent_status(sts: Obj, status: Obj) -> bool:
    """Whether `status` differs from what the set shows (upstream's inconsistentStatus, plus collisionCount)."""
    old = sts.get("status") or {}
    return (int(status.get("observedGeneration") or 0) > int(old.get("observedGeneration") or 0)
            or any(int(status.get(f) or 0) != int(old.get(f) or 0) for f in _STATUS_FIELDS)
            or (status.get("currentRevision") or "") != (old.get("currentRevision") or "")
            or (status.get("updateRevision") or "") != (old.get("updateRevision") or "")
            or int(status.get("collisionCount") or 0) != int(old.get("collisionCount") or 0))


# -- claim retention --------------------------------------------------------------------------


def retention_policy(sts: Obj) -> tuple[str, str]:
    """(whenDeleted, whenScaled); anything but Delete counts as Retain."""
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return (DELETE if policy.get("whenDeleted") == DELETE else RETAIN,
            DELETE if policy.get("whenScaled") == DELETE else RETAIN)


def _refs(obj: Obj) -> list[Obj]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or ())


def _uid(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("uid") or ""


def _matches_ref(ref: Obj, obj: Obj, api_version: str, kind: str) -> bool:
    return (ref.get("apiVersion") == api_version and ref.get("kind") == kind
            and ref.get("name") == (obj.get("metadata") or {}).get("name"))


def _is_set(ref: Obj, sts: Obj) -> bool:
    return _matches_ref(ref, sts, "apps/v1", "StatefulSet")


def _is_pod(ref: Obj, pod: Obj) -> bool:
    return _matches_ref(ref, pod, "v1", "Pod")


def _has_owner_ref(claim: Obj, owner: Obj) -> bool:
    uid = _uid(owner)
    return any(ref.get("uid") == uid for ref in _refs(claim))


def _has_stale_owner_ref(claim: Obj, owner: Obj, api_version: str, kind: str) -> bool:
    for ref in _refs(claim):
        if _matches_ref(ref, owner, api_version, kind):
            return ref.get("uid") != _uid(owner)
    return False


def claim_is_stale(claim: Obj, pod: Obj) -> bool:
    """The claim names a pod of this name other than `pod` (a scaled-down pod's claim not yet collected)."""
    return _has_stale_owner_ref(claim, pod, "v1", "Pod")


def _has_unexpected_controller(claim: Obj, sts: Obj, pod: Obj) -> bool:
    if retention_policy(sts) == (RETAIN, RETAIN):
        return False  # with Retain, another controller managing the claim is no concern of ours
    for ref in _refs(claim):
        if _is_set(ref, sts):
            if ref.get("uid") != _uid(sts):
                return True
            continue
        if _is_pod(ref, pod):
            if ref.get("uid") != _uid(pod):
                return True
            continue
        if ref.get("controller"):
            return True
    return False


def _has_non_controller_owner(claim: Obj, sts: Obj, pod: Obj) -> bool:
    return any(ref.get("uid") in (_uid(sts), _uid(pod)) and not ref.get("controller") for ref in _refs(claim))


def is_claim_owner_up_to_date(claim: Obj, sts: Obj, pod: Obj) -> bool:
    """Whether the claim's owner references already say what the retention policy wants."""
    if (_has_stale_owner_ref(claim, sts, "apps/v1", "StatefulSet")
            or _has_stale_owner_ref(claim, pod, "v1", "Pod")):
        return True  # managed by an earlier set or pod of this name: leave it alone
    if _has_unexpected_controller(claim, sts, pod):
        return not (_has_owner_ref(claim, sts) or _has_owner_ref(claim, pod))
    if _has_non_controller_owner(claim, sts, pod):
        return False
    when_deleted, when_scaled = retention_policy(sts)
    set_ref, pod_ref = _has_owner_ref(claim, sts), _has_owner_ref(claim, pod)
    scaled_down = not in_ordinal_range(pod, sts)
    if when_scaled == RETAIN and when_deleted == RETAIN:
        return not set_ref and not pod_ref
    if when_scaled == RETAIN:
        return set_ref and not pod_ref
    if when_deleted == RETAIN:
        return not set_ref and scaled_down == pod_ref
    return scaled_down != set_ref and scaled_down == pod_ref


def _pod_ref(pod: Obj) -> Obj:
    return new_controller_ref({**pod, "apiVersion": "v1", "kind": "Pod"})


def claim_owner_refs(claim: Obj, sts: Obj, pod: Obj) -> list[Obj]:
    """The claim's owner references as the retention policy wants them (upstream's updateClaimOwnerRefForSetAndPod)."""
    unexpected = _has_unexpected_controller(claim, sts, pod)
    refs = [ref for ref in _refs(claim) if not (_is_set(ref, sts) or _is_pod(ref, pod))]
    if unexpected:
        return refs
    when_deleted, when_scaled = retention_policy(sts)
    scaled_down = not in_ordinal_range(pod, sts)
    wanted: list[Obj] = []
    if when_scaled == RETAIN and when_deleted == DELETE:
        wanted.append(new_controller_ref({**sts, "apiVersion": "apps/v1", "kind": "StatefulSet"}))
    elif when_scaled == DELETE and when_deleted == RETAIN:
        if scaled_down:
            wanted.append(_pod_ref(pod))
    elif when_scaled == DELETE and when_deleted == DELETE:
        wanted.append(_pod_ref(pod) if scaled_down
                      else new_controller_ref({**sts, "apiVersion": "apps/v1", "kind": "StatefulSet"}))
    for ref in wanted:
        if not any(r.get("uid") == ref["uid"] for r in refs):
            refs.append(ref)
    return refs
