"""Conversion between the versions a client speaks and the version an object is stored in.

Two resources are served in two shapes over one storage, as upstream does:
`events` (core/v1 stored; events.k8s.io/v1 converted) and
`horizontalpodautoscalers` (autoscaling/v2 stored; autoscaling/v1 converted).
Everything else is stored as served and passes through untouched.
"""

from __future__ import annotations

from timoner.api.registry import ResourceInfo

__all__ = ["from_storage", "needs_conversion", "to_storage"]

_EVENT_RENAMES = (  # (events.k8s.io/v1 field, core/v1 field)
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("deprecatedSource", "source"),
)
_EVENT_SHARED = ("metadata", "eventTime", "series", "related", "action", "reason", "type",
                 "reportingInstance")


def needs_conversion(info: ResourceInfo) -> bool:
    if info.custom is not None:
        # conversion strategy None: only apiVersion changes between a CRD's versions
        return info.custom.multi_version
    return (info.group, info.version, info.plural) in (
        ("events.k8s.io", "v1", "events"),
        ("autoscaling", "v1", "horizontalpodautoscalers"),
    )


def to_storage(info: ResourceInfo, obj: dict) -> dict:
    if info.custom is not None:
        return {**obj, "apiVersion": f"{info.group}/{info.custom.storage_version}"}
    if info.group == "events.k8s.io":
        out = {"apiVersion": "v1", "kind": "Event"}
        for k in _EVENT_SHARED:
            if k in obj:
                out[k] = obj[k]
        for new, old in _EVENT_RENAMES:
            if new in obj:
                out[old] = obj[new]
        if "reportingComponent" not in out and "source" in out:
            out["reportingComponent"] = out["source"].get("component", "")
        out.setdefault("involvedObject", {})
        return out
    if info.group == "autoscaling" and info.version == "v1":
        return _hpa_v1_to_v2(obj)
    return obj


def from_storage(info: ResourceInfo, obj: dict) -> dict:
    if info.custom is not None:
        obj["apiVersion"] = info.group_version
        return obj
    if info.group == "events.k8s.io":
        out = {"apiVersion": "events.k8s.io/v1", "kind": "Event"}
        for k in _EVENT_SHARED:
            if k in obj:
                out[k] = obj[k]
        for new, old in _EVENT_RENAMES:
            if old in obj and obj[old] not in (None, "", {}):
                out[new] = obj[old]
        out.setdefault("eventTime", None)
        return out
    if info.group == "autoscaling" and info.version == "v1":
        return _hpa_v2_to_v1(obj)
    return obj


def _hpa_v1_to_v2(obj: dict) -> dict:
    spec = dict(obj.get("spec") or {})
    target = spec.pop("targetCPUUtilizationPercentage", None)
    out_spec = {k: v for k, v in spec.items()}
    if target is not None:
        out_spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]
    status = dict(obj.get("status") or {})
    current = status.pop("currentCPUUtilizationPercentage", None)
    out_status = {k: v for k, v in status.items()}
    if current is not None:
        out_status["currentMetrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": current}}}]
    out = {**obj, "apiVersion": "autoscaling/v2", "spec": out_spec}
    if obj.get("status") is not None:
        out["status"] = out_status
    return out


def _hpa_v2_to_v1(obj: dict) -> dict:
    spec = dict(obj.get("spec") or {})
    metrics = spec.pop("metrics", None) or []
    spec.pop("behavior", None)
    for m in metrics:
        res = m.get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            target = res.get("target") or {}
            if target.get("averageUtilization") is not None:
                spec["targetCPUUtilizationPercentage"] = target["averageUtilization"]
    out = {**obj, "apiVersion": "autoscaling/v1", "spec": spec}
    status = obj.get("status")
    if status is not None:
        st = {k: v for k, v in status.items() if k not in ("currentMetrics", "conditions")}
        for m in status.get("currentMetrics") or []:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and res.get("name") == "cpu":
                cur = (res.get("current") or {}).get("averageUtilization")
                if cur is not None:
                    st["currentCPUUtilizationPercentage"] = cur
        out["status"] = st
    return out
