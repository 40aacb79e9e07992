"""The node heartbeat: a Lease `kube-node-lease/<node>` renewed every `lease_interval`.

Since KEP-589 a node proves it is alive by renewing a small Lease instead
of rewriting its big status. The Lease says who holds it (`holderIdentity`
= the node name), for how long a renewal counts (`leaseDurationSeconds`,
40 s), and when it was last renewed (`renewTime`, a MicroTime). It is owned
by the Node (`ownerReferences` with the Node's uid), so deleting the Node
garbage-collects its Lease. The node lifecycle controller marks the node
NotReady when `renewTime + leaseDurationSeconds` passes; the agent itself
never releases or deletes the Lease, not even on a clean shutdown.

As upstream's lease controller does, a renewal is an update conditional on
the resourceVersion of the Lease we last wrote, so the normal case costs one
request; a 409 or a missing Lease falls back to get-or-create. Failures are
retried with a backoff of 200 ms doubling up to the renew interval (capped
at 7 s), then the regular interval resumes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from timoner.api.errors import Conflict, NotFound
from timoner.client import LEASES, Client, micro_time

from .config import NODE_LEASE_NAMESPACE, AgentConfig

__all__ = ["NodeLease"]

log = logging.getLogger("timoner.node.lease")

Obj = dict[str, Any]

_BACKOFF_START = 0.2
_BACKOFF_MAX = 7.0


class NodeLease:
    """Keeps `kube-node-lease/<node>` renewed; see the module docstring.

    `node_uid` is the uid of the Node registration returned; it becomes
    the Lease's owner reference.
    """

    def __init__(self, client: Client, config: AgentConfig, *, node_uid: str) -> None:
        self.client = client
        self.config = config
        self.node_uid = node_uid
        self.renewals = 0  # successful renewals since start; for metrics and tests
        self._lease: Obj | None = None

    @property
    def lease(self) -> Obj | None:
        """The Lease as last written, or None before the first renewal."""
        return self._lease

    async def run(self) -> None:
        """Renew now, then every `lease_interval`, until cancelled."""
        delay = _BACKOFF_START
        while True:
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient: retry sooner than a full interval
                wait = min(delay, self.config.lease_interval, _BACKOFF_MAX)
                log.warning("node %s: lease renewal failed (%s: %s); retrying in %.1fs",
                            self.config.node_name, type(exc).__name__, exc, wait)
                await self.config.clock.sleep(wait)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            delay = _BACKOFF_START
            await self.config.clock.sleep(self.config.lease_interval)

    async def renew(self) -> Obj:
        """One renewal: update the cached Lease, else get-or-create it. Returns the Lease written."""
        if self._lease is not None:
            try:
                self._lease = await self._update(self._lease)
                self.renewals += 1
                return self._lease
            except (Conflict, NotFound):
                # Someone else wrote it (or deleted it): read afresh below.
                self._lease = None
        try:
            current = await self.client.get(LEASES, self.config.node_name, namespace=NODE_LEASE_NAMESPACE)
        except NotFound:
            self._lease = await self.client.create(LEASES, self._new_lease(), namespace=NODE_LEASE_NAMESPACE)
            log.info("node %s: lease created", self.config.node_name)
        else:
            self._lease = await self._update(current)
        self.renewals += 1
        return self._lease

    def _owner_references(self) -> list[Obj]:
        return [{"apiVersion": "v1", "kind": "Node", "name": self.config.node_name, "uid": self.node_uid}]

    def _spec(self) -> Obj:
        return {
            "holderIdentity": self.config.node_name,
            "leaseDurationSeconds": self.config.lease_duration_seconds,
            "renewTime": micro_time(),
        }

    def _new_lease(self) -> Obj:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.config.node_name, "namespace": NODE_LEASE_NAMESPACE,
                         "ownerReferences": self._owner_references()},
            "spec": self._spec(),
        }

    async def _update(self, lease: Obj) -> Obj:
        meta = dict(lease.get("metadata") or {})
        # A Lease left by an earlier Node of the same name points at the wrong uid: own it anew.
        others = [ref for ref in meta.get("ownerReferences") or ()
                  if not (ref.get("kind") == "Node" and ref.get("apiVersion") == "v1")]
        meta["ownerReferences"] = others + self._owner_references()
        body = {**lease, "metadata": meta, "spec": {**(lease.get("spec") or {}), **self._spec()}}
        return await self.client.update(LEASES, body, namespace=NODE_LEASE_NAMESPACE)
