"""Registering the agent's Node with the API server, as upstream's kubelet does.

`register_node` creates the Node with its labels and full initial status
(the API server keeps a Node's status on create). If the Node already
exists (the agent restarted, or an admin pre-created it), the existing
object is kept, uid and all, and reconciled instead:

- the default labels (`kubernetes.io/hostname`, `kubernetes.io/os`,
  `kubernetes.io/arch` and their `beta.` twins) and any configured node
  labels are patched to this machine's values; labels others added stay;
- the status is rewritten with this machine's capacity, allocatable,
  addresses and nodeInfo, carrying conditions' transition times over, as
  upstream's first status sync after a restart does.

Failures other than AlreadyExists (the server is not up yet, a network
blip) are retried with a backoff of 100 ms doubling to 7 s, forever, as
upstream does: an agent without its Node can do nothing useful.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from timoner.api.errors import AlreadyExists
from timoner.client import Client

from .config import AgentConfig
from .machine import Machine, sample_usage
from .status import NODES, node_status

__all__ = ["default_labels", "register_node"]

log = logging.getLogger("timoner.node.registration")

Obj = dict[str, Any]

_BACKOFF_START = 0.1
_BACKOFF_MAX = 7.0


def default_labels(machine: Machine, config: AgentConfig) -> dict[str, str]:
    """The labels a kubelet puts on its Node, plus the configured `node_labels`."""
    return {
        "beta.kubernetes.io/arch": machine.architecture,
        "beta.kubernetes.io/os": machine.operating_system,
        "kubernetes.io/arch": machine.architecture,
        "kubernetes.io/hostname": machine.hostname,
        "kubernetes.io/os": machine.operating_system,
        **config.node_labels,
    }


async def register_node(client: Client, config: AgentConfig, *, machine: Machine, node_ip: str) -> Obj:
    """Create or reconcile this agent's Node; returns it as the server stored it."""
    delay = _BACKOFF_START
    while True:
        try:
            return await _register_once(client, config, machine=machine, node_ip=node_ip)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # retried: see the module docstring
            log.warning("node %s: registration failed (%s: %s); retrying in %.1fs",
                        config.node_name, type(exc).__name__, exc, delay)
            await config.clock.sleep(delay)
            delay = min(_BACKOFF_MAX, delay * 2)


async def _register_once(client: Client, config: AgentConfig, *, machine: Machine, node_ip: str) -> Obj:
    usage = await asyncio.to_thread(sample_usage, config.root_dir)
    labels = default_labels(machine, config)
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": labels,
            # Upstream's default: attach/detach belongs to the controller, not the kubelet.
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
        "status": node_status(machine, usage, config, node_ip=node_ip),
    }
    try:
        created = await client.create(NODES, node)
        log.info("node %s: registered", config.node_name)
        return created
    except AlreadyExists:
        pass
    existing = await client.get(NODES, config.node_name)
    current_labels = existing.get("metadata", {}).get("labels") or {}
    stale = {k: v for k, v in labels.items() if current_labels.get(k) != v}
    if stale:
        existing = await client.patch(NODES, config.node_name, {"metadata": {"labels": stale}})
    previous = (existing.get("status") or {}).get("conditions") or ()
    status = node_status(machine, usage, config, node_ip=node_ip, previous_conditions=previous)
    updated = await client.patch(NODES, config.node_name, {"status": status}, patch_type="strategic",
                                 subresource="status")
    log.info("node %s: already registered (uid %s); reconciled", config.node_name,
             updated.get("metadata", {}).get("uid"))
    return updated
