"""NodeAffinity: `spec.nodeSelector` and required node affinity decide which nodes a pod may use.

Both must hold. `requiredDuringSchedulingIgnoredDuringExecution` is an OR
of `nodeSelectorTerms`; inside a term, every `matchExpressions` (on node
labels) and `matchFields` (only `metadata.name`, as upstream) requirement
must hold, and a term with neither matches nothing. `Gt`/`Lt` compare the
label value and the single requirement value as integers; a value that is
not an integer never matches. PreFilter answers `Skip` for pods with no
node constraints so their Filter is never called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._framework import CycleState, Status
from .._snapshot import NodeInfo

__all__ = ["NodeAffinity", "node_selector_term_matches", "pod_matches_node"]

Obj = dict[str, Any]

REASON = "node(s) didn't match Pod's node affinity/selector"


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _requirement_matches(req: Obj, values_by_key: Mapping[str, str]) -> bool:
    key, operator = req.get("key", ""), req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    present = key in values_by_key
    value = values_by_key.get(key, "")
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        have, want = _int(value), _int(values[0]) if len(values) == 1 else None
        if not present or have is None or want is None:
            return False
        return have > want if operator == "Gt" else have < want
    return False  # an unknown operator cannot be satisfied


def node_selector_term_matches(term: Obj, node: Obj) -> bool:
    """One NodeSelectorTerm against a node: all its expressions and fields hold, and it has some."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    if not all(_requirement_matches(req, labels) for req in expressions):
        return False
    node_fields = {"metadata.name": node["metadata"]["name"]}
    # Upstream rejects any field but metadata.name at validation; a stray one matches nothing.
    return all(req.get("key") in node_fields and _requirement_matches(req, node_fields) for req in fields)


def _required_terms(pod: Obj) -> list[Obj] | None:
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return required.get("nodeSelectorTerms") or []


def pod_matches_node(pod: Obj, node: Obj) -> bool:
    """Upstream's RequiredNodeAffinity.Match: nodeSelector and required affinity terms."""
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return False
    terms = _required_terms(pod)
    if terms is None:
        return True
    return any(node_selector_term_matches(term, node) for term in terms)


class NodeAffinity:
    name = "NodeAffinity"

    def pre_filter(self, state: CycleState, pod: Obj) -> Status:
        if not (pod.get("spec") or {}).get("nodeSelector") and _required_terms(pod) is None:
            return Status.skip()
        return Status.success()

    def filter(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> Status:
        if pod_matches_node(pod, node_info.node):
            return Status.success()
        return Status.unresolvable(REASON)
