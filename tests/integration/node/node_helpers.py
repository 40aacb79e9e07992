"""Helpers shared by the node agent tests: starting an agent with pod workers, stopping it so that no pod or
container outlives the test, and finding leftover processes."""

from __future__ import annotations

import asyncio
import contextlib

from timoner.api.errors import NotFound
from timoner.client import resource_for
from timoner.node.agent import Agent
from timoner.node.pods import PodWorkerConfig
from timoner.node.runtimes.process import ProcessRuntime
from timoner.testing import eventually, processes_under

__all__ = ["FAST_PODS", "bounded", "cancel_all", "delete_node_pods", "processes_under", "start_pod_agent", "stop_pod_agent",
           "stop_runtime_agent"]

PODS = resource_for("v1", "Pod")

# Short back-offs so restarts and retries happen within a test.
FAST_PODS = PodWorkerConfig(backoff_base=0.2, backoff_cap=1.0, retry_interval=0.2)


async def start_pod_agent(client, config, runtime, *, pod_config: PodWorkerConfig = FAST_PODS,
                          timeout: float = 20.0) -> tuple[Agent, asyncio.Task[None]]:
    """Run an Agent with pod workers on `runtime`: (agent, its task) once the workers have recovered.

    An agent that fails while starting raises its failure here. The caller cancels the task.
    """
    agent = Agent(client, config, runtime=runtime, pod_config=pod_config)
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while agent.pod_workers is None or not agent.pod_workers.recovered.is_set():
        if task.done():
            task.result()
        if loop.time() >= deadline:
            task.cancel()
            raise AssertionError(f"agent did not start its pod workers within {timeout:g}s")
        await asyncio.sleep(0.02)
    return agent, task


async def delete_node_pods(client, node_name: str, *, grace_period_seconds: int | None = None) -> None:
    """Delete every pod bound to the node (one already gone is fine)."""
    for pod in (await client.list(PODS, field_selector=f"spec.nodeName={node_name}"))["items"]:
        with contextlib.suppress(NotFound):
            await client.delete(PODS, pod["metadata"]["name"], namespace=pod["metadata"]["namespace"],
                                grace_period_seconds=grace_period_seconds)


async def stop_runtime_agent(task: asyncio.Task[None], runtime: ProcessRuntime) -> None:
    """Cancel an agent's task, then stop the containers its runtime still has and close the runtime."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for state in await runtime.recover():
        await runtime.stop(state.id, timeout=0)
    await runtime.close()


async def stop_pod_agent(client, agent: Agent, *, task: asyncio.Task[None], runtime: ProcessRuntime) -> None:
    """The end of a test's agent on a real runtime: its node's pods deleted and their workers finished (so
    volumes and networks are torn down as in a real cluster), then `stop_runtime_agent`."""
    await delete_node_pods(client, agent.config.node_name)
    workers = agent.pod_workers
    await eventually(lambda: not workers.workers and not workers._tasks, timeout=30,
                     what="every pod deleted and its worker finished")
    await stop_runtime_agent(task, runtime)


async def bounded(awaitable, seconds: float = 20.0):
    async with asyncio.timeout(seconds):
        return await awaitable


async def cancel_all(tasks) -> None:
    """Cancel the agents' tasks and wait until each has ended."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
