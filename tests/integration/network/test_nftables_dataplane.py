"""NftablesDataPlane for real: rules applied in a test-made node namespace, traffic between namespaces.

See `proxy_lab.py` for the network. Every test builds its own namespaces and removes them after.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from proxy_lab import CLIENT_IP, GATEWAY, NODE_IP, POD_IPS, TCP_PORT, UDP_PORT

from timoner.network.nftables import NftablesDataPlane, NftablesError
from timoner.network.routes import RouteTable, build_routes

NODE = "node-1"
TABLE = "timoner-test"
WEB_IP = "100.65.0.10"
OTHER_IP = "100.65.0.11"
NODE_PORT = 30080


@pytest.fixture
async def dataplane(lab):
    plane = NftablesDataPlane(table=TABLE, nft=lab.nft(), sysctl_root=None)
    yield plane
    await plane.cleanup()


def service(name: str, ip: str, *, node_port: bool = False, **spec) -> dict:
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    if node_port:
        ports[0]["nodePort"] = NODE_PORT
        spec["type"] = "NodePort"
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": ports, **spec}}


def endpoints(name: str, *pods: str, remote: tuple[str, ...] = ()) -> dict:
    """A slice with `pods` on this node and `remote` ones on another."""
    items = [{"addresses": [POD_IPS[p]], "nodeName": NODE, "conditions": {"ready": True}} for p in pods]
    items += [{"addresses": [POD_IPS[p]], "nodeName": "node-2", "conditions": {"ready": True}} for p in remote]
    return {"metadata": {"namespace": "default", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": items,
            "ports": [{"name": "http", "port": TCP_PORT, "protocol": "TCP"},
                      {"name": "dns", "port": UDP_PORT, "protocol": "UDP"}]}


def table(services: list[dict], slices: list[dict]) -> RouteTable:
    return build_routes(services, slices, node_name=NODE, node_ips=[NODE_IP])


def who(answers: list[str]) -> Counter:
    """Which pod answered how often (answers are `<pod> <peer-ip>`)."""
    return Counter(a.split()[0] for a in answers)


async def test_cluster_ip_spreads_tcp_and_udp_over_both_endpoints(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    await dataplane.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-a", "pod-b")]))

    tcp = lab.answers("client", "tcp", WEB_IP, 80, count=20)
    assert who(tcp).keys() == {"pod-a", "pod-b"}, tcp
    assert {a.split()[1] for a in tcp} == {CLIENT_IP}  # cluster IP traffic keeps its source
    udp = lab.answers("client", "udp", WEB_IP, 53, count=20)
    assert who(udp).keys() == {"pod-a", "pod-b"}, udp
    # From a process on the node itself (nat output hook).
    assert who(lab.answers("node", "tcp", WEB_IP, 80, count=10)).keys() <= {"pod-a", "pod-b"}
    assert sum(who(lab.answers("node", "udp", WEB_IP, 53, count=4)).values()) == 4


async def test_a_pod_reaches_another_pod_on_its_bridge_through_a_cluster_ip(lab, dataplane):
    # The answer comes back over the bridge: only bridge-nf-call-iptables lets it be un-DNATed.
    lab.serve("pod-a")
    await dataplane.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-a")]))
    assert lab.answers("pod-b", "tcp", WEB_IP, 80, count=3) == [f"pod-a {POD_IPS['pod-b']}"] * 3
    assert lab.answers("pod-b", "udp", WEB_IP, 53) == [f"pod-a {POD_IPS['pod-b']}"]


async def test_hairpin_a_pod_reaches_itself_through_its_service(lab, dataplane):
    lab.serve("pod-a")
    await dataplane.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-a")]))
    # Masqueraded to the node's bridge address, or the pod would answer itself directly.
    assert lab.answers("pod-a", "tcp", WEB_IP, 80, count=2) == [f"pod-a {GATEWAY}"] * 2
    assert lab.answers("pod-a", "udp", WEB_IP, 53) == [f"pod-a {GATEWAY}"]


async def test_node_port_on_the_node_address_and_on_loopback(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    await dataplane.apply(table([service("web", WEB_IP, node_port=True)], [endpoints("web", "pod-a", "pod-b")]))

    outside = lab.answers("client", "tcp", NODE_IP, NODE_PORT, count=20)
    assert who(outside).keys() == {"pod-a", "pod-b"}, outside
    assert {a.split()[1] for a in outside} == {GATEWAY}  # Cluster policy masquerades
    on_node = lab.answers("node", "tcp", NODE_IP, NODE_PORT, count=3)
    assert sum(who(on_node).values()) == 3, on_node
    loopback = lab.answers("node", "tcp", "127.0.0.1", NODE_PORT, count=20)
    assert who(loopback).keys() == {"pod-a", "pod-b"}, loopback
    assert {a.split()[1] for a in loopback} == {GATEWAY}
    # A pod may use its node's node port too.
    assert sum(who(lab.answers("pod-b", "tcp", NODE_IP, NODE_PORT, count=3)).values()) == 3


async def test_external_traffic_policy_local_keeps_the_source_and_the_node(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    svc = service("web", WEB_IP, node_port=True, externalTrafficPolicy="Local")
    await dataplane.apply(table([svc], [endpoints("web", "pod-a", remote=("pod-b",))]))

    assert lab.answers("client", "tcp", NODE_IP, NODE_PORT, count=10) == [f"pod-a {CLIENT_IP}"] * 10
    # The node's own traffic is not subject to the policy (and is masqueraded).
    loopback = lab.answers("node", "tcp", "127.0.0.1", NODE_PORT, count=20)
    assert who(loopback).keys() == {"pod-a", "pod-b"}, loopback


async def test_external_traffic_policy_local_without_a_local_endpoint_drops_outside_traffic(lab, dataplane):
    lab.serve("pod-b")
    svc = service("web", WEB_IP, node_port=True, externalTrafficPolicy="Local")
    await dataplane.apply(table([svc], [endpoints("web", remote=("pod-b",))]))
    [(result, _)] = lab.probe("client", "tcp", NODE_IP, NODE_PORT, timeout=0.5)
    assert result == "timeout"
    assert lab.answers("node", "tcp", "127.0.0.1", NODE_PORT) == [f"pod-b {GATEWAY}"]


async def test_internal_traffic_policy_local_uses_only_this_nodes_endpoints(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    svc = service("web", WEB_IP, internalTrafficPolicy="Local")
    await dataplane.apply(table([svc], [endpoints("web", "pod-a", remote=("pod-b",))]))
    assert who(lab.answers("client", "tcp", WEB_IP, 80, count=10)) == {"pod-a": 10}


async def test_session_affinity_sticks_to_one_endpoint_per_client(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    svc = service("web", WEB_IP, sessionAffinity="ClientIP")
    routes = table([svc], [endpoints("web", "pod-a", "pod-b")])
    await dataplane.apply(routes)
    first = lab.answers("client", "tcp", WEB_IP, 80, count=12)
    assert len(who(first)) == 1, first
    assert len(who(lab.answers("client", "udp", WEB_IP, 53, count=8))) == 1

    # Re-applying (here: another service appears) keeps what the sets remember.
    await dataplane.apply(table([svc, service("other", OTHER_IP)], [endpoints("web", "pod-a", "pod-b")]))
    assert who(lab.answers("client", "tcp", WEB_IP, 80, count=6)).keys() == who(first).keys()
    assert CLIENT_IP in lab.ruleset(TABLE)


async def test_a_service_without_endpoints_refuses_at_once(lab, dataplane):
    svc = service("web", WEB_IP, node_port=True)
    await dataplane.apply(table([svc], [endpoints("web")]))
    probes = {
        "client tcp": lab.probe("client", "tcp", WEB_IP, 80),
        "client udp": lab.probe("client", "udp", WEB_IP, 53),
        "pod tcp": lab.probe("pod-a", "tcp", WEB_IP, 80),
        "node tcp": lab.probe("node", "tcp", WEB_IP, 80),
        "node port": lab.probe("client", "tcp", NODE_IP, NODE_PORT),
        "loopback node port": lab.probe("node", "tcp", "127.0.0.1", NODE_PORT),
        "unknown port of a cluster ip": lab.probe("client", "tcp", WEB_IP, 81),
    }
    for what, [(result, seconds)] in probes.items():
        assert result == "refused" and seconds < 0.5, (what, result, seconds)
    # A datagram the node's own process sends is rejected in the output hook: send() fails at once.
    [(result, seconds)] = lab.probe("node", "udp", WEB_IP, 53)
    assert result in ("refused", "error 1") and seconds < 0.5, (result, seconds)


async def test_removing_a_service_removes_its_rules(lab, dataplane):
    lab.serve("pod-a")
    slices = [endpoints("web", "pod-a"), endpoints("other", "pod-a")]
    await dataplane.apply(table([service("web", WEB_IP), service("other", OTHER_IP, sessionAffinity="ClientIP")],
                                slices))
    assert lab.answers("client", "tcp", OTHER_IP, 80) == [f"pod-a {CLIENT_IP}"]
    assert "default/other/" in lab.ruleset(TABLE)

    await dataplane.apply(table([service("web", WEB_IP)], slices))
    rules = lab.ruleset(TABLE)
    assert "default/other/" not in rules and OTHER_IP not in rules
    [(result, _)] = lab.probe("client", "tcp", OTHER_IP, 80, timeout=0.5)
    assert result == "timeout"  # no rule catches it any more: it follows the default route into the void
    assert lab.answers("client", "tcp", WEB_IP, 80) == [f"pod-a {CLIENT_IP}"]


async def test_reapplying_never_shows_traffic_a_half_made_ruleset(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    web = service("web", WEB_IP)
    variants = [table([web], [endpoints("web", "pod-a", "pod-b")]),
                table([web, service("other", OTHER_IP, sessionAffinity="ClientIP")],
                      [endpoints("web", "pod-b", "pod-a"), endpoints("other", "pod-a")]),
                table([service("other", OTHER_IP), web], [endpoints("web", "pod-a", "pod-b"), endpoints("other")])]
    await dataplane.apply(variants[0])
    traffic = lab.probe_async("client", "tcp", WEB_IP, 80, count=400)
    applies = 0
    while traffic.poll() is None or applies < 10:
        await dataplane.apply(variants[applies % len(variants)])
        applies += 1
    results = [r for r, _ in json.loads(traffic.communicate()[0])]
    assert applies >= 10
    assert who(results).keys() == {"pod-a", "pod-b"} and sum(who(results).values()) == 400, Counter(results)


async def test_a_failed_apply_changes_nothing(lab, dataplane):
    lab.serve("pod-a")
    lab.serve("pod-b")
    await dataplane.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-a", "pod-b")]))
    before = lab.ruleset(TABLE)

    # nft that appends a command the kernel refuses to what the data plane sends: the transaction
    # carries the whole new ruleset (web on pod-b only, a new service) and then fails.
    failing = ("ip", "netns", "exec", lab.node, "sh", "-c",
               f'{{ cat; echo "add rule ip {TABLE} no-such-chain accept"; }} | nft "$@"', "nft")
    broken = NftablesDataPlane(table=TABLE, nft=failing, sysctl_root=None)
    with pytest.raises(NftablesError):
        await broken.apply(table([service("web", WEB_IP), service("other", OTHER_IP)],
                                 [endpoints("web", "pod-b"), endpoints("other", "pod-a")]))
    assert lab.ruleset(TABLE) == before
    assert who(lab.answers("client", "tcp", WEB_IP, 80, count=20)).keys() == {"pod-a", "pod-b"}

    # A data plane whose apply failed starts over with the whole table the next time.
    with pytest.raises(NftablesError):
        await broken.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-b")]))
    broken.nft = lab.nft()
    await broken.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-b")]))
    assert who(lab.answers("client", "tcp", WEB_IP, 80, count=5)) == {"pod-b": 5}


async def test_cleanup_removes_the_table(lab, dataplane):
    await dataplane.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-a")]))
    assert lab.ruleset(TABLE)
    await dataplane.cleanup()
    assert lab.ruleset(TABLE) == ""
    await dataplane.cleanup()  # and again: nothing to remove is fine


async def test_the_first_apply_writes_the_sysctls(lab, tmp_path):
    proc_sys = tmp_path / "sys"
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet"):  # no br_netfilter here
        path = proc_sys.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0\n")
    plane = NftablesDataPlane(table=TABLE, nft=lab.nft(), sysctl_root=proc_sys)
    try:
        await plane.apply(table([service("web", WEB_IP)], [endpoints("web", "pod-a")]))
    finally:
        await plane.cleanup()
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "1\n"
    assert (proc_sys / "net/ipv4/conf/all/route_localnet").read_text() == "1\n"
    assert not (proc_sys / "net/bridge").exists()
