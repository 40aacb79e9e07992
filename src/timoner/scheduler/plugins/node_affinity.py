"""NodeAffinity: `spec.nodeSelector` and required node affinity decide which nodes a pod may use.

Both must hold. `requiredDuringSchedulingIgnoredDuringExecution` is an OR
of `nodeSelectorTerms`; inside a term, every `matchExpressions` (on node
labels) and `matchFields` (only `metadata.name`, as upstream) requirement
must hold, and a term with neither matches nothing. `Gt`/`Lt` compare the
label value and the single requirement value as integers; a value that is
not an integer never matches. PreFilter answers `Skip` for pods with no
node constraints so their Filter is never called. The matching itself is
`timoner.api.scheduling`, shared with the DaemonSet controller.
"""

from __future__ import annotations

from typing import Any

from timoner.api.scheduling import pod_matches_node, required_node_selector_terms

from .._framework import CycleState, Status
from .._snapshot import NodeInfo

__all__ = ["NodeAffinity"]

Obj = dict[str, Any]

REASON = "node(s) didn't match Pod's node affinity/selector"


class NodeAffinity:
    name = "NodeAffinity"

    def pre_filter(self, state: CycleState, pod: Obj) -> Status:
        if not (pod.get("spec") or {}).get("nodeSelector") and required_node_selector_terms(pod) is None:
            return Status.skip()
        return Status.success()

    def filter(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> Status:
        if pod_matches_node(pod, node_info.node):
            return Status.success()
        return Status.unresolvable(REASON)
