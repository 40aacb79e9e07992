"""A rollout's progress as the Deployment status tells it: pure functions (upstream's `progress.go`).

`rollout_status` is the status a sync writes: the counters and Available
condition of `calculate_status`, and, when the Deployment has a
`progressDeadlineSeconds`, its Progressing condition:

- NewReplicaSetAvailable once the rollout is complete (then nothing is
  estimated until the next rollout);
- ReplicaSetUpdated whenever a sync sees progress (more updated, ready or
  available replicas, fewer old ones), with a fresh `lastUpdateTime`: the
  deadline counts from the last progress, not from the start;
- ProgressDeadlineExceeded (status False) once `progressDeadlineSeconds`
  passed since that time without any.

The ReplicaFailure condition of the ReplicaSets (the new one's first) is
copied up. `stuck_recheck` says when to look again at a rollout that made
no progress, so the deadline is noticed without another event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import _deployment_util as du
from ._pods import parse_time

__all__ = ["rollout_status", "stuck_recheck"]

Obj = dict[str, Any]


def _name(obj: Obj) -> str:
    return obj["metadata"]["name"]


def _replica_failures(all_rss: Iterable[Obj | None], new_rs: Obj | None) -> list[Obj]:
    def failures(rs: Obj) -> list[Obj]:
        return [{"type": c["type"], "status": c.get("status"), "lastUpdateTime": c.get("lastTransitionTime"),
                 "lastTransitionTime": c.get("lastTransitionTime"), "reason": c.get("reason"),
                 "message": c.get("message")}
                for c in (rs.get("status") or {}).get("conditions") or () if c.get("type") == du.REPLICA_FAILURE]

    if new_rs is not None and (found := failures(new_rs)):
        return found
    return [c for rs in all_rss if rs is not None for c in failures(rs)]


def rollout_status(d: Obj, all_rss: list[Obj | None], new_rs: Obj | None, *, now: float) -> Obj:
    """The status a rolling or recreating sync writes (upstream's syncRolloutStatus, without the write)."""
    status = du.calculate_status(all_rss, new_rs, d, now=now)
    if not du.has_progress_deadline(d):
        du.remove_condition(status, du.PROGRESSING)
    current = du.get_condition(d.get("status"), du.PROGRESSING)
    complete_before = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                       and current is not None and current.get("reason") == du.NEW_RS_AVAILABLE)
    if du.has_progress_deadline(d) and not complete_before:
        what = f'ReplicaSet "{_name(new_rs)}"' if new_rs is not None else f'Deployment "{_name(d)}"'
        if du.deployment_complete(d, status):
            du.set_condition(status, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_AVAILABLE,
                                                      f"{what} has successfully progressed.", now=now))
        elif du.deployment_progressing(d, status):
            condition = du.new_condition(du.PROGRESSING, "True", du.REPLICA_SET_UPDATED,
                                         f"{what} is progressing.", now=now)
            if current is not None:
                # Same reason, fresh lastUpdateTime: progress restarts the deadline.
                if current.get("status") == "True":
                    condition["lastTransitionTime"] = current.get("lastTransitionTime")
                du.remove_condition(status, du.PROGRESSING)
            du.set_condition(status, condition)
        elif du.deployment_timed_out(d, status, now=now):
            du.set_condition(status, du.new_condition(du.PROGRESSING, "False", du.TIMED_OUT,
                                                      f"{what} has timed out progressing.", now=now))
    failures = _replica_failures(all_rss, new_rs)
    if failures:
        du.set_condition(status, failures[0])
    else:
        du.remove_condition(status, du.REPLICA_FAILURE)
    return status


def stuck_recheck(d: Obj, status: Obj, *, now: float) -> float | None:
    """Seconds until a rollout's deadline should be checked (0: now, with backoff); None: no need."""
    current = du.get_condition(d.get("status"), du.PROGRESSING)
    if not du.has_progress_deadline(d) or current is None:
        return None
    if du.deployment_complete(d, status) or current.get("reason") == du.TIMED_OUT:
        return None
    since = parse_time(current.get("lastUpdateTime"))
    if since is None:
        return None
    after = since + int(d["spec"]["progressDeadlineSeconds"]) - now
    # Under a second: now (rate limited). Otherwise a second late, so the deadline has surely passed.
    return 0.0 if after < 1 else after + 1
