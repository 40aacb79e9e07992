"""Per-kind strategies: what the server does to an object of a kind around a write.

A `Strategy` knows how to prepare an object for create and update (reset or
keep status, bump `generation`), how to split spec from status for the
`status` subresource, which fields field selectors may use, and how the kind
converts between the version a client speaks and the version it is stored
in. One generic REST handler serves every kind through this seam.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from timoner.api.defaults import generate_job_selector
from timoner.api.registry import ResourceInfo

__all__ = ["Strategy", "strategy_for", "spec_changed"]

_GENERATION_KINDS = {
    ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
    ("", "ReplicationController"), ("batch", "Job"), ("batch", "CronJob"), ("policy", "PodDisruptionBudget"),
    ("autoscaling", "HorizontalPodAutoscaler"), ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"), ("", "PersistentVolumeClaim"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
}

# Kinds whose status is cleared on create (upstream PrepareForCreate), with what it starts as.
_STATUS_ON_CREATE: dict[tuple[str, str], Callable[[dict], dict]] = {
    ("", "Namespace"): lambda obj: {"phase": "Active"},
    ("", "Pod"): lambda obj: {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})},
    ("", "PersistentVolume"): lambda obj: {"phase": "Pending"},
    ("", "PersistentVolumeClaim"): lambda obj: {"phase": "Pending"},
}
_KEEP_STATUS_ON_CREATE = {("", "Node"), ("", "Service"), ("", "ResourceQuota"), ("", "Event")}

_METADATA_FIELDS = ("metadata.name", "metadata.namespace")


def _get(obj: dict, path: str) -> str:
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
        if node is None:
            return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


_EXTRA_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                  "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    ("", "Event"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ("events.k8s.io", "Event"): ("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                                 "reason", "reportingController", "type"),
    ("", "Secret"): ("type",),
    ("", "Node"): ("spec.unschedulable",),
    ("", "Namespace"): ("status.phase",),
    ("", "ReplicationController"): ("status.replicas",),
    ("apps", "ReplicaSet"): ("status.replicas",),
    ("batch", "Job"): ("status.successful",),
    ("", "Service"): ("spec.clusterIP", "spec.type"),
    ("", "PersistentVolumeClaim"): ("spec.volumeName",),
}

# The resource names upstream uses in field-selector values for events' `source`.
_SPECIAL_GETTERS: dict[str, Callable[[dict], str]] = {
    "source": lambda obj: (obj.get("source") or {}).get("component", "") or obj.get("reportingComponent", ""),
}


@dataclass(frozen=True)
class Strategy:
    """How the server treats one kind around create, update and read."""

    info: ResourceInfo
    tracks_generation: bool
    selectable_fields: tuple[str, ...] = field(default=_METADATA_FIELDS)

    def field_values(self, obj: dict) -> dict[str, str]:
        """The values of `selectable_fields` for this object, as field selectors compare them."""
        meta = obj.get("metadata") or {}
        out = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
        for path in self.selectable_fields[2:]:
            getter = _SPECIAL_GETTERS.get(path)
            out[path] = getter(obj) if getter else _get(obj, path)
        return out

    def prepare_for_create(self, obj: dict) -> None:
        key = (self.info.group, self.info.kind)
        if key in _STATUS_ON_CREATE:
            obj["status"] = _STATUS_ON_CREATE[key](obj)
        elif self.info.has_status and key not in _KEEP_STATUS_ON_CREATE:
            obj.pop("status", None)
        if self.tracks_generation:
            obj["metadata"]["generation"] = 1
        else:
            obj["metadata"].pop("generation", None)
        if key == ("batch", "Job"):
            generate_job_selector(obj)
        if key == _CRD:
            _record_storage_version(obj)

    def prepare_for_update(self, new: dict, old: dict, *, subresource: str = "") -> None:
        """Apply the spec/status split and the generation rule to `new` in place."""
        if subresource == "status":
            # Writes to /status change only status (and labels/annotations, as upstream allows nothing else).
            status = new.get("status")
            kept = copy.deepcopy({k: v for k, v in old.items() if k != "status"})
            new.clear()
            new.update(kept)
            if status is not None:
                new["status"] = status
            return
        if (self.info.group, self.info.kind) == ("", "Service") and subresource == "":
            _drop_type_dependent_fields(new, old)
        if self.info.has_status and subresource == "":
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
            if (self.info.group, self.info.kind) == _CRD:
                _record_storage_version(new)
        old_gen = old.get("metadata", {}).get("generation")
        if self.tracks_generation:
            gen = old_gen or 1
            # A custom resource without a status subresource counts status as spec, as upstream.
            custom_status = self.info.custom is not None and not self.info.has_status
            if spec_changed(new, old) or (custom_status and new.get("status") != old.get("status")):
                gen += 1
            new["metadata"]["generation"] = gen
        elif old_gen is not None:
            new["metadata"]["generation"] = old_gen
        else:
            new["metadata"].pop("generation", None)


_CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")


def _record_storage_version(crd: dict) -> None:
    """As upstream's CRD strategy: the storage version joins `status.storedVersions` on create and update."""
    spec = crd.get("spec")
    versions = spec.get("versions") if isinstance(spec, dict) else None
    storage = next((v.get("name") for v in versions or () if isinstance(v, dict) and v.get("storage")), None)
    if not storage:
        return
    status = crd.setdefault("status", {})
    if not isinstance(status, dict):
        return
    stored = status.setdefault("storedVersions", [])
    if isinstance(stored, list) and storage not in stored:
        stored.append(storage)


def _drop_type_dependent_fields(new: dict, old: dict) -> None:
    """As upstream: a Service that stops being NodePort/LoadBalancer drops what only those types use."""
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    external = ("NodePort", "LoadBalancer")
    if spec.get("type", "ClusterIP") in external or old_spec.get("type", "ClusterIP") not in external:
        return
    for name in ("externalTrafficPolicy", "healthCheckNodePort", "allocateLoadBalancerNodePorts",
                 "loadBalancerClass"):
        if spec.get(name) == old_spec.get(name):
            spec.pop(name, None)
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)
    if spec.get("type") == "ExternalName":
        for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(name, None)


def spec_changed(new: dict, old: dict) -> bool:
    """True when anything outside metadata and status differs."""
    keys = (set(new) | set(old)) - {"metadata", "status", "apiVersion", "kind"}
    return any(new.get(k) != old.get(k) for k in keys)


def qos_class(spec: dict) -> str:
    """The pod's QoS class (Guaranteed, Burstable, BestEffort) from its containers' resources."""
    from timoner.api.quantity import parse_quantity

    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    any_set = False
    for c in containers:
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        for name in ("cpu", "memory"):
            r = req.get(name)
            lv = lim.get(name)
            if r is not None or lv is not None:
                any_set = True
            try:
                if r is not None:
                    requests[name] = requests.get(name, Decimal(0)) + parse_quantity(r)
                if lv is not None:
                    limits[name] = limits.get(name, Decimal(0)) + parse_quantity(lv)
                if lv is None or (r is not None and parse_quantity(r) != parse_quantity(lv)):
                    guaranteed = False
            except ValueError:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_CACHE: dict[tuple[str, str, str], Strategy] = {}


def strategy_for(info: ResourceInfo) -> Strategy:
    if info.custom is not None:
        # A CRD's versions change with the CRD: one strategy per served CustomKind, built once.
        return _custom_strategy(info)
    key = (info.group, info.version, info.plural)
    strategy = _CACHE.get(key)
    if strategy is None:
        kind_key = (info.group, info.kind)
        fields = _METADATA_FIELDS + _EXTRA_FIELDS.get(kind_key, ())
        tracks = kind_key in _GENERATION_KINDS or not info.definition  # custom resources track generation
        strategy = Strategy(info, tracks, fields)
        _CACHE[key] = strategy
    return strategy


_CUSTOM: weakref.WeakKeyDictionary[object, Strategy] = weakref.WeakKeyDictionary()


def _custom_strategy(info: ResourceInfo) -> Strategy:
    strategy = _CUSTOM.get(info.custom)
    if strategy is None or strategy.info is not info:
        strategy = _CUSTOM[info.custom] = Strategy(info, True, _METADATA_FIELDS + info.custom.selectable_fields)
    return strategy
