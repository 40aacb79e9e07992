"""The cluster DNS records as a pure class: every name the DNS specification (as CoreDNS serves it) defines."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from dns_builders import additional, endpoint, endpoint_slice, rdatas, resolver, service
from hypothesis import given
from hypothesis import strategies as st

from timoner.network.dns import TTL, Resolver

NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED

WEB = service("web", cluster_ip="10.96.0.10", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")])
DB = service("db", cluster_ip="None", ports=[("pg", 5432, "TCP")])
DB_SLICE = endpoint_slice(
    "db",
    endpoint("10.0.0.1", hostname="db-0"),
    endpoint("10.0.0.2"),
    endpoint("10.0.0.3", hostname="db-2", ready=False),
    ports=[("pg", 5432, "TCP")],
)


def cluster() -> Resolver:
    return resolver(WEB, DB, DB_SLICE)


def soa_only(answer) -> bool:
    """A negative answer's shape: no records, the zone's SOA (TTL 5) in the authority section."""
    return (not answer.answer and len(answer.authority) == 1
            and answer.authority[0].rdtype == dns.rdatatype.SOA
            and answer.authority[0].name == dns.name.from_text("cluster.local.")
            and answer.authority[0].ttl == TTL)


# -- A / AAAA, NXDOMAIN vs NODATA ------------------------------------------------------------


def test_a_record_of_a_cluster_ip_service():
    answer = cluster().resolve("web.ns.svc.cluster.local.", "A")
    assert answer.rcode == NOERROR and not answer.forward
    assert rdatas(answer) == ["10.96.0.10"]
    assert answer.answer[0].ttl == TTL == 5


def test_names_are_case_insensitive_and_answered_in_the_case_asked():
    answer = cluster().resolve("Web.NS.Svc.Cluster.Local.", "A")
    assert rdatas(answer) == ["10.96.0.10"]
    assert answer.answer[0].name.to_text() == "Web.NS.Svc.Cluster.Local."


@given(st.lists(st.booleans(), min_size=24, max_size=24))
def test_any_casing_of_a_name_gets_the_same_records(upper):
    name = "web.ns.svc.cluster.local."
    cased = "".join(c.upper() if up else c for c, up in zip(name, upper + [False] * len(name), strict=False))
    assert rdatas(cluster().resolve(cased, "A")) == ["10.96.0.10"]


@pytest.mark.parametrize(("name", "qtype", "rcode"), [
    ("web.ns.svc.cluster.local.", "AAAA", NOERROR),  # IPv4-only service: NODATA
    ("web.ns.svc.cluster.local.", "MX", NOERROR),
    ("web.ns.svc.cluster.local.", "TXT", NOERROR),
    ("ns.svc.cluster.local.", "A", NOERROR),  # a namespace exists (as CoreDNS answers)
    ("svc.cluster.local.", "A", NOERROR),
    ("pod.cluster.local.", "A", NOERROR),
    ("cluster.local.", "A", NOERROR),  # the apex
    ("cluster.local.", "AAAA", NOERROR),
    ("missing.ns.svc.cluster.local.", "A", NXDOMAIN),
    ("missing.ns.svc.cluster.local.", "AAAA", NXDOMAIN),
    ("web.other.svc.cluster.local.", "A", NXDOMAIN),  # same name, another namespace
    ("web.ns.cluster.local.", "A", NXDOMAIN),  # neither svc nor pod
    ("anything.cluster.local.", "A", NXDOMAIN),
    ("a.b.c.web.ns.svc.cluster.local.", "A", NXDOMAIN),  # too many labels
    ("nobody.web.ns.svc.cluster.local.", "A", NXDOMAIN),  # no such endpoint
    ("_http._udp.web.ns.svc.cluster.local.", "SRV", NXDOMAIN),  # no such port and protocol
    ("_grpc._tcp.web.ns.svc.cluster.local.", "A", NXDOMAIN),
])
def test_nxdomain_and_nodata_both_carry_the_soa(name, qtype, rcode):
    answer = cluster().resolve(name, qtype)
    assert answer.rcode == rcode
    assert not answer.forward
    assert soa_only(answer)


def test_soa_and_ns_at_the_apex():
    r = cluster()
    r.serial = 1700000000
    soa = r.resolve("cluster.local.", "SOA")
    assert rdatas(soa) == ["ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5"]
    assert rdatas(r.resolve("cluster.local.", "NS")) == ["ns.dns.cluster.local."]
    assert r.resolve("cluster.local.", "AXFR").rcode == REFUSED


def test_dns_version_txt():
    answer = cluster().resolve("dns-version.cluster.local.", "TXT")
    assert rdatas(answer) == ['"1.1.0"']


def test_a_cluster_ip_service_answers_every_cluster_ip_family_by_type():
    r = resolver(service("dual", cluster_ip="10.96.0.20", clusterIPs=["10.96.0.20", "fd00::20"]))
    assert rdatas(r.resolve("dual.ns.svc.cluster.local.", "A")) == ["10.96.0.20"]
    assert rdatas(r.resolve("dual.ns.svc.cluster.local.", "AAAA")) == ["fd00::20"]


def test_a_service_without_an_allocated_ip_is_nodata():
    answer = resolver(service("new", cluster_ip=None)).resolve("new.ns.svc.cluster.local.", "A")
    assert answer.rcode == NOERROR and soa_only(answer)


# -- headless services and endpoints -----------------------------------------------------------


def test_headless_service_answers_its_ready_endpoints_only():
    answer = cluster().resolve("db.ns.svc.cluster.local.", "A")
    assert sorted(rdatas(answer)) == ["10.0.0.1", "10.0.0.2"]


def test_headless_service_with_only_not_ready_endpoints_is_nxdomain():
    r = resolver(DB, endpoint_slice("db", endpoint("10.0.0.3", ready=False), ports=[("pg", 5432, "TCP")]))
    answer = r.resolve("db.ns.svc.cluster.local.", "A")
    assert answer.rcode == NXDOMAIN and soa_only(answer)


def test_headless_service_without_endpoint_slices_is_nxdomain():
    assert resolver(DB).resolve("db.ns.svc.cluster.local.", "A").rcode == NXDOMAIN


def test_publish_not_ready_addresses_publishes_every_endpoint():
    publishing = service("db", cluster_ip="None", ports=[("pg", 5432, "TCP")], publishNotReadyAddresses=True)
    r = resolver(publishing, DB_SLICE)
    assert sorted(rdatas(r.resolve("db.ns.svc.cluster.local.", "A"))) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert rdatas(r.resolve("db-2.db.ns.svc.cluster.local.", "A")) == ["10.0.0.3"]


def test_an_endpoint_without_ready_condition_counts_as_ready():
    r = resolver(DB, endpoint_slice("db", endpoint("10.0.0.9", ready=None)))
    assert rdatas(r.resolve("db.ns.svc.cluster.local.", "A")) == ["10.0.0.9"]


def test_endpoints_of_all_slices_of_a_service_are_merged_and_slices_of_others_ignored():
    r = resolver(
        DB,
        endpoint_slice("db", endpoint("10.0.0.1"), name="db-1"),
        endpoint_slice("db", endpoint("10.0.0.2"), endpoint("10.0.0.1"), name="db-2"),
        endpoint_slice("other", endpoint("10.0.0.7"), name="other-1"),
        endpoint_slice(None, endpoint("10.0.0.8"), name="unlabelled"),
        endpoint_slice("db", endpoint("10.0.0.5"), name="db-other-ns", namespace="elsewhere"),
    )
    assert sorted(rdatas(r.resolve("db.ns.svc.cluster.local.", "A"))) == ["10.0.0.1", "10.0.0.2"]


def test_fqdn_slices_are_ignored_and_ipv6_slices_answer_aaaa():
    r = resolver(DB, endpoint_slice("db", {"addresses": ["db.example.com"]}, name="fqdn", address_type="FQDN"),
                 endpoint_slice("db", endpoint("fd00::1", hostname="db-0"), name="v6", address_type="IPv6"))
    assert rdatas(r.resolve("db.ns.svc.cluster.local.", "AAAA")) == ["fd00::1"]
    assert r.resolve("db.ns.svc.cluster.local.", "A").rcode == NOERROR  # exists, no IPv4: NODATA
    assert rdatas(r.resolve("db-0.db.ns.svc.cluster.local.", "AAAA")) == ["fd00::1"]


def test_endpoint_names_are_the_hostname_or_the_dashed_ip():
    r = cluster()
    assert rdatas(r.resolve("db-0.db.ns.svc.cluster.local.", "A")) == ["10.0.0.1"]
    assert rdatas(r.resolve("10-0-0-2.db.ns.svc.cluster.local.", "A")) == ["10.0.0.2"]
    assert r.resolve("10-0-0-1.db.ns.svc.cluster.local.", "A").rcode == NXDOMAIN  # it has a hostname
    assert r.resolve("db-2.db.ns.svc.cluster.local.", "A").rcode == NXDOMAIN  # not ready


def test_endpoint_names_below_a_cluster_ip_service_resolve_too():
    r = resolver(WEB, endpoint_slice("web", endpoint("10.0.1.1", hostname="w0")))
    assert rdatas(r.resolve("w0.web.ns.svc.cluster.local.", "A")) == ["10.0.1.1"]


def test_changes_and_deletes_are_followed():
    r = cluster()
    r.set_endpoint_slice(endpoint_slice("db", endpoint("10.0.0.4", hostname="db-0"), ports=[("pg", 5432, "TCP")]))
    assert rdatas(r.resolve("db.ns.svc.cluster.local.", "A")) == ["10.0.0.4"]
    r.delete_endpoint_slice(DB_SLICE)
    assert r.resolve("db.ns.svc.cluster.local.", "A").rcode == NXDOMAIN
    r.set_service(service("web", cluster_ip="10.96.0.99"))
    assert rdatas(r.resolve("web.ns.svc.cluster.local.", "A")) == ["10.96.0.99"]
    assert r.resolve("10.0.96.10.in-addr.arpa.", "PTR").forward  # the old IP is gone from the reverse index
    r.delete_service(WEB)
    assert r.resolve("web.ns.svc.cluster.local.", "A").rcode == NXDOMAIN
    assert r.resolve("99.0.96.10.in-addr.arpa.", "PTR").forward


# -- SRV --------------------------------------------------------------------------------------


def test_srv_of_a_named_port_targets_the_service_with_its_address_in_additional():
    answer = cluster().resolve("_http._tcp.web.ns.svc.cluster.local.", "SRV")
    assert rdatas(answer) == ["0 100 80 web.ns.svc.cluster.local."]
    assert additional(answer) == ["web.ns.svc.cluster.local. 10.96.0.10"]


def test_srv_port_and_protocol_are_case_insensitive():
    answer = cluster().resolve("_DNS._UDP.web.ns.svc.cluster.local.", "SRV")
    assert rdatas(answer) == ["0 100 53 web.ns.svc.cluster.local."]


def test_srv_of_the_bare_service_name_lists_every_port():
    answer = cluster().resolve("web.ns.svc.cluster.local.", "SRV")
    assert sorted(rdatas(answer)) == ["0 50 53 web.ns.svc.cluster.local.", "0 50 80 web.ns.svc.cluster.local."]
    assert additional(answer) == ["web.ns.svc.cluster.local. 10.96.0.10"]


def test_srv_of_a_headless_service_has_one_record_per_ready_endpoint():
    answer = cluster().resolve("_pg._tcp.db.ns.svc.cluster.local.", "SRV")
    assert sorted(rdatas(answer)) == ["0 50 5432 10-0-0-2.db.ns.svc.cluster.local.",
                                      "0 50 5432 db-0.db.ns.svc.cluster.local."]
    assert additional(answer) == ["10-0-0-2.db.ns.svc.cluster.local. 10.0.0.2",
                                  "db-0.db.ns.svc.cluster.local. 10.0.0.1"]


def test_srv_weights_split_100_as_coredns_does():
    slice_ = endpoint_slice("db", endpoint("10.0.0.1"), endpoint("10.0.0.2"), endpoint("10.0.0.3"),
                            ports=[("pg", 5432, "TCP")])
    answer = resolver(DB, slice_).resolve("_pg._tcp.db.ns.svc.cluster.local.", "SRV")
    assert {rd.split()[1] for rd in rdatas(answer)} == {"33"}


def test_srv_of_a_headless_service_without_ports_is_nodata_but_its_a_records_exist():
    portless = service("bare", cluster_ip="None", ports=[])
    r = resolver(portless, endpoint_slice("bare", endpoint("10.0.0.5"), ports=[]))
    assert rdatas(r.resolve("bare.ns.svc.cluster.local.", "A")) == ["10.0.0.5"]
    srv = r.resolve("bare.ns.svc.cluster.local.", "SRV")
    assert srv.rcode == NOERROR and soa_only(srv)


# -- ExternalName -------------------------------------------------------------------------------


def test_external_name_is_a_cname_chased_upstream():
    r = resolver(service("ext", cluster_ip=None, ports=[], type="ExternalName", externalName="db.Example.com"))
    answer = r.resolve("ext.ns.svc.cluster.local.", "A")
    assert rdatas(answer) == ["db.Example.com."]
    assert answer.answer[0].rdtype == dns.rdatatype.CNAME
    assert answer.chase == dns.name.from_text("db.example.com.")
    cname = r.resolve("ext.ns.svc.cluster.local.", "CNAME")
    assert rdatas(cname) == ["db.Example.com."] and cname.chase is None


def test_external_name_inside_the_cluster_domain_is_followed_here():
    r = resolver(WEB, service("alias", cluster_ip=None, ports=[], type="ExternalName",
                              externalName="web.ns.svc.cluster.local"))
    answer = r.resolve("alias.ns.svc.cluster.local.", "A")
    assert [(rrset.name.to_text(), rd.to_text()) for rrset in answer.answer for rd in rrset] == [
        ("alias.ns.svc.cluster.local.", "web.ns.svc.cluster.local."),
        ("web.ns.svc.cluster.local.", "10.96.0.10"),
    ]
    assert answer.chase is None


def test_external_name_loops_and_ip_addresses_are_not_followed():
    r = resolver(
        service("a", cluster_ip=None, ports=[], type="ExternalName", externalName="b.ns.svc.cluster.local"),
        service("b", cluster_ip=None, ports=[], type="ExternalName", externalName="a.ns.svc.cluster.local"),
        service("ip", cluster_ip=None, ports=[], type="ExternalName", externalName="192.0.2.1"),
    )
    looped = r.resolve("a.ns.svc.cluster.local.", "A")
    assert looped.rcode == NOERROR and not looped.answer and looped.chase is None
    assert r.resolve("ip.ns.svc.cluster.local.", "A").rcode == NXDOMAIN


# -- pods -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "qtype", "expected"), [
    ("1-2-3-4.ns.pod.cluster.local.", "A", ["1.2.3.4"]),
    ("10-244-0-7.any-namespace.pod.cluster.local.", "A", ["10.244.0.7"]),
    ("fd00--1.ns.pod.cluster.local.", "AAAA", ["fd00::1"]),
    ("1-2-3-4.ns.pod.cluster.local.", "AAAA", []),
])
def test_pod_names_are_their_dashed_ip(name, qtype, expected):
    answer = Resolver().resolve(name, qtype)
    assert answer.rcode == NOERROR and rdatas(answer) == expected


@pytest.mark.parametrize("name", ["1-2-3.ns.pod.cluster.local.", "1-2-3-400.ns.pod.cluster.local.",
                                  "web.ns.pod.cluster.local."])
def test_pod_names_that_are_no_ip_are_nxdomain(name):
    assert Resolver().resolve(name, "A").rcode == NXDOMAIN


# -- PTR --------------------------------------------------------------------------------------


def test_ptr_of_a_cluster_ip_names_the_service():
    answer = cluster().resolve("10.0.96.10.in-addr.arpa.", "PTR")
    assert answer.rcode == NOERROR and not answer.forward
    assert rdatas(answer) == ["web.ns.svc.cluster.local."]


def test_ptr_of_an_ipv6_cluster_ip():
    r = resolver(service("v6", cluster_ip="fd00::a"))
    name = dns.name.from_text("a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.")
    assert rdatas(r.resolve(name, "PTR")) == ["v6.ns.svc.cluster.local."]


def test_ptr_of_endpoint_ips_names_the_endpoint():
    r = cluster()
    assert rdatas(r.resolve("1.0.0.10.in-addr.arpa.", "PTR")) == ["db-0.db.ns.svc.cluster.local."]
    assert rdatas(r.resolve("2.0.0.10.in-addr.arpa.", "PTR")) == ["10-0-0-2.db.ns.svc.cluster.local."]


def test_ptr_of_unknown_or_not_ready_ips_is_forwarded():
    r = cluster()
    assert r.resolve("3.0.0.10.in-addr.arpa.", "PTR").forward  # db-2 is not ready
    assert r.resolve("8.8.8.8.in-addr.arpa.", "PTR").forward
    assert r.resolve("0.0.10.in-addr.arpa.", "PTR").forward  # not a whole address
    assert r.resolve("10.0.96.10.in-addr.arpa.", "A").forward  # only PTR is ours there


# -- forwarding and other domains -----------------------------------------------------------


@pytest.mark.parametrize("name", ["example.com.", "web.ns.svc.cluster.local.example.com.", "local.", "."])
def test_names_outside_the_cluster_domain_are_forwarded(name):
    answer = cluster().resolve(name, "A")
    assert answer.forward and not answer.answer and not answer.authority


def test_another_cluster_domain():
    r = resolver(service("web", cluster_ip="10.96.0.10"), domain="corp.internal")
    assert rdatas(r.resolve("web.ns.svc.corp.internal.", "A")) == ["10.96.0.10"]
    assert r.resolve("web.ns.svc.cluster.local.", "A").forward
    assert rdatas(r.resolve("10.0.96.10.in-addr.arpa.", "PTR")) == ["web.ns.svc.corp.internal."]
    assert r.resolve("nope.ns.svc.corp.internal.", "A").authority[0].name.to_text() == "corp.internal."
