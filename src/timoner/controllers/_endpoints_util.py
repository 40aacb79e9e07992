"""What the Endpoints and EndpointSlice controllers share, as upstream's `k8s.io/endpointslice/util` states it.

- Which pods a Service publishes (`should_pod_be_in_endpoints`: not
  finished, with an IP, terminating ones only when asked), on which port
  (`find_port`: a number, or a named container port of the same protocol,
  sidecar init containers included, looked up per pod), and with which
  hostname (`should_set_hostname`: the pod's `hostname` when its
  `subdomain` is the Service's name).
- Which Services a pod change concerns (`services_for_pod_change`, upstream's
  GetServicesToUpdateOnPodChange): updates that change neither labels,
  hostname, readiness, deletion nor IPs concern none, so status heartbeats
  cost nothing. `pod_change_requests` turns an informer's pod change into
  the requests for those Services, for both controllers' pod handlers.
- `TriggerTimeTracker`: the `endpoints.kubernetes.io/last-change-trigger-time`
  annotation, the earliest pod Ready transition (or Service creation) that
  the sync being written is the first to reflect.

A Service selects pods by the plain label map `spec.selector`; a missing or
empty one selects nothing (the API's storage drops an empty map, so
upstream sees none), and such Services' endpoints are managed by hand.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from timoner.client import Lister

from ._framework import Change, Request
from ._pods import is_ready, parse_time, ready_condition

__all__ = [
    "HEADLESS_LABEL",
    "LAST_CHANGE_TRIGGER_TIME",
    "PodChange",
    "TriggerTimeTracker",
    "find_port",
    "format_trigger_time",
    "is_ipv6",
    "is_service_ip_set",
    "pod_change_requests",
    "pod_endpoints_changed",
    "pod_ips",
    "selector_matches",
    "service_selector",
    "services_for_pod_change",
    "should_pod_be_in_endpoints",
    "should_set_hostname",
]

Obj = dict[str, Any]

LAST_CHANGE_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def service_selector(service: Mapping[str, Any]) -> dict[str, str] | None:
    """The Service's pod selector, or None when it has none (its endpoints are not the controllers' business)."""
    selector = (service.get("spec") or {}).get("selector")
    return dict(selector) if selector else None


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    """Whether a Service's label map selects these pod labels (every key present with its value)."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def is_service_ip_set(service: Mapping[str, Any]) -> bool:
    """A ClusterIP that is neither empty nor `None` (headless)."""
    cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
    return cluster_ip not in ("", "None")


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    """`status.podIPs`, or `status.podIP` alone for a status that carries only that."""
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or () if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False


def should_pod_be_in_endpoints(pod: Mapping[str, Any], include_terminating: bool) -> bool:
    """Not Succeeded or Failed, has an IP, and is not being deleted unless `include_terminating`."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return include_terminating or not (pod.get("metadata") or {}).get("deletionTimestamp")


def should_set_hostname(pod: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """A pod with a `hostname` whose `subdomain` names this Service (in its namespace) is published by name."""
    spec = pod.get("spec") or {}
    return (bool(spec.get("hostname")) and spec.get("subdomain") == service["metadata"]["name"]
            and (pod.get("metadata") or {}).get("namespace") == service["metadata"].get("namespace"))


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod's port for a Service port (upstream's FindPort), or None when the pod lacks the named port.

    An integer `targetPort` (or none: the port itself) is taken as is; a
    string names a container port with the same protocol, in the containers
    and then in the sidecars (init containers with `restartPolicy: Always`).
    """
    target = service_port.get("targetPort")
    if target is None:
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or ()), *sidecars]:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


# -- which Services a pod change concerns ----------------------------------------------------------


def _deletion(pod: Mapping[str, Any]) -> Any:
    return (pod.get("metadata") or {}).get("deletionTimestamp")


@dataclass(frozen=True, slots=True)
class PodChange:
    """Whether a pod update may change its endpoints (`endpoints`) and the Services it belongs to (`labels`)."""

    endpoints: bool
    labels: bool


def pod_endpoints_changed(old: Obj, new: Obj) -> PodChange:
    """Upstream's podEndpointsChanged: labels, hostname or subdomain; deletion, readiness or IPs."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    labels = ((old_meta.get("labels") or {}) != (new_meta.get("labels") or {})
              or old_spec.get("hostname") != new_spec.get("hostname")
              or old_spec.get("subdomain") != new_spec.get("subdomain"))
    endpoints = (_deletion(old) != _deletion(new) or is_ready(old) != is_ready(new)
                 or pod_ips(old) != pod_ips(new))
    return PodChange(endpoints, labels)


def _selecting(services: Iterable[Mapping[str, Any]], labels: Mapping[str, str] | None) -> list[str]:
    names = []
    for service in services:
        selector = service_selector(service)
        if selector is not None and selector_matches(selector, labels):
            names.append(service["metadata"]["name"])
    return names


def services_for_pod_change(services: Iterable[Obj], old: Obj | None, new: Obj | None) -> list[str]:
    """The names of the Services (of the pod's namespace) to sync after this add, update or delete of a pod."""
    services = list(services)
    if old is None or new is None:
        pod = new if new is not None else old
        return _selecting(services, ((pod or {}).get("metadata") or {}).get("labels"))
    old_rv = (old.get("metadata") or {}).get("resourceVersion")
    if old_rv is not None and old_rv == (new.get("metadata") or {}).get("resourceVersion"):
        return []
    change = pod_endpoints_changed(old, new)
    now = _selecting(services, (new.get("metadata") or {}).get("labels"))
    if not change.labels:
        return now if change.endpoints else []
    before = _selecting(services, (old.get("metadata") or {}).get("labels"))
    if change.endpoints:
        return sorted(set(now) | set(before))
    # Only the labels (or hostname) moved: Services that selected the pod before and still do see nothing new.
    return sorted(set(now) ^ set(before))


def pod_change_requests(services: Lister, change: Change) -> list[Request]:
    """The requests for the Services (from `services`, their lister) that an informer's pod change concerns."""
    pod = change.obj
    namespace = (pod.get("metadata") or {}).get("namespace") or ""
    in_namespace = services.list(namespace)
    if change.type == "add":
        names = services_for_pod_change(in_namespace, None, pod)
    elif change.type == "delete":
        names = services_for_pod_change(in_namespace, pod, None)
    else:
        names = services_for_pod_change(in_namespace, change.old, pod)
    return [Request(namespace, name) for name in names]


# -- the last-change-trigger-time annotation --------------------------------------------------------


def format_trigger_time(when: float) -> str:
    """RFC 3339 with nanoseconds as Go prints them (trailing zeros, and a bare point, dropped)."""
    stamp = dt.datetime.fromtimestamp(when, dt.UTC)
    fraction = f"{stamp.microsecond:06d}".rstrip("0")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


@dataclass(slots=True)
class _ServiceState:
    service_time: float | None = None
    pod_times: dict[str, float] = field(default_factory=dict)


class TriggerTimeTracker:
    """Upstream's TriggerTimeTracker: when the change that a sync writes out first happened.

    Per Service it remembers the pods' Ready transition times and the
    Service's creation time seen at the previous sync. A sync reports the
    earliest of those that moved since; the first sync of a Service reports
    its creation time; None means nothing new (the annotation is dropped).
    Called once per sync, never concurrently for one Service (the work
    queue sees to that).
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _ServiceState] = {}

    def compute(self, service: Obj, pods: Iterable[Obj]) -> float | None:
        meta = service["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        state = self._states.get(key)
        known = state is not None
        state = state or _ServiceState()
        earliest: float | None = None
        pod_times: dict[str, float] = {}
        for pod in pods:
            when = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
            if when is None:
                continue
            name = pod["metadata"]["name"]
            pod_times[name] = when
            previous = state.pod_times.get(name)
            if (previous is None or when > previous) and (earliest is None or when < earliest):
                earliest = when
        created = parse_time(meta.get("creationTimestamp"))
        if created is not None and (state.service_time is None or created > state.service_time):
            if earliest is None or created < earliest:
                earliest = created
        self._states[key] = _ServiceState(created, pod_times)
        if not known:
            return created
        return earliest

    def delete_service(self, namespace: str, name: str) -> None:
        self._states.pop((namespace, name), None)
