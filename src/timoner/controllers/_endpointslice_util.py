"""The EndpointSlice reconciler's arithmetic: from a Service, its pods and its slices to a plan of writes.

`plan_slices` is upstream's `Reconciler.Reconcile` (k8s.io/endpointslice,
1.32) without the I/O, over a read-only snapshot:

1. Per address type the Service has (`spec.ipFamilies`; slices of another
   type are deleted), each pod to publish (not finished, with an IP;
   terminating pods too) becomes an endpoint: its IPs of that family,
   conditions `serving` (Ready), `terminating` (being deleted) and `ready`
   (serving and not terminating, or always with `publishNotReadyAddresses`),
   `nodeName`, `zone` (the node's `topology.kubernetes.io/zone`),
   `targetRef`, and `hostname` when the pod's subdomain is the Service's
   name. A pod whose node is unknown is left out (and reported, so the
   sync is retried) unless the Service publishes not-ready addresses.
2. Endpoints are grouped by the ports they resolve to (a named target port
   may differ per pod, or be missing from one): each group gets its own
   slices, at most `max_endpoints_per_slice` endpoints each.
3. Existing slices are changed as little as possible (upstream's
   reconcileByPortMapping): endpoints that no longer exist are removed and
   changed ones replaced in place; slices that changed anyway are filled
   up first (fullest first); what remains goes into the one unchanged slice
   it fits best, else into new slices; a slice left empty is deleted.
   An endpoint is identified by its addresses, hostname and pod.
4. A Service with no endpoints keeps one empty placeholder slice.
5. Creates are turned into updates of slices that would otherwise be
   deleted (upstream's finalize), so churn reuses names.

Slices are named `<service>-` plus a suffix the server generates, carry the
Service's labels plus `kubernetes.io/service-name`,
`endpointslice.kubernetes.io/managed-by` (and
`service.kubernetes.io/headless` without a ClusterIP), and a controller
ownerReference to the Service that blocks its deletion until they are gone.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._endpoints_util import (
    HEADLESS_LABEL,
    find_port,
    is_ipv6,
    is_service_ip_set,
    pod_ips,
    should_pod_be_in_endpoints,
    should_set_hostname,
)
from ._pods import is_ready

__all__ = [
    "CONTROLLER_NAME",
    "LABEL_MANAGED_BY",
    "LABEL_SERVICE_NAME",
    "MAX_ENDPOINTS_PER_SLICE",
    "SliceLabels",
    "SlicePlan",
    "address_types_for_service",
    "endpoint_ports",
    "endpoints_equal_beyond_hash",
    "new_endpoint_slice",
    "owned_by",
    "plan_slices",
    "pod_to_endpoint",
    "slice_labels",
]

Obj = dict[str, Any]

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_ZONE = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
_RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, HEADLESS_LABEL)


# -- one endpoint ----------------------------------------------------------------------------------


def address_types_for_service(service: Obj) -> list[str]:
    """The address types the Service's slices have: one per IP family (upstream's getAddressTypesForService).

    Without `ipFamilies` (a server that does not default them): the
    ClusterIP's family, and both for a headless Service.
    """
    spec = service.get("spec") or {}
    types = [{"IPv4": "IPv4", "IPv6": "IPv6"}[f] for f in spec.get("ipFamilies") or () if f in ("IPv4", "IPv6")]
    if types:
        return sorted(set(types))
    if is_service_ip_set(service):
        return ["IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"]
    return ["IPv4", "IPv6"]


def pod_to_endpoint(pod: Obj, node: Obj | None, service: Obj, address_type: str) -> Obj:
    """The pod as an endpoint of the Service (upstream's podToEndpoint); no addresses if it has no such IP."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    serving = is_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    # A terminating pod is never "ready", unless the Service publishes everything.
    ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    endpoint: Obj = {
        "addresses": [ip for ip in pod_ips(pod) if is_ipv6(ip) == (address_type == "IPv6")],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"], "uid": meta.get("uid")},
    }
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    zone = (((node or {}).get("metadata") or {}).get("labels") or {}).get(LABEL_ZONE)
    if zone:
        endpoint["zone"] = zone
    if should_set_hostname(pod, service):
        endpoint["hostname"] = spec["hostname"]
    return endpoint


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    """The Service's ports as this pod serves them (upstream's getEndpointPorts); a named port it lacks is left out."""
    spec = service.get("spec") or {}
    out = []
    for service_port in spec.get("ports") or ():
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: Obj = {"name": service_port.get("name") or "", "port": number,
                     "protocol": service_port.get("protocol") or "TCP"}
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        out.append(port)
    return out


def _port_map_key(ports: Iterable[Obj] | None) -> str:
    """Which group of slices a set of ports belongs to: the same ports in any order."""
    normal = sorted((p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP",
                     p.get("appProtocol") or "") for p in ports or ())
    return json.dumps(normal)


def _endpoint_hash(endpoint: Obj) -> tuple:
    # Only what identifies an endpoint, so conditions or topology change in place.
    ref = endpoint.get("targetRef") or {}
    return (tuple(sorted(endpoint.get("addresses") or ())), endpoint.get("hostname") or "",
            ref.get("namespace") or "", ref.get("name") or "")


def _ref_without_version(ref: Obj | None) -> Obj:
    return {k: v for k, v in (ref or {}).items() if k != "resourceVersion" and v not in (None, "")}


def endpoints_equal_beyond_hash(a: Obj, b: Obj) -> bool:
    """Upstream's EndpointsEqualBeyondHash: node, zone, the three conditions and the pod reference agree."""
    if a.get("nodeName") != b.get("nodeName") or a.get("zone") != b.get("zone"):
        return False
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    if any(ca.get(name) != cb.get(name) for name in ("ready", "serving", "terminating")):
        return False
    return _ref_without_version(a.get("targetRef")) == _ref_without_version(b.get("targetRef"))


# -- one slice --------------------------------------------------------------------------------------


def owned_by(endpoint_slice: Obj, service: Obj) -> bool:
    uid = service["metadata"].get("uid")
    return any(ref.get("uid") == uid and ref.get("kind") == "Service" and ref.get("apiVersion") == "v1"
               for ref in (endpoint_slice.get("metadata") or {}).get("ownerReferences") or ())


@dataclass(frozen=True, slots=True)
class SliceLabels:
    """The labels a slice should carry, and whether its Service-derived ones differ from what it has."""

    labels: dict[str, str]
    changed: bool


def slice_labels(endpoint_slice: Obj, service: Obj, controller_name: str = CONTROLLER_NAME) -> SliceLabels:
    """Upstream's setEndpointSliceLabels: the Service's labels (not the reserved keys) plus the reserved ones."""
    current = {k: v for k, v in ((endpoint_slice.get("metadata") or {}).get("labels") or {}).items()
               if k not in _RESERVED_LABELS}
    wanted = {k: v for k, v in ((service.get("metadata") or {}).get("labels") or {}).items()
              if k not in _RESERVED_LABELS}
    changed = current != wanted
    if not is_service_ip_set(service):
        wanted[HEADLESS_LABEL] = ""
    wanted[LABEL_SERVICE_NAME] = service["metadata"]["name"]
    wanted[LABEL_MANAGED_BY] = controller_name
    return SliceLabels(wanted, changed)


def new_endpoint_slice(service: Obj, ports: list[Obj], address_type: str,
                       controller_name: str = CONTROLLER_NAME) -> Obj:
    """An empty slice for the Service, named by the server (`<service>-<suffix>`)."""
    meta = service["metadata"]
    owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid"),
             "controller": True, "blockOwnerDeletion": True}
    endpoint_slice: Obj = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"generateName": f"{meta['name']}-", "namespace": meta.get("namespace"),
                     "ownerReferences": [owner]},
        "addressType": address_type, "ports": copy.deepcopy(ports), "endpoints": [],
    }
    endpoint_slice["metadata"]["labels"] = slice_labels(endpoint_slice, service, controller_name).labels
    return endpoint_slice


def _is_placeholder_of(endpoint_slice: Obj, placeholder: Obj, service: Obj) -> bool:
    """An existing empty slice that would be replaced by an identical placeholder (same labels, type, no ports)."""
    meta = endpoint_slice.get("metadata") or {}
    return (owned_by(endpoint_slice, service)
            and meta.get("namespace") == placeholder["metadata"]["namespace"]
            and (meta.get("labels") or {}) == placeholder["metadata"]["labels"]
            and endpoint_slice.get("addressType") == placeholder["addressType"]
            and not endpoint_slice.get("ports") and not endpoint_slice.get("endpoints"))


# -- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """The writes that bring a Service's slices to the desired state, and what could not be included (errors)."""

    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _by_port_mapping(service: Obj, existing: list[Obj], desired: dict[tuple, Obj], ports: list[Obj],
                     address_type: str, max_endpoints: int, controller_name: str) -> SlicePlan:
    """Upstream's reconcileByPortMapping for one group of ports (`desired` is consumed)."""
    by_name: dict[str, Obj] = {}
    unchanged: dict[str, None] = {}  # insertion-ordered sets
    to_update: dict[str, None] = {}
    to_delete: dict[str, None] = {}

    # 1. Drop endpoints no longer desired, refresh changed ones, and follow the Service's labels.
    for endpoint_slice in existing:
        name = endpoint_slice["metadata"]["name"]
        by_name[name] = endpoint_slice
        kept: list[Obj] = []
        updated = False
        for endpoint in endpoint_slice.get("endpoints") or ():
            got = desired.pop(_endpoint_hash(endpoint), None)
            if got is not None:
                kept.append(got)
                updated = updated or not endpoints_equal_beyond_hash(got, endpoint)
        labels = slice_labels(endpoint_slice, service, controller_name)
        if updated or len(endpoint_slice.get("endpoints") or ()) != len(kept):
            if not kept:
                to_delete[name] = None
            else:
                changed = copy.deepcopy(endpoint_slice)
                changed["endpoints"] = kept
                changed["metadata"]["labels"] = labels.labels
                by_name[name] = changed
                to_update[name] = None
        elif labels.changed:
            changed = copy.deepcopy(endpoint_slice)
            changed["endpoints"] = list(changed.get("endpoints") or ())
            changed["metadata"]["labels"] = labels.labels
            by_name[name] = changed
            to_update[name] = None
        else:
            unchanged[name] = None

    def pop_into(endpoint_slice: Obj) -> None:
        while desired and len(endpoint_slice["endpoints"]) < max_endpoints:
            endpoint_slice["endpoints"].append(desired.pop(next(iter(desired))))

    # 2. Fill up the slices that are being written anyway, fullest first.
    if desired and to_update:
        for endpoint_slice in sorted((by_name[n] for n in to_update), key=lambda s: -len(s["endpoints"])):
            pop_into(endpoint_slice)

    # 3. The rest: into the unchanged slice it fits best, else into new slices.
    to_create: list[Obj] = []
    while desired:
        fill: Obj | None = None
        if len(desired) < max_endpoints and unchanged:
            fill = _slice_to_fill([by_name[n] for n in unchanged], len(desired), max_endpoints)
        if fill is None:
            fill = new_endpoint_slice(service, ports, address_type, controller_name)
        else:
            fill = copy.deepcopy(fill)
            fill["endpoints"] = list(fill.get("endpoints") or ())
            by_name[fill["metadata"]["name"]] = fill
        pop_into(fill)
        if fill["metadata"].get("name"):
            to_update[fill["metadata"]["name"]] = None
            unchanged.pop(fill["metadata"]["name"], None)
        else:
            to_create.append(fill)
    return SlicePlan(to_create, [by_name[n] for n in to_update], [by_name[n] for n in to_delete])


def _slice_to_fill(slices: list[Obj], count: int, max_endpoints: int) -> Obj | None:
    """The slice that ends up closest to full with `count` more endpoints (upstream's getSliceToFill)."""
    closest_diff, closest = max_endpoints, None
    for endpoint_slice in slices:
        diff = max_endpoints - (count + len(endpoint_slice.get("endpoints") or ()))
        if 0 <= diff < closest_diff:
            closest_diff, closest = diff, endpoint_slice
            if diff == 0:
                break
    return closest


def _plan_address_type(service: Obj, pods: Iterable[Obj], existing: list[Obj], address_type: str, *,
                       node_of: Callable[[str], Obj | None], max_endpoints: int, controller_name: str
                       ) -> SlicePlan:
    create: list[Obj] = []
    update: list[Obj] = []
    delete: list[Obj] = []
    errors: list[str] = []
    meta = service["metadata"]
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))

    existing_by_ports: dict[str, list[Obj]] = {}
    for endpoint_slice in existing:
        if owned_by(endpoint_slice, service):
            existing_by_ports.setdefault(_port_map_key(endpoint_slice.get("ports")), []).append(endpoint_slice)
        else:
            delete.append(endpoint_slice)  # left by an earlier Service of the same name

    desired_ports: dict[str, list[Obj]] = {}
    desired: dict[str, dict[tuple, Obj]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(service, pod)
        key = _port_map_key(ports)
        desired.setdefault(key, {})
        desired_ports.setdefault(key, ports)
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        node = node_of(node_name)
        if node is None and not publish_not_ready:
            # Retried later; meanwhile the slices are written without this pod.
            errors.append(f"skipping Pod {pod['metadata']['name']} for Service {meta.get('namespace')}/"
                          f"{meta['name']}: Node {node_name} Not Found")
            continue
        endpoint = pod_to_endpoint(pod, node, service, address_type)
        if endpoint["addresses"]:
            desired[key][_endpoint_hash(endpoint)] = endpoint

    for key, endpoints in desired.items():
        part = _by_port_mapping(service, existing_by_ports.get(key, []), endpoints, desired_ports[key],
                                address_type, max_endpoints, controller_name)
        create += part.create
        update += part.update
        delete += part.delete
    for key, slices in existing_by_ports.items():
        if key not in desired:
            delete += slices  # nobody serves these ports any more

    # A Service without endpoints keeps one empty placeholder slice.
    if len(existing) == len(delete) and not create:
        placeholder = new_endpoint_slice(service, [], address_type, controller_name)
        if len(delete) == 1 and _is_placeholder_of(delete[0], placeholder, service):
            delete = []
        else:
            create.append(placeholder)

    # Creates become updates of slices about to be deleted (same type, same Service): fewer writes, stable names.
    i = 0
    while i < len(delete) and create:
        doomed = delete[i]
        if doomed.get("addressType") == create[-1]["addressType"] and owned_by(doomed, service):
            reused = create.pop()
            reused["metadata"]["name"] = doomed["metadata"]["name"]
            update.append(reused)
            delete.pop(i)
        else:
            i += 1
    return SlicePlan(create, update, delete, errors)


def plan_slices(service: Obj, pods: Iterable[Obj], existing: Iterable[Obj], *, node_of: Callable[[str], Obj | None],
                max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
                controller_name: str = CONTROLLER_NAME) -> SlicePlan:
    """The creates, updates and deletes that make `existing` (this controller's slices of the Service) right.

    `pods` are those the Service selects; `node_of(name)` is the cached Node
    or None. See the module docstring for the rules.
    """
    pods = list(pods)
    supported = address_types_for_service(service)
    by_type: dict[str, list[Obj]] = {}
    other_types: list[Obj] = []
    for endpoint_slice in existing:
        if endpoint_slice.get("addressType") in supported:
            by_type.setdefault(endpoint_slice["addressType"], []).append(endpoint_slice)
        else:
            other_types.append(endpoint_slice)
    plan = SlicePlan()
    for address_type in supported:
        part = _plan_address_type(service, pods, by_type.get(address_type, []), address_type, node_of=node_of,
                                  max_endpoints=max_endpoints_per_slice, controller_name=controller_name)
        plan.create.extend(part.create)
        plan.update.extend(part.update)
        plan.delete.extend(part.delete)
        plan.errors.extend(part.errors)
    plan.delete.extend(other_types)
    return plan
