"""Fixtures for the persistent volume tests: a fresh API server per test and a one-node cluster on it.

`cluster` runs what `timoner up` runs, in the test's event loop: the
controller manager (PV controller included), the scheduler and a node
agent on the process runtime (real processes, as root: the volume is bound
into the container's mount namespace), with its local-path provisioner.
The node's `kubernetes.io/hostname` label is its own name, so a volume's
node affinity names this node and no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from timoner.api.errors import NotFound
from timoner.client import Client, resource_for
from timoner.controllers import new_manager
from timoner.node.agent import Agent
from timoner.node.config import AgentConfig
from timoner.node.pods import PodWorkerConfig
from timoner.node.runtime import ContainerID
from timoner.node.runtimes.process import ProcessRuntime
from timoner.scheduler import Scheduler

PODS = resource_for("v1", "Pod")

FAST_PODS = PodWorkerConfig(backoff_base=0.2, backoff_cap=1.0, retry_interval=0.2, volume_sync_interval=0.3)


@dataclass
class Cluster:
    client: Client
    node_name: str
    root_dir: Path
    agent: Agent | None = None
    runtime: ProcessRuntime | None = None
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)

    @property
    def local_path(self) -> Path:
        return self.root_dir.absolute() / "local-path"

    async def sh(self, pod: dict, script: str) -> tuple[int, str, str]:
        """`sh -c script` in the pod's first container through the runtime's exec: (code, stdout, stderr)."""
        assert self.runtime is not None
        cid = ContainerID.parse(pod["status"]["containerStatuses"][0]["containerID"])
        session = await self.runtime.exec(cid, ("sh", "-c", script))
        output = [item async for item in session.output()]
        code = await asyncio.wait_for(session.wait(), 30)
        text = {n: b"".join(d for s, d in output if s == n).decode() for n in (1, 2)}
        return code, text[1], text[2]


@pytest.fixture
async def cluster(client, tmp_path, eventually):
    assert os.geteuid() == 0, "these tests need root (mount namespaces), which this machine's test runs have"
    node_name = f"node-{uuid.uuid4().hex[:6]}"
    c = Cluster(client, node_name, tmp_path / "agent")
    manager = new_manager(client, leader_election=False)
    c.tasks["manager"] = asyncio.create_task(manager.run())
    c.tasks["scheduler"] = asyncio.create_task(Scheduler(client, initial_backoff=0.1, max_backoff=1.0).run())
    c.runtime = ProcessRuntime(tmp_path / "process")
    config = AgentConfig(node_name=node_name, root_dir=c.root_dir, node_ip="127.0.0.1", kubelet_port=0,
                         node_labels={"kubernetes.io/hostname": node_name}, lease_interval=1.0,
                         status_update_interval=0.5, status_report_interval=3600.0)
    c.agent = Agent(client, config, runtime=c.runtime, pod_config=FAST_PODS)
    c.tasks["agent"] = asyncio.create_task(c.agent.run())
    await eventually(lambda: c.agent.pod_workers is not None and c.agent.pod_workers.recovered.is_set(),
                     timeout=30, what="the agent running")
    yield c
    pods = (await client.list(PODS, field_selector=f"spec.nodeName={node_name}"))["items"]
    for pod in pods:
        with contextlib.suppress(NotFound):
            await client.delete(PODS, pod["metadata"]["name"], namespace=pod["metadata"]["namespace"])
    workers = c.agent.pod_workers
    await eventually(lambda: not workers.workers and not workers._tasks, timeout=60,
                     what="every pod deleted and its worker finished")
    for task in c.tasks.values():
        task.cancel()
    for task in c.tasks.values():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for state in await c.runtime.recover():
        await c.runtime.stop(state.id, timeout=0)
    await c.runtime.close()
