"""`BridgeNetwork` for real (root, iproute2, nftables): a bridge, a namespace and veth per pod, masquerade.

Each test uses a bridge, an nftables table and addresses of its own in 100.64.0.0/10 and removes
them afterwards. The "outside world" for the masquerade check is a network namespace the test makes,
joined to the host by a veth pair.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid

import pytest

from timoner.network.bridge import BridgeNetwork, NetworkError, host_veth

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen()
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{sys.argv[2]} {peer[0]}\\n".encode()); c.close()
"""


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def exists(path: str) -> bool:
    return os.path.exists(path)


def fails(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True).returncode != 0


def serve(netns: str | None, port: int, name: str) -> subprocess.Popen:
    prefix = ["ip", "netns", "exec", os.path.basename(netns)] if netns else []
    proc = subprocess.Popen([*prefix, sys.executable, "-c", SERVER, str(port), name], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "listening"
    return proc


def ask(host: str, port: int, netns: str | None = None) -> str:
    """Connect to host:port (from inside `netns` if given) and return what the server says."""
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); "
            "print(s.recv(100).decode().strip())")
    prefix = ["ip", "netns", "exec", os.path.basename(netns)] if netns else []
    return run(*prefix, sys.executable, "-c", code, host, str(port)).strip()


@pytest.fixture
def names():
    """A bridge, table and /24 of the test's own; whatever is left of them is removed afterwards."""
    tag = secrets.token_hex(3)
    octet = 64 + secrets.randbelow(192)  # 64-255
    cidr = f"100.126.{octet}.0/24"
    yield {"bridge": f"tbr{tag}", "table": f"tbr-{tag}", "cidr": cidr, "prefix": f"tbr{tag}-"}
    subprocess.run(["ip", "link", "del", f"tbr{tag}"], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", f"tbr-{tag}"], capture_output=True)
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else ():
        if name.startswith(f"tbr{tag}-"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def network(tmp_path, names) -> BridgeNetwork:
    return BridgeNetwork(tmp_path / "net", bridge=names["bridge"], nft_table=names["table"],
                         netns_prefix=names["prefix"])


async def test_pods_get_addresses_namespaces_and_reach_each_other(tmp_path, names):
    net = network(tmp_path, names)
    with pytest.raises(NetworkError, match="no pod CIDR"):
        await net.setup("too-early")
    await net.init(names["cidr"])
    await net.init(names["cidr"])  # idempotent
    base = names["cidr"].rsplit(".", 1)[0]
    assert net.gateway == f"{base}.1"
    assert f"{base}.1/24" in run("ip", "-4", "-o", "addr", "show", "dev", names["bridge"])
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    pa, pb = await net.setup(a), await net.setup(b)
    assert (pa.ip, pb.ip) == (f"{base}.2", f"{base}.3")
    assert pa.netns == f"/run/netns/{names['prefix']}{a}" and exists(pa.netns)
    assert await net.setup(a) == pa  # idempotent: same address, same namespace
    assert net.pods() == {a, b}
    # Inside: eth0 with the address, lo up, a default route through the gateway.
    inside = run("ip", "-n", os.path.basename(pa.netns), "-4", "-o", "addr", "show")
    assert f"{pa.ip}/24" in inside and "127.0.0.1/8" in inside
    assert f"default via {base}.1" in run("ip", "-n", os.path.basename(pa.netns), "route")

    servers = [serve(pa.netns, 8080, "a"), serve(pb.netns, 8080, "b")]  # the same port in both: no clash
    try:
        assert ask(pa.ip, 8080) == f"a {base}.1"  # from the node, through the bridge
        assert ask(pb.ip, 8080) == f"b {base}.1"
        assert ask(pb.ip, 8080, netns=pa.netns) == f"b {pa.ip}"  # pod to pod: no NAT on the bridge
    finally:
        for s in servers:
            s.kill()
            s.wait()

    await net.teardown(a)
    assert not exists(pa.netns) and net.pods() == {b}
    await net.teardown(a)  # idempotent
    c = str(uuid.uuid4())
    assert (await net.setup(c)).ip == pa.ip  # the freed address is handed out again


async def test_an_agent_restarted_finds_the_same_addresses_and_cleanup_removes_everything(tmp_path, names):
    net = network(tmp_path, names)
    await net.init(names["cidr"])
    uid = str(uuid.uuid4())
    first = await net.setup(uid)
    again = network(tmp_path, names)  # a new agent on the same state directory
    await again.init(names["cidr"])
    assert again.pods() == {uid} and await again.setup(uid) == first
    # A veth left behind by a setup that died half-way is replaced.
    run("ip", "netns", "del", os.path.basename(first.netns))
    await asyncio.sleep(0.1)
    repaired = await again.setup(uid)
    assert repaired == first and exists(first.netns)
    assert f"{first.ip}/24" in run("ip", "-n", os.path.basename(first.netns), "-4", "-o", "addr", "show", "eth0")
    await again.teardown(uid)
    await again.cleanup()
    assert fails("ip", "link", "show", names["bridge"])
    assert fails("nft", "list", "table", "ip", names["table"])
    assert fails("ip", "link", "show", host_veth(uid))


async def test_traffic_leaving_the_node_is_masqueraded(tmp_path, names):
    """A pod talks to a host outside the pod CIDR (a test namespace behind a veth): it sees the node's address."""
    net = network(tmp_path, names)
    await net.init(names["cidr"])
    pod = await net.setup(str(uuid.uuid4()))
    outside = f"{names['prefix']}outside"
    octet = names["cidr"].split(".")[2]
    host_side, far_side = f"100.125.{octet}.1", f"100.125.{octet}.2"
    veth = f"{names['bridge']}o"
    run("ip", "netns", "add", outside)
    try:
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", outside)
        run("ip", "addr", "add", f"{host_side}/30", "dev", veth)
        run("ip", "link", "set", veth, "up")
        run("ip", "-n", outside, "addr", "add", f"{far_side}/30", "dev", "eth0")
        run("ip", "-n", outside, "link", "set", "eth0", "up")
        server = serve(f"/run/netns/{outside}", 9090, "outside")
        try:
            # The far host has no route back to the pod CIDR: only a masqueraded reply can come back.
            assert ask(far_side, 9090, netns=pod.netns) == f"outside {host_side}"
        finally:
            server.kill()
            server.wait()
    finally:
        fails("ip", "link", "del", veth)
        fails("ip", "netns", "del", outside)


async def test_bad_cidr_and_a_full_range_are_clear_errors(tmp_path, names):
    net = network(tmp_path, names)
    with pytest.raises(NetworkError, match="must be IPv4"):
        await net.init("fd00::/64")
    base = names["cidr"].rsplit(".", 1)[0]
    await net.init(f"{base}.0/30")  # the gateway and one pod
    await net.setup(str(uuid.uuid4()))
    with pytest.raises(NetworkError, match="no free address"):
        await net.setup(str(uuid.uuid4()))


def test_host_veth_names_fit_the_kernel_limit():
    names = {host_veth(str(uuid.uuid4())) for _ in range(100)}
    assert len(names) == 100 and all(len(n) == 15 and n.startswith("veth") for n in names)  # IFNAMSIZ - 1


async def test_a_bridge_deleted_behind_the_agents_back_is_made_again(tmp_path, names):
    net = network(tmp_path, names)
    await net.init(names["cidr"])
    run("ip", "link", "del", names["bridge"])
    pod = await net.setup(str(uuid.uuid4()))
    assert f"{net.gateway}/24" in run("ip", "-4", "-o", "addr", "show", "dev", names["bridge"])
    assert f"master {names['bridge']}" in run("ip", "-o", "link", "show", "master", names["bridge"])
    assert ask_ok(pod)


def ask_ok(pod) -> bool:
    """The pod answers on its address from the node (a server in its namespace)."""
    server = serve(pod.netns, 8081, "p")
    try:
        return ask(pod.ip, 8081).startswith("p ")
    finally:
        server.kill()
        server.wait()
