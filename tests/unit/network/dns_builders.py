"""Builders for the cluster DNS tests: Services and EndpointSlices as the API serves them."""

from __future__ import annotations

from typing import Any

import dns.rdatatype

from timoner.network.dns import Answer, Resolver


def service(name: str, namespace: str = "ns", *, cluster_ip: str | None = "10.96.0.10",
            ports: list[tuple[str, int, str]] | None = None, **spec: Any) -> dict:
    """A Service; `cluster_ip="None"` makes it headless, `type="ExternalName"` an alias (pass externalName)."""
    body: dict[str, Any] = {"ports": [{"name": n, "port": p, "protocol": proto}
                                      for n, p, proto in (ports if ports is not None else [("http", 80, "TCP")])]}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
        body["clusterIPs"] = [cluster_ip]
    body.update(spec)
    return {"metadata": {"namespace": namespace, "name": name}, "spec": body}


def endpoint(ip: str, *, hostname: str | None = None, ready: bool | None = True) -> dict:
    out: dict[str, Any] = {"addresses": [ip]}
    if hostname:
        out["hostname"] = hostname
    if ready is not None:
        out["conditions"] = {"ready": ready}
    return out


def endpoint_slice(service_name: str | None, *endpoints: dict, namespace: str = "ns", name: str | None = None,
                   ports: list[tuple[str, int, str]] | None = None, address_type: str = "IPv4") -> dict:
    labels = {"kubernetes.io/service-name": service_name} if service_name else {}
    return {
        "metadata": {"namespace": namespace, "name": name or f"{service_name}-abcde", "labels": labels},
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": [{"name": n, "port": p, "protocol": proto}
                  for n, p, proto in (ports if ports is not None else [("http", 8080, "TCP")])],
    }


def resolver(*objects: dict, domain: str = "cluster.local") -> Resolver:
    """A Resolver holding these Services and EndpointSlices."""
    r = Resolver(domain)
    for obj in objects:
        if "addressType" in obj:
            r.set_endpoint_slice(obj)
        else:
            r.set_service(obj)
    return r


def rdatas(answer: Answer, rdtype: str | None = None) -> list[str]:
    """The answer section's data as text (`10.96.0.10`, `0 100 80 web.ns.svc.cluster.local.`), optionally one type."""
    return [rd.to_text() for rrset in answer.answer
            if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset]


def additional(answer: Answer) -> list[str]:
    return sorted(f"{rrset.name} {rd.to_text()}" for rrset in answer.additional for rd in rrset)
