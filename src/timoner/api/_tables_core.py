"""Printers for the core/v1 kinds other than pods, after upstream printers.go (v1.32).

Nodes, Namespaces, Services, Endpoints, ConfigMaps, Secrets,
ServiceAccounts, Events (core/v1 and events.k8s.io/v1), PersistentVolumes,
PersistentVolumeClaims and ResourceQuotas, plus discovery's EndpointSlices
and coordination's Leases, whose formatters sit next to their core cousins.

Quantities (capacity, quota usage) print as stored; upstream re-renders them
in canonical form, which matches for every value the API server has
already normalised.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from timoner.api._tables_base import (
    AGE,
    NAME,
    NONE,
    UNKNOWN,
    Column,
    Printer,
    age,
    format_labels,
    integer,
    mapping,
    name_of,
    parse_time,
    seq,
    since,
    text,
)

__all__ = [
    "CONFIG_MAP",
    "ENDPOINTS",
    "ENDPOINT_SLICE",
    "EVENT",
    "EVENT_V1",
    "LEASE",
    "NAMESPACE",
    "NODE",
    "PERSISTENT_VOLUME",
    "PERSISTENT_VOLUME_CLAIM",
    "RESOURCE_QUOTA",
    "SECRET",
    "SERVICE",
    "SERVICE_ACCOUNT",
]

_CORE = "io.k8s.api.core.v1."

# --- Node ---------------------------------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def node_roles(labels: Any) -> list[str]:
    """Roles from `node-role.kubernetes.io/<role>` keys and the legacy `kubernetes.io/role` value, sorted."""
    roles = set()
    for key, value in mapping(labels).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX):]:
            roles.add(key[len(_ROLE_PREFIX):])
        elif key == _ROLE_LABEL and value:
            roles.add(text(value))
    return sorted(roles)


def _node_address(status: Mapping[str, Any], kind: str) -> str:
    for address in seq(status.get("addresses")):
        address = mapping(address)
        if address.get("type") == kind:
            return text(address.get("address"))
    return NONE


def _node_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    ready = None
    for condition in seq(status.get("conditions")):
        condition = mapping(condition)
        if condition.get("type") == "Ready":
            ready = condition  # the last entry of a type wins, as in upstream's map
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if spec.get("unschedulable") is True:
        states.append("SchedulingDisabled")
    info = mapping(status.get("nodeInfo"))
    return [
        name_of(obj),
        ",".join(states),
        ",".join(node_roles(mapping(obj.get("metadata")).get("labels"))) or NONE,
        age(obj, now),
        text(info.get("kubeletVersion")),
        _node_address(status, "InternalIP"),
        _node_address(status, "ExternalIP"),
        text(info.get("osImage")) or UNKNOWN,
        text(info.get("kernelVersion")) or UNKNOWN,
        text(info.get("containerRuntimeVersion")) or UNKNOWN,
    ]


_NODE_INFO = _CORE + "NodeSystemInfo"
NODE = Printer(
    columns=(
        NAME,
        Column("Status", description="The status of the node"),
        Column("Roles", description="The roles of the node"),
        AGE,
        Column("Version", description=(_NODE_INFO, "kubeletVersion")),
        Column("Internal-IP", description=(_CORE + "NodeStatus", "addresses"), priority=1),
        Column("External-IP", description=(_CORE + "NodeStatus", "addresses"), priority=1),
        Column("OS-Image", description=(_NODE_INFO, "osImage"), priority=1),
        Column("Kernel-Version", description=(_NODE_INFO, "kernelVersion"), priority=1),
        Column("Container-Runtime", description=(_NODE_INFO, "containerRuntimeVersion"), priority=1),
    ),
    cells=_node_cells,
)

NAMESPACE = Printer(
    columns=(NAME, Column("Status", description="The status of the namespace"), AGE),
    cells=lambda obj, now: [name_of(obj), text(mapping(obj.get("status")).get("phase")), age(obj, now)],
)


# --- Service, Endpoints, EndpointSlice ------------------------------------------------------------------


def _ingress_points(ingress: Any) -> str:
    """The distinct IPs (else hostnames) of a load balancer's ingress points, sorted.

    Upstream clips this to 16 characters only for narrow output; the API
    server always renders wide, so it is never clipped here.
    """
    points = set()
    for point in seq(ingress):
        point = mapping(point)
        if text(point.get("ip")):
            points.add(text(point.get("ip")))
        elif text(point.get("hostname")):
            points.add(text(point.get("hostname")))
    return ",".join(sorted(points))


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    external = [text(ip) for ip in seq(spec.get("externalIPs"))]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else NONE
    if kind == "LoadBalancer":
        balancer = _ingress_points(mapping(status.get("loadBalancer")).get("ingress"))
        if external:
            return ",".join(([*balancer.split(",")] if balancer else []) + external)
        return balancer or "<pending>"
    if kind == "ExternalName":
        return text(spec.get("externalName"))
    return UNKNOWN


def service_ports(ports: Any) -> str:
    """`makePortString`: `port/PROTO`, or `port:nodePort/PROTO`, joined by commas."""
    pieces = []
    for port in seq(ports):
        port = mapping(port)
        number, protocol, node_port = integer(port.get("port")), text(port.get("protocol")), integer(port.get("nodePort"))
        pieces.append(f"{number}:{node_port}/{protocol}" if node_port > 0 else f"{number}/{protocol}")
    return ",".join(pieces)


def _service_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    cluster_ips = [text(ip) for ip in seq(spec.get("clusterIPs"))]
    if not cluster_ips and text(spec.get("clusterIP")):
        # Upstream defaulting always mirrors clusterIP into clusterIPs; tolerate objects that skipped it.
        cluster_ips = [text(spec.get("clusterIP"))]
    return [
        name_of(obj),
        text(spec.get("type")),
        cluster_ips[0] if cluster_ips else NONE,
        _service_external_ip(spec, status),
        service_ports(spec.get("ports")) or NONE,
        age(obj, now),
        format_labels(spec.get("selector")),
    ]


_SVC_SPEC = _CORE + "ServiceSpec"
SERVICE = Printer(
    columns=(
        NAME,
        Column("Type", description=(_SVC_SPEC, "type")),
        Column("Cluster-IP", description=(_SVC_SPEC, "clusterIP")),
        Column("External-IP", description=(_SVC_SPEC, "externalIPs")),
        Column("Port(s)", description=(_SVC_SPEC, "ports")),
        AGE,
        Column("Selector", description=(_SVC_SPEC, "selector"), priority=1),
    ),
    cells=_service_cells,
)


def _join_host_port(host: str, port: int) -> str:
    # net.JoinHostPort brackets any host containing a colon (IPv6).
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _more(items: list[str], count: int, limit: int, *, empty: str) -> str:
    joined = ",".join(items)
    if count > limit:
        return f"{joined} + {count - limit} more..."
    return joined or empty


def format_endpoints(subsets: Any) -> str:
    """`formatEndpoints`: the first three `ip:port` pairs, then `+ N more...`; `<none>` without subsets."""
    if not seq(subsets):
        return NONE
    shown: list[str] = []
    count = 0
    limit = 3
    for subset in seq(subsets):
        subset = mapping(subset)
        addresses = [text(mapping(a).get("ip")) for a in seq(subset.get("addresses"))]
        ports = [integer(mapping(p).get("port")) for p in seq(subset.get("ports"))]
        if not ports:
            # Headless services may have no ports at all.
            count += len(addresses)
            shown.extend(addresses[: max(0, limit - len(shown))])
            continue
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                if len(shown) == limit:
                    break
                shown.append(_join_host_port(ip, port))
    return _more(shown, count, limit, empty="")


ENDPOINTS = Printer(
    columns=(NAME, Column("Endpoints", description=(_CORE + "Endpoints", "subsets")), AGE),
    cells=lambda obj, now: [name_of(obj), format_endpoints(obj.get("subsets")), age(obj, now)],
)


def _slice_ports(ports: Any) -> str:
    items = []
    for port in seq(ports):
        port = mapping(port)
        if isinstance(port.get("port"), int):
            items.append(str(port["port"]))
        elif isinstance(port.get("name"), str):
            items.append(port["name"])
        else:
            items.append("*")
    return _more(items[:3], len(items), 3, empty="<unset>")


def _slice_endpoints(endpoints: Any) -> str:
    addresses = [text(a) for e in seq(endpoints) for a in seq(mapping(e).get("addresses"))]
    return _more(addresses[:3], len(addresses), 3, empty="<unset>")


_SLICE = "io.k8s.api.discovery.v1.EndpointSlice"
ENDPOINT_SLICE = Printer(
    columns=(
        NAME,
        Column("AddressType", description=(_SLICE, "addressType")),
        Column("Ports", description=(_SLICE, "ports")),
        Column("Endpoints", description=(_SLICE, "endpoints")),
        AGE,
    ),
    cells=lambda obj, now: [
        name_of(obj),
        text(obj.get("addressType")),
        _slice_ports(obj.get("ports")),
        _slice_endpoints(obj.get("endpoints")),
        age(obj, now),
    ],
)


# --- ConfigMap, Secret, ServiceAccount, Lease -----------------------------------------------------------

CONFIG_MAP = Printer(
    columns=(NAME, Column("Data", description=(_CORE + "ConfigMap", "data")), AGE),
    cells=lambda obj, now: [
        name_of(obj),
        len(mapping(obj.get("data"))) + len(mapping(obj.get("binaryData"))),
        age(obj, now),
    ],
)

SECRET = Printer(
    columns=(
        NAME,
        Column("Type", description=(_CORE + "Secret", "type")),
        Column("Data", description=(_CORE + "Secret", "data")),
        AGE,
    ),
    cells=lambda obj, now: [name_of(obj), text(obj.get("type")), len(mapping(obj.get("data"))), age(obj, now)],
)

SERVICE_ACCOUNT = Printer(
    columns=(NAME, Column("Secrets", description=(_CORE + "ServiceAccount", "secrets")), AGE),
    cells=lambda obj, now: [name_of(obj), len(seq(obj.get("secrets"))), age(obj, now)],
)

LEASE = Printer(
    columns=(NAME, Column("Holder", description=("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")), AGE),
    cells=lambda obj, now: [name_of(obj), text(mapping(obj.get("spec")).get("holderIdentity")), age(obj, now)],
)


# --- Event ----------------------------------------------------------------------------------------------


def _event_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    first = since(obj.get("firstTimestamp"), now)
    if parse_time(obj.get("firstTimestamp")) is None:
        first = since(obj.get("eventTime"), now)
    last = first if parse_time(obj.get("lastTimestamp")) is None else since(obj.get("lastTimestamp"), now)
    count = integer(obj.get("count"))
    series = obj.get("series")
    if isinstance(series, Mapping):
        last = since(series.get("lastObservedTime"), now)
        count = integer(series.get("count"))
    elif count == 0:
        count = 1  # singleton events carry no count in the events.k8s.io API
    involved = mapping(obj.get("involvedObject"))
    kind, name = text(involved.get("kind")).lower(), text(involved.get("name"))
    source = mapping(obj.get("source"))
    component = text(source.get("component")) or text(obj.get("reportingComponent"))
    instance = text(source.get("host")) or text(obj.get("reportingInstance"))
    return [
        last,
        text(obj.get("type")),
        text(obj.get("reason")),
        f"{kind}/{name}" if name else kind,
        text(involved.get("fieldPath")),
        f"{component}, {instance}" if instance else component,
        text(obj.get("message")).strip(),
        first,
        count,
        name_of(obj),
    ]


def _event_v1_as_core(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 field names: both share one internal type upstream."""
    source = mapping(obj.get("deprecatedSource"))
    return {
        "metadata": obj.get("metadata"),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController"),
        "reportingInstance": obj.get("reportingInstance"),
        "involvedObject": obj.get("regarding"),
        "reason": obj.get("reason"),
        "message": obj.get("note"),
        "type": obj.get("type"),
        "source": source,
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"),
    }


_EVENT = _CORE + "Event"
_EVENT_COLUMNS = (
    Column("Last Seen", description=(_EVENT, "lastTimestamp")),
    Column("Type", description=(_EVENT, "type")),
    Column("Reason", description=(_EVENT, "reason")),
    Column("Object", description=(_EVENT, "involvedObject")),
    Column("Subobject", description=(_CORE + "ObjectReference", "fieldPath"), priority=1),
    Column("Source", description=(_EVENT, "source"), priority=1),
    Column("Message", description=(_EVENT, "message")),
    Column("First Seen", description=(_EVENT, "firstTimestamp"), priority=1),
    Column("Count", description=(_EVENT, "count"), priority=1),
    Column("Name", description=NAME.description, priority=1, format="name"),
)
EVENT = Printer(columns=_EVENT_COLUMNS, cells=_event_cells)
EVENT_V1 = Printer(columns=_EVENT_COLUMNS, cells=lambda obj, now: _event_cells(_event_v1_as_core(obj), now))


# --- PersistentVolume, PersistentVolumeClaim ------------------------------------------------------------

_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def access_modes(modes: Any) -> str:
    """`GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, without duplicates."""
    present = set(text(m) for m in seq(modes))
    short = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
             ("ReadWriteOncePod", "RWOP"))
    return ",".join(abbreviation for mode, abbreviation in short if mode in present)


def _storage_class(obj: Mapping[str, Any]) -> str:
    annotations = mapping(mapping(obj.get("metadata")).get("annotations"))
    if _CLASS_ANNOTATION in annotations:
        return text(annotations[_CLASS_ANNOTATION])
    return text(mapping(obj.get("spec")).get("storageClassName"))


def _quantity(value: Any) -> str:
    # A missing quantity is Go's zero Quantity, which prints as "0".
    return "0" if value is None else str(value)


def _storage(resources: Any) -> str:
    return _quantity(mapping(resources).get("storage"))


def _pv_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    metadata, spec, status = mapping(obj.get("metadata")), mapping(obj.get("spec")), mapping(obj.get("status"))
    claim = spec.get("claimRef")
    claim_cell = ""
    if isinstance(claim, Mapping):
        claim_cell = f"{text(claim.get('namespace'))}/{text(claim.get('name'))}"
    phase = "Terminating" if metadata.get("deletionTimestamp") is not None else text(status.get("phase"))
    attributes_class = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [
        name_of(obj),
        _storage(spec.get("capacity")),
        access_modes(spec.get("accessModes")),
        text(spec.get("persistentVolumeReclaimPolicy")),
        phase,
        claim_cell,
        _storage_class(obj),
        attributes_class if isinstance(attributes_class, str) else "<unset>",
        text(status.get("reason")),
        age(obj, now),
        mode if isinstance(mode, str) else "<unset>",
    ]


_PV_SPEC = _CORE + "PersistentVolumeSpec"
PERSISTENT_VOLUME = Printer(
    columns=(
        NAME,
        Column("Capacity", description=(_PV_SPEC, "capacity")),
        Column("Access Modes", description=(_PV_SPEC, "accessModes")),
        Column("Reclaim Policy", description=(_PV_SPEC, "persistentVolumeReclaimPolicy")),
        Column("Status", description=(_CORE + "PersistentVolumeStatus", "phase")),
        Column("Claim", description=(_PV_SPEC, "claimRef")),
        Column("StorageClass", description="StorageClass of the pv"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
        Column("Reason", description=(_CORE + "PersistentVolumeStatus", "reason")),
        AGE,
        Column("VolumeMode", description=(_PV_SPEC, "volumeMode"), priority=1),
    ),
    cells=_pv_cells,
)


def _pvc_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    metadata, spec, status = mapping(obj.get("metadata")), mapping(obj.get("spec")), mapping(obj.get("status"))
    phase = "Terminating" if metadata.get("deletionTimestamp") is not None else text(status.get("phase"))
    volume = text(spec.get("volumeName"))
    capacity, modes = "", ""
    if volume:
        # Capacity and modes describe the bound volume, so they stay blank until binding.
        modes = access_modes(status.get("accessModes"))
        capacity = _storage(status.get("capacity"))
    attributes_class = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [
        name_of(obj),
        phase,
        volume,
        capacity,
        modes,
        _storage_class(obj),
        attributes_class if isinstance(attributes_class, str) else "<unset>",
        age(obj, now),
        mode if isinstance(mode, str) else "<unset>",
    ]


_PVC_STATUS = _CORE + "PersistentVolumeClaimStatus"
PERSISTENT_VOLUME_CLAIM = Printer(
    columns=(
        NAME,
        Column("Status", description=(_PVC_STATUS, "phase")),
        Column("Volume", description=(_CORE + "PersistentVolumeClaimSpec", "volumeName")),
        Column("Capacity", description=(_PVC_STATUS, "capacity")),
        Column("Access Modes", description=(_PVC_STATUS, "accessModes")),
        Column("StorageClass", description="StorageClass of the pvc"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
        AGE,
        Column("VolumeMode", description=(_CORE + "PersistentVolumeClaimSpec", "volumeMode"), priority=1),
    ),
    cells=_pvc_cells,
)


# --- ResourceQuota --------------------------------------------------------------------------------------


def _quota_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    status = mapping(obj.get("status"))
    hard, used = mapping(status.get("hard")), mapping(status.get("used"))
    requests, limits = [], []
    for resource in sorted(hard):
        pieces = resource.split(".")
        column = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        column.append(f"{resource}: {_quantity(used.get(resource))}/{_quantity(hard[resource])}")
    # Upstream puts Age second here, unlike every other printer.
    return [name_of(obj), age(obj, now), ", ".join(requests), ", ".join(limits)]


RESOURCE_QUOTA = Printer(
    columns=(
        NAME,
        AGE,
        Column("Request", description="Request represents a minimum amount of cpu/memory "
               "that a container may consume."),
        Column("Limit", description="Limits control the maximum amount of cpu/memory that a container "
               "may use independent of contention on the node."),
    ),
    cells=_quota_cells,
)

