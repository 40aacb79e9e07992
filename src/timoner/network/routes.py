"""Where traffic for a Service goes on one node: `build_routes(services, endpoint_slices) -> RouteTable`.

This is the pure half of the service proxy (kube-proxy's `ServiceChangeTracker`,
`EndpointSliceCache` and `CategorizeEndpoints`): from the Services and
EndpointSlices it decides, per service port, the addresses it is reached at
(`Frontend`s) and the endpoints that traffic may go to. A data plane
(`nftables.py`, `userspace.py`) only applies the table; it makes no policy
decisions of its own beyond the obvious ones each field names.

As kube-proxy (1.32, IPv4):

- Services of type ExternalName, headless Services (`clusterIP: None`),
  Services without an IPv4 cluster IP and Services labelled
  `service.kubernetes.io/service-proxy-name` (another proxy's) get no routes;
  nor do SCTP ports.
- A port is reached at its cluster IP(s) (internal traffic), and at its
  `nodePort` on each node address and `127.0.0.1`, at `externalIPs` and at
  the load balancer's ingress IPs (external traffic).
- Endpoints come from the IPv4 EndpointSlices labelled
  `kubernetes.io/service-name`, through the slice port whose name and
  protocol are the service port's. The same IP and port in two slices counts
  once (the local one wins). Ready endpoints are used; when none is ready
  anywhere, serving endpoints that are terminating are used instead.
- `internalTrafficPolicy: Local` sends cluster-IP traffic to this node's
  endpoints only, `externalTrafficPolicy: Local` external traffic (from
  other machines: the node's own traffic still goes anywhere); the local
  set again falls back to serving+terminating endpoints.
- A port with no usable endpoint anywhere is rejected (connection refused at
  once, `Verdict.REJECT`); one whose policy is Local and that has endpoints
  only on other nodes drops the traffic of that kind (`Verdict.DROP`).

Topology-aware routing (hints), `loadBalancerSourceRanges`, and
`trafficDistribution` are not implemented.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_AFFINITY_TIMEOUT",
    "PROXY_LABEL_SELECTOR",
    "Endpoint",
    "Frontend",
    "FrontendKind",
    "RouteTable",
    "ServiceRoute",
    "Verdict",
    "build_routes",
]

Obj = Mapping[str, Any]

#: `sessionAffinityConfig.clientIP.timeoutSeconds` when not given (3 hours, as upstream).
DEFAULT_AFFINITY_TIMEOUT = 10800

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"

#: What kube-proxy's Service and EndpointSlice informers select (objects another proxy owns, and
#: headless ones, are none of its business).
PROXY_LABEL_SELECTOR = f"!{SERVICE_PROXY_NAME_LABEL},!{HEADLESS_LABEL}"

LOOPBACK = "127.0.0.1"


class FrontendKind(enum.StrEnum):
    """How a frontend address came about; all but `CLUSTER_IP` carry external traffic."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    EXTERNAL_IP = "ExternalIP"
    LOAD_BALANCER = "LoadBalancer"


class Verdict(enum.StrEnum):
    """What happens to traffic that has no endpoint to go to."""

    REJECT = "reject"  # connection refused at once (TCP reset, ICMP port unreachable)
    DROP = "drop"  # silently dropped (a Local policy with endpoints only elsewhere)


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """A backend address: one pod's IP and the target port."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, order=True)
class Frontend:
    """An address and port at which a service port is reached."""

    ip: str
    port: int
    kind: FrontendKind = FrontendKind.CLUSTER_IP

    @property
    def external(self) -> bool:
        return self.kind is not FrontendKind.CLUSTER_IP


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """One service port on this node (kube-proxy's ServicePort with its endpoints categorized).

    `endpoints` are the ones Cluster policy uses (every usable endpoint),
    `local_endpoints` the ones Local policy uses (this node's). Which of the
    two a kind of traffic uses, and what happens when that set is empty, are
    the properties below.
    """

    namespace: str
    service: str
    port_name: str
    protocol: str  # "TCP" or "UDP"
    frontends: tuple[Frontend, ...]
    endpoints: tuple[Endpoint, ...] = ()
    local_endpoints: tuple[Endpoint, ...] = ()
    internal_policy_local: bool = False
    external_policy_local: bool = False
    affinity_timeout: int | None = None  # seconds of ClientIP affinity; None: no affinity

    @property
    def name(self) -> str:
        """`namespace/service:port` as kube-proxy prints a ServicePortName (no `:` for an unnamed port)."""
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def internal_endpoints(self) -> tuple[Endpoint, ...]:
        """Where cluster-IP traffic goes."""
        return self.local_endpoints if self.internal_policy_local else self.endpoints

    @property
    def external_endpoints(self) -> tuple[Endpoint, ...]:
        """Where external traffic from other machines goes (the node's own goes to `endpoints`)."""
        return self.local_endpoints if self.external_policy_local else self.endpoints

    @property
    def internal_verdict(self) -> Verdict | None:
        """None when cluster-IP traffic has endpoints, else what to do with it."""
        return _verdict(self.internal_endpoints, self.endpoints)

    @property
    def external_verdict(self) -> Verdict | None:
        """None when external traffic has endpoints, else what to do with it."""
        return _verdict(self.external_endpoints, self.endpoints)

    @property
    def cluster_frontends(self) -> tuple[Frontend, ...]:
        return tuple(f for f in self.frontends if not f.external)

    @property
    def external_frontends(self) -> tuple[Frontend, ...]:
        return tuple(f for f in self.frontends if f.external)


def _verdict(used: tuple[Endpoint, ...], anywhere: tuple[Endpoint, ...]) -> Verdict | None:
    if used:
        return None
    return Verdict.DROP if anywhere else Verdict.REJECT


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Every service port this node proxies, sorted by name and protocol; equal tables mean no change."""

    routes: tuple[ServiceRoute, ...] = ()

    def __iter__(self):
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def get(self, name: str, protocol: str = "TCP") -> ServiceRoute | None:
        """The route of `namespace/service[:port]` for `protocol`, or None."""
        for route in self.routes:
            if route.name == name and route.protocol == protocol:
                return route
        return None


# -- building ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    """An endpoint as a slice states it, before kube-proxy picks which ones to use."""

    endpoint: Endpoint
    local: bool
    ready: bool
    serving: bool
    terminating: bool


def build_routes(services: Iterable[Obj], endpoint_slices: Iterable[Obj], *, node_name: str,
                 node_ips: Iterable[str]) -> RouteTable:
    """The routes of every proxied service port; see the module docstring for the rules."""
    node_addresses = tuple(dict.fromkeys([*(ip for ip in node_ips if _is_ipv4(ip)), LOOPBACK]))
    slices = _slices_by_service(endpoint_slices)
    routes: list[ServiceRoute] = []
    for service in services:
        meta = service.get("metadata") or {}
        spec = service.get("spec") or {}
        cluster_ips = _cluster_ips(spec)
        if not cluster_ips or spec.get("type") == "ExternalName":
            continue
        if SERVICE_PROXY_NAME_LABEL in (meta.get("labels") or {}):
            continue
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        service_slices = slices.get((namespace, name), ())
        external_ips = _external_ips(service)
        externally_accessible = spec.get("type") in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
        internal_local = spec.get("internalTrafficPolicy") == "Local"
        external_local = externally_accessible and spec.get("externalTrafficPolicy") == "Local"
        affinity = _affinity_timeout(spec)
        for port in spec.get("ports") or ():
            protocol = port.get("protocol") or "TCP"
            if protocol not in ("TCP", "UDP") or not port.get("port"):
                continue
            frontends = [Frontend(ip, port["port"]) for ip in cluster_ips]
            node_port = port.get("nodePort")
            if node_port and spec.get("type") in ("NodePort", "LoadBalancer"):
                frontends += [Frontend(ip, node_port, FrontendKind.NODE_PORT) for ip in node_addresses]
            frontends += [Frontend(ip, port["port"], kind) for ip, kind in external_ips]
            candidates = _candidates(service_slices, port.get("name") or "", protocol, node_name)
            endpoints, local_endpoints = _categorize(candidates)
            routes.append(ServiceRoute(
                namespace=namespace, service=name, port_name=port.get("name") or "", protocol=protocol,
                frontends=tuple(dict.fromkeys(frontends)), endpoints=endpoints,
                local_endpoints=local_endpoints, internal_policy_local=internal_local,
                external_policy_local=external_local, affinity_timeout=affinity))
    routes.sort(key=lambda r: (r.namespace, r.service, r.port_name, r.protocol))
    return RouteTable(tuple(routes))


def _is_ipv4(value: Any) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def _cluster_ips(spec: Obj) -> tuple[str, ...]:
    """The IPv4 cluster IPs; none for a headless Service."""
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if not ips or ips[0] == "None":
        return ()
    return tuple(dict.fromkeys(ip for ip in ips if _is_ipv4(ip)))


def _external_ips(service: Obj) -> list[tuple[str, FrontendKind]]:
    spec = service.get("spec") or {}
    out = [(ip, FrontendKind.EXTERNAL_IP) for ip in spec.get("externalIPs") or () if _is_ipv4(ip)]
    if spec.get("type") == "LoadBalancer":
        for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
            # ipMode Proxy: the load balancer proxies to the node ports itself; kube-proxy leaves the IP alone.
            if _is_ipv4(ingress.get("ip")) and ingress.get("ipMode", "VIP") == "VIP":
                out.append((ingress["ip"], FrontendKind.LOAD_BALANCER))
    return out


def _affinity_timeout(spec: Obj) -> int | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    return int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)


def _slices_by_service(endpoint_slices: Iterable[Obj]) -> dict[tuple[str, str], list[Obj]]:
    out: dict[tuple[str, str], list[Obj]] = {}
    for eps in endpoint_slices:
        meta = eps.get("metadata") or {}
        labels = meta.get("labels") or {}
        service = labels.get(SERVICE_NAME_LABEL)
        if not service or SERVICE_PROXY_NAME_LABEL in labels or eps.get("addressType") != "IPv4":
            continue
        out.setdefault((meta.get("namespace", ""), service), []).append(eps)
    for group in out.values():
        group.sort(key=lambda s: (s.get("metadata") or {}).get("name", ""))
    return out


def _candidates(slices: Iterable[Obj], port_name: str, protocol: str, node_name: str) -> list[_Candidate]:
    """The slices' endpoints for one service port, deduplicated by IP and port as EndpointSliceCache does."""
    found: dict[Endpoint, _Candidate] = {}
    for eps in slices:
        for slice_port in eps.get("ports") or ():
            if (slice_port.get("name") or "") != port_name or (slice_port.get("protocol") or "TCP") != protocol:
                continue
            if not slice_port.get("port"):
                continue
            for item in eps.get("endpoints") or ():
                addresses = item.get("addresses") or ()
                if not addresses or not _is_ipv4(addresses[0]):
                    continue
                conditions = item.get("conditions") or {}
                # The API's defaults: ready and serving mean true when absent, terminating false.
                candidate = _Candidate(
                    endpoint=Endpoint(addresses[0], slice_port["port"]),
                    local=bool(node_name) and item.get("nodeName") == node_name,
                    ready=conditions.get("ready") is not False,
                    serving=conditions.get("serving") is not False,
                    terminating=conditions.get("terminating") is True)
                if candidate.endpoint not in found or candidate.local:
                    found[candidate.endpoint] = candidate
    return list(found.values())


def _categorize(candidates: list[_Candidate]) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]]:
    """(Cluster-policy endpoints, Local-policy endpoints): ready ones, else serving+terminating ones."""
    return _usable(candidates), _usable([c for c in candidates if c.local])


def _usable(candidates: list[_Candidate]) -> tuple[Endpoint, ...]:
    chosen = [c for c in candidates if c.ready]
    if not chosen:
        chosen = [c for c in candidates if c.serving and c.terminating]
    return tuple(sorted(c.endpoint for c in chosen))
