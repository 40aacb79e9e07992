"""Service and Endpoints validation (upstream `ValidateService`, `ValidateEndpoints`).

Cluster IPs: the server allocates them after validation, so an empty
`clusterIP` is fine here; what a user sets must be an IP or `None`. Errors
point at `spec.clusterIPs[0]` even when only `clusterIP` was written,
because upstream syncs the two fields before validating and users see that
path in kubectl's messages.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from timoner.api.errors import Cause
from timoner.api.validation._containers import PROTOCOLS, port_num_or_name
from timoner.api.validation._field import (
    Path,
    Raw,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from timoner.api.validation._meta import validate_labels
from timoner.api.validation._names import (
    is_cidr,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    is_qualified_name,
    is_valid_port_num,
)

__all__ = ["validate_endpoints", "validate_service", "non_special_ip"]

_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_AFFINITIES = ("ClientIP", "None")
_FAMILIES = ("IPv4", "IPv6")
_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
_KUBELET_PORT = 10250


def _cluster_ips(spec: dict) -> list[str]:
    ips = spec.get("clusterIPs")
    if ips:
        return list(ips)
    return [spec["clusterIP"]] if spec.get("clusterIP") else []


def non_special_ip(ip: str, path: Path) -> list[Cause]:
    """`ValidateNonSpecialIP`: endpoints and external IPs may not be loopback, link-local and such."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return []
    if addr.is_unspecified:
        return [invalid(path, ip, "may not be unspecified (0.0.0.0, ::)")]
    if addr.is_loopback:
        return [invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)")]
    if addr.is_link_local:
        return [invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")]
    if addr in ipaddress.ip_network("224.0.0.0/24") or addr in ipaddress.ip_network("ff02::/16"):
        return [invalid(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")]
    return []


def _port_key(port: dict) -> Raw:
    # Upstream prints the duplicate key as a Go struct literal with only protocol and port set.
    protocol, number = port.get("protocol", ""), port.get("port", 0)
    return Raw(
        f'core.ServicePort{{Name:"", Protocol:"{protocol}", AppProtocol:(*string)(nil), Port:{number}, '
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def validate_service(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    svc_type = spec.get("type") or ""
    ips = _cluster_ips(spec)
    headless = bool(ips) and ips[0] == "None"
    ports = spec.get("ports") or []
    causes: list[Cause] = []
    if not ports and not headless and svc_type != "ExternalName":
        causes.append(required(path.child("ports")))
    if svc_type == "LoadBalancer":
        for i, port in enumerate(ports):
            if (port or {}).get("port") == _KUBELET_PORT:
                causes.append(invalid(path.child("ports").index(i), _KUBELET_PORT,
                                      f"may not expose port {_KUBELET_PORT} externally since it is used by kubelet"))
    if svc_type in ("LoadBalancer", "NodePort") and headless:
        causes.append(invalid(path.child("clusterIPs").index(0), "None", f"may not be set to 'None' for {svc_type} services"))
    if svc_type == "ExternalName":
        causes.extend(_external_name(spec, path))
    names: set[str] = set()
    for i, port in enumerate(ports):
        causes.extend(_service_port(port if isinstance(port, dict) else {}, len(ports) > 1, names, path.child("ports").index(i)))
    if spec.get("selector") is not None:
        causes.extend(validate_labels(spec["selector"], path.child("selector")))
    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        causes.append(required(path.child("sessionAffinity")))
    elif affinity not in _AFFINITIES:
        causes.append(not_supported(path.child("sessionAffinity"), affinity, _AFFINITIES))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        causes.append(forbidden(path.child("sessionAffinityConfig"), "must not be set when session affinity is None"))
    if svc_type != "ExternalName":
        causes.extend(_cluster_ip_fields(spec, ips, path))
    for i, ip in enumerate(spec.get("externalIPs") or []):
        errs = [invalid(path.child("externalIPs").index(i), ip, m) for m in is_ip(ip)]
        causes.extend(errs or non_special_ip(ip, path.child("externalIPs").index(i)))
    if not svc_type:
        causes.append(required(path.child("type")))
    elif svc_type not in _TYPES:
        causes.append(not_supported(path.child("type"), svc_type, _TYPES))
    causes.extend(_node_ports_and_duplicates(spec, svc_type, path))
    for i, cidr in enumerate(spec.get("loadBalancerSourceRanges") or []):
        p = path.child("LoadBalancerSourceRanges")
        if svc_type != "LoadBalancer" and i == 0:
            causes.append(forbidden(p, "may only be used when `type` is 'LoadBalancer'"))
        causes.extend(invalid(p.index(i), cidr.strip(), m) for m in is_cidr(cidr.strip()))
    causes.extend(_traffic_policies(spec, svc_type, path))
    if old is not None:
        causes.extend(_update(spec, old.get("spec") or {}, path))
    return causes


def _external_name(spec: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if spec.get("clusterIPs") or spec.get("clusterIP"):
        causes.append(forbidden(path.child("clusterIPs"), "may not be set for ExternalName services"))
    if spec.get("ipFamilies"):
        causes.append(forbidden(path.child("ipFamilies"), "may not be set for ExternalName services"))
    if spec.get("ipFamilyPolicy") is not None:
        causes.append(forbidden(path.child("ipFamilyPolicy"), "may not be set for ExternalName services"))
    cname = (spec.get("externalName") or "").removesuffix(".")
    if cname:
        causes.extend(invalid(path.child("externalName"), cname, m) for m in is_dns1123_subdomain(cname))
    else:
        causes.append(required(path.child("externalName")))
    return causes


def _service_port(port: dict, require_name: bool, names: set[str], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name") or ""
    if require_name and not name:
        causes.append(required(path.child("name")))
    elif name:
        causes.extend(invalid(path.child("name"), name, m) for m in is_dns1123_label(name))
        if name in names:
            causes.append(duplicate(path.child("name"), name))
        names.add(name)
    number = port.get("port", 0)
    causes.extend(invalid(path.child("port"), number, m) for m in is_valid_port_num(number if isinstance(number, int) else 0))
    protocol = port.get("protocol") or ""
    if not protocol:
        causes.append(required(path.child("protocol")))
    elif protocol not in PROTOCOLS:
        causes.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))
    if port.get("targetPort") is not None:
        causes.extend(port_num_or_name(port["targetPort"], path.child("targetPort")))
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        causes.extend(invalid(path.child("appProtocol"), app_protocol, m) for m in is_qualified_name(app_protocol))
    return causes


def _cluster_ip_fields(spec: dict, ips: list[str], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    ips_path = path.child("clusterIPs")
    if spec.get("clusterIP") and spec.get("clusterIPs") and spec["clusterIPs"][0] != spec["clusterIP"]:
        causes.append(invalid(ips_path, spec["clusterIPs"], "first value must match `clusterIP`"))
    elif not spec.get("clusterIP") and spec.get("clusterIPs"):
        causes.append(invalid(ips_path, spec["clusterIPs"], "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in _FAMILIES:
            causes.append(not_supported(path.child("ipFamilies").index(i), family, _FAMILIES))
        if family in seen:
            causes.append(duplicate(path.child("ipFamilies").index(i), family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in _FAMILY_POLICIES:
        causes.append(not_supported(path.child("ipFamilyPolicy"), policy, _FAMILY_POLICIES))
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                causes.append(invalid(ips_path, ips, "'None' must be the first and only value"))
            continue
        causes.extend(invalid(ips_path.index(i), ip, m) for m in is_ip(ip))
    if len(ips) > 2:
        causes.append(invalid(ips_path, ips, "may only hold up to 2 values"))
    return causes


def _node_ports_and_duplicates(spec: dict, svc_type: str, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    node_ports: set[tuple[Any, Any]] = set()
    ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(spec.get("ports") or []):
        port, p = port if isinstance(port, dict) else {}, path.child("ports").index(i)
        node_port = port.get("nodePort") or 0
        if node_port and svc_type == "ClusterIP":
            causes.append(forbidden(p.child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
        if node_port:
            key = (port.get("protocol"), node_port)
            if key in node_ports:
                causes.append(duplicate(p.child("nodePort"), node_port))
            node_ports.add(key)
        key = (port.get("protocol"), port.get("port"))
        if key in ports:
            causes.append(duplicate(p, _port_key(port)))
        ports.add(key)
    return causes


def _traffic_policies(spec: dict, svc_type: str, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    external = spec.get("externalTrafficPolicy") or ""
    accessible = svc_type in ("LoadBalancer", "NodePort") or (svc_type == "ClusterIP" and spec.get("externalIPs"))
    if external and not accessible:
        causes.append(invalid(path.child("externalTrafficPolicy"), external,
                              "may only be set for externally-accessible services"))
    elif external and external not in ("Cluster", "Local"):
        causes.append(not_supported(path.child("externalTrafficPolicy"), external, ("Cluster", "Local")))
    elif accessible and not external:
        causes.append(required(path.child("externalTrafficPolicy")))
    internal = spec.get("internalTrafficPolicy")
    if internal is not None and internal not in ("Cluster", "Local"):
        causes.append(not_supported(path.child("internalTrafficPolicy"), internal, ("Cluster", "Local")))
    health = spec.get("healthCheckNodePort") or 0
    if health and not (svc_type == "LoadBalancer" and external == "Local"):
        causes.append(invalid(path.child("healthCheckNodePort"), health,
                              "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    return causes


def _update(spec: dict, old_spec: dict, path: Path) -> list[Cause]:
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    new_ips, old_ips = _cluster_ips(spec), _cluster_ips(old_spec)
    # An update that omits the allocated IP keeps it (the server copies it over); a different one is an error.
    if new_ips and old_ips and new_ips[0] != old_ips[0]:
        return [invalid(path.child("clusterIPs").index(0), new_ips[0], "may not change once set")]
    return []


def validate_endpoints(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    for i, subset in enumerate(obj.get("subsets") or []):
        p, subset = Path("subsets").index(i), subset if isinstance(subset, dict) else {}
        if not subset.get("addresses") and not subset.get("notReadyAddresses"):
            causes.append(required(p, "must specify `addresses` or `notReadyAddresses`"))
        for field in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(subset.get(field) or []):
                causes.extend(_endpoint_address(address or {}, p.child(field).index(j)))
        ports = subset.get("ports") or []
        for j, port in enumerate(ports):
            causes.extend(_endpoint_port(port or {}, len(ports) > 1, p.child("ports").index(j)))
    return causes


def _endpoint_address(address: dict, path: Path) -> list[Cause]:
    ip = address.get("ip") or ""
    causes = [invalid(path.child("ip"), ip, m) for m in is_ip(ip)]
    hostname = address.get("hostname") or ""
    if hostname:
        causes.extend(invalid(path.child("hostname"), hostname, m) for m in is_dns1123_label(hostname))
    node_name = address.get("nodeName")
    if node_name is not None:
        causes.extend(invalid(path.child("nodeName"), node_name, m) for m in is_dns1123_subdomain(node_name))
    causes.extend(non_special_ip(ip, path.child("ip")))
    return causes


def _endpoint_port(port: dict, require_name: bool, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name") or ""
    if require_name and not name:
        causes.append(required(path.child("name")))
    elif name:
        causes.extend(invalid(path.child("name"), name, m) for m in is_dns1123_label(name))
    number = port.get("port", 0)
    causes.extend(invalid(path.child("port"), number, m) for m in is_valid_port_num(number if isinstance(number, int) else 0))
    protocol = port.get("protocol") or ""
    if not protocol:
        causes.append(required(path.child("protocol")))
    elif protocol not in PROTOCOLS:
        causes.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))
    return causes
