"""The node IPAM range allocator against a real API server: pod CIDRs for agentless Nodes."""

from __future__ import annotations

import ipaddress

from controller_helpers import events_for
from service_helpers import NODES, node


async def cidrs_of(client, names):
    """{node: podCIDR} once every named Node has one, else None."""
    out = {}
    for name in names:
        spec = (await client.get(NODES, name)).get("spec") or {}
        if not spec.get("podCIDR"):
            return None
        assert spec["podCIDRs"] == [spec["podCIDR"]]
        out[name] = spec["podCIDR"]
    return out


async def test_nodes_get_distinct_cidrs_that_survive_a_manager_restart(bare, client, eventually):
    # A Node that came with its CIDR (another allocator, or kubelet's flag) keeps it, and it is taken.
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "preset"},
                                "spec": {"podCIDR": "100.64.1.0/24", "podCIDRs": ["100.64.1.0/24"]}})
    await bare.start_manager(name="first")
    for name in ("n1", "n2", "n3"):
        await node(client, name)
    first = await eventually(lambda: cidrs_of(client, ["preset", "n1", "n2", "n3"]), 10, "three pod CIDRs")
    assert first["preset"] == "100.64.1.0/24"
    assert len(set(first.values())) == 4
    cluster = ipaddress.ip_network("100.64.0.0/16")
    for cidr in first.values():
        network = ipaddress.ip_network(cidr)
        assert network.prefixlen == 24 and network.subnet_of(cluster)
    versions = {n: (await client.get(NODES, n))["metadata"]["resourceVersion"] for n in first}

    # A new manager knows nothing but what the Nodes say: the next Node gets a CIDR nobody has.
    await bare.stop("first")
    await bare.start_manager(name="second")
    await node(client, "n4")
    second = await eventually(lambda: cidrs_of(client, ["preset", "n1", "n2", "n3", "n4"]), 10, "n4's CIDR")
    assert {n: second[n] for n in first} == first
    assert second["n4"] not in first.values()
    assert {n: (await client.get(NODES, n))["metadata"]["resourceVersion"] for n in first} == versions

    # A deleted Node's CIDR is free again; new Nodes get the following ones first (as upstream).
    await client.delete(NODES, "n1")
    await node(client, "n5")
    fifth = await eventually(lambda: cidrs_of(client, ["n5"]), 10, "n5's CIDR")
    assert fifth["n5"] not in second.values()


async def test_a_full_range_is_an_event_until_a_node_goes(bare, client, eventually):
    await bare.start_manager(cluster_cidr="10.200.0.0/25", node_cidr_mask_size=26)
    await node(client, "a")
    await node(client, "b")
    got = await eventually(lambda: cidrs_of(client, ["a", "b"]), 10, "two CIDRs")
    assert sorted(got.values()) == ["10.200.0.0/26", "10.200.0.64/26"]

    await node(client, "c")

    async def not_available():
        return [e for e in await events_for(client, "default", "c") if e[1] == "CIDRNotAvailable"]
    (event,) = await eventually(not_available, 10, "a CIDRNotAvailable event")
    # Upstream's RecordNodeStatusChange: a Normal event from the cidrAllocator.
    assert event == ("Normal", "CIDRNotAvailable", "Node c status is now: CIDRNotAvailable", "cidrAllocator")
    assert not (await client.get(NODES, "c")).get("spec", {}).get("podCIDR")

    freed = got["a"]
    await client.delete(NODES, "a")
    assert (await eventually(lambda: cidrs_of(client, ["c"]), 10, "c gets the freed CIDR")) == {"c": freed}
