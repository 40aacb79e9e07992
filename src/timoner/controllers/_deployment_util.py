"""The arithmetic of Deployments, pure functions on plain dicts (upstream's `deployment/util`).

Nothing here does I/O, so every rule is tested table-driven: how
`maxSurge`/`maxUnavailable` resolve (percentages: surge rounds up,
unavailable down, both zero means one unavailable), how many replicas the
new ReplicaSet may have, how a scaling event is spread proportionally over
the ReplicaSets of a rollout, which ReplicaSet is "new" (its template
equals the Deployment's, `pod-template-hash` aside), revisions and the
annotations that carry them, conditions, and the status.

`pod_template_hash` differs from upstream's value (an FNV-32a of Go's
`spew` dump of the struct), which cannot be reproduced outside Go: ours is
the FNV-32a of the template's canonical JSON (sorted keys, empty values
dropped) and the collision count, spelled with the same safe alphabet.
It is stable across runs and releases that do not change defaulting, and
always a valid label value.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ._history import prune_unset
from ._pods import now_rfc3339, parse_time

__all__ = [
    "DESIRED_REPLICAS",
    "MAX_REPLICAS",
    "POD_TEMPLATE_HASH",
    "REVISION",
    "REVISION_HISTORY",
    "annotation_int",
    "calculate_status",
    "deployment_complete",
    "deployment_progressing",
    "deployment_timed_out",
    "equal_ignore_hash",
    "find_active_or_latest",
    "find_new_replica_set",
    "find_old_replica_sets",
    "get_condition",
    "get_proportion",
    "is_saturated",
    "max_revision",
    "max_surge",
    "max_unavailable",
    "new_condition",
    "new_rs_new_replicas",
    "pod_template_hash",
    "proportional_sizes",
    "remove_condition",
    "replicas",
    "resolve_fenceposts",
    "revision",
    "scaled_value",
    "set_condition",
    "set_new_replica_set_annotations",
    "set_replicas_annotations",
    "sorted_by_creation",
    "sorted_by_revision",
]

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
POD_TEMPLATE_HASH = "pod-template-hash"
MAX_REV_HISTORY_CHARS = 2000

# Condition types and reasons, upstream's words.
PROGRESSING = "Progressing"
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SKIPPED_ANNOTATIONS = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
_MAX_INT32 = 2**31 - 1
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# -- fenceposts ---------------------------------------------------------------------------------


def replicas(obj: Obj | None) -> int:
    """`spec.replicas` (1 when unset, as defaulting would make it); 0 for no object."""
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString: an int as is, `"25%"` of `total` rounded up or down (intstr.GetScaledValueFromIntOrPercent)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    try:
        if not text.endswith("%"):
            raise ValueError
        percent = int(text[:-1])
    except ValueError:
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {text!r}") from None
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge_value: int | str | None, max_unavailable_value: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable) in pods; if both resolve to 0, unavailable is 1 (surge may be blocked by quota)."""
    surge = scaled_value(max_surge_value, desired, round_up=True)
    unavailable = scaled_value(max_unavailable_value, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def _rolling(d: Obj) -> Obj:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    rolling = _rolling(d)
    return resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"), replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    rolling = _rolling(d)
    unavailable = resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"), replicas(d))[1]
    return min(unavailable, replicas(d))


def new_rs_new_replicas(d: Obj, all_rss: Iterable[Obj | None], new_rs: Obj) -> int:
    """How many replicas the new ReplicaSet may have now (upstream's NewRSNewReplicas)."""
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    if strategy == "Recreate":
        return replicas(d)
    if strategy != "RollingUpdate":
        raise ValueError(f"deployment type {strategy} isn't supported")
    surge = scaled_value(_rolling(d).get("maxSurge"), replicas(d), round_up=True)
    current = sum(replicas(rs) for rs in all_rss if rs is not None)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def _go_round(x: float) -> int:
    """Go's math.Round: half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def annotation_int(rs: Obj, name: str) -> int | None:
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _replica_set_fraction(rs: Obj, d: Obj) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_max = replicas(d) + max_surge(d)
    before = annotation_int(rs, MAX_REPLICAS)
    if not before:
        # No annotation (an adopted ReplicaSet, or someone removed it): fall back to the current size.
        before = int((d.get("status") or {}).get("replicas") or 0)
        if before == 0:
            return 0
    return _go_round(replicas(rs) * deployment_max / before) - replicas(rs)


def get_proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """This ReplicaSet's share of a scaling event of `to_add` replicas, `added` of which are handed out."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Obj, rss: Iterable[Obj | None]) -> list[tuple[Obj, int]]:
    """New sizes for the active ReplicaSets of a rolling Deployment whose size changed mid-rollout.

    The replicas allowed (`replicas + maxSurge`) minus those there are is
    handed out by each ReplicaSet's share of the size it was annotated
    with (largest first; newer first when adding, older first when
    removing); what rounding leaves over goes to the first one.
    """
    active = [rs for rs in rss if rs is not None and replicas(rs) > 0]
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - sum(replicas(rs) for rs in active)
    if to_add > 0:
        active = sorted_by_size(active, newer_first=True)
    elif to_add < 0:
        active = sorted_by_size(active, newer_first=False)
    added = 0
    sizes = []
    for rs in active:
        proportion = get_proportion(rs, d, to_add, added) if to_add else 0
        sizes.append(replicas(rs) + proportion)
        added += proportion
    if sizes and to_add:
        sizes[0] = max(0, sizes[0] + to_add - added)
    return list(zip(active, sizes, strict=True))


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet has the Deployment's full size, knows it, and all of it is available."""
    if rs is None:
        return False
    desired = annotation_int(rs, DESIRED_REPLICAS)
    if desired is None:
        return False
    return (replicas(rs) == replicas(d) == desired
            and int((rs.get("status") or {}).get("availableReplicas") or 0) == replicas(d))


# -- which ReplicaSet is which ------------------------------------------------------------------


def _created(rs: Obj) -> float:
    return parse_time((rs.get("metadata") or {}).get("creationTimestamp")) or 0.0


def _by_creation(a: Obj, b: Obj) -> int:
    ta, tb = _created(a), _created(b)
    if ta != tb:
        return -1 if ta < tb else 1
    na, nb = a["metadata"]["name"], b["metadata"]["name"]
    return (na > nb) - (na < nb)


def sorted_by_creation(rss: Iterable[Obj], *, newest_first: bool = False) -> list[Obj]:
    """Oldest first, name breaking ties (upstream's ReplicaSetsByCreationTimestamp)."""
    return sorted(rss, key=functools.cmp_to_key(_by_creation), reverse=newest_first)


def sorted_by_revision(rss: Iterable[Obj]) -> list[Obj]:
    """Lowest revision first, then oldest (upstream's ReplicaSetsByRevision)."""
    def compare(a: Obj, b: Obj) -> int:
        ra, rb = revision(a), revision(b)
        if ra != rb:
            return -1 if ra < rb else 1
        return _by_creation(a, b)
    return sorted(rss, key=functools.cmp_to_key(compare))


def sorted_by_size(rss: Iterable[Obj], *, newer_first: bool) -> list[Obj]:
    """Largest first; among equals newer first (scaling up) or older first (scaling down)."""
    def compare(a: Obj, b: Obj) -> int:
        if replicas(a) != replicas(b):
            return -1 if replicas(a) > replicas(b) else 1
        return _by_creation(b, a) if newer_first else _by_creation(a, b)
    return sorted(rss, key=functools.cmp_to_key(compare))


def _without_hash(template: Obj | None) -> Obj:
    template = copy.deepcopy(template or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return prune_unset(template)


def equal_ignore_hash(t1: Obj | None, t2: Obj | None) -> bool:
    """Two pod templates are the same, the `pod-template-hash` label aside (upstream's EqualIgnoreHash)."""
    return _without_hash(t1) == _without_hash(t2)


def find_new_replica_set(d: Obj, rss: Iterable[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (the oldest wins if several match)."""
    template = (d.get("spec") or {}).get("template")
    for rs in sorted_by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old_replica_sets(d: Obj, rss: Sequence[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(old ReplicaSets with replicas, all old ReplicaSets)."""
    new = find_new_replica_set(d, rss)
    new_uid = new["metadata"]["uid"] if new is not None else None
    old = [rs for rs in rss if rs["metadata"].get("uid") != new_uid]
    return [rs for rs in old if replicas(rs) != 0], old


def find_active_or_latest(new_rs: Obj | None, old_rss: Sequence[Obj]) -> Obj | None:
    """The only ReplicaSet with replicas; with none, the newest; with several, None."""
    if new_rs is None and not old_rss:
        return None
    old_newest_first = sorted_by_creation(old_rss, newest_first=True)
    active = [rs for rs in [*old_newest_first, new_rs] if rs is not None and replicas(rs) > 0]
    if not active:
        return new_rs if new_rs is not None else old_newest_first[0]
    return active[0] if len(active) == 1 else None


def pod_template_hash(template: Obj | None, collision_count: int | None = None) -> str:
    """A stable, label-safe hash of a pod template (see the module docstring)."""
    data = orjson.dumps(_without_hash(template), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0"
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


# -- revisions and annotations ------------------------------------------------------------------


def revision(obj: Obj | None) -> int:
    """The `deployment.kubernetes.io/revision` annotation as a number (0 when unset or not a number)."""
    if obj is None:
        return 0
    value = annotation_int(obj, REVISION)
    return value or 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
    """Record the Deployment's size and max size on the ReplicaSet; True if anything changed."""
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for name, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(maximum))):
        if annotations.get(name) != value:
            annotations[name] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, maximum: int) -> bool:
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DESIRED_REPLICAS) != str(desired) or annotations.get(MAX_REPLICAS) != str(maximum)


def set_new_replica_set_annotations(d: Obj, rs: Obj, new_revision: int, *, exists: bool) -> bool:
    """Copy the Deployment's annotations, bump the revision (keeping the old one in revision-history)."""
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if key in _SKIPPED_ANNOTATIONS or annotations.get(key) == value:
            continue
        annotations[key] = value
        changed = True
    old_text = annotations.get(REVISION)
    try:
        old_revision = int(old_text) if old_text else 0
    except ValueError:
        return False
    if old_revision < new_revision:
        annotations[REVISION] = str(new_revision)
        changed = True
        if old_text:
            # A rollback to this ReplicaSet: keep the revisions it had for the history.
            history = annotations.get(REVISION_HISTORY, "")
            if not history:
                annotations[REVISION_HISTORY] = old_text
            else:
                parts = history.split(",")
                total = len(history) + len(old_text) + 1
                start = 0
                while total > MAX_REV_HISTORY_CHARS and start < len(parts):
                    total -= len(parts[start]) + 1
                    start += 1
                if total <= MAX_REV_HISTORY_CHARS:
                    annotations[REVISION_HISTORY] = ",".join([*parts[start:], old_text])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


# -- conditions -----------------------------------------------------------------------------------


def get_condition(status: Obj | None, kind: str) -> Obj | None:
    for condition in (status or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return condition
    return None


def new_condition(kind: str, status: str, reason: str, message: str, *, now: float) -> Obj:
    stamp = now_rfc3339(now)
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def set_condition(status: Obj, condition: Obj) -> None:
    """Set a condition; same status and reason: no change; same status: keep lastTransitionTime."""
    current = get_condition(status, condition["type"])
    if current is not None and current.get("status") == condition["status"] and \
            current.get("reason") == condition["reason"]:
        return
    if current is not None and current.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, condition["type"])
    status.setdefault("conditions", []).append(condition)


def remove_condition(status: Obj, kind: str) -> None:
    conditions = [c for c in status.get("conditions") or () if c.get("type") != kind]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


def has_progress_deadline(d: Obj) -> bool:
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and int(deadline) != _MAX_INT32


def deployment_complete(d: Obj, status: Obj) -> bool:
    """Every replica updated and available, none old, and the newest generation observed."""
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0))


def deployment_progressing(d: Obj, status: Obj) -> bool:
    """More updated, ready or available replicas than before, or fewer old ones."""
    old = d.get("status") or {}

    def get(s: Obj, name: str) -> int:
        return int(s.get(name) or 0)

    return (get(status, "updatedReplicas") > get(old, "updatedReplicas")
            or get(status, "replicas") - get(status, "updatedReplicas") < get(old, "replicas") - get(old, "updatedReplicas")
            or get(status, "readyReplicas") > get(old, "readyReplicas")
            or get(status, "availableReplicas") > get(old, "availableReplicas"))


def deployment_timed_out(d: Obj, status: Obj, *, now: float) -> bool:
    """No progress for `progressDeadlineSeconds` since the Progressing condition was last updated."""
    if not has_progress_deadline(d):
        return False
    condition = get_condition(status, PROGRESSING)
    if condition is None or condition.get("reason") == NEW_RS_AVAILABLE:
        return False
    if condition.get("reason") == TIMED_OUT:
        return True
    since = parse_time(condition.get("lastUpdateTime"))
    if since is None:
        return False
    return since + int(d["spec"]["progressDeadlineSeconds"]) < now


def calculate_status(all_rss: Iterable[Obj | None], new_rs: Obj | None, d: Obj, *, now: float) -> Obj:
    """The Deployment status its ReplicaSets add up to, with the Available condition (upstream's calculateStatus)."""
    rss = [rs for rs in all_rss if rs is not None]

    def total(items: Iterable[Obj], name: str) -> int:
        return sum(int((rs.get("status") or {}).get(name) or 0) for rs in items)

    available = total(rss, "availableReplicas")
    unavailable = max(0, sum(replicas(rs) for rs in rss) - available)
    values = {
        "observedGeneration": int(d["metadata"].get("generation") or 0),
        "replicas": total(rss, "replicas"),
        "updatedReplicas": total([new_rs] if new_rs is not None else [], "replicas"),
        "readyReplicas": total(rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    status: Obj = {name: value for name, value in values.items() if value}
    old = d.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.",
                                            now=now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now=now))
    return status

