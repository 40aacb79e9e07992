"""What a deleted pod leaves on the node's disk with the process runtime: nothing, whether the agent saw the delete or
was down at the time (a real API server, the agent's pod workers, real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest
from node_helpers import delete_node_pods, processes_under, start_pod_agent, stop_runtime_agent

from timoner.api.errors import NotFound
from timoner.client import resource_for
from timoner.node.agent import Agent
from timoner.node.runtime import ContainerID
from timoner.node.runtimes.process import ProcessRuntime

PODS = resource_for("v1", "Pod")

LOOP = "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done"


@pytest.fixture
async def process_agent(client, config, tmp_path, eventually):
    """`await process_agent()`: an Agent on a process runtime in tmp_path (each call a new one on the same
    directory: an agent restart); `await process_agent.stop(agent)` stops one as an agent process exit does.
    When the test ends every pod is deleted and no process is left."""
    started: list[tuple[Agent, asyncio.Task[None], ProcessRuntime]] = []

    async def start() -> Agent:
        runtime = ProcessRuntime(tmp_path / "process")
        agent, task = await start_pod_agent(client, config, runtime)
        started.append((agent, task, runtime))
        return agent

    async def stop(agent: Agent) -> None:
        for other, task, runtime in started:
            if other is agent:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await runtime.close()  # the containers run on, for the next agent

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    await delete_node_pods(client, config.node_name, grace_period_seconds=0)
    for _, task, runtime in started:
        await stop_runtime_agent(task, runtime)
    await eventually(lambda: not processes_under(tmp_path), what="every process of the test to be gone")


def make_pod(name, node):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", LOOP]}]}}


async def running(client, namespace, name, eventually) -> tuple[str, str]:
    """Wait for the pod to run; its uid and its container's runtime id."""
    async def check():
        pod = await client.get(PODS, name, namespace=namespace)
        statuses = pod["status"].get("containerStatuses") or ()
        if pod["status"].get("phase") == "Running" and statuses and statuses[0].get("containerID"):
            return pod["metadata"]["uid"], ContainerID.parse(statuses[0]["containerID"]).id
        return None

    return await eventually(check, timeout=20, what=f"pod {name} running")


async def gone(client, namespace, name) -> bool:
    try:
        await client.get(PODS, name, namespace=namespace)
    except NotFound:
        return True
    return False


def records_of(root: Path, ident: str) -> list[str]:
    return sorted(p.name for p in (root / "containers").glob(f"{ident}.*"))


async def test_a_deleted_pod_leaves_no_records_logs_or_directories(client, config, node_name, namespace, tmp_path,
                                                                    process_agent, eventually):
    await process_agent()
    root = tmp_path / "process"
    await client.create(PODS, make_pod("short-lived", node_name), namespace=namespace)
    uid, ident = await running(client, namespace, "short-lived", eventually)
    assert records_of(root, ident) == [f"{ident}.json", f"{ident}.shim.log", f"{ident}.sock"]
    assert (root / "pods" / uid / "c" / "0.log").exists()

    await client.delete(PODS, "short-lived", namespace=namespace)
    await eventually(lambda: gone(client, namespace, "short-lived"), timeout=20, what="the pod deleted")
    await eventually(lambda: not records_of(root, ident) and not (root / "pods" / uid).exists(),
                     what="the pod's records, log and directories removed")


async def test_a_restarted_agent_removes_what_pods_deleted_meanwhile_left(client, config, node_name, namespace,
                                                                          tmp_path, process_agent, eventually):
    first = await process_agent()
    root = tmp_path / "process"
    await client.create(PODS, make_pod("kept", node_name), namespace=namespace)
    await client.create(PODS, make_pod("deleted", node_name), namespace=namespace)
    kept_uid, kept_id = await running(client, namespace, "kept", eventually)
    deleted_uid, deleted_id = await running(client, namespace, "deleted", eventually)
    await process_agent.stop(first)

    # While no agent runs: one pod is deleted (its container runs on), and a pod directory without any
    # container record is there, as a pod whose container never started leaves it.
    await client.delete(PODS, "deleted", namespace=namespace, grace_period_seconds=0)
    assert await gone(client, namespace, "deleted")
    never_started = root / "pods" / str(uuid.uuid4()) / "c" / "work"
    never_started.mkdir(parents=True)

    await process_agent()  # returns once the new agent recovered, which includes cleaning up
    assert records_of(root, deleted_id) == []
    assert not (root / "pods" / deleted_uid).exists() and not never_started.parent.parent.exists()
    # The pod still bound here is untouched: same container, still running, its files in place.
    assert records_of(root, kept_id) == [f"{kept_id}.json", f"{kept_id}.shim.log", f"{kept_id}.sock"]
    assert (root / "pods" / kept_uid / "c" / "0.log").read_text().endswith(" stdout F started\n")
    pod = await client.get(PODS, "kept", namespace=namespace)
    status = pod["status"]["containerStatuses"][0]
    assert status["containerID"] == f"process://{kept_id}" and status["restartCount"] == 0
    assert "running" in status["state"]
