"""The pod printer: upstream `printPod` (v1.32), the densest row logic kubectl shows.

STATUS is a fold over the pod's state, in upstream's order:
1. `status.reason`, else the phase; `SchedulingGated` when the PodScheduled
   condition says so.
2. Init containers, in order: the first that is neither finished with exit
   code 0 nor a started sidecar (`restartPolicy: Always`) decides
   `Init:<reason>`, `Init:ExitCode:N`, `Init:Signal:N` or `Init:i/n`.
3. Unless still initialising, app containers walked from last to first:
   a waiting or terminated reason wins (so the first container's reason is
   the one shown); `Completed` reverts to `Running`/`NotReady` while some
   container still runs.
4. `Terminating` when a deletion timestamp is set and the phase is not
   terminal (`Unknown` for pods on a lost node).

READY counts ready app containers plus started, ready sidecars; RESTARTS adds
`(<age> ago)` from the newest `lastState.terminated.finishedAt`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from timoner.api._tables_base import (
    AGE,
    NAME,
    NONE,
    Column,
    Printer,
    age,
    container_cells,
    elapsed,
    format_labels,
    integer,
    mapping,
    name_of,
    parse_time,
    seq,
    text,
)

__all__ = ["POD", "POD_TEMPLATE"]

_STATUS = "io.k8s.api.core.v1.PodStatus"
_SPEC = "io.k8s.api.core.v1.PodSpec"

# The reason the node lifecycle controller sets on pods of an unreachable node.
_NODE_LOST = "NodeLost"


def _restartable(container: Mapping[str, Any] | None) -> bool:
    """A sidecar: an init container with `restartPolicy: Always`."""
    return container is not None and container.get("restartPolicy") == "Always"


def _condition_true(conditions: list[Mapping[str, Any]], kind: str) -> bool:
    for condition in conditions:
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _has_ready(conditions: list[Mapping[str, Any]]) -> bool:
    # Unlike `_condition_true`, upstream's hasPodReadyCondition looks past a first False entry.
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _terminated_reason(terminated: Mapping[str, Any], prefix: str) -> str:
    reason = text(terminated.get("reason"))
    if reason:
        return prefix + reason
    signal = integer(terminated.get("signal"))
    if signal != 0:
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{integer(terminated.get('exitCode'))}"


def _finished_at(status: Mapping[str, Any]) -> datetime | None:
    terminated = mapping(status.get("lastState")).get("terminated")
    if not isinstance(terminated, Mapping):
        return None
    return parse_time(terminated.get("finishedAt"))


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or current < candidate else current


def _pod_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    metadata, spec, status = mapping(obj.get("metadata")), mapping(obj.get("spec")), mapping(obj.get("status"))
    conditions = [mapping(c) for c in seq(status.get("conditions"))]
    init_specs = [mapping(c) for c in seq(spec.get("initContainers"))]

    restarts = 0
    sidecar_restarts = 0
    total = len(seq(spec.get("containers"))) + sum(1 for c in init_specs if _restartable(c))
    ready = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    phase = text(status.get("phase"))
    reason = text(status.get("reason")) or phase
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_by_name = {text(c.get("name")): c for c in init_specs}
    initializing = False
    for index, container in enumerate(mapping(c) for c in seq(status.get("initContainerStatuses"))):
        restarts += integer(container.get("restartCount"))
        finished = _finished_at(container)
        last_restart = _later(last_restart, finished)
        sidecar = _restartable(init_by_name.get(text(container.get("name"))))
        if sidecar:
            sidecar_restarts += integer(container.get("restartCount"))
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = mapping(container.get("state"))
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if isinstance(terminated, Mapping) and integer(terminated.get("exitCode")) == 0:
            continue
        if sidecar and container.get("started") is True:
            if container.get("ready") is True:
                ready += 1
            continue
        if isinstance(terminated, Mapping):
            reason = _terminated_reason(terminated, "Init:")
        elif isinstance(waiting, Mapping) and text(waiting.get("reason")) not in ("", "PodInitializing"):
            reason = "Init:" + text(waiting.get("reason"))
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for container in reversed([mapping(c) for c in seq(status.get("containerStatuses"))]):
            restarts += integer(container.get("restartCount"))
            last_restart = _later(last_restart, _finished_at(container))
            state = mapping(container.get("state"))
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if isinstance(waiting, Mapping) and text(waiting.get("reason")):
                reason = text(waiting.get("reason"))
            elif isinstance(terminated, Mapping):
                reason = _terminated_reason(terminated, "")
            elif container.get("ready") is True and isinstance(state.get("running"), Mapping):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _has_ready(conditions) else "NotReady"

    if metadata.get("deletionTimestamp") is not None:
        if status.get("reason") == _NODE_LOST:
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_cell = f"{restarts} ({elapsed(last_restart, now)} ago)"

    pod_ips = [mapping(ip) for ip in seq(status.get("podIPs"))]
    pod_ip = text(pod_ips[0].get("ip")) if pod_ips else ""
    gates = [mapping(g) for g in seq(spec.get("readinessGates"))]
    readiness_gates = NONE
    if gates:
        satisfied = 0
        for gate in gates:
            for condition in conditions:
                if condition.get("type") == gate.get("conditionType"):
                    satisfied += condition.get("status") == "True"
                    break
        readiness_gates = f"{satisfied}/{len(gates)}"
    return [
        name_of(obj),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(obj, now),
        pod_ip or NONE,
        text(spec.get("nodeName")) or NONE,
        text(status.get("nominatedNodeName")) or NONE,
        readiness_gates,
    ]


def _pod_conditions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Row conditions that mark finished pods, as upstream sets them."""
    phase = mapping(obj.get("status")).get("phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


POD = Printer(
    columns=(
        NAME,
        Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", description="The aggregate status of the containers in this pod."),
        Column(
            "Restarts",
            description="The number of times the containers in this pod have been restarted "
            "and when the last container in this pod has restarted.",
        ),
        AGE,
        Column("IP", description=(_STATUS, "podIP"), priority=1),
        Column("Node", description=(_SPEC, "nodeName"), priority=1),
        Column("Nominated Node", description=(_STATUS, "nominatedNodeName"), priority=1),
        Column("Readiness Gates", description=(_SPEC, "readinessGates"), priority=1),
    ),
    cells=_pod_cells,
    conditions=_pod_conditions,
)


def _pod_template_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    template = mapping(obj.get("template"))
    names, images = container_cells(mapping(template.get("spec")).get("containers"))
    return [name_of(obj), names, images, format_labels(mapping(template.get("metadata")).get("labels"))]


POD_TEMPLATE = Printer(
    columns=(
        NAME,
        Column("Containers", description="Names of each container in the template."),
        Column("Images", description="Images referenced by each container in the template."),
        Column("Pod Labels", description="The labels for the pod template."),
    ),
    cells=_pod_template_cells,
)
