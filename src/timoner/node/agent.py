"""The node agent (`timoner agent`): register the Node, keep its Lease and status fresh, watch its pods.

`Agent.run` is one `Runnable`:

1. read the machine (`machine.read_machine`) and register the Node
   (`registration.register_node`), retrying until the API server answers;
2. then, concurrently and until cancelled:
   - `NodeLease.run`: the heartbeat, every `lease_interval`;
   - `NodeStatusReporter.run`: the status, written only on change or every
     `status_report_interval`;
   - an `Informer` on pods with `fieldSelector=spec.nodeName=<node>`: the
     pods bound here. For now its handlers only log; the pod workers that
     drive each pod to its spec through a `Runtime` come next.

If any of them fails for good the others are cancelled and `run` raises.
Cancelling `run` stops everything and writes nothing on the way out: a
node that goes away is marked NotReady by the node lifecycle controller
when its Lease expires, as upstream.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from timoner.client import Client, Informer, load_kubeconfig, object_key, resource_for

from .config import AgentConfig, default_node_name
from .lease import NodeLease
from .machine import Machine, primary_ipv4, read_machine
from .registration import register_node
from .status import NodeStatusReporter

__all__ = ["PODS", "Agent", "AgentConfig", "main"]

log = logging.getLogger("timoner.node.agent")

PODS = resource_for("v1", "Pod")

Obj = dict[str, Any]


class Agent:
    """One node's agent; see the module docstring. Its parts are attributes once `run` has registered."""

    def __init__(self, client: Client, config: AgentConfig) -> None:
        self.client = client
        self.config = config
        self.machine: Machine | None = None
        self.node: Obj | None = None
        self.lease: NodeLease | None = None
        self.status: NodeStatusReporter | None = None
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.registered = asyncio.Event()

    async def run(self) -> None:
        """Register, then heartbeat, report status and watch pods until cancelled."""
        config = self.config
        await asyncio.to_thread(config.root_dir.mkdir, parents=True, exist_ok=True)
        self.machine = await asyncio.to_thread(read_machine, config.root_dir)
        node_ip = config.node_ip or await asyncio.to_thread(primary_ipv4)
        self.node = await register_node(self.client, config, machine=self.machine, node_ip=node_ip)
        self.lease = NodeLease(self.client, config, node_uid=self.node["metadata"]["uid"])
        self.status = NodeStatusReporter(self.client, config, machine=self.machine, node_ip=node_ip)
        self.registered.set()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.lease.run(), name=f"node-lease-{config.node_name}")
            group.create_task(self.status.run(), name=f"node-status-{config.node_name}")
            group.create_task(self.pods.run(), name=f"pod-informer-{config.node_name}")

    # The pod workers will hang off these; until then the agent only reports what it sees.

    def _on_pod_add(self, pod: Obj) -> None:
        log.info("node %s: pod %s bound here", self.config.node_name, object_key(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        log.debug("node %s: pod %s changed", self.config.node_name, object_key(new))

    def _on_pod_delete(self, pod: Obj) -> None:
        log.info("node %s: pod %s gone", self.config.node_name, object_key(pod))


async def main(kubeconfig: Path, *, node_name: str | None = None, runtime: str = "process",
               root_dir: Path | None = None) -> None:
    """`timoner agent`: run this machine's node agent against the cluster in `kubeconfig` until cancelled."""
    config = AgentConfig(node_name=node_name or default_node_name(), runtime=runtime)
    if root_dir is not None:
        config = replace(config, root_dir=root_dir)
    async with Client(load_kubeconfig(kubeconfig), user_agent=f"timoner-agent/{config.node_name}") as client:
        await Agent(client, config).run()
