"""The cluster's DNS records, answered as CoreDNS's `kubernetes` plugin answers them: a pure class.

`Resolver` keeps a digest of every Service and EndpointSlice it is handed
(`set_service`, `delete_service`, `set_endpoint_slice`,
`delete_endpoint_slice`: what informer handlers call) and answers one
question at a time with `resolve(qname, qtype)`. It does no I/O and reads no
clock; what the cluster cannot answer is said in the `Answer` instead
(`forward`: not a cluster name, ask the upstream resolvers; `chase`: the
answer ends in a CNAME out of the cluster domain), and the server
(`dns.ClusterDNS`) does the asking.

The names, from upstream's DNS specification as CoreDNS serves them
(`<domain>` is `cluster.local` unless configured):

- `<svc>.<ns>.svc.<domain>`: A/AAAA of the ClusterIPs; for a headless
  Service, of every ready endpoint (all of them with
  `publishNotReadyAddresses`); for an ExternalName Service, a CNAME to
  `spec.externalName`, followed inside the domain and chased upstream outside.
- `<host>.<svc>.<ns>.svc.<domain>`: one endpoint, `<host>` being its
  `hostname` or its dashed IP (`10-1-2-3`).
- `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV: one record per port
  matching both (the bare service name: every port), targets the service
  name (ClusterIP) or each endpoint's name (headless), their addresses in
  the additional section; priority 0, weight 100 split evenly (CoreDNS's).
- `<a-b-c-d>.<ns>.pod.<domain>`: A a.b.c.d, for any namespace and IP (CoreDNS's `pods insecure`).
- `dns-version.<domain>` TXT `1.1.0` (the specification's schema version).
- PTR in `in-addr.arpa`/`ip6.arpa` of Service IPs (the service name) and
  of ready endpoint IPs (the endpoint's name); other reverse names are forwarded.

A name inside the domain that does not exist is NXDOMAIN; one that exists
without records of the type asked (AAAA of an IPv4 service, the apex, a
namespace `<ns>.svc.<domain>`) is NOERROR with no answer (NODATA); both
carry the zone's SOA in the authority section. As CoreDNS, a headless
Service with no ready endpoint, and a port/protocol pair no port has, are
NXDOMAIN; names are matched case-insensitively and answered in the case asked.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

__all__ = ["SCHEMA_VERSION", "TTL", "Answer", "Resolver"]

TTL = 5  # seconds, CoreDNS's default for the kubernetes plugin
SCHEMA_VERSION = "1.1.0"  # the DNS specification's version, served at dns-version.<domain>
_SCHEMA_TTL = 28800
_MAX_CNAMES = 8  # CoreDNS stops following in-cluster CNAMEs after 8
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

IN = dns.rdataclass.IN
_T = dns.rdatatype
_REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))

Obj = dict[str, Any]
_Key = tuple[str, str]  # (namespace, name)
_Record = tuple[dns.name.Name, int, dns.rdata.Rdata]  # owner, TTL, data


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to one question: an rcode and the sections, or a hand-over to the upstream resolvers.

    `forward`: the name is not the cluster's; send the query upstream as it
    came. `chase`: the answer ends in a CNAME to this name outside the
    cluster domain; look it up upstream (same type) and append its answer.
    """

    rcode: int = dns.rcode.NOERROR
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    forward: bool = False
    chase: dns.name.Name | None = None


_FORWARD = Answer(forward=True)


@dataclass(frozen=True, slots=True)
class _Port:
    name: str  # lower case
    protocol: str  # lower case
    port: int  # -1: none declared (a headless Service or a slice without ports)


_NO_PORT = (_Port("", "", -1),)


@dataclass(frozen=True, slots=True)
class _Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]  # empty when headless or ExternalName
    reverse_ips: tuple[str, ...]  # cluster IPs, externalIPs, load balancer IPs: what PTR answers for
    headless: bool
    external_name: str  # only for type ExternalName
    ports: tuple[_Port, ...]
    publish_not_ready: bool


@dataclass(frozen=True, slots=True)
class _Endpoint:
    addresses: tuple[str, ...]
    hostname: str
    ready: bool


@dataclass(frozen=True, slots=True)
class _Slice:
    namespace: str
    service: str
    endpoints: tuple[_Endpoint, ...]
    ports: tuple[_Port, ...]


@dataclass(frozen=True, slots=True)
class _Target:
    """What a name stands for (CoreDNS's msg.Service): an address or an alias, a port, and its own name."""

    host: str  # an IP address, or the domain name an ExternalName aliases
    port: int
    name: str  # the target's own DNS name: SRV target and owner of its address record


@dataclass(slots=True)
class _Found:
    answer: list[_Record]
    additional: list[_Record]
    chase: dns.name.Name | None = None


class Resolver:
    """Answers DNS questions from the cluster's Services and EndpointSlices; see the module docstring.

    `serial` is the SOA serial; the server sets it (to the time of the last
    change) so the class itself reads no clock.
    """

    def __init__(self, domain: str = "cluster.local", *, ttl: int = TTL) -> None:
        self.zone = dns.name.from_text(domain).canonicalize()
        self.domain = self.zone.to_text()  # "cluster.local."
        self.ttl = ttl
        self.serial = 0
        self._services: dict[_Key, _Service] = {}
        self._slices: dict[_Key, _Slice] = {}
        self._slices_by_service: dict[_Key, set[_Key]] = {}
        self._service_by_ip: dict[str, set[_Key]] = {}
        self._slices_by_ip: dict[str, set[_Key]] = {}

    # -- the objects ----------------------------------------------------------------------

    def set_service(self, obj: Obj) -> None:
        """Take in a Service as it is now (added or updated)."""
        self.delete_service(obj)
        svc = _service_of(obj)
        key = (svc.namespace, svc.name)
        self._services[key] = svc
        for ip in svc.reverse_ips:
            self._service_by_ip.setdefault(ip, set()).add(key)

    def delete_service(self, obj: Obj) -> None:
        key = _key(obj)
        old = self._services.pop(key, None)
        if old is not None:
            for ip in old.reverse_ips:
                _discard(self._service_by_ip, ip, key)

    def set_endpoint_slice(self, obj: Obj) -> None:
        """Take in an EndpointSlice as it is now; slices of no Service, or of FQDNs, are ignored."""
        self.delete_endpoint_slice(obj)
        slice_ = _slice_of(obj)
        if slice_ is None:
            return
        key = _key(obj)
        self._slices[key] = slice_
        self._slices_by_service.setdefault((slice_.namespace, slice_.service), set()).add(key)
        for endpoint in slice_.endpoints:
            for ip in endpoint.addresses:
                self._slices_by_ip.setdefault(ip, set()).add(key)

    def delete_endpoint_slice(self, obj: Obj) -> None:
        key = _key(obj)
        old = self._slices.pop(key, None)
        if old is not None:
            _discard(self._slices_by_service, (old.namespace, old.service), key)
            for endpoint in old.endpoints:
                for ip in endpoint.addresses:
                    _discard(self._slices_by_ip, ip, key)

    # -- questions ------------------------------------------------------------------------

    def resolve(self, qname: dns.name.Name | str, qtype: int | str) -> Answer:
        """The answer to `qname` `qtype` (class IN), or an `Answer` asking to forward it."""
        name = qname if isinstance(qname, dns.name.Name) else dns.name.from_text(qname)
        rdtype = dns.rdatatype.from_text(qtype) if isinstance(qtype, str) else dns.rdatatype.RdataType(qtype)
        if name.is_subdomain(self.zone):
            return self._zone_answer(name, rdtype)
        if rdtype == _T.PTR and any(name.is_subdomain(zone) for zone in _REVERSE_ZONES):
            records = self._reverse(name)
            if records:
                return Answer(answer=_rrsets(records))
        return _FORWARD

    def _zone_answer(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Answer:
        if rdtype in (_T.AXFR, _T.IXFR):
            return Answer(rcode=dns.rcode.REFUSED)
        found = self._find(name, rdtype, depth=0)
        if found is None:
            return Answer(rcode=dns.rcode.NXDOMAIN, authority=(self._soa(),))
        if not found.answer and found.chase is None:
            return Answer(authority=(self._soa(),))
        return Answer(answer=_rrsets(found.answer), additional=_rrsets(found.additional), chase=found.chase)

    def _find(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, *, depth: int) -> _Found | None:
        """The records of a name in the zone; None when the name does not exist."""
        labels = [label.decode("latin-1").lower() for label in name.relativize(self.zone).labels]
        if not labels:  # the apex
            if rdtype == _T.SOA:
                return _Found([(name, self.ttl, self._soa_rdata())], [])
            if rdtype == _T.NS:
                return _Found([(name, self.ttl, NS(IN, _T.NS, self._ns_name()))], [])
            return _Found([], [])
        if labels == ["dns-version"]:
            if rdtype == _T.TXT:
                return _Found([(name, _SCHEMA_TTL, TXT(IN, _T.TXT, [SCHEMA_VERSION]))], [])
            return _Found([], [])
        targets = self._lookup(labels)
        if targets is None:
            return None
        alias = _alias(targets)
        if alias is not None:
            return self._follow(name, rdtype, alias, depth=depth)
        if rdtype in (_T.A, _T.AAAA):
            return _Found(_addresses(name, rdtype, targets, self.ttl), [])
        if rdtype == _T.SRV:
            return self._srv(name, targets)
        return _Found([], [])

    def _follow(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, alias: str, *,
                depth: int) -> _Found:
        """An ExternalName: its CNAME, then the target's records (in the zone) or a chase upstream."""
        try:
            target = dns.name.from_text(alias)
        except dns.exception.DNSException:
            return _Found([], [])
        if target == name or depth + 1 >= _MAX_CNAMES:  # x CNAME x, or a chain too long: as CoreDNS, drop it
            return _Found([], [])
        cname = (name, self.ttl, CNAME(IN, _T.CNAME, target))
        if rdtype == _T.CNAME:
            return _Found([cname], [])
        if not target.is_subdomain(self.zone):
            return _Found([cname], [], chase=target)
        inner = self._find(target, rdtype, depth=depth + 1)
        if inner is None or (not inner.answer and inner.chase is None):
            # CoreDNS adds the CNAME only when the target has records of the type.
            return _Found([], [])
        return _Found([cname, *inner.answer], inner.additional, inner.chase)

    def _srv(self, name: dns.name.Name, targets: list[_Target]) -> _Found:
        # CoreDNS spreads weight 100 over every target (port-less ones too), all at priority 0.
        weight = max(1, math.floor(100.0 / (100 * len(targets)) * 100)) if targets else 0
        answer: list[_Record] = []
        additional: list[_Record] = []
        seen: set[tuple[str, object]] = set()
        for target in targets:
            if target.port == -1:
                continue
            owner = dns.name.from_text(target.name)
            if (target.name, target.port) not in seen:
                seen.add((target.name, target.port))
                answer.append((name, self.ttl, SRV(IN, _T.SRV, 0, weight, target.port, owner)))
            if (target.name, target.host) not in seen:
                seen.add((target.name, target.host))
                rdtype = _T.AAAA if ":" in target.host else _T.A
                additional.extend(_addresses(owner, rdtype, [target], self.ttl))
        return _Found(answer, additional)

    # -- names to targets (CoreDNS's parseRequest, findServices, findPods) ----------------

    def _lookup(self, labels: list[str]) -> list[_Target] | None:
        """What a name below the zone stands for: targets, [] (exists, nothing to say) or None (NXDOMAIN)."""
        if labels in (["svc"], ["pod"]):
            return []
        kind = labels[-1]
        if kind not in ("svc", "pod"):
            return None
        if len(labels) == 2:  # <ns>.svc: every namespace "exists", as CoreDNS answers
            return []
        namespace, service, rest = labels[-2], labels[-3], labels[:-3]
        endpoint = port = protocol = ""
        if len(rest) == 1:
            endpoint = rest[0]
        elif len(rest) == 2:
            port, protocol = rest[0].removeprefix("_"), rest[1].removeprefix("_")
        elif rest:
            return None
        if kind == "pod":
            return self._pod(namespace, service)
        return self._service_targets(namespace, service, endpoint, port, protocol)

    def _service_targets(self, namespace: str, name: str, endpoint: str, port: str,
                         protocol: str) -> list[_Target] | None:
        svc = self._services.get((namespace, name))
        if svc is None:
            return None
        if svc.external_name:
            if endpoint or _canonical_ip(svc.external_name) is not None:
                return None  # CoreDNS serves ExternalNames that are names, and no endpoints below them
            return [_Target(svc.external_name, -1, "")]
        out: list[_Target] = []
        if svc.headless or endpoint:
            for slice_, ep in self._endpoints(svc):
                for address in ep.addresses:
                    host = _endpoint_hostname(ep, address)
                    if endpoint and endpoint != host:
                        continue
                    for p in slice_.ports:
                        if _port_matches(port, protocol, p):
                            out.append(_Target(address, p.port, f"{host}.{svc.name}.{namespace}.svc.{self.domain}"))
            return out or None
        matched = False
        for p in svc.ports:
            if _port_matches(port, protocol, p):
                matched = True
                out.extend(_Target(ip, p.port, f"{svc.name}.{namespace}.svc.{self.domain}") for ip in svc.cluster_ips)
        return out if matched else None

    def _endpoints(self, svc: _Service) -> Iterator[tuple[_Slice, _Endpoint]]:
        """The endpoints DNS publishes: ready ones, or all with publishNotReadyAddresses."""
        for key in sorted(self._slices_by_service.get((svc.namespace, svc.name), ())):
            slice_ = self._slices[key]
            for ep in slice_.endpoints:
                if ep.ready or svc.publish_not_ready:
                    yield slice_, ep

    def _pod(self, namespace: str, label: str) -> list[_Target] | None:
        if label.count("-") == 3 and "--" not in label:
            text = label.replace("-", ".")
        else:
            text = label.replace("-", ":")
        ip = _canonical_ip(text)
        if ip is None:
            return None
        return [_Target(ip, 0, f"{label}.{namespace}.pod.{self.domain}")]

    def _reverse(self, name: dns.name.Name) -> list[_Record]:
        try:
            ip = _canonical_ip(dns.reversename.to_address(name))
        except (dns.exception.DNSException, ValueError):
            return []
        if ip is None:
            return []
        keys = self._service_by_ip.get(ip)
        if keys:
            namespace, svc = min(keys)
            return [(name, self.ttl, PTR(IN, _T.PTR, dns.name.from_text(f"{svc}.{namespace}.svc.{self.domain}")))]
        out: list[_Record] = []
        seen: set[str] = set()
        for key in sorted(self._slices_by_ip.get(ip, ())):
            slice_ = self._slices[key]
            svc_obj = self._services.get((slice_.namespace, slice_.service))
            publish = svc_obj is not None and svc_obj.publish_not_ready
            for ep in slice_.endpoints:
                if (ep.ready or publish) and ip in ep.addresses:
                    target = f"{_endpoint_hostname(ep, ip)}.{slice_.service}.{slice_.namespace}.svc.{self.domain}"
                    if target not in seen:
                        seen.add(target)
                        out.append((name, self.ttl, PTR(IN, _T.PTR, dns.name.from_text(target))))
        return out

    # -- the zone's own records -----------------------------------------------------------

    def _ns_name(self) -> dns.name.Name:
        return dns.name.from_text("ns.dns", origin=self.zone)

    def _soa_rdata(self) -> SOA:
        return SOA(IN, _T.SOA, self._ns_name(), dns.name.from_text("hostmaster", origin=self.zone),
                   self.serial & 0xFFFFFFFF, 7200, 1800, 86400, self.ttl)

    def _soa(self) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(self.zone, IN, _T.SOA)
        rrset.add(self._soa_rdata(), min(self.ttl, 300))
        return rrset


# -- objects to digests ---------------------------------------------------------------------


def _key(obj: Obj) -> _Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _discard(index: dict[Any, set[_Key]], at: Any, key: _Key) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]


def _ports(items: Any, *, default_protocol: str) -> tuple[_Port, ...]:
    out = []
    for p in items or ():
        port = p.get("port")
        out.append(_Port((p.get("name") or "").lower(), (p.get("protocol") or default_protocol).lower(),
                         int(port) if port is not None else -1))
    return tuple(out)


def _service_of(obj: Obj) -> _Service:
    namespace, name = _key(obj)
    spec = obj.get("spec") or {}
    external = spec.get("type") == "ExternalName"
    ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    headless = not external and bool(ips) and ips[0] == "None"
    cluster_ips = () if external or headless else tuple(ip for ip in map(_canonical_ip, ips) if ip)
    more = list(spec.get("externalIPs") or ())
    for ingress in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        if ingress.get("ip"):
            more.append(ingress["ip"])
    extra = tuple(ip for ip in map(_canonical_ip, more) if ip and ip not in cluster_ips)
    return _Service(
        namespace=namespace, name=name, cluster_ips=cluster_ips, reverse_ips=cluster_ips + extra,
        headless=headless, external_name=(spec.get("externalName") or "").rstrip(".") if external else "",
        ports=_ports(spec.get("ports"), default_protocol="TCP"),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")))


def _slice_of(obj: Obj) -> _Slice | None:
    namespace, _ = _key(obj)
    service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType") not in ("IPv4", "IPv6"):
        return None
    endpoints = []
    for ep in obj.get("endpoints") or ():
        addresses = tuple(ip for ip in map(_canonical_ip, ep.get("addresses") or ()) if ip)
        # ready unset means ready (the API's convention, and CoreDNS's)
        ready = (ep.get("conditions") or {}).get("ready") is not False
        endpoints.append(_Endpoint(addresses, (ep.get("hostname") or "").lower(), ready))
    ports = _ports(obj.get("ports"), default_protocol="TCP") or _NO_PORT
    return _Slice(namespace, service, tuple(endpoints), ports)


# -- small helpers --------------------------------------------------------------------------


def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _endpoint_hostname(ep: _Endpoint, address: str) -> str:
    """The endpoint's name label: its hostname, else its dashed IP (CoreDNS's endpointHostname)."""
    if ep.hostname:
        return ep.hostname
    if "." in address:
        return address.replace(".", "-")
    dashed = address.replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed


def _port_matches(port: str, protocol: str, p: _Port) -> bool:
    """An empty port or protocol in the question matches any (CoreDNS's matchPortAndProtocol)."""
    return (not port or port == p.name) and (not protocol or protocol == p.protocol)


def _alias(targets: list[_Target]) -> str | None:
    if len(targets) == 1 and not targets[0].name:
        return targets[0].host
    return None


def _addresses(owner: dns.name.Name, rdtype: int, targets: list[_Target], ttl: int) -> list[_Record]:
    out: list[_Record] = []
    for target in targets:
        v6 = ":" in target.host
        if rdtype == _T.A and not v6:
            out.append((owner, ttl, A(IN, _T.A, target.host)))
        elif rdtype == _T.AAAA and v6:
            out.append((owner, ttl, AAAA(IN, _T.AAAA, target.host)))
    return out


def _rrsets(records: list[_Record]) -> tuple[dns.rrset.RRset, ...]:
    """Records grouped into RRsets by owner and type, in order of first appearance, duplicates dropped."""
    out: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for owner, ttl, rdata in records:
        rrset = out.get((owner, rdata.rdtype))
        if rrset is None:
            rrset = out[(owner, rdata.rdtype)] = dns.rrset.RRset(owner, IN, rdata.rdtype)
        rrset.add(rdata, ttl)
    return tuple(out.values())
