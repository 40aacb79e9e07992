"""TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not tolerate them.

`tolerates` is upstream's `Toleration.ToleratesTaint`, shared with
NodeUnschedulable: an empty toleration key with operator `Exists` matches
every taint, an empty effect matches every effect, and operator `Equal`
(the default) compares values. PreferNoSchedule taints are a scoring
matter and are ignored by the filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._framework import CycleState, Status
from .._snapshot import NodeInfo

__all__ = ["TaintToleration", "tolerates", "tolerates_all"]

Obj = dict[str, Any]

_FILTERED_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration tolerates one taint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerates_all(tolerations: Iterable[Obj], taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


class TaintToleration:
    """Filter: reject a node with a NoSchedule/NoExecute taint the pod does not tolerate."""

    name = "TaintToleration"

    def filter(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> Status:
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        for taint in node_info.taints:
            if taint.get("effect") not in _FILTERED_EFFECTS:
                continue
            if not tolerates_all(tolerations, taint):
                # Upstream names only the first untolerated taint, with `{key: value}` formatting.
                return Status.unresolvable(
                    f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}")
        return Status.success()
