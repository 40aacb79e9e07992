"""The Node's status: how it is computed, and when it is written (the NodeLease design).

Computing (`node_status`) is pure: machine facts, a usage sample and the
previously reported conditions in, a `status` dict out. Conditions follow
upstream's kubelet setters: MemoryPressure, DiskPressure, PIDPressure, then
Ready, with upstream's reasons and messages. Every computation stamps
`lastHeartbeatTime` with now; `lastTransitionTime` moves only when a
condition's status flips.

Writing (`NodeStatusReporter`) follows KEP-589 ("NodeLease"): liveness is the
Lease's job, so the status is recomputed every `status_update_interval` but
sent only when it differs from the last report *ignoring heartbeat times*,
or when `status_report_interval` has passed since the last write. Writes
are strategic-merge patches of `nodes/<name>/status`, so conditions other
components own (NetworkUnavailable, ...) survive, merged by `type`.

A clean shutdown writes nothing: upstream leaves marking the node NotReady
to the node lifecycle controller once the Lease expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from timoner.client import Client, resource_for

from .config import KUBELET_VERSION, AgentConfig
from .machine import Machine, Usage, allocatable, capacity, node_addresses, pressure, sample_usage

__all__ = ["NODES", "NodeStatusReporter", "node_conditions", "node_status", "rfc3339", "status_changed"]

log = logging.getLogger("timoner.node.status")

NODES = resource_for("v1", "Node")

Obj = dict[str, Any]

# (type, (status-when-true, reason, message), (status-when-false, reason, message)) as upstream's setters.
_PRESSURE_CONDITIONS = (
    ("MemoryPressure", ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
     ("KubeletHasSufficientMemory", "kubelet has sufficient memory available")),
    ("DiskPressure", ("KubeletHasDiskPressure", "kubelet has disk pressure"),
     ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")),
    ("PIDPressure", ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
     ("KubeletHasSufficientPID", "kubelet has sufficient PID available")),
)


def rfc3339(when: dt.datetime | None = None) -> str:
    """A metav1.Time: RFC 3339 in UTC to the second."""
    when = when or dt.datetime.now(dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(previous: dict[str, Obj], kind: str, status: str, reason: str, message: str, now: str) -> Obj:
    before = previous.get(kind)
    transitioned = before is None or before.get("status") != status
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now if transitioned else before.get("lastTransitionTime", now),  # type: ignore[union-attr]
        "reason": reason,
        "message": message,
    }


def node_conditions(previous: Sequence[Obj], usage: Usage, config: AgentConfig, *, now: str,
                    not_ready: Sequence[str] = ()) -> list[Obj]:
    """The four kubelet conditions; `not_ready` lists why the node is not Ready (empty: it is)."""
    by_type = {c.get("type", ""): c for c in previous}
    under = pressure(usage, config.thresholds)
    flags = {"MemoryPressure": under.memory, "DiskPressure": under.disk, "PIDPressure": under.pid}
    out = []
    for kind, when_true, when_false in _PRESSURE_CONDITIONS:
        reason, message = when_true if flags[kind] else when_false
        out.append(_condition(by_type, kind, "True" if flags[kind] else "False", reason, message, now))
    if not_ready:
        out.append(_condition(by_type, "Ready", "False", "KubeletNotReady", ", ".join(not_ready), now))
    else:
        out.append(_condition(by_type, "Ready", "True", "KubeletReady", "kubelet is posting ready status", now))
    return out


def node_info(machine: Machine, config: AgentConfig) -> Obj:
    return {
        "machineID": machine.machine_id,
        "systemUUID": machine.system_uuid,
        "bootID": machine.boot_id,
        "kernelVersion": machine.kernel_version,
        "osImage": machine.os_image,
        "containerRuntimeVersion": config.container_runtime_version,
        "kubeletVersion": KUBELET_VERSION,
        "operatingSystem": machine.operating_system,
        "architecture": machine.architecture,
    }


def node_status(machine: Machine, usage: Usage, config: AgentConfig, *, node_ip: str,
                previous_conditions: Sequence[Obj] = (), now: str | None = None) -> Obj:
    """The whole `status` the agent owns, computed now."""
    now = now or rfc3339()
    return {
        "capacity": capacity(machine, max_pods=config.max_pods),
        "allocatable": allocatable(machine, max_pods=config.max_pods, thresholds=config.thresholds),
        "conditions": node_conditions(previous_conditions, usage, config, now=now),
        "addresses": node_addresses(machine, node_ip=node_ip),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.kubelet_port}},
        "nodeInfo": node_info(machine, config),
    }


def _comparable(status: Obj, types: set[str]) -> Obj:
    out = dict(status)
    conditions = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                  for c in status.get("conditions") or () if c.get("type") in types]
    out["conditions"] = sorted(conditions, key=lambda c: str(c.get("type")))
    return out


def status_changed(reported: Obj, current: Obj) -> bool:
    """Whether `current` says something `reported` did not, heartbeat times aside (upstream's test).

    Only the fields and condition types the agent owns are compared, so a
    condition another component adds does not make every tick a write.
    """
    types = {str(c.get("type")) for c in current.get("conditions") or ()}
    return _comparable({k: reported.get(k) for k in current}, types) != _comparable(current, types)


class NodeStatusReporter:
    """Recomputes the Node status every `status_update_interval`; writes it as the module docstring says.

    Each sync reads the Node first (as upstream does) and compares against
    what the server holds, not against what we last sent, so a status
    someone else overwrote is put right at the next tick. The report clock
    starts at construction, because registration has just written a status.
    """

    def __init__(self, client: Client, config: AgentConfig, *, machine: Machine, node_ip: str) -> None:
        self.client = client
        self.config = config
        self.machine = machine
        self.node_ip = node_ip
        self.syncs = 0  # status computations since start; for metrics and tests
        self.writes = 0  # status writes since start; for metrics and tests
        self._reported_at = config.clock.now()

    async def run(self) -> None:
        """Sync forever; a failed sync is logged and retried at the next tick."""
        while True:
            await self.config.clock.sleep(self.config.status_update_interval)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server may be away, or the Node deleted; try again next tick
                log.warning("node %s: status update failed: %s: %s", self.config.node_name,
                            type(exc).__name__, exc)

    async def sync(self) -> bool:
        """Compute the status now; write it if it changed or is due. Returns whether it wrote."""
        node = await self.client.get(NODES, self.config.node_name)
        reported = node.get("status") or {}
        usage = await asyncio.to_thread(sample_usage, self.config.root_dir)
        current = node_status(self.machine, usage, self.config, node_ip=self.node_ip,
                              previous_conditions=reported.get("conditions") or ())
        self.syncs += 1
        due = self.config.clock.now() - self._reported_at >= self.config.status_report_interval
        changed = status_changed(reported, current)
        if not due and not changed:
            return False
        await self.client.patch(NODES, self.config.node_name, {"status": current},
                                patch_type="strategic", subresource="status")
        self._reported_at = self.config.clock.now()
        self.writes += 1
        log.debug("node %s: status written (%s)", self.config.node_name, "changed" if changed else "report due")
        return True
