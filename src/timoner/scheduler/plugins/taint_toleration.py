"""TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not tolerate them.

Toleration matching (upstream's `Toleration.ToleratesTaint`) is
`timoner.api.scheduling`, shared with NodeUnschedulable and the DaemonSet
controller: an empty toleration key with operator `Exists` matches every
taint, an empty effect matches every effect, and operator `Equal` (the
default) compares values. PreferNoSchedule taints are a scoring matter and
are ignored by the filter.
"""

from __future__ import annotations

from typing import Any

from timoner.api.scheduling import untolerated_taint

from .._framework import CycleState, Status
from .._snapshot import NodeInfo

__all__ = ["TaintToleration"]

Obj = dict[str, Any]

_FILTERED_EFFECTS = ("NoSchedule", "NoExecute")


class TaintToleration:
    """Filter: reject a node with a NoSchedule/NoExecute taint the pod does not tolerate."""

    name = "TaintToleration"

    def filter(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> Status:
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        taint = untolerated_taint(node_info.taints, tolerations, _FILTERED_EFFECTS)
        if taint is None:
            return Status.success()
        # Upstream names only the first untolerated taint, with `{key: value}` formatting.
        return Status.unresolvable(
            f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}")
