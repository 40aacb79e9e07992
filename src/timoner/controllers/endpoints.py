"""The Endpoints controller: a core/v1 Endpoints, named after it, for every Service with a selector.

One sync of a Service, as upstream's `syncService` (1.32):

1. Gone: delete the Endpoints of its name. ExternalName, or no selector:
   nothing (those Endpoints are written by hand).
2. The pods its selector matches in its namespace that should be published
   (`_endpoints_util.should_pod_be_in_endpoints`: terminating pods only
   with `publishNotReadyAddresses`) become addresses: the pod IP of the
   Service's first IP family, `nodeName`, a `targetRef` to the pod, and
   `hostname` when the pod's subdomain is the Service's name. Ready pods
   (all of them with `publishNotReadyAddresses`) go to `addresses`, the
   others to `notReadyAddresses`, once per Service port whose target port
   the pod has (a named `targetPort` is looked up in each pod's container
   ports, so two pods may serve it on different numbers; a pod without
   it is left out of that port). A headless Service without ports
   publishes addresses without ports.
3. The subsets are repacked as upstream's `RepackSubsets`: each address
   (IP and pod) is listed once per distinct set of ports it offers, and
   addresses offering the same ports, with the same readiness, share a
   subset.
4. The Endpoints get the Service's labels (plus
   `service.kubernetes.io/headless` without a ClusterIP), the
   `endpoints.kubernetes.io/last-change-trigger-time` annotation, and, past
   1000 addresses, are truncated (ready ones kept first, proportionally
   per subset) with `endpoints.kubernetes.io/over-capacity: truncated`.
   Nothing is written when subsets, labels and that annotation already
   agree. A failed write is an Event (FailedToCreateEndpoint,
   FailedToUpdateEndpoint) on the Endpoints, and the sync is retried.

A pod change requeues the Services it concerns (label, readiness, deletion
and IP changes only). Deleting an Endpoints requeues its Service; at start,
every Endpoints is looked at once, so one whose Service went while no
manager ran is deleted (except leader-election records).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable
from typing import Any

from timoner.api.errors import APIError, Forbidden, NotFound
from timoner.api.selectors import label_selector_from_dict
from timoner.client import Client, EventRecorder, Informer, resource_for

from ._endpoints_util import (
    HEADLESS_LABEL,
    LAST_CHANGE_TRIGGER_TIME,
    TriggerTimeTracker,
    find_port,
    format_trigger_time,
    is_ipv6,
    is_service_ip_set,
    pod_change_requests,
    pod_ips,
    service_selector,
    should_pod_be_in_endpoints,
    should_set_hostname,
)
from ._framework import Change, Controller, Request, Result, SharedInformers
from ._pods import is_ready

__all__ = [
    "MAX_CAPACITY",
    "OVER_CAPACITY",
    "EndpointsReconciler",
    "desired_subsets",
    "endpoint_address",
    "new_endpoints_controller",
    "repack_subsets",
    "subsets_equal",
    "truncate_subsets",
]

log = logging.getLogger("timoner.controllers.endpoints")

Obj = dict[str, Any]

ENDPOINTS = resource_for("v1", "Endpoints")
SERVICES = resource_for("v1", "Service")
PODS = resource_for("v1", "Pod")

COMPONENT = "endpoint-controller"
MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
TRUNCATED = "truncated"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


# -- the desired subsets (pure) ---------------------------------------------------------------------


def endpoint_address(service: Obj, pod: Obj) -> Obj | None:
    """The pod as an address of the Service (upstream's podToEndpointAddressForService), None without a fitting IP.

    The IP is the pod's of the Service's first IP family (from the ClusterIP,
    or for a headless Service without families from the pod's own IP).
    """
    spec = service.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        want_v6 = families[0] == "IPv6"
    elif is_service_ip_set(service):
        want_v6 = is_ipv6(spec["clusterIP"])
    else:
        want_v6 = is_ipv6((pod.get("status") or {}).get("podIP") or "")
    ip = next((ip for ip in pod_ips(pod) if is_ipv6(ip) == want_v6), None)
    if ip is None:
        return None
    meta, pod_spec = pod["metadata"], pod.get("spec") or {}
    address: Obj = {"ip": ip}
    if should_set_hostname(pod, service):
        address["hostname"] = pod_spec["hostname"]
    if pod_spec.get("nodeName"):
        address["nodeName"] = pod_spec["nodeName"]
    address["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
                            "uid": meta.get("uid")}
    return address


def endpoint_port(service_port: Obj, number: int) -> Obj:
    port: Obj = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def desired_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The repacked subsets the Service's Endpoints should hold for these (selected) pods, untruncated."""
    spec = service.get("spec") or {}
    tolerate_unready = bool(spec.get("publishNotReadyAddresses"))
    ports = spec.get("ports") or []
    subsets: list[Obj] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, tolerate_unready):
            continue
        address = endpoint_address(service, pod)
        if address is None:
            log.debug("endpoints: pod %s has no IP of service %s's family", pod["metadata"]["name"],
                      service["metadata"]["name"])
            continue
        which = "addresses" if tolerate_unready or is_ready(pod) else "notReadyAddresses"
        if not ports:
            if spec.get("clusterIP") == "None":  # a headless Service may have no ports
                subsets.append({which: [address]})
            continue
        for service_port in ports:
            number = find_port(pod, service_port)
            if number is None:
                continue  # this pod does not serve that port
            subsets.append({which: [address], "ports": [endpoint_port(service_port, number)]})
    return repack_subsets(subsets)


def _address_key(address: Obj) -> tuple[str, str]:
    # An IP alone does not identify an address: two pods may share one (hostNetwork).
    return address.get("ip", ""), (address.get("targetRef") or {}).get("uid") or ""


def _port_key(port: Obj) -> tuple[str, int, str, str]:
    return port.get("name") or "", int(port.get("port") or 0), port.get("protocol") or "TCP", \
        port.get("appProtocol") or ""


def repack_subsets(subsets: Iterable[Obj]) -> list[Obj]:
    """Upstream's RepackSubsets: one subset per distinct set of (address, readiness) serving the same ports.

    An address listed not ready for a port anywhere is not ready for it.
    The result is sorted (addresses by IP and pod, ports and subsets by
    content) so that equal inputs give equal outputs.
    """
    addresses: dict[tuple[str, str], Obj] = {}
    ports: dict[tuple | None, Obj | None] = {}
    readiness_by_port: dict[tuple | None, dict[tuple[str, str], bool]] = {}
    for subset in subsets:
        for port in subset.get("ports") or [None]:  # None: the port-less sentinel
            port_key = _port_key(port) if port is not None else None
            ports.setdefault(port_key, port)
            readiness = readiness_by_port.setdefault(port_key, {})
            for field, ready in (("addresses", True), ("notReadyAddresses", False)):
                for address in subset.get(field) or ():
                    key = _address_key(address)
                    addresses.setdefault(key, address)
                    if readiness.get(key, True):  # not ready trumps ready
                        readiness[key] = ready
    groups: dict[tuple, list[Obj]] = {}
    for port_key, readiness in readiness_by_port.items():
        members = groups.setdefault(tuple(sorted(readiness.items())), [])
        port = ports[port_key]
        if port is not None:
            members.append(port)
    final = []
    for members_key, group_ports in groups.items():
        subset: Obj = {}
        ready = [copy.deepcopy(addresses[key]) for key, is_ready_ in members_key if is_ready_]
        not_ready = [copy.deepcopy(addresses[key]) for key, is_ready_ in members_key if not is_ready_]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if group_ports:
            subset["ports"] = sorted(group_ports, key=_port_key)
        final.append(subset)
    return sorted(final, key=_subset_order)


def _subset_order(subset: Obj) -> tuple:
    return ([_port_key(p) for p in subset.get("ports") or ()],
            [_address_key(a) for a in subset.get("addresses") or ()],
            [_address_key(a) for a in subset.get("notReadyAddresses") or ()])


def address_count(subsets: Iterable[Obj]) -> int:
    return sum(len(s.get("addresses") or ()) + len(s.get("notReadyAddresses") or ()) for s in subsets)


def truncate_subsets(subsets: list[Obj], capacity: int = MAX_CAPACITY) -> list[Obj]:
    """At most `capacity` addresses, as upstream's truncateEndpoints; `subsets` itself when it fits.

    Ready addresses are kept before not-ready ones; what must go is taken
    from each subset in proportion to its size (rounded up, so the last
    subsets may give up more). Subsets left empty are dropped.
    """
    total_ready = sum(len(s.get("addresses") or ()) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in subsets)
    if total_ready + total_not_ready <= capacity:
        return subsets
    truncate_ready = total_ready > capacity
    limit, total = (capacity, total_ready) if truncate_ready else (capacity - total_ready, total_not_ready)
    room = limit
    out = []
    for subset in subsets:
        subset = dict(subset)
        field = "addresses" if truncate_ready else "notReadyAddresses"
        take = min(math.ceil(len(subset.get(field) or ()) / total * limit), room)
        subset[field] = list(subset.get(field) or ())[:take]
        room -= len(subset[field])
        if truncate_ready:
            subset["notReadyAddresses"] = []
        subset = {k: v for k, v in subset.items() if v}
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            out.append(subset)
    return out


def _normalized(value: Any) -> Any:
    """For comparisons: no empty fields, and no resourceVersion in a targetRef (a pod's changes don't matter)."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()
                if v not in (None, "", [], {}) and not (k == "resourceVersion" and "uid" in value)}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def subsets_equal(a: Iterable[Obj] | None, b: Iterable[Obj] | None) -> bool:
    """Upstream's endpointSubsetsEqualIgnoreResourceVersion."""
    return _normalized(list(a or ())) == _normalized(list(b or ()))


def _capacity_annotation_set_correctly(annotations: dict[str, str], subsets: list[Obj]) -> bool:
    if address_count(subsets) > MAX_CAPACITY:
        return False
    return OVER_CAPACITY not in annotations


# -- the controller ---------------------------------------------------------------------------------


class EndpointsReconciler:
    """Writes the Endpoints of Services with selectors; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.services: Informer = informers.get(SERVICES)
        self.pods: Informer = informers.get(PODS)
        self.endpoints: Informer = informers.get(ENDPOINTS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.trigger_times = TriggerTimeTracker()
        # resourceVersions this controller replaced ("" for one it created): a cache still showing one is stale.
        self._outdated: dict[tuple[str, str], str] = {}

    # -- informer changes to requests --------------------------------------------------------

    def on_pod(self, change: Change) -> list[Request]:
        return pod_change_requests(self.services.lister, change)

    def on_endpoints(self, change: Change) -> list[Request]:
        """A deleted Endpoints, and at start every Endpoints (leftovers whose Service is gone are deleted)."""
        meta = change.obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name", ""))
        if key in self._outdated and meta.get("resourceVersion") != self._outdated[key]:
            del self._outdated[key]  # the cache has moved past what our last write replaced
        if change.type == "delete":
            return [Request.of(change.obj)]
        if change.type == "add" and not self.endpoints.has_synced.is_set():
            if LEADER_ANNOTATION in (meta.get("annotations") or {}):
                return []
            return [Request.of(change.obj)]
        return []

    # -- one sync -----------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        namespace, name = request.namespace, request.name
        key = (namespace, name)
        service = self.services.lister.get(namespace, name)
        if service is None:
            try:
                await self.client.delete(ENDPOINTS, name, namespace=namespace)
                log.info("endpoints: deleted %s/%s, its service is gone", namespace, name)
            except NotFound:
                pass
            self.trigger_times.delete_service(namespace, name)
            self._outdated.pop(key, None)
            return Result()
        spec = service.get("spec") or {}
        selector = service_selector(service)
        if spec.get("type") == "ExternalName" or selector is None:
            return Result()

        pods = self.pods.lister.list(namespace, label_selector_from_dict({"matchLabels": selector}))
        # Computed on every sync, written or not, so the tracker always holds what the last sync saw.
        trigger_time = self.trigger_times.compute(service, pods)
        subsets = desired_subsets(service, pods)

        current = self.endpoints.lister.get(namespace, name)
        outdated = self._outdated.get(key)
        if outdated is not None:
            seen = (current or {}).get("metadata", {}).get("resourceVersion")
            if (current is None and outdated == "") or (current is not None and seen == outdated):
                log.debug("endpoints: the cache has not caught up with our write of %s/%s yet", namespace, name)
                return Result(requeue=True)
            del self._outdated[key]

        service_labels = dict((service.get("metadata") or {}).get("labels") or {})
        if current is not None:
            current_meta = current.get("metadata") or {}
            current_labels = {k: v for k, v in (current_meta.get("labels") or {}).items() if k != HEADLESS_LABEL}
            if (subsets_equal(current.get("subsets"), subsets) and current_labels == service_labels
                    and _capacity_annotation_set_correctly(current_meta.get("annotations") or {},
                                                           current.get("subsets") or [])):
                return Result()
            new = copy.deepcopy(current)
        else:
            new = {"metadata": {"name": name, "namespace": namespace}}
        new.update({"apiVersion": "v1", "kind": "Endpoints"})
        meta = new["metadata"]
        annotations = meta["annotations"] = dict(meta.get("annotations") or {})
        if trigger_time is not None:
            annotations[LAST_CHANGE_TRIGGER_TIME] = format_trigger_time(trigger_time)
        else:
            annotations.pop(LAST_CHANGE_TRIGGER_TIME, None)
        truncated = truncate_subsets(subsets)
        if truncated is not subsets:
            annotations[OVER_CAPACITY] = TRUNCATED
        else:
            annotations.pop(OVER_CAPACITY, None)
        if not annotations:
            del meta["annotations"]
        labels = dict(service_labels)
        if not is_service_ip_set(service):
            labels[HEADLESS_LABEL] = ""
        meta["labels"] = labels
        new["subsets"] = truncated
        return await self._write(service, new, create=current is None, previous=current)

    async def _write(self, service: Obj, endpoints: Obj, *, create: bool, previous: Obj | None) -> Result:
        namespace, name = endpoints["metadata"]["namespace"], endpoints["metadata"]["name"]
        try:
            if create:
                await self.client.create(ENDPOINTS, endpoints, namespace=namespace)
                self._outdated[(namespace, name)] = ""
            else:
                written = await self.client.update(ENDPOINTS, endpoints, namespace=namespace)
                old_rv = ((previous or {}).get("metadata") or {}).get("resourceVersion")
                if old_rv and written["metadata"].get("resourceVersion") != old_rv:
                    self._outdated[(namespace, name)] = old_rv
        except APIError as exc:
            if create and isinstance(exc, Forbidden) and any(c.reason == "NamespaceTerminating" for c in exc.causes):
                return Result()  # the namespace is going; so is the Service
            if create:
                await self.recorder.event(endpoints, "Warning", "FailedToCreateEndpoint",
                                          f"Failed to create endpoint for service {namespace}/{name}: {exc}")
            else:
                await self.recorder.event(endpoints, "Warning", "FailedToUpdateEndpoint",
                                          f"Failed to update endpoint {namespace}/{name}: {exc}")
            raise
        log.debug("endpoints: %s %s/%s (%d addresses)", "created" if create else "updated", namespace, name,
                  address_count(endpoints["subsets"]))
        return Result()


def new_endpoints_controller(client: Client, informers: SharedInformers, *, workers: int = 5,
                             recorder: EventRecorder | None = None) -> Controller:
    """A Controller that keeps the Endpoints of every Service with a selector (`endpoint` in kube-controller-manager).

    Five workers, as kube-controller-manager's `--concurrent-endpoint-syncs`.
    """
    reconciler = EndpointsReconciler(client, informers, recorder=recorder)
    controller = Controller(COMPONENT, reconciler, workers=workers)
    controller.for_(reconciler.services)
    controller.watches(reconciler.pods, reconciler.on_pod)
    controller.watches(reconciler.endpoints, reconciler.on_endpoints)
    return controller
