"""Pure Job arithmetic, as upstream's job controller states it: indexes, backoff, pod failure policy, conditions.

- Completion indexes: `completion_index(pod)` reads the
  `batch.kubernetes.io/job-completion-index` annotation; `parse_indexes`
  and `format_indexes` read and write the interval lists of
  `status.completedIndexes` / `status.failedIndexes` (`"1,3-5,7"`).
- Backoff: pods that failed since the last success delay the next create
  by 10 s, doubling per failure, capped at 6 minutes (`BackoffRecord`,
  `remaining_backoff`); the clock starts at the failure's finish time.
- `match_pod_failure_policy(policy, pod)`: the first rule whose
  `onExitCodes` or `onPodConditions` matches decides (FailJob with
  upstream's message, FailIndex, Ignore, Count); no match counts.
- Conditions: `set_condition` is upstream's `ensureJobConditionStatus`
  (never adds a False condition, rewrites one whose status, reason or
  message changed).

Times are epoch seconds; the RFC 3339 strings of the wire are parsed with
`_pods.parse_time`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._pods import now_rfc3339, parse_time

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "COMPLETION_INDEX",
    "INDEX_FAILURE_COUNT",
    "INDEX_IGNORED_FAILURE_COUNT",
    "TRACKING_FINALIZER",
    "BackoffRecord",
    "PolicyMatch",
    "completion_index",
    "finish_time",
    "find_condition",
    "format_indexes",
    "generate_name_with_index",
    "has_tracking_finalizer",
    "index_failure_counts",
    "is_finished",
    "is_pod_failed",
    "match_pod_failure_policy",
    "new_condition",
    "parse_indexes",
    "remaining_backoff",
    "set_condition",
]

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
BACKOFF_BASE = 10.0  # upstream's DefaultJobPodFailureBackOff
BACKOFF_MAX = 360.0  # MaxJobPodFailureBackOff
_MAX_GENERATED_NAME = 58  # 63 minus the 5 random characters


# -- indexes -----------------------------------------------------------------------------------


def completion_index(pod: Obj) -> int | None:
    """The pod's completion index, or None when absent or not a non-negative integer."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX)
    if not isinstance(value, str) or not value.isdigit():
        return None
    return int(value)


def parse_indexes(text: str | None, completions: int) -> set[int]:
    """The indexes below `completions` in an interval list (`"1,3-5"`); malformed parts are skipped."""
    out: set[int] = set()
    for part in (text or "").split(","):
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high) if high else int(low)
        except ValueError:
            continue
        out.update(range(max(first, 0), min(last, completions - 1) + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """Indexes as upstream writes them: ascending, runs as `a-b`, single indexes as `a`, comma-separated."""
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def generate_name_with_index(job_name: str, index: int) -> str:
    """`<job>-<index>-`, the job name cut so the whole stays a valid generated name (upstream's rule)."""
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > _MAX_GENERATED_NAME:
        prefix = prefix[:_MAX_GENERATED_NAME - len(suffix)] + suffix
    return prefix


# -- pods --------------------------------------------------------------------------------------


def has_tracking_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or ())


def is_pod_failed(pod: Obj, only_replace_failed: bool) -> bool:
    """Failed, or (unless only failed pods are replaced) deleted before it succeeded (upstream's isPodFailed)."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed:
        return False
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and phase != "Succeeded"


def finish_time(pod: Obj) -> float:
    """When a pod finished: its last container's finish, else its Ready=False transition, else its deletion, else creation."""
    status = pod.get("status") or {}
    finished = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                for s in status.get("containerStatuses") or ()]
    times = [t for t in finished if t is not None]
    if times:
        return max(times)
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            when = parse_time(condition.get("lastTransitionTime"))
            if when is not None:
                return when
    meta = pod.get("metadata") or {}
    deleted = parse_time(meta.get("deletionTimestamp"))
    if deleted is not None:
        return deleted - int(meta.get("deletionGracePeriodSeconds") or 0)
    return parse_time(meta.get("creationTimestamp")) or 0.0


def index_failure_counts(pod: Obj) -> tuple[int, int]:
    """(failures, ignored failures) of the pod's index before this pod, from its annotations."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    out = []
    for key in (INDEX_FAILURE_COUNT, INDEX_IGNORED_FAILURE_COUNT):
        value = annotations.get(key, "0")
        out.append(int(value) if isinstance(value, str) and value.isdigit() else 0)
    return out[0], out[1]


# -- backoff -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackoffRecord:
    """Failures since the last success and when the last of them finished (upstream's backoffRecord)."""

    failures: int = 0
    last_failure: float | None = None

    def update(self, succeeded: Sequence[Obj], failed: Sequence[Obj]) -> BackoffRecord:
        """The record after newly finished pods: a success resets it, later failures count again."""
        if not failed:
            return BackoffRecord() if succeeded else self
        failed_times = sorted(finish_time(p) for p in failed)
        if not succeeded:
            return replace(self, failures=self.failures + len(failed_times), last_failure=failed_times[-1])
        last_success = max(finish_time(p) for p in succeeded)
        after = [t for t in failed_times if t > last_success]
        return BackoffRecord(len(after), after[-1] if after else None)


def remaining_backoff(failures: int, last_failure: float | None, now: float, *,
                      base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """Seconds still to wait before replacing a pod after `failures` failures (0: go ahead)."""
    if failures <= 0 or last_failure is None:
        return 0.0
    delay = base
    for _ in range(1, failures):
        delay *= 2
        if delay >= cap:
            delay = cap
            break
    return max(0.0, delay - (now - last_failure))


# -- pod failure policy -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """What a pod failure policy says of one failed pod: fail the Job (with `message`), count it, which action."""

    message: str | None = None
    count_failed: bool = True
    action: str | None = None


def _matching_container(statuses: Iterable[Obj], requirement: Obj) -> Obj | None:
    wanted = requirement.get("containerName")
    values = requirement.get("values") or ()
    for status in statuses:
        terminated = (status.get("state") or {}).get("terminated")
        if not terminated:
            continue
        if wanted is not None and wanted != status.get("name"):
            continue
        code = int(terminated.get("exitCode") or 0)
        if code == 0:
            continue
        inside = code in values
        if (requirement.get("operator") == "In") == inside:
            return status
    return None


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> PolicyMatch:
    """Upstream's matchPodFailurePolicy: the first matching rule's verdict; no match (or no policy) counts."""
    if policy is None:
        return PolicyMatch()
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    for index, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            container = (_matching_container(status.get("containerStatuses") or (), rule["onExitCodes"])
                         or _matching_container(status.get("initContainerStatuses") or (), rule["onExitCodes"]))
            if container is None:
                continue
            what = (f"Container {container.get('name')} for pod {meta.get('namespace')}/{meta.get('name')} failed "
                    f"with exit code {container['state']['terminated'].get('exitCode')}")
        elif rule.get("onPodConditions") is not None:
            condition = next((c for c in status.get("conditions") or () for p in rule["onPodConditions"]
                              if c.get("type") == p.get("type") and c.get("status") == (p.get("status") or "True")),
                             None)
            if condition is None:
                continue
            what = f"Pod {meta.get('namespace')}/{meta.get('name')} has condition {condition.get('type')}"
        else:
            continue
        if action == "Ignore":
            return PolicyMatch(None, False, action)
        if action in ("Count", "FailIndex"):
            return PolicyMatch(None, True, action)
        if action == "FailJob":
            return PolicyMatch(f"{what} matching FailJob rule at index {index}", True, action)
    return PolicyMatch()


# -- conditions ---------------------------------------------------------------------------------


def find_condition(conditions: Iterable[Obj] | None, kind: str) -> Obj | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def is_finished(job: Obj) -> bool:
    """Complete or Failed is True (upstream's IsJobFinished)."""
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


def new_condition(kind: str, status: str, reason: str, message: str, now: float) -> Obj:
    stamp = now_rfc3339(now)
    condition: Obj = {"type": kind, "status": status, "lastProbeTime": stamp, "lastTransitionTime": stamp}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def set_condition(conditions: list[Obj], kind: str, status: str, reason: str, message: str,
                  now: float) -> bool:
    """Add or rewrite the condition `kind` in place; False is never added. True when the list changed."""
    current = find_condition(conditions, kind)
    if current is not None:
        if (current.get("status"), current.get("reason", ""), current.get("message", "")) != (status, reason, message):
            current.clear()
            current.update(new_condition(kind, status, reason, message, now))
            return True
        return False
    if status != "False":
        conditions.append(new_condition(kind, status, reason, message, now))
        return True
    return False
