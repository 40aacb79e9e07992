"""Helpers shared by the node agent tests: starting an agent with pod workers, and finding leftover processes."""

from __future__ import annotations

import asyncio

from timoner.node.agent import Agent
from timoner.node.pods import PodWorkerConfig
from timoner.testing import processes_under

__all__ = ["FAST_PODS", "bounded", "processes_under", "start_pod_agent"]

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


async def bounded(awaitable, seconds: float = 20.0):
    async with asyncio.timeout(seconds):
        return await awaitable
