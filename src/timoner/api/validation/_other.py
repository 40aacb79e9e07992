"""Validation of the smaller API groups: coordination, discovery, events, policy,
autoscaling, networking, scheduling and node.

Each function mirrors its upstream `pkg/apis/<group>/validation` counterpart
for the rules users meet in practice; rarely used corners (HPA metric
target arithmetic, Ingress TLS host matching) are left out.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from timoner.api.errors import Cause
from timoner.api.validation._apps import int_or_percent, not_over_100
from timoner.api.validation._containers import validate_resource_list
from timoner.api.validation._core import validate_event_reporting
from timoner.api.validation._field import (
    Path,
    Raw,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
    too_many,
)
from timoner.api.validation._meta import immutable, nonnegative, validate_label_selector, validate_labels
from timoner.api.validation._names import (
    is_cidr,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    is_qualified_name,
    is_valid_port_name,
    is_valid_port_num,
    is_wildcard_dns1123_subdomain,
    name_is_dns1123_label,
    name_is_path_segment,
)
from timoner.api.validation._service import non_special_ip

__all__ = [
    "validate_endpoint_slice",
    "validate_events_event",
    "validate_hpa",
    "validate_ingress",
    "validate_ingress_class",
    "validate_lease",
    "validate_network_policy",
    "validate_pdb",
    "validate_priority_class",
    "validate_runtime_class",
]


def validate_lease(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(invalid(Path("spec").child("leaseDurationSeconds"), duration, "must be greater than 0"))
    if spec.get("leaseTransitions") is not None:
        causes.extend(nonnegative(spec["leaseTransitions"], Path("spec").child("leaseTransitions")))
    return causes


_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")


def validate_endpoint_slice(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    address_type = obj.get("addressType") or ""
    if not address_type:
        causes.append(required(Path("addressType")))
    elif address_type not in _ADDRESS_TYPES:
        causes.append(not_supported(Path("addressType"), address_type, _ADDRESS_TYPES))
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > 1000:
        causes.append(too_many(Path("endpoints"), len(endpoints), 1000))
        endpoints = []
    for i, endpoint in enumerate(endpoints):
        p, endpoint = Path("endpoints").index(i), endpoint if isinstance(endpoint, dict) else {}
        addresses = endpoint.get("addresses") or []
        if not addresses:
            causes.append(required(p.child("addresses"), "must contain at least 1 address"))
        elif len(addresses) > 100:
            causes.append(too_many(p.child("addresses"), len(addresses), 100))
        for j, address in enumerate(addresses):
            causes.extend(_slice_address(str(address), address_type, p.child("addresses").index(j)))
        if endpoint.get("nodeName") is not None:
            causes.extend(invalid(p.child("nodeName"), endpoint["nodeName"], m) for m in is_dns1123_subdomain(endpoint["nodeName"]))
        if endpoint.get("hostname") is not None:
            causes.extend(invalid(p.child("hostname"), endpoint["hostname"], m) for m in is_dns1123_label(endpoint["hostname"]))
        causes.extend(validate_labels(endpoint.get("deprecatedTopology"), p.child("deprecatedTopology")))
    names: set[str] = set()
    for i, port in enumerate(obj.get("ports") or []):
        p, port = Path("ports").index(i), port if isinstance(port, dict) else {}
        name = port.get("name") or ""
        if name:
            causes.extend(invalid(p.child("name"), name, m) for m in is_dns1123_label(name))
        if name in names:
            causes.append(duplicate(p.child("name"), name))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            causes.append(required(p.child("protocol")))
        elif protocol not in ("SCTP", "TCP", "UDP"):
            causes.append(not_supported(p.child("protocol"), protocol, ("SCTP", "TCP", "UDP")))
        if port.get("appProtocol") is not None:
            causes.extend(invalid(p.child("appProtocol"), port["appProtocol"], m) for m in is_qualified_name(port["appProtocol"]))
    if old is not None:
        causes.extend(immutable(address_type, old.get("addressType") or "", Path("addressType")))
    return causes


def _slice_address(address: str, address_type: str, path: Path) -> list[Cause]:
    if address_type in ("IPv4", "IPv6"):
        version = 4 if address_type == "IPv4" else 6
        try:
            ok = ipaddress.ip_address(address).version == version and "%" not in address
        except ValueError:
            ok = False
        if not ok:
            return [invalid(path, address, f"must be a valid {address_type} address")]
        return non_special_ip(address, path)
    if address_type == "FQDN":
        name = address.removesuffix(".")
        if not name:
            return [required(path)]
        errs = is_dns1123_subdomain(name)
        if errs:
            return [invalid(path, name, ",".join(errs))]
        if len(name.split(".")) < 2:
            return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    return []


def validate_events_event(obj: dict, old: dict | None) -> list[Cause]:
    """events.k8s.io/v1: the strict rules for new-style events; paths use upstream's internal names."""
    causes: list[Cause] = []
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    regarding_ns = (obj.get("regarding") or {}).get("namespace") or ""
    if not regarding_ns and namespace not in ("default", "kube-system"):
        causes.append(invalid(Path("involvedObject").child("namespace"), regarding_ns, "does not match event.namespace"))
    causes.extend(validate_event_reporting(obj, controller_field="reportingController", message_field="note"))
    if not obj.get("eventTime"):
        causes.append(required(Path("eventTime")))
    if obj.get("type") not in ("Normal", "Warning"):
        causes.append(invalid(Path("type"), "", f"has invalid value: {obj.get('type') or ''}"))
    for field, upstream in (("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
                            ("deprecatedCount", "count"), ("deprecatedSource", "source")):
        if obj.get(field):
            causes.append(invalid(Path(upstream), "", "needs to be unset"))
    return causes


def validate_pdb(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    path = Path("spec")
    causes: list[Cause] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(invalid(path, spec, "minAvailable and maxUnavailable cannot be both set"))
    for field in ("minAvailable", "maxUnavailable"):
        if spec.get(field) is not None:
            causes.extend(int_or_percent(spec[field], path.child(field)))
            causes.extend(not_over_100(spec[field], path.child(field)))
    causes.extend(validate_label_selector(spec.get("selector"), path.child("selector")))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        causes.append(not_supported(path.child("unhealthyPodEvictionPolicy"), policy, ("AlwaysAllow", "IfHealthyBudget")))
    return causes


_METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")


def validate_hpa(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    path = Path("spec")
    causes: list[Cause] = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if low is not None and low < 1:
        causes.append(invalid(path.child("minReplicas"), low, "must be greater than or equal to 1"))
    if high < 1:
        causes.append(invalid(path.child("maxReplicas"), high, "must be greater than 0"))
    if low is not None and high < low:
        causes.append(invalid(path.child("maxReplicas"), high, "must be greater than or equal to `minReplicas`"))
    ref, rp = spec.get("scaleTargetRef") or {}, path.child("scaleTargetRef")
    for field in ("kind", "name"):
        value = ref.get(field) or ""
        if not value:
            causes.append(required(rp.child(field)))
        else:
            causes.extend(invalid(rp.child(field), value, m) for m in name_is_path_segment(value))
    target_cpu = spec.get("targetCPUUtilizationPercentage")
    if target_cpu is not None and target_cpu < 1:
        causes.append(invalid(path.child("targetCPUUtilizationPercentage"), target_cpu, "must be greater than 0"))
    for i, metric in enumerate(spec.get("metrics") or []):
        p, metric = path.child("metrics").index(i), metric if isinstance(metric, dict) else {}
        metric_type = metric.get("type") or ""
        if not metric_type:
            causes.append(required(p.child("type"), "must specify a metric source type"))
        elif metric_type not in _METRIC_TYPES:
            causes.append(not_supported(p.child("type"), metric_type, _METRIC_TYPES))
        else:
            field = metric_type[0].lower() + metric_type[1:]
            if metric.get(field) is None:
                causes.append(required(p.child(field), f"must populate information for the given metric source (type {metric_type})"))
    return causes


_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")


def validate_ingress(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    path = Path("spec")
    causes: list[Cause] = []
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        causes.append(invalid(path, rules or Raw("[]networking.IngressRule(nil)"), "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        causes.extend(_backend(spec["defaultBackend"] or {}, path.child("defaultBackend")))
    for i, rule in enumerate(rules):
        p, rule = path.child("rules").index(i), rule if isinstance(rule, dict) else {}
        host = rule.get("host") or ""
        if host:
            if not is_ip(host):
                causes.append(invalid(p.child("host"), host, "must be a DNS name, not an IP address"))
            check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
            causes.extend(invalid(p.child("host"), host, m) for m in check(host))
        http = rule.get("http")
        if http is not None:
            paths = (http or {}).get("paths") or []
            if not paths:
                causes.append(required(p.child("http", "paths")))
            for j, http_path in enumerate(paths):
                causes.extend(_http_path(http_path if isinstance(http_path, dict) else {}, p.child("http", "paths").index(j)))
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate((tls or {}).get("hosts") or []):
            check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
            causes.extend(invalid(path.child("tls").index(i).child("hosts").index(j), host, m) for m in check(host))
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        causes.extend(invalid(path.child("ingressClassName"), class_name, m) for m in is_dns1123_subdomain(class_name))
    return causes


def _http_path(http_path: dict, path: Path) -> list[Cause]:
    path_type = http_path.get("pathType")
    if path_type is None:
        return [required(path.child("pathType"), "pathType must be specified")]
    value = http_path.get("path") or ""
    causes: list[Cause] = []
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            causes.append(invalid(path.child("path"), value, "must be an absolute path"))
        for seq in ("//", "/./", "/../", "%2f", "%2F"):
            if seq in value:
                causes.append(invalid(path.child("path"), value, f"must not contain '{seq}'"))
        for suffix in ("/..", "/."):
            if value.endswith(suffix):
                causes.append(invalid(path.child("path"), value, f"cannot end with '{suffix}'"))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            causes.append(invalid(path.child("path"), value, "must be an absolute path"))
    else:
        causes.append(not_supported(path.child("pathType"), path_type, _PATH_TYPES))
    causes.extend(_backend(http_path.get("backend") or {}, path.child("backend")))
    return causes


def _backend(backend: dict, path: Path) -> list[Cause]:
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        causes = []
        for field in ("kind", "name"):
            value = (resource or {}).get(field) or ""
            if not value:
                causes.append(required(path.child("resource", field)))
            else:
                causes.extend(invalid(path.child("resource", field), value, m) for m in name_is_path_segment(value))
        return causes
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    causes = []
    name = service.get("name") or ""
    if not name:
        causes.append(required(path.child("service", "name")))
    else:
        causes.extend(invalid(path.child("service", "name"), name, m) for m in is_dns1035_label(name))
    port = service.get("port") or {}
    port_name, number = port.get("name") or "", port.get("number") or 0
    if port_name and number:
        causes.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        causes.extend(invalid(path.child("service", "port", "name"), port_name, m) for m in is_valid_port_name(port_name))
    elif number:
        causes.extend(invalid(path.child("service", "port", "number"), number, m) for m in is_valid_port_num(number))
    else:
        causes.append(required(path, "port name or number is required"))
    return causes


def validate_ingress_class(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    controller = spec.get("controller") or ""
    p = Path("spec").child("controller")
    causes: list[Cause] = []
    if not controller:
        causes.append(required(p))
    else:
        if len(controller) > 250:
            causes.append(Cause("FieldValueTooLong", "Too long: may not be more than 250 bytes", str(p)))
        domain, slash, rest = controller.partition("/")
        if not slash or not domain or not rest:
            causes.append(invalid(p, controller, 'must be a domain-prefixed path (such as "acme.io/foo")'))
        else:
            causes.extend(invalid(p, domain, m) for m in is_dns1123_subdomain(domain))
    if old is not None:
        causes.extend(immutable(controller, (old.get("spec") or {}).get("controller") or "", p))
    return causes


def validate_network_policy(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    path = Path("spec")
    causes = validate_label_selector(spec.get("podSelector") or {}, path.child("podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            p, rule = path.child(direction).index(i), rule if isinstance(rule, dict) else {}
            for j, port in enumerate(rule.get("ports") or []):
                causes.extend(_policy_port(port if isinstance(port, dict) else {}, p.child("ports").index(j)))
            for j, peer in enumerate(rule.get(peers) or []):
                causes.extend(_peer(peer if isinstance(peer, dict) else {}, p.child(peers).index(j)))
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        return [*causes, invalid(path.child("policyTypes"), types, "may not specify more than two policyTypes")]
    for i, policy_type in enumerate(types):
        if policy_type not in ("Ingress", "Egress"):
            causes.append(not_supported(path.child("policyTypes").index(i), policy_type, ("Ingress", "Egress")))
    return causes


def _policy_port(port: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
        causes.append(not_supported(path.child("protocol"), protocol, ("TCP", "UDP", "SCTP")))
    number, end = port.get("port"), port.get("endPort")
    if isinstance(number, int):
        causes.extend(invalid(path.child("port"), number, m) for m in is_valid_port_num(number))
        if end is not None:
            if end < number:
                causes.append(invalid(path.child("endPort"), number, "must be greater than or equal to `port`"))
            causes.extend(invalid(path.child("endPort"), end, m) for m in is_valid_port_num(end))
    elif number is not None:
        if end is not None:
            causes.append(invalid(path.child("endPort"), end, "may not be specified when `port` is non-numeric"))
        causes.extend(invalid(path.child("port"), number, m) for m in is_valid_port_name(str(number)))
    elif end is not None:
        causes.append(invalid(path.child("endPort"), end, "may not be specified when `port` is not specified"))
    return causes


def _peer(peer: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    count = 0
    for field in ("podSelector", "namespaceSelector"):
        if peer.get(field) is not None:
            count += 1
            causes.extend(validate_label_selector(peer[field], path.child(field)))
    block = peer.get("ipBlock")
    if block is not None:
        count += 1
        causes.extend(_ip_block(block or {}, path.child("ipBlock")))
    if not count:
        causes.append(required(path, "must specify a peer"))
    elif count > 1 and block is not None:
        causes.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


def _ip_block(block: dict, path: Path) -> list[Cause]:
    cidr = block.get("cidr") or ""
    if not cidr:
        return [required(path.child("cidr"))]
    causes = [invalid(path.child("cidr"), cidr, m) for m in is_cidr(cidr)]
    if causes:
        return causes
    network = ipaddress.ip_network(cidr, strict=False)
    for i, except_cidr in enumerate(block.get("except") or []):
        p = path.child("except").index(i)
        errs = [invalid(p, except_cidr, m) for m in is_cidr(except_cidr)]
        if errs:
            causes.extend(errs)
            continue
        inner = ipaddress.ip_network(except_cidr, strict=False)
        if inner.version != network.version or not inner.subnet_of(network) or inner.prefixlen <= network.prefixlen:  # type: ignore[arg-type]
            causes.append(invalid(p, except_cidr, "must be a strict subset of `cidr`"))
    return causes


_HIGHEST_USER_PRIORITY = 1_000_000_000
_SYSTEM_CLASSES = {"system-node-critical": 2_000_001_000, "system-cluster-critical": 2_000_000_000}


def validate_priority_class(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    name = (obj.get("metadata") or {}).get("name") or ""
    value = obj.get("value", 0)
    if name.startswith("system-"):
        if name not in _SYSTEM_CLASSES:
            error = f"{name} is not a known system priority class"
        elif value != _SYSTEM_CLASSES[name]:
            error = f"value of {name} PriorityClass must be {_SYSTEM_CLASSES[name]}"
        else:
            error = ""
        if error:
            causes.append(forbidden(Path("metadata").child("name"),
                                    f"priority class names with 'system-' prefix are reserved for system use only. error: {error}"))
    elif value > _HIGHEST_USER_PRIORITY:
        causes.append(forbidden(Path("value"), f"maximum allowed value of a user defined priority is {_HIGHEST_USER_PRIORITY}"))
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in ("Never", "PreemptLowerPriority"):
        causes.append(not_supported(Path("preemptionPolicy"), policy, ("Never", "PreemptLowerPriority")))
    if old is not None:
        if old.get("value", 0) != value:
            causes.append(forbidden(Path("value"), "may not be changed in an update."))
        causes.extend(immutable(policy, old.get("preemptionPolicy"), Path("preemptionPolicy")))
    return causes


def validate_runtime_class(obj: dict, old: dict | None) -> list[Cause]:
    handler = obj.get("handler") or ""
    causes = [invalid(Path("handler"), handler, m) for m in name_is_dns1123_label(handler)]
    overhead = (obj.get("overhead") or {}).get("podFixed")
    if overhead is not None:
        _, errs = validate_resource_list(overhead, Path("overhead").child("podFixed"))
        causes.extend(errs)
    scheduling: Any = obj.get("scheduling") or {}
    causes.extend(validate_labels(scheduling.get("nodeSelector"), Path("scheduling").child("nodeSelector")))
    if old is not None:
        causes.extend(immutable(handler, old.get("handler") or "", Path("handler")))
    return causes


def validate_crd(crd: dict, old: dict | None) -> list[Cause]:
    """apiextensions' CRD validation (`timoner.api.crd`), on create or update."""
    from timoner.api.crd import validate_crd as on_create
    from timoner.api.crd import validate_crd_update as on_update
    from timoner.api.crd.cel import compile_causes

    causes = on_create(crd) if old is None else on_update(crd, old)
    spec = crd.get("spec")
    for i, version in enumerate((spec.get("versions") if isinstance(spec, dict) else None) or ()):
        schema = ((version.get("schema") or {}) if isinstance(version, dict) else {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            causes += compile_causes(schema, f"spec.versions[{i}].schema.openAPIV3Schema", shape_checks=False)
    return causes
