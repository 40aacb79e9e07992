"""Pods on the process runtime with a pod network of their own (`BridgeNetwork`, as root).

The test plays the node IPAM controller: it gives the Node its `spec.podCIDR` (a /24 of the test's
own in 100.64.0.0/10), then the agent makes the bridge and each pod gets an address and a network
namespace. Bridge, nftables table and namespaces are removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from dataclasses import replace

import httpx
import pytest
from node_helpers import FAST_PODS, stop_pod_agent

from timoner.client import EVENTS, resource_for
from timoner.network.bridge import BridgeNetwork
from timoner.node.agent import Agent
from timoner.node.pods import HOST_NETWORK_CONDITION, PodWorkerConfig
from timoner.node.runtime import ContainerID
from timoner.node.runtimes.process import ProcessRuntime

PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")
SERVE = f"exec {sys.executable} -m http.server {{port}} --bind {{bind}}"


@pytest.fixture
def net(tmp_path):
    tag = secrets.token_hex(3)
    network = BridgeNetwork(tmp_path / "net", bridge=f"tpn{tag}", nft_table=f"tpn-{tag}", netns_prefix=f"tpn{tag}-")
    network.cidr = f"100.124.{secrets.randbelow(250)}.0/24"  # type: ignore[attr-defined]
    yield network
    subprocess.run(["ip", "link", "del", f"tpn{tag}"], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", f"tpn-{tag}"], capture_output=True)
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else ():
        if name.startswith(f"tpn{tag}-"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class FlakyNetwork:
    """A plugin that fails its first `failures` setups, then is `inner`."""

    def __init__(self, inner: BridgeNetwork, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def init(self, pod_cidr: str) -> None:
        await self.inner.init(pod_cidr)

    async def setup(self, pod_uid: str):
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("no address for you yet")
        return await self.inner.setup(pod_uid)

    async def teardown(self, pod_uid: str) -> None:
        await self.inner.teardown(pod_uid)

    def pods(self) -> set[str]:
        return self.inner.pods()


@pytest.fixture
async def agent_with(client, config, tmp_path, eventually):
    """`await agent_with(plugin, pod_config=...)`: an Agent on a process runtime with namespaces, whose Node
    the test gives a pod CIDR; pods deleted, workers finished and containers stopped afterwards."""
    started: list[tuple[Agent, asyncio.Task[None], ProcessRuntime]] = []

    async def start(plugin, *, pod_config: PodWorkerConfig = FAST_PODS, cidr: str | None = None) -> Agent:
        runtime = ProcessRuntime(tmp_path / "process", use_namespaces=True)
        agent = Agent(client, config, runtime=runtime, pod_config=pod_config, pod_network=plugin)
        task = asyncio.create_task(agent.run())
        started.append((agent, task, runtime))
        await asyncio.wait_for(agent.registered.wait(), 20)
        if cidr:
            await client.patch(NODES, config.node_name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        await eventually(lambda: agent.pod_workers.recovered.is_set() or task.done(), timeout=20,
                         what="the pod workers started")
        if task.done():
            task.result()
        agent.runtime_impl = runtime  # type: ignore[attr-defined]
        return agent

    yield start
    for agent, task, runtime in started:
        await stop_pod_agent(client, agent, task=task, runtime=runtime)


def pod(name, node, command, *, host_network=False, probe_port=None):
    container = {"name": "c", "image": "busybox", "command": ["sh", "-c", command]}
    if probe_port:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": probe_port}, "periodSeconds": 1}
    spec = {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [container]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def wait_pod(client, namespace, name, eventually, check, what):
    async def probe():
        obj = await client.get(PODS, name, namespace=namespace)
        return obj if check(obj) else None

    return await eventually(probe, timeout=30, what=what)


def ready(obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))


async def sh(agent, obj, script) -> str:
    cid = ContainerID.parse(obj["status"]["containerStatuses"][0]["containerID"])
    session = await agent.runtime_impl.exec(cid, ("sh", "-c", script))
    output = [item async for item in session.output()]
    assert await asyncio.wait_for(session.wait(), 20) == 0, output
    return b"".join(data for stream, data in output if stream == 1).decode()


async def test_pods_get_their_own_address_and_namespace(agent_with, net, client, config, namespace, eventually):
    agent = await agent_with(net, cidr=net.cidr)
    base = net.cidr.rsplit(".", 1)[0]
    for name in ("a", "b"):  # both listen on 8080: no clash, each in its own namespace
        await client.create(PODS, pod(name, config.node_name, SERVE.format(port=8080, bind="0.0.0.0"),
                                      probe_port=8080), namespace=namespace)
    pods = {name: await wait_pod(client, namespace, name, eventually, ready, f"{name} Ready through its pod IP")
            for name in ("a", "b")}
    ips = {name: p["status"]["podIP"] for name, p in pods.items()}
    assert sorted(ips.values()) == [f"{base}.2", f"{base}.3"]
    for name, p in pods.items():
        assert p["status"]["podIPs"] == [{"ip": ips[name]}] and p["status"]["hostIP"] == "127.0.0.1"
        conditions = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert conditions["PodReadyToStartContainers"] == "True" and HOST_NETWORK_CONDITION not in conditions
        async with httpx.AsyncClient() as http:  # from the node, through the bridge
            assert (await http.get(f"http://{ips[name]}:8080/")).status_code == 200
        inside = await sh(agent, p, "ip -4 -o addr show")  # exec runs in the pod's network namespace
        assert f"{ips[name]}/24" in inside and "127.0.0.1/8" in inside
    # Pod to pod, from inside a's namespace.
    fetched = await sh(agent, pods["a"], f"{sys.executable} -c \"import urllib.request as u; "
                                         f"print(u.urlopen('http://{ips['b']}:8080/').status)\"")
    assert fetched.strip() == "200"
    assert net.pods() == {p["metadata"]["uid"] for p in pods.values()}

    for name in ("a", "b"):
        await client.delete(PODS, name, namespace=namespace)
    await eventually(lambda: not net.pods(), timeout=30, what="both pods' networks given back")
    assert [n for n in os.listdir("/run/netns") if n.startswith(net.netns_prefix)] == []


async def test_port_forward_dials_inside_the_pod(agent_with, net, client, config, namespace, eventually):
    agent = await agent_with(net, cidr=net.cidr)
    port = 20000 + secrets.randbelow(20000)
    await client.create(PODS, pod("lo", config.node_name, SERVE.format(port=port, bind="127.0.0.1")),
                        namespace=namespace)
    obj = await wait_pod(client, namespace, "lo", eventually,
                         lambda o: "running" in (o["status"].get("containerStatuses") or [{}])[0].get("state", {}),
                         "the pod running")

    async def fetch():
        try:
            reader, writer = await agent.runtime_impl.connect(obj["metadata"]["uid"], port)
        except ConnectionRefusedError:
            return None  # not listening yet
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        await writer.drain()
        head = await reader.readline()
        writer.close()
        return head

    head = await eventually(fetch, timeout=20, what="the server inside the pod answering")
    assert head.startswith(b"HTTP/1.0 200")
    with pytest.raises(OSError):  # the pod's loopback is not the host's
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_failing_plugin_keeps_the_pod_creating_until_it_works(agent_with, net, client, config, namespace,
                                                                        eventually):
    await agent_with(FlakyNetwork(net, failures=3), cidr=net.cidr)
    await client.create(PODS, pod("late", config.node_name, "sleep 30"), namespace=namespace)

    async def sandbox_event():
        events = (await client.list(EVENTS, namespace=namespace))["items"]
        return [e for e in events if e["reason"] == "FailedCreatePodSandBox"]

    (event,) = await eventually(sandbox_event, timeout=20, what="a FailedCreatePodSandBox event")
    assert event["type"] == "Warning" and "no address for you yet" in event["message"]
    assert event["involvedObject"]["name"] == "late" and "fieldPath" not in event["involvedObject"]
    obj = await wait_pod(client, namespace, "late", eventually, lambda o: o["status"].get("podIP"), "an address")
    assert obj["status"]["podIP"].startswith(net.cidr.rsplit(".", 1)[0])


async def test_host_network_pods_and_the_non_root_fallback_condition(agent_with, client, config, namespace,
                                                                      eventually, net):
    agent = await agent_with(net, cidr=net.cidr)
    await client.create(PODS, pod("host", config.node_name, "sleep 30", host_network=True), namespace=namespace)
    obj = await wait_pod(client, namespace, "host", eventually, lambda o: o["status"].get("podIP"), "an address")
    assert obj["status"]["podIP"] == "127.0.0.1" and net.pods() == set()  # the node's address, no namespace
    inside = await sh(agent, await wait_pod(client, namespace, "host", eventually, ready, "Ready"), "ip -o link")
    assert net.bridge in inside  # the host's interfaces
    await client.delete(PODS, "host", namespace=namespace)


async def test_without_a_pod_network_pods_say_they_share_the_hosts(agent_with, client, config, namespace,
                                                                    eventually):
    message = "the node agent does not run as root: pods share the node's network"
    await agent_with(None, pod_config=replace(FAST_PODS, host_network_fallback=message))
    await client.create(PODS, pod("shared", config.node_name, "sleep 30"), namespace=namespace)
    obj = await wait_pod(client, namespace, "shared", eventually, ready, "Ready")
    (condition,) = [c for c in obj["status"]["conditions"] if c["type"] == HOST_NETWORK_CONDITION]
    assert (condition["status"], condition["reason"], condition["message"]) == ("True", "NoPodNetwork", message)
    assert obj["status"]["podIP"] == "127.0.0.1"
    await client.create(PODS, pod("host", config.node_name, "sleep 30", host_network=True), namespace=namespace)
    obj = await wait_pod(client, namespace, "host", eventually, ready, "Ready")
    assert HOST_NETWORK_CONDITION not in {c["type"] for c in obj["status"]["conditions"]}  # it asked for it
