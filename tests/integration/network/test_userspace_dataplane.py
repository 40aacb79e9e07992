"""UserspaceDataPlane for real: TCP and UDP through a node port on 127.0.0.1 to echo servers on 127.0.0.x.

Those run in the test's own process and namespace without touching interfaces (`interface=None`:
cluster IPs are not served). The cluster IP part, which makes an interface, runs in a namespace the
test makes, in a child process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import uuid
from collections import Counter

import pytest

from timoner.network.routes import RouteTable, build_routes
from timoner.network.userspace import UserspaceDataPlane

BACKENDS = ("127.0.0.2", "127.0.0.3")


class _EchoUdp(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(f"{self.name} {data.decode()}".encode(), addr)


@pytest.fixture
async def echo():
    """TCP and UDP echo servers on 127.0.0.2 and 127.0.0.3, one port for all: they answer with their IP."""
    port = _free_port("127.0.0.2")
    servers, transports = [], []

    async def answer(ip, reader, writer):
        writer.write(f"{ip} {writer.get_extra_info('peername')[0]}".encode())
        await writer.drain()
        writer.close()

    for ip in BACKENDS:
        servers.append(await asyncio.start_server(lambda r, w, ip=ip: answer(ip, r, w), ip, port))
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda ip=ip: _EchoUdp(ip), local_addr=(ip, port))
        transports.append(transport)
    yield port
    for server in servers:
        server.close()
    for transport in transports:
        transport.close()


@pytest.fixture
async def plane():
    plane = UserspaceDataPlane(interface=None)
    yield plane
    await plane.cleanup()


def _free_port(ip: str) -> int:
    """A port free for TCP and UDP on `ip` and on 127.0.0.1."""
    while True:
        with socket.socket() as s:
            s.bind((ip, 0))
            port = s.getsockname()[1]
        try:
            for kind, address in ((socket.SOCK_DGRAM, ip), (socket.SOCK_STREAM, "127.0.0.1"),
                                  (socket.SOCK_DGRAM, "127.0.0.1")):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((address, port))
            return port
        except OSError:
            continue


def table(node_port: int, target_port: int, backends=BACKENDS, **spec) -> RouteTable:
    svc = {"metadata": {"namespace": "default", "name": "web"},
           "spec": {"type": "NodePort", "clusterIP": "100.65.0.10",
                    "ports": [{"name": "tcp", "port": 80, "protocol": "TCP", "nodePort": node_port},
                              {"name": "udp", "port": 80, "protocol": "UDP", "nodePort": node_port}], **spec}}
    eps = {"metadata": {"namespace": "default", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "endpoints": [{"addresses": [ip], "nodeName": "n"} for ip in backends],
           "ports": [{"name": "tcp", "port": target_port, "protocol": "TCP"},
                     {"name": "udp", "port": target_port, "protocol": "UDP"}]}
    return build_routes([svc], [eps], node_name="n", node_ips=())


async def tcp(port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    try:
        return (await asyncio.wait_for(reader.read(), 2)).decode()
    finally:
        writer.close()


async def udp(port: int, payload: str = "hi") -> str:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not answer.done():
                answer.set_result(data.decode())

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(payload.encode())
        return await asyncio.wait_for(answer, 2)
    finally:
        transport.close()


async def test_tcp_and_udp_through_a_loopback_node_port_reach_every_endpoint(echo, plane):
    node_port = _free_port("127.0.0.1")
    await plane.apply(table(node_port, echo))
    assert plane.listening == {("TCP", "127.0.0.1", node_port), ("UDP", "127.0.0.1", node_port)}

    answers = [await tcp(node_port) for _ in range(6)]
    assert Counter(a.split()[0] for a in answers) == {"127.0.0.2": 3, "127.0.0.3": 3}  # round-robin
    assert all(a.split()[1] == "127.0.0.1" for a in answers)  # the endpoint sees the proxy
    datagrams = [await udp(node_port, f"n{i}") for i in range(6)]
    assert Counter(d.split()[0] for d in datagrams) == {"127.0.0.2": 3, "127.0.0.3": 3}
    assert sorted(d.split()[1] for d in datagrams) == sorted(f"n{i}" for i in range(6))


async def test_a_large_tcp_exchange_passes_whole(plane):
    port = _free_port("127.0.0.2")

    async def echo_back(reader, writer):
        writer.write(await reader.read())  # until the client's EOF: the half-close must pass through
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo_back, "127.0.0.2", port)
    try:
        node_port = _free_port("127.0.0.1")
        await plane.apply(table(node_port, port, backends=("127.0.0.2",)))
        reader, writer = await asyncio.open_connection("127.0.0.1", node_port)
        payload = bytes(range(256)) * 8192  # 2 MiB
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == payload
        writer.close()
    finally:
        server.close()


async def test_client_ip_affinity_keeps_a_client_on_one_endpoint(echo, plane):
    node_port = _free_port("127.0.0.1")
    await plane.apply(table(node_port, echo, sessionAffinity="ClientIP"))
    assert len({(await tcp(node_port)).split()[0] for _ in range(6)}) == 1
    assert len({(await udp(node_port)).split()[0] for _ in range(6)}) == 1


async def test_updates_keep_the_listener_and_change_the_endpoints(echo, plane):
    node_port = _free_port("127.0.0.1")
    await plane.apply(table(node_port, echo))
    listening = plane.listening
    await plane.apply(table(node_port, echo, backends=("127.0.0.3",)))
    assert plane.listening == listening
    assert {(await tcp(node_port)).split()[0] for _ in range(4)} == {"127.0.0.3"}
    assert {(await udp(node_port)).split()[0] for _ in range(4)} == {"127.0.0.3"}


async def test_an_endpoint_that_refuses_is_skipped(echo, plane):
    node_port = _free_port("127.0.0.1")
    await plane.apply(table(node_port, echo, backends=("127.0.0.4", "127.0.0.2")))  # nothing on .4
    assert {(await tcp(node_port)).split()[0] for _ in range(4)} == {"127.0.0.2"}


async def test_no_endpoints_and_cleanup_close_the_listeners(echo, plane):
    node_port = _free_port("127.0.0.1")
    await plane.apply(table(node_port, echo))
    await plane.apply(table(node_port, echo, backends=()))
    assert plane.listening == frozenset()
    with pytest.raises(ConnectionRefusedError):
        await tcp(node_port)
    await plane.apply(table(node_port, echo))
    assert (await tcp(node_port)).split()[0] in BACKENDS
    await plane.cleanup()
    with pytest.raises(ConnectionRefusedError):
        await tcp(node_port)


CLUSTER_IP_SCRIPT = textwrap.dedent("""
    import asyncio, json, socket, subprocess
    from timoner.network.routes import Endpoint, Frontend, RouteTable, ServiceRoute
    from timoner.network.userspace import UserspaceDataPlane

    async def main():
        async def answer(reader, writer):
            writer.write(b"pong " + writer.get_extra_info("peername")[0].encode())
            writer.close()
        server = await asyncio.start_server(answer, "127.0.0.2", 9000)
        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, t): self.t = t
            def datagram_received(self, data, addr): self.t.sendto(b"udp " + data, addr)
        await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.2", 9000))
        routes = RouteTable(tuple(
            ServiceRoute(namespace="default", service="web", port_name="", protocol=proto,
                         frontends=(Frontend("100.65.0.10", 80),), endpoints=(Endpoint("127.0.0.2", 9000),))
            for proto in ("TCP", "UDP")))
        plane = UserspaceDataPlane(interface="tsvc0")
        await plane.apply(routes)
        out = {"addresses": subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "tsvc0"],
                                           capture_output=True, text=True).stdout}
        reader, writer = await asyncio.open_connection("100.65.0.10", 80)
        out["tcp"] = (await reader.read()).decode()
        writer.close()
        def ping():  # a blocking client, on a thread while the loop forwards
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(b"ping", ("100.65.0.10", 80))
                return s.recv(100).decode()
        out["udp"] = await asyncio.to_thread(ping)
        await plane.apply(RouteTable())
        out["after_removal"] = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "tsvc0"],
                                              capture_output=True, text=True).stdout
        await plane.cleanup()
        out["link_after_cleanup"] = subprocess.run(["ip", "link", "show", "tsvc0"], capture_output=True).returncode
        server.close()
        print(json.dumps(out))

    asyncio.run(main())
""")


def test_cluster_ips_are_served_on_an_interface_of_their_own():
    ns = f"tpx-{uuid.uuid4().hex[:8]}-us"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CLUSTER_IP_SCRIPT],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert "100.65.0.10/32" in out["addresses"]
    assert out["tcp"].startswith("pong 127.0.0.")
    assert out["udp"] == "udp ping"
    assert "100.65.0.10" not in out["after_removal"]
    assert out["link_after_cleanup"] != 0  # the interface is gone
