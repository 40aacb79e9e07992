"""Which nodes a pod may run on, by its node selector, required node affinity and tolerations.

Pure matching shared by the scheduler (NodeAffinity, TaintToleration,
NodeUnschedulable and VolumeBinding's PV node affinity) and the DaemonSet
controller's eligibility check, which upstream both take from
component-helpers' `nodeaffinity` and `Toleration.ToleratesTaint`.

- Node affinity: `spec.nodeSelector` and
  `requiredDuringSchedulingIgnoredDuringExecution` must both hold. The
  required part is an OR of `nodeSelectorTerms`; inside a term, every
  `matchExpressions` (on node labels) and `matchFields` (only
  `metadata.name`, as upstream) requirement must hold, and a term with
  neither matches nothing. `Gt`/`Lt` compare the label value and the single
  requirement value as integers; a value that is not an integer never
  matches.
- Tolerations: an empty toleration key with operator `Exists` matches every
  taint, an empty effect matches every effect, and operator `Equal` (the
  default) compares values; any other operator tolerates nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "NODE_NAME_FIELD",
    "node_selector_term_matches",
    "pod_matches_node",
    "required_node_selector_terms",
    "tolerates",
    "tolerations_tolerate",
    "untolerated_taint",
]

Obj = dict[str, Any]

NODE_NAME_FIELD = "metadata.name"


# -- tolerations and taints ---------------------------------------------------------------------


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration tolerates one taint (upstream's Toleration.ToleratesTaint)."""
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


def tolerations_tolerate(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Whether any of `tolerations` tolerates `taint` (upstream's TolerationsTolerateTaint)."""
    return any(tolerates(t, taint) for t in tolerations)


def untolerated_taint(taints: Iterable[Obj], tolerations: Iterable[Obj], effects: Iterable[str]) -> Obj | None:
    """The first taint with one of `effects` that no toleration tolerates (FindMatchingUntoleratedTaint)."""
    effects = set(effects)
    tolerations = list(tolerations)
    for taint in taints:
        if taint.get("effect") in effects and not tolerations_tolerate(tolerations, taint):
            return taint
    return None


# -- node affinity --------------------------------------------------------------------------------


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
    labels = (node.get("metadata") or {}).get("labels") or {}
    if not all(_requirement_matches(req, labels) for req in expressions):
        return False
    node_fields = {NODE_NAME_FIELD: node["metadata"]["name"]}
    # Upstream rejects any field but metadata.name at validation; a stray one matches nothing.
    return all(req.get("key") in node_fields and _requirement_matches(req, node_fields) for req in fields)


def required_node_selector_terms(pod: Obj) -> list[Obj] | None:
    """The pod's required node affinity terms; None when it has no required node affinity at all."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return required.get("nodeSelectorTerms") or []


def pod_matches_node(pod: Obj, node: Obj) -> bool:
    """Upstream's RequiredNodeAffinity.Match: `spec.nodeSelector` and the required terms both hold for `node`."""
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return False
    terms = required_node_selector_terms(pod)
    return terms is None or any(node_selector_term_matches(term, node) for term in terms)
