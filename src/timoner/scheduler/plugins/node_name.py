"""NodeName: a pod that names its node (`spec.nodeName`) fits only that node.

The scheduler never sees bound pods, so this matters for pods whose
`nodeName` the scheduler is asked to honour before binding (upstream keeps
the plugin for the same reason: the cycle is a pure function and should
not depend on the queue's filtering).
"""

from __future__ import annotations

from typing import Any

from .._framework import CycleState, Status
from .._snapshot import NodeInfo

__all__ = ["NodeName"]

REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = "NodeName"

    def filter(self, state: CycleState, pod: dict[str, Any], node_info: NodeInfo) -> Status:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if not wanted or wanted == node_info.name:
            return Status.success()
        return Status.unresolvable(REASON)
