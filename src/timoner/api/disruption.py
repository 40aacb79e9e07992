"""PodDisruptionBudget facts shared by the disruption controller and the API server's eviction handler: pure, no I/O.

Upstream keeps these in `component-helpers/apps/poddisruptionbudget` and
`apimachinery/pkg/api/meta`; two components need them here (the controller
computes a budget's status, the `pods/eviction` handler spends it), and
components may not import each other, so they live in `timoner.api`.

- `scaled_value`: an IntOrString (`2` or `"50%"`) of a total, rounded as
  asked (`intstr.GetScaledValueFromIntOrPercent`, float arithmetic and all);
- `set_status_condition`: `meta.SetStatusCondition` on a list of
  metav1.Conditions (the transition time moves only when the status does);
- `update_disruption_allowed_condition` / `conditions_up_to_date`: the
  `DisruptionAllowed` condition that follows `disruptionsAllowed`
  (SufficientPods / InsufficientPods);
- `eviction_selects`: whether a budget guards a pod for the eviction
  handler (an empty or missing selector guards nothing there, while the
  controller lets an empty one select every pod of the namespace: both
  as upstream).

Times are RFC 3339 strings, passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from timoner.api.errors import APIError
from timoner.api.selectors import label_selector_from_dict

__all__ = [
    "DELETION_TIMEOUT",
    "DISRUPTION_ALLOWED",
    "DISRUPTION_BUDGET_CAUSE",
    "DISRUPTION_TARGET",
    "INSUFFICIENT_PODS",
    "MAX_DISRUPTED_POD_SIZE",
    "SUFFICIENT_PODS",
    "SYNC_FAILED",
    "conditions_up_to_date",
    "eviction_selects",
    "is_pod_ready",
    "scaled_value",
    "set_status_condition",
    "update_disruption_allowed_condition",
]

Obj = dict[str, Any]

DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS = "SufficientPods"
INSUFFICIENT_PODS = "InsufficientPods"
SYNC_FAILED = "SyncFailed"
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
DISRUPTION_TARGET = "DisruptionTarget"  # the pod condition set by whoever is about to delete a pod
# How long an eviction's entry in `disruptedPods` keeps its pod out of the healthy count before the
# controller assumes the delete never happened (upstream's DeletionTimeout).
DELETION_TIMEOUT = 120.0
# The eviction handler refuses to add to a `disruptedPods` map larger than this (upstream's MaxDisruptedPodSize).
MAX_DISRUPTED_POD_SIZE = 2000


def scaled_value(value: int | str, total: int, *, round_up: bool) -> int:
    """`value` itself when an int, else the percentage of `total`; ValueError for a malformed string."""
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {text!r}")
    try:
        percent = int(text[:-1])
    except ValueError:
        raise ValueError(f"invalid value {text!r}: not an integer percentage") from None
    exact = float(percent) * float(total) / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True (upstream's IsPodReady, what a budget calls healthy)."""
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _find(conditions: list[Obj], kind: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def set_status_condition(conditions: list[Obj], new: Obj, now: str) -> bool:
    """Set `new` (type, status, reason, message, observedGeneration) in `conditions`; True if anything changed.

    The transition time is `now` for a new condition or a changed status, and kept otherwise.
    """
    existing = _find(conditions, new["type"])
    if existing is None:
        condition = {"type": new["type"], "status": new["status"],
                     "lastTransitionTime": new.get("lastTransitionTime") or now,
                     "reason": new.get("reason", ""), "message": new.get("message", "")}
        if new.get("observedGeneration"):
            condition["observedGeneration"] = new["observedGeneration"]
        conditions.append(condition)
        return True
    changed = False
    if existing.get("status") != new["status"]:
        existing["status"] = new["status"]
        existing["lastTransitionTime"] = new.get("lastTransitionTime") or now
        changed = True
    for key in ("reason", "message"):
        if existing.get(key, "") != new.get(key, ""):
            existing[key] = new.get(key, "")
            changed = True
    if int(existing.get("observedGeneration") or 0) != int(new.get("observedGeneration") or 0):
        if new.get("observedGeneration"):
            existing["observedGeneration"] = new["observedGeneration"]
        else:
            existing.pop("observedGeneration", None)
        changed = True
    return changed


def update_disruption_allowed_condition(status: Obj, now: str) -> None:
    """Make `DisruptionAllowed` in `status` follow its `disruptionsAllowed` (upstream's UpdateDisruptionAllowedCondition)."""
    conditions = status.setdefault("conditions", [])
    allowed = int(status.get("disruptionsAllowed") or 0) > 0
    set_status_condition(conditions, {
        "type": DISRUPTION_ALLOWED,
        "status": "True" if allowed else "False",
        "reason": SUFFICIENT_PODS if allowed else INSUFFICIENT_PODS,
        "observedGeneration": int(status.get("observedGeneration") or 0),
    }, now)


def conditions_up_to_date(pdb: Mapping[str, Any]) -> bool:
    """Whether the budget's `DisruptionAllowed` condition agrees with its status and generation."""
    status = pdb.get("status") or {}
    condition = _find(list(status.get("conditions") or ()), DISRUPTION_ALLOWED)
    if condition is None:
        return False
    if int(status.get("observedGeneration") or 0) != int((pdb.get("metadata") or {}).get("generation") or 0):
        return False
    if int(status.get("disruptionsAllowed") or 0) > 0:
        return condition.get("status") == "True" and condition.get("reason") == SUFFICIENT_PODS
    return condition.get("status") == "False" and condition.get("reason") == INSUFFICIENT_PODS


def eviction_selects(pdb: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether `pdb` guards `pod` against eviction: same namespace, a valid non-empty selector that matches."""
    if (pdb.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
        return False
    try:
        selector = label_selector_from_dict((pdb.get("spec") or {}).get("selector"))
    except APIError:
        return False  # an invalid selector matches nothing
    return not selector.empty and selector.matches((pod.get("metadata") or {}).get("labels") or {})
