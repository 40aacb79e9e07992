"""Pod status as the kubelet writes it: container statuses, phase and conditions, from what the worker knows.

Pure functions over plain dicts, so the rules read like upstream's
(`convertToAPIContainerStatuses`, `getPhase`, `GeneratePodReadyCondition`
and friends in kubelet v1.32) and are tested table-driven:

- a container never started is `waiting` (`PodInitializing` in a pod with
  init containers, else `ContainerCreating`);
- phase: an init container failed under `Never` → Failed; anything still
  initialising or waiting → Pending; something running → Running; all
  stopped → Succeeded/Failed unless the policy restarts them (Running);
- a running container is `started` once its startup probe succeeded (at
  once without one), and `ready` when started and its readiness probe
  succeeded (at once without one): the worker's prober says which;
- conditions: Initialized, ContainersReady, Ready (all containers ready)
  and PodScheduled, with upstream's reasons and messages;
  `lastTransitionTime` changes only when a condition's status does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..runtime import ContainerState, State

__all__ = ["container_status", "pod_conditions", "pod_phase", "rfc3339", "terminated_dict"]

Obj = dict[str, Any]


def rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def terminated_dict(state: ContainerState) -> Obj:
    """`state.terminated` for a runtime's exited container."""
    out: Obj = {"exitCode": state.exit_code if state.exit_code is not None else 0,
                "reason": state.reason or ("Completed" if not state.exit_code else "Error")}
    if state.message:
        out["message"] = state.message
    if state.started_at is not None:
        out["startedAt"] = rfc3339(state.started_at)
    if state.finished_at is not None:
        out["finishedAt"] = rfc3339(state.finished_at)
    out["containerID"] = str(state.id)
    return out


def container_status(container: Mapping[str, Any], *, current: ContainerState | None, waiting: tuple[str, str] | None,
                     last_terminated: Obj | None, restart_count: int, default_waiting: str, started: bool = True,
                     ready: bool = True) -> Obj:
    """One entry of `containerStatuses`; `waiting` (reason, message) overrides a terminated state, as upstream.

    `started` and `ready` are the probes' verdicts on the running container (True without probes).
    """
    status: Obj = {"name": container.get("name", ""), "image": container.get("image", ""), "imageID": ""}
    last = last_terminated
    if waiting is not None:
        if current is not None and current.state is State.TERMINATED:
            last = terminated_dict(current)  # the run that failed becomes lastState while we wait to restart
        reason, message = waiting
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    elif current is None:
        status["state"] = {"waiting": {"reason": default_waiting}}
    elif current.state is State.RUNNING:
        since = current.started_at
        status["state"] = {"running": {"startedAt": rfc3339(since) if since is not None else None}}
    else:
        status["state"] = {"terminated": terminated_dict(current)}
    if current is not None:
        status["containerID"] = str(current.id)
    status["lastState"] = {"terminated": last} if last else {}
    running = current is not None and current.state is State.RUNNING and waiting is None
    status["ready"] = running and started and ready
    status["restartCount"] = restart_count
    status["started"] = running and started
    return status


def _state(status: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = (status.get("state") or {}).get(key)
    return value if isinstance(value, Mapping) else None


def _last_terminated(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = (status.get("lastState") or {}).get("terminated")
    return value if isinstance(value, Mapping) else None


def _by_name(statuses: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {s.get("name", ""): s for s in statuses}


def _any_regular_started(statuses: Sequence[Mapping[str, Any]]) -> bool:
    return any(_state(s, "running") or _state(s, "terminated") for s in statuses)


def pod_phase(spec: Mapping[str, Any], init_statuses: Sequence[Mapping[str, Any]],
              statuses: Sequence[Mapping[str, Any]], *, terminal: bool = False) -> str:
    """Upstream `getPhase`; `terminal` says the pod is being torn down, so nothing will restart."""
    policy = spec.get("restartPolicy") or "Always"
    inits = _by_name(init_statuses)
    pending_init = failed_init = 0
    for container in spec.get("initContainers") or ():
        status = inits.get(container.get("name", ""))
        if status is None or _state(status, "running"):
            pending_init += 1
        elif (done := _state(status, "terminated")) is not None:
            failed_init += done.get("exitCode", 0) != 0
        elif (last := _last_terminated(status)) is not None:
            failed_init += last.get("exitCode", 0) != 0
        else:
            pending_init += 1
    apps = _by_name(statuses)
    unknown = running = waiting = stopped = succeeded = 0
    for container in spec.get("containers") or ():
        status = apps.get(container.get("name", ""))
        if status is None:
            unknown += 1
        elif _state(status, "running"):
            running += 1
        elif (done := _state(status, "terminated")) is not None:
            stopped += 1
            succeeded += done.get("exitCode", 0) == 0
        elif _last_terminated(status) is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init and policy == "Never":
        return "Failed"
    if (pending_init and not _any_regular_started(statuses)) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _go_list(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"  # Go's %s of a []string


def _initialized(spec: Mapping[str, Any], phase: str, init_statuses: Sequence[Mapping[str, Any]],
                 statuses: Sequence[Mapping[str, Any]]) -> Obj:
    inits = _by_name(init_statuses)
    unknown, incomplete = [], []
    for container in spec.get("initContainers") or ():
        name = container.get("name", "")
        status = inits.get(name)
        if status is None:
            unknown.append(name)
        elif (done := _state(status, "terminated")) is None or done.get("exitCode", 0) != 0:
            incomplete.append(name)
    if phase == "Succeeded" and not unknown:
        return {"type": "Initialized", "status": "True", "reason": "PodCompleted"}
    if _any_regular_started(statuses) or not (unknown or incomplete):
        return {"type": "Initialized", "status": "True"}
    messages = []
    if unknown:
        messages.append(f"containers with unknown status: {_go_list(unknown)}")
    if incomplete:
        messages.append(f"containers with incomplete status: {_go_list(incomplete)}")
    return {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
            "message": ", ".join(messages)}


def _ready(kind: str, spec: Mapping[str, Any], phase: str, statuses: Sequence[Mapping[str, Any]]) -> Obj:
    apps = _by_name(statuses)
    unknown, unready = [], []
    for container in spec.get("containers") or ():
        name = container.get("name", "")
        status = apps.get(name)
        if status is None:
            unknown.append(name)
        elif not status.get("ready"):
            unready.append(name)
    if (phase == "Succeeded" and not unknown) or phase == "Failed":
        return {"type": kind, "status": "False", "reason": "PodCompleted" if phase == "Succeeded" else "PodFailed"}
    messages = []
    if unknown:
        messages.append(f"containers with unknown status: {_go_list(unknown)}")
    if unready:
        messages.append(f"containers with unready status: {_go_list(unready)}")
    if messages:
        return {"type": kind, "status": "False", "reason": "ContainersNotReady", "message": ", ".join(messages)}
    return {"type": kind, "status": "True"}


def pod_conditions(spec: Mapping[str, Any], phase: str, init_statuses: Sequence[Mapping[str, Any]],
                   statuses: Sequence[Mapping[str, Any]], *, old: Sequence[Mapping[str, Any]], now: str) -> list[Obj]:
    """The kubelet-owned conditions, keeping any others (and their order) from `old`."""
    owned = [
        {"type": "PodReadyToStartContainers", "status": "True"},
        _initialized(spec, phase, init_statuses, statuses),
        _ready("Ready", spec, phase, statuses),
        _ready("ContainersReady", spec, phase, statuses),
        {"type": "PodScheduled", "status": "True"},
    ]
    previous = {c.get("type"): c for c in old}
    out: list[Obj] = []
    for condition in owned:
        before = previous.get(condition["type"])
        keep_time = before is not None and before.get("status") == condition["status"]
        out.append({"type": condition["type"], "status": condition["status"], "lastProbeTime": None,
                    "lastTransitionTime": before.get("lastTransitionTime") if keep_time and before else now,
                    **{k: condition[k] for k in ("reason", "message") if k in condition}})
    owned_types = {c["type"] for c in out}
    return out + [dict(c) for c in old if c.get("type") not in owned_types]
