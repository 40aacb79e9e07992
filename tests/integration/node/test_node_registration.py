"""Registration: the Node the agent creates, what kubectl shows of it, and re-use on restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
from pathlib import Path

import pytest

from timoner.api.errors import NotFound
from timoner.api.quantity import parse_quantity
from timoner.client import LEASES
from timoner.node.agent import main
from timoner.node.machine import parse_os_release
from timoner.node.status import NODES
from timoner.testing import kubectl

BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
OS_IMAGE = parse_os_release(Path("/etc/os-release").read_text())
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_registration_creates_a_ready_node(client, config, start_agent, node_name):
    await start_agent(config, kubelet_port=10250)  # no runtime here, so no server binds it
    node = await client.get(NODES, node_name)

    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in {"amd64", "arm64", "ppc64le", "s390x", "riscv64", "arm", "386"}
    assert labels["kubernetes.io/hostname"]

    status = node["status"]
    cap, alloc = status["capacity"], status["allocatable"]
    assert set(cap) == set(alloc) == {"cpu", "memory", "ephemeral-storage", "pods"}
    assert cap["pods"] == alloc["pods"] == "110"
    for resource in ("cpu", "memory", "ephemeral-storage"):
        assert 0 < parse_quantity(alloc[resource]) < parse_quantity(cap[resource]), resource
    assert parse_quantity(cap["cpu"]) == (os.cpu_count() or 1)

    info = status["nodeInfo"]
    assert info["kubeletVersion"] == "v1.32.0-timoner"
    assert info["containerRuntimeVersion"] == "timoner-process://0.1"
    assert info["operatingSystem"] == "linux"
    assert info["bootID"] == BOOT_ID
    assert info["kernelVersion"] == platform.release()
    assert info["osImage"] == OS_IMAGE
    assert status["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}
    assert status["addresses"][1]["type"] == "Hostname"
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}

    conditions = {c["type"]: c for c in status["conditions"]}
    assert [c["type"] for c in status["conditions"]] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True", "KubeletReady", "kubelet is posting ready status")
    assert conditions["MemoryPressure"]["reason"] in {"KubeletHasSufficientMemory", "KubeletHasInsufficientMemory"}
    for condition in status["conditions"]:
        assert RFC3339.match(condition["lastHeartbeatTime"]), condition
        assert RFC3339.match(condition["lastTransitionTime"]), condition


async def test_kubectl_shows_the_node_ready_with_ip_and_os_image(api, config, start_agent, node_name):
    await start_agent(config)
    out = await asyncio.to_thread(kubectl, api.kubeconfig, "get", "nodes", "-o", "wide")
    lines = [line for line in out.stdout.splitlines() if line.startswith(node_name + " ")]
    assert len(lines) == 1, out.stdout
    header = out.stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"], header
    fields = lines[0].split()
    assert fields[1] == "Ready"
    assert fields[4] == "v1.32.0-timoner"
    assert fields[5] == "127.0.0.1"
    assert OS_IMAGE in lines[0]
    assert "timoner-process://0.1" in lines[0]


async def test_restart_reuses_the_node_and_fixes_its_labels(client, config, start_agent, stop_agent, node_name,
                                                           eventually):
    first = await start_agent(config)
    await eventually(lambda: first.lease.renewals >= 1, what="first lease")
    before = await client.get(NODES, node_name)
    lease_before = await client.get(LEASES, node_name, namespace="kube-node-lease")
    await stop_agent(first)
    # Someone edits the Node while the agent is down: a stale default label and one of their own.
    await client.patch(NODES, node_name, {"metadata": {"labels": {"kubernetes.io/hostname": "stale",
                                                                   "team": "infra"}}})

    second = await start_agent(config)
    await eventually(lambda: second.lease.renewals >= 2, what="lease renewed by the restarted agent")
    after = await client.get(NODES, node_name)
    lease_after = await client.get(LEASES, node_name, namespace="kube-node-lease")

    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["labels"]["kubernetes.io/hostname"] == before["metadata"]["labels"][
        "kubernetes.io/hostname"]
    assert after["metadata"]["labels"]["team"] == "infra"
    assert lease_after["metadata"]["uid"] == lease_before["metadata"]["uid"]
    assert lease_after["spec"]["renewTime"] > lease_before["spec"]["renewTime"]
    ready = {c["type"]: c for c in after["status"]["conditions"]}["Ready"]
    assert ready["status"] == "True"
    # Ready stayed True across the restart, so its transition time is carried over.
    before_ready = {c["type"]: c for c in before["status"]["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == before_ready["lastTransitionTime"]


async def test_registration_uses_the_runtime_name(client, config, start_agent, node_name):
    await start_agent(config, runtime="hollow")
    node = await client.get(NODES, node_name)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "timoner-hollow://0.1"


async def test_main_runs_an_agent_from_a_kubeconfig(api, client, tmp_path, node_name, eventually):
    task = asyncio.create_task(main(api.kubeconfig, node_name=node_name, runtime="hollow", root_dir=tmp_path))

    async def leased():
        try:
            return await client.get(LEASES, node_name, namespace="kube-node-lease")
        except NotFound:
            assert not task.done(), task  # surface a crashed agent instead of timing out
            return None

    try:
        lease = await eventually(leased, what="the agent's lease")
        assert lease["spec"]["holderIdentity"] == node_name
        node = await client.get(NODES, node_name)
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "timoner-hollow://0.1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_main_rejects_an_unknown_runtime(api, node_name):
    with pytest.raises(ValueError, match="unknown runtime"):
        await main(api.kubeconfig, node_name=node_name, runtime="docker")
