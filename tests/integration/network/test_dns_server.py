"""ClusterDNS against a real API server: records from Services and EndpointSlices, over real UDP and TCP."""

from __future__ import annotations

import asyncio
import contextlib

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
from dns_fakes import FakeUpstream, closed_port

from timoner.client import resource_for
from timoner.network.dns import ClusterDNS

SERVICES = resource_for("v1", "Service")
SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")


@pytest.fixture
def server(module_server):
    """The module's one API server: each test names its Services in a namespace of its own."""
    return module_server


@pytest.fixture
async def upstream():
    fake = await FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
async def start_dns(client):
    """Start a ClusterDNS (127.0.0.1, any port; more options as keywords) and wait until it is ready."""
    started: list[asyncio.Task] = []

    async def start(**options) -> ClusterDNS:
        server = ClusterDNS(client, host="127.0.0.1", port=0, **options)
        started.append(asyncio.create_task(server.run()))
        await asyncio.wait_for(server.ready.wait(), 20)
        assert server.port != 0
        return server

    yield start
    for task in started:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def cluster_dns(start_dns, upstream):
    """A ClusterDNS forwarding first to a dead upstream (refused at once), then to the fake one."""
    return await start_dns(upstreams=[f"127.0.0.1:{closed_port()}", str(upstream)])


async def ask(server, name: str, qtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await send(query, "127.0.0.1", port=server.port, timeout=5)


def records(response: dns.message.Message, qtype: str, section: str = "answer") -> list[str]:
    rdtype = dns.rdatatype.from_text(qtype)
    return sorted(rd.to_text() for rrset in getattr(response, section) if rrset.rdtype == rdtype for rd in rrset)


async def create_service(client, namespace: str, name: str, **spec) -> dict:
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP"}])
    return await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                          "metadata": {"name": name, "namespace": namespace}, "spec": spec},
                               namespace=namespace)


def slice_body(namespace: str, service: str, endpoints: list[dict], *, name: str | None = None) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{service}-1", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    }


def endpoint(ip: str, *, hostname: str | None = None, ready: bool = True) -> dict:
    out = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


async def test_a_record_of_a_service_over_udp_and_tcp(client, namespace, cluster_dns, eventually):
    svc = await create_service(client, namespace, "web")
    ip = svc["spec"]["clusterIP"]
    name = f"web.{namespace}.svc.cluster.local."

    async def answered():
        response = await ask(cluster_dns, name)
        return response if records(response, "A") else None

    response = await eventually(answered, timeout=2, what="the service's A record")
    assert records(response, "A") == [ip]
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    assert response.answer[0].ttl == 5

    over_tcp = await ask(cluster_dns, name.upper(), tcp=True)
    assert records(over_tcp, "A") == [ip]
    assert over_tcp.answer[0].name.to_text() == name.upper()

    nodata = await ask(cluster_dns, name, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert records(nodata, "SOA", "authority")
    missing = await ask(cluster_dns, f"nope.{namespace}.svc.cluster.local.", tcp=True)
    assert missing.rcode() == dns.rcode.NXDOMAIN and records(missing, "SOA", "authority")


async def test_answers_follow_endpoint_and_service_changes(client, namespace, cluster_dns, eventually):
    await create_service(client, namespace, "db", clusterIP="None", ports=[{"name": "pg", "port": 5432}])
    created = await client.create(SLICES, slice_body(namespace, "db", [endpoint("10.1.0.1", hostname="db-0")]),
                                  namespace=namespace)
    name = f"db.{namespace}.svc.cluster.local."

    async def a_records(wanted: list[str], qname: str = name):
        return records(await ask(cluster_dns, qname), "A") == wanted

    await eventually(lambda: a_records(["10.1.0.1"]), timeout=2, what="the endpoint")
    assert await a_records(["10.1.0.1"], f"db-0.db.{namespace}.svc.cluster.local.")

    # db-0 stops being ready and a second endpoint comes: visible within the informer's latency
    created["endpoints"] = [endpoint("10.1.0.1", hostname="db-0", ready=False), endpoint("10.1.0.2")]
    await client.update(SLICES, created, namespace=namespace)
    await eventually(lambda: a_records(["10.1.0.2"]), timeout=2, what="the endpoint change")
    assert await a_records(["10.1.0.2"], f"10-1-0-2.db.{namespace}.svc.cluster.local.")

    await client.delete(SERVICES, "db", namespace=namespace)

    async def gone():
        return (await ask(cluster_dns, name)).rcode() == dns.rcode.NXDOMAIN

    await eventually(gone, timeout=2, what="NXDOMAIN after the delete")


async def test_srv_and_ptr_records(client, namespace, cluster_dns, eventually):
    svc = await create_service(client, namespace, "web", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                                               {"name": "metrics", "port": 9090, "protocol": "TCP"}])
    ip = svc["spec"]["clusterIP"]
    await create_service(client, namespace, "db", clusterIP="None", ports=[{"name": "pg", "port": 5432}])
    await client.create(SLICES, slice_body(namespace, "db", [endpoint("10.2.0.1", hostname="db-0"),
                                                              endpoint("10.2.0.2")]), namespace=namespace)
    web = f"web.{namespace}.svc.cluster.local."
    db = f"db.{namespace}.svc.cluster.local."

    async def srv(qname: str, tcp: bool = False):
        response = await ask(cluster_dns, qname, "SRV", tcp=tcp)
        return response if response.answer else None

    response = await eventually(lambda: srv(f"_http._tcp.{web}"), timeout=2, what="the SRV record")
    assert records(response, "SRV") == [f"0 100 80 {web}"]
    assert records(response, "A", "additional") == [ip]

    bare = await ask(cluster_dns, web, "SRV", tcp=True)
    assert records(bare, "SRV") == [f"0 50 80 {web}", f"0 50 9090 {web}"]

    headless = await eventually(lambda: srv(f"_pg._tcp.{db}"), timeout=2, what="the headless SRV records")
    assert records(headless, "SRV") == [f"0 50 5432 10-2-0-2.{db}", f"0 50 5432 db-0.{db}"]
    assert records(headless, "A", "additional") == ["10.2.0.1", "10.2.0.2"]

    ptr = await ask(cluster_dns, dns.reversename.from_address(ip).to_text(), "PTR")
    assert records(ptr, "PTR") == [web]
    ptr = await ask(cluster_dns, "1.0.2.10.in-addr.arpa.", "PTR", tcp=True)
    assert records(ptr, "PTR") == [f"db-0.{db}"]


async def test_pod_names(cluster_dns, namespace):
    response = await ask(cluster_dns, f"10-244-1-7.{namespace}.pod.cluster.local.")
    assert records(response, "A") == ["10.244.1.7"]


async def test_other_names_are_forwarded_to_the_upstreams(cluster_dns, upstream):
    response = await ask(cluster_dns, "www.example.test.")
    assert records(response, "A") == ["192.0.2.7"]
    assert not response.flags & dns.flags.AA  # upstream's answer, not ours
    assert upstream.queries[("udp", "www.example.test.")] == 1

    assert (await ask(cluster_dns, "nothing.example.test.", tcp=True)).rcode() == dns.rcode.NXDOMAIN
    ptr = await ask(cluster_dns, "7.2.0.192.in-addr.arpa.", "PTR")
    assert records(ptr, "PTR") == ["www.example.test."]


async def test_a_truncated_upstream_reply_is_asked_again_over_tcp(cluster_dns, upstream):
    over_udp = await ask(cluster_dns, "big.example.test.", "TXT")
    # The upstream truncated it, we fetched it whole over TCP, and it still does not fit a 512-byte datagram.
    assert over_udp.flags & dns.flags.TC
    assert upstream.queries[("udp", "big.example.test.")] == 1
    assert upstream.queries[("tcp", "big.example.test.")] == 1

    over_tcp = await ask(cluster_dns, "big.example.test.", "TXT", tcp=True)
    assert not over_tcp.flags & dns.flags.TC
    assert len(records(over_tcp, "TXT")) == 20
    assert upstream.queries[("tcp", "big.example.test.")] == 2


async def test_external_name_is_a_cname_chased_upstream(client, namespace, cluster_dns, eventually, upstream):
    await create_service(client, namespace, "ext", type="ExternalName", externalName="db.example.test", ports=[])
    name = f"ext.{namespace}.svc.cluster.local."

    async def chased():
        response = await ask(cluster_dns, name)
        return response if response.answer else None

    response = await eventually(chased, timeout=2, what="the ExternalName's CNAME")
    assert records(response, "CNAME") == ["db.example.test."]
    assert records(response, "A") == ["192.0.2.8"]
    assert response.flags & dns.flags.AA
    assert upstream.queries[("udp", "db.example.test.")] >= 1


async def test_servfail_when_no_upstream_answers(start_dns, client, namespace, eventually):
    lonely = await start_dns(upstreams=[f"127.0.0.1:{closed_port()}"])
    failed = await ask(lonely, "www.example.test.")
    assert failed.rcode() == dns.rcode.SERVFAIL
    # cluster names do not need an upstream
    svc = await create_service(client, namespace, "web")

    async def answered():
        return records(await ask(lonely, f"web.{namespace}.svc.cluster.local."), "A") == [svc["spec"]["clusterIP"]]

    await eventually(answered, timeout=2, what="the service's A record")


async def test_edns_payload_malformed_messages_and_other_opcodes(cluster_dns, upstream):
    # With EDNS the client takes 4096 bytes over UDP: the whole TXT set (~1.5 kB) fits, no TC.
    query = dns.message.make_query("big.example.test.", "TXT", use_edns=0, payload=4096)
    response = await dns.asyncquery.udp(query, "127.0.0.1", port=cluster_dns.port, timeout=5)
    assert not response.flags & dns.flags.TC and len(records(response, "TXT")) == 20

    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", cluster_dns.port))
    try:
        transport.sendto(b"\x12\x34\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xff\xff\xff")  # a question cut short
        garbled = await asyncio.wait_for(replies.get(), 5)
        assert garbled[:2] == b"\x12\x34" and garbled[3] & 0x0F == dns.rcode.FORMERR

        notify = dns.message.make_query("web.ns.svc.cluster.local.", "SOA")
        notify.set_opcode(dns.opcode.NOTIFY)
        transport.sendto(notify.to_wire())
        reply = dns.message.from_wire(await asyncio.wait_for(replies.get(), 5))
        assert reply.id == notify.id and reply.rcode() == dns.rcode.NOTIMP
    finally:
        transport.close()
