"""Fixtures for the controller tests: a fresh in-process API server per test, and a one-node cluster on it.

`cluster` runs, in the test's event loop, what `timoner up` runs: the
controller manager (leader election off unless a test asks), the scheduler
and a node agent on the hollow runtime, whose containers "run" at once and
make their pods Ready without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import pytest

from timoner.client import Client, resource_for
from timoner.controllers import Manager, new_manager
from timoner.node.agent import Agent
from timoner.node.config import AgentConfig
from timoner.node.pods import PodWorkerConfig
from timoner.scheduler import Scheduler

PODS = resource_for("v1", "Pod")
DEPLOYMENTS = resource_for("apps/v1", "Deployment")
REPLICA_SETS = resource_for("apps/v1", "ReplicaSet")
RCS = resource_for("v1", "ReplicationController")
EVENTS = resource_for("v1", "Event")

FAST_PODS = PodWorkerConfig(backoff_base=0.2, backoff_cap=1.0, retry_interval=0.2)


@dataclass
class Cluster:
    client: Client
    tmp_path: object
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    managers: list[Manager] = field(default_factory=list)

    async def start_manager(self, name: str = "manager", **options) -> Manager:
        options.setdefault("leader_election", False)
        manager = new_manager(self.client, **options)
        self.managers.append(manager)
        self.tasks[name] = asyncio.create_task(manager.run(), name=name)
        return manager

    async def stop(self, name: str) -> None:
        task = self.tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def start_node(self, node_name: str = "node-1") -> Agent:
        config = AgentConfig(node_name=node_name, runtime="hollow", root_dir=self.tmp_path / node_name,
                             node_ip="127.0.0.1", kubelet_port=0, lease_interval=1.0,
                             status_update_interval=0.5, status_report_interval=3600.0)
        agent = Agent(self.client, config, pod_config=FAST_PODS)
        self.tasks[f"agent-{node_name}"] = asyncio.create_task(agent.run())
        return agent

    def start_scheduler(self) -> Scheduler:
        scheduler = Scheduler(self.client, initial_backoff=0.05, max_backoff=0.2)
        self.tasks["scheduler"] = asyncio.create_task(scheduler.run())
        return scheduler


@pytest.fixture
async def cluster(client, tmp_path):
    """Controller manager + scheduler + one hollow node; every part stopped at teardown."""
    c = Cluster(client, tmp_path)
    await c.start_node()
    c.start_scheduler()
    await c.start_manager()
    yield c
    for name in list(c.tasks):
        await c.stop(name)


@pytest.fixture
async def bare(client, tmp_path):
    """Nothing running yet: tests start the parts they want (a manager without nodes, two managers, ...)."""
    c = Cluster(client, tmp_path)
    yield c
    for name in list(c.tasks):
        await c.stop(name)
