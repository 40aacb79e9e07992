"""Pod facts the workload controllers share, as upstream's `controller_utils` and `podutil` state them.

- `is_active`, `is_ready`, `is_available(pod, min_ready_seconds, now)`;
- `pod_from_template`: the pod a controller creates (template labels,
  annotations and finalizers, `generateName: <owner>-`, the controller
  ownerReference);
- `rank_pods_for_deletion`: which pods a shrinking ReplicaSet deletes first
  (upstream's `ActivePodsWithRanks`, logarithmic scale-down included);
- `slow_start_batch`: run a burst of creates in batches of 1, 2, 4, ...,
  stopping at the first batch with a failure, so a controller that cannot
  create pods (quota, admission) learns it from one request, not five
  hundred.

Times are RFC 3339 strings on the wire; here they are epoch seconds.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = [
    "DELETION_COST",
    "is_active",
    "is_available",
    "is_ready",
    "now_rfc3339",
    "parse_time",
    "pod_from_template",
    "rank_pods_for_deletion",
    "ready_condition",
    "slow_start_batch",
]

Obj = dict[str, Any]

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, or None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def now_rfc3339(now: float | None = None) -> str:
    """A metav1.Time: RFC 3339 in UTC, whole seconds."""
    when = dt.datetime.fromtimestamp(now, dt.UTC) if now is not None else dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_active(pod: Obj) -> bool:
    """Not finished and not being deleted (upstream's IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def ready_condition(pod: Obj) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition
    return None


def is_ready(pod: Obj) -> bool:
    condition = ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least `min_ready_seconds` (upstream's IsPodAvailable)."""
    if not is_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds < now


def pod_from_template(template: Obj, owner: Obj, owner_ref: Obj) -> Obj:
    """The pod a controller creates from `template`, named `<owner>-<5 random chars>` by the server."""
    meta = template.get("metadata") or {}
    name = owner["metadata"]["name"]
    pod_meta: Obj = {"generateName": f"{name}-", "ownerReferences": [dict(owner_ref)]}
    for key in ("labels", "annotations", "finalizers"):
        if meta.get(key):
            pod_meta[key] = copy.deepcopy(meta[key])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


# -- deletion ranking -------------------------------------------------------------------------


def _deletion_cost(pod: Obj) -> int:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: Obj) -> int:
    return max((int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or ()),
               default=0)


def _ready_time(pod: Obj) -> float | None:
    return parse_time((ready_condition(pod) or {}).get("lastTransitionTime")) if is_ready(pod) else None


def _log_rank(when: float, now: float) -> int:
    # Upstream takes log2 of the age in nanoseconds: pods of about the same age rank alike.
    age = (now - when) * 1e9
    return int(math.log2(age)) if age > 0 else -1


def _time_less(t1: float | None, t2: float | None, uid1: str, uid2: str, now: float | None) -> bool | None:
    """Newer first, in log2 buckets; None when the times are equal (look at the next criterion)."""
    if t1 == t2:
        return None
    if now is None or t1 is None or t2 is None:
        # afterOrZero: a missing time first, then the later one.
        if t1 is None or t2 is None:
            return t1 is None
        return t1 > t2
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return uid1 < uid2
    return diff < 0


def _delete_first(a: tuple[Obj, int], b: tuple[Obj, int], now: float | None) -> bool:
    """Whether pod `a` (with its rank) should be deleted before `b`: upstream's ActivePodsWithRanks.Less."""
    (p1, rank1), (p2, rank2) = a, b
    node1, node2 = (p1.get("spec") or {}).get("nodeName") or "", (p2.get("spec") or {}).get("nodeName") or ""
    # 1. Unassigned < assigned.
    if node1 != node2 and (not node1 or not node2):
        return not node1
    # 2. Pending < Unknown < Running.
    phase1 = _PHASE_ORDINAL.get((p1.get("status") or {}).get("phase", ""), 0)
    phase2 = _PHASE_ORDINAL.get((p2.get("status") or {}).get("phase", ""), 0)
    if phase1 != phase2:
        return phase1 < phase2
    # 3. Not ready < ready.
    ready1, ready2 = is_ready(p1), is_ready(p2)
    if ready1 != ready2:
        return not ready1
    # 4. Lower pod-deletion-cost < higher.
    cost1, cost2 = _deletion_cost(p1), _deletion_cost(p2)
    if cost1 != cost2:
        return cost1 < cost2
    # 5. Doubled up (more related pods on the same node) < not doubled up.
    if rank1 != rank2:
        return rank1 > rank2
    uid1, uid2 = (p1.get("metadata") or {}).get("uid", ""), (p2.get("metadata") or {}).get("uid", "")
    # 6. Ready for a shorter time < longer.
    if ready1 and ready2:
        less = _time_less(_ready_time(p1), _ready_time(p2), uid1, uid2, now)
        if less is not None:
            return less
    # 7. Higher restart count < lower.
    restarts1, restarts2 = _max_restarts(p1), _max_restarts(p2)
    if restarts1 != restarts2:
        return restarts1 > restarts2
    # 8. Newer < older.
    created1 = parse_time((p1.get("metadata") or {}).get("creationTimestamp"))
    created2 = parse_time((p2.get("metadata") or {}).get("creationTimestamp"))
    less = _time_less(created1, created2, uid1, uid2, now)
    return bool(less)


def rank_pods_for_deletion(pods: Sequence[Obj], related: Sequence[Obj], *, now: float | None) -> list[Obj]:
    """`pods` in the order to delete them; `related` are the pods of sibling ReplicaSets (same owner).

    A pod's rank is how many active related pods share its node, so a
    scale-down spreads what remains across nodes.
    """
    on_node: dict[str, int] = {}
    for pod in related:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and is_active(pod):
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [(pod, on_node.get((pod.get("spec") or {}).get("nodeName") or "", 0)) for pod in pods]

    def compare(a: tuple[Obj, int], b: tuple[Obj, int]) -> int:
        if _delete_first(a, b, now):
            return -1
        if _delete_first(b, a, now):
            return 1
        return 0

    ranked.sort(key=functools.cmp_to_key(compare))
    return [pod for pod, _ in ranked]


# -- slow start ---------------------------------------------------------------------------------


async def slow_start_batch(count: int, initial_batch: int, fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """Call `fn` `count` times in batches of `initial_batch`, doubling; stop after a batch with a failure.

    Returns how many calls succeeded and the first error (None when all
    succeeded). Calls in one batch run concurrently.
    """
    remaining = count
    successes = 0
    batch = min(remaining, initial_batch)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        if errors:
            for err in errors:
                if isinstance(err, asyncio.CancelledError):
                    raise err
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None
