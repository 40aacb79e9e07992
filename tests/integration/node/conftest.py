"""Fixtures for the node agent tests: one in-process API server per module, a Client, agents that clean up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace

import pytest
from node_helpers import FAST_PODS, cancel_all, start_pod_agent

from timoner.client import Client, load_kubeconfig
from timoner.node.agent import Agent
from timoner.node.config import AgentConfig
from timoner.node.pods import pods_with_volumes, remove_pod_volumes
from timoner.testing import ServerThread


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("node") / "data", storage="memory") as srv:
        yield srv


@pytest.fixture
async def client(api):
    async with Client(load_kubeconfig(api.kubeconfig), user_agent="node-tests") as c:
        yield c


@pytest.fixture
def node_name():
    return f"n-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def config(tmp_path, node_name):
    """Fast intervals so the real loops run many times within a test; 127.0.0.1 as the node IP; the node
    server (started when the agent has a runtime) on a port the OS picks, so parallel tests never clash.

    Afterwards, once the test's agents are gone, what their pods still have mounted (every pod has a
    projected service-account token volume, a tmpfs under root) is unmounted, as `timoner up` does on exit."""
    config = AgentConfig(node_name=node_name, root_dir=tmp_path / "agent", node_ip="127.0.0.1",
                         lease_interval=0.1, status_update_interval=0.05, status_report_interval=3600.0,
                         kubelet_port=0)
    yield config
    for uid in pods_with_volumes(config.root_dir):
        remove_pod_volumes(config.root_dir / "pods" / uid)


@pytest.fixture
async def start_agent(client):
    """`await start_agent(config, **overrides)` runs an Agent until the test ends (or `stop` is called)."""
    tasks: list[asyncio.Task[None]] = []

    async def start(config: AgentConfig, **overrides) -> Agent:
        agent = Agent(client, replace(config, **overrides) if overrides else config)
        task = asyncio.create_task(agent.run())
        tasks.append(task)
        registered = asyncio.create_task(agent.registered.wait())
        done, _ = await asyncio.wait({task, registered}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if registered not in done:
            registered.cancel()
            if task.done():
                task.result()  # raises the agent's failure
            raise AssertionError("agent did not register within 20s")
        agent.task = task  # type: ignore[attr-defined]
        return agent

    yield start
    await cancel_all(tasks)


@pytest.fixture
async def run_agent(client):
    """`await run_agent(config, runtime, pod_config)`: an Agent with pod workers on `runtime` until the test ends."""
    tasks: list[asyncio.Task[None]] = []

    async def start(config, runtime, pod_config=FAST_PODS) -> Agent:
        agent, task = await start_pod_agent(client, config, runtime, pod_config=pod_config)
        tasks.append(task)
        agent.task = task  # type: ignore[attr-defined]
        return agent

    yield start
    await cancel_all(tasks)


@pytest.fixture
def stop_agent():
    """`await stop_agent(agent)`: cancel a running agent, as a process exit would."""

    async def stop(agent: Agent) -> None:
        task = agent.task  # type: ignore[attr-defined]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
