"""NodeUnschedulable: cordoned nodes (`spec.unschedulable: true`) take no new pods.

A pod that tolerates the `node.kubernetes.io/unschedulable:NoSchedule`
taint (DaemonSet pods do) may still land there, as upstream allows.
"""

from __future__ import annotations

from typing import Any

from timoner.api.scheduling import tolerations_tolerate

from .._framework import CycleState, Status
from .._snapshot import NodeInfo

__all__ = ["NodeUnschedulable"]

REASON = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def filter(self, state: CycleState, pod: dict[str, Any], node_info: NodeInfo) -> Status:
        if not (node_info.node.get("spec") or {}).get("unschedulable"):
            return Status.success()
        if tolerations_tolerate((pod.get("spec") or {}).get("tolerations") or [], UNSCHEDULABLE_TAINT):
            return Status.success()
        return Status.unresolvable(REASON)
