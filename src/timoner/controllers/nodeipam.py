"""The node IPAM controller's range allocator: a pod CIDR for every Node, carved from the cluster CIDR.

As upstream's `RangeAllocator` (kube-controller-manager with
`--allocate-node-cidrs`, 1.32), for one cluster CIDR (`--cluster-cidr`,
default `100.64.0.0/16`) and `--node-cidr-mask-size` (default 24):

- What is taken is rebuilt from the Nodes themselves: every Node the
  informer lists with `spec.podCIDRs` marks them used before any sync runs
  (the manager waits for the caches), so a restarted manager never hands
  out a CIDR twice. A Node's CIDR is freed when the Node is deleted (or
  starts being deleted).
- A Node without `spec.podCIDRs` gets the next free block (`CidrSet`),
  written as a strategic merge patch of `spec.podCIDR` and `spec.podCIDRs`
  (three attempts). If they all fail the block is freed again and the Node
  gets a `CIDRAssignmentFailed` event; when the range is full, a
  `CIDRNotAvailable` event ("Node <name> status is now: CIDRNotAvailable",
  type Normal, as upstream's RecordNodeStatusChange) and a retry with
  backoff. Freeing a block requeues the Nodes still waiting for one.
- A Node's CIDR never changes once set (the API refuses it); one outside the
  cluster CIDR is only logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import APIError, NotFound
from timoner.client import Client, EventRecorder, Informer, resource_for

from ._cidrset import CIDRRangeFull, CidrSet
from ._framework import Change, Controller, Request, Result, SharedInformers

__all__ = ["CLUSTER_CIDR", "NODE_CIDR_MASK_SIZE", "NodeIPAMReconciler", "new_nodeipam_controller", "pod_cidrs"]

log = logging.getLogger("timoner.controllers.nodeipam")

Obj = dict[str, Any]

NODES = resource_for("v1", "Node")
COMPONENT = "cidrAllocator"
CLUSTER_CIDR = "100.64.0.0/16"
NODE_CIDR_MASK_SIZE = 24
CIDR_UPDATE_RETRIES = 3


def pod_cidrs(node: Obj | None) -> list[str]:
    """`spec.podCIDRs`, or the single `spec.podCIDR` of a Node written before the list existed."""
    spec = (node or {}).get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


@dataclass(frozen=True, slots=True)
class _Assigned:
    uid: str
    cidr: str


class NodeIPAMReconciler:
    """Gives Nodes their pod CIDR; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, cluster_cidr: str = CLUSTER_CIDR,
                 node_cidr_mask_size: int = NODE_CIDR_MASK_SIZE, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.cidrs = CidrSet(cluster_cidr, node_cidr_mask_size)
        self.nodes: Informer = informers.get(NODES)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        # CIDRs patched onto Nodes whose update the cache does not show yet (a sync then must not allocate again).
        self._assigned: dict[str, _Assigned] = {}

    def _occupy(self, node: Obj) -> None:
        for cidr in pod_cidrs(node):
            try:
                self.cidrs.occupy(cidr)
            except ValueError as exc:
                log.error("nodeipam: node %s: cannot mark its CIDR %s as used: %s", node["metadata"]["name"], cidr,
                          exc)

    def _release(self, node: Obj) -> None:
        for cidr in pod_cidrs(node):
            try:
                self.cidrs.release(cidr)
                log.info("nodeipam: released CIDR %s of node %s", cidr, node["metadata"]["name"])
            except ValueError as exc:
                log.error("nodeipam: node %s: cannot release its CIDR %s: %s", node["metadata"]["name"], cidr, exc)

    def on_node(self, change: Change) -> list[Request]:
        """Occupy (or, for a deleted Node, free) CIDRs as the cache sees them; queue Nodes that need one."""
        node, name = change.obj, change.obj["metadata"]["name"]
        if change.type == "delete":
            self._assigned.pop(name, None)
            if not pod_cidrs(node):
                return []
            self._release(node)
            # A freed block may be what a Node waiting in backoff needs.
            return [Request.of(n) for n in self.nodes.lister.list() if not pod_cidrs(n)]
        cidrs = pod_cidrs(node)
        if cidrs:
            self._assigned.pop(name, None)
            if change.type == "add" or pod_cidrs(change.old) != cidrs:
                self._occupy(node)
            return []
        return [Request.of(node)]

    async def reconcile(self, request: Request) -> Result:
        node = self.nodes.lister.get("", request.name)
        if node is None:
            return Result()
        meta = node["metadata"]
        if meta.get("deletionTimestamp"):
            self._release(node)
            return Result()
        if pod_cidrs(node):
            self._occupy(node)
            return Result()
        assigned = self._assigned.get(request.name)
        if assigned is not None and assigned.uid == meta.get("uid"):
            return Result()  # our patch is written; the cache will show it
        node = {**node, "apiVersion": "v1", "kind": "Node"}
        try:
            cidr = self.cidrs.allocate_next()
        except CIDRRangeFull as exc:
            await self._status_change(node, "CIDRNotAvailable")
            log.warning("nodeipam: no CIDR for node %s: %s", request.name, exc)
            return Result(requeue=True)
        patch = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        error: APIError | None = None
        for _ in range(CIDR_UPDATE_RETRIES):
            try:
                await self.client.patch(NODES, request.name, patch, patch_type="strategic")
                break
            except NotFound:
                self.cidrs.release(cidr)
                return Result()
            except APIError as exc:
                error = exc
        else:
            log.error("nodeipam: failed to set the pod CIDR of node %s to %s after %d attempts: %s", request.name,
                      cidr, CIDR_UPDATE_RETRIES, error)
            await self._status_change(node, "CIDRAssignmentFailed")
            # A timeout may have gone through: keep the block then (a restart gives it back if not).
            assert error is not None
            if error.reason not in ("Timeout", "ServerTimeout"):
                self.cidrs.release(cidr)
            raise error
        self._assigned[request.name] = _Assigned(meta.get("uid") or "", cidr)
        log.info("nodeipam: set node %s pod CIDR %s", request.name, cidr)
        return Result()

    async def _status_change(self, node: Obj, status: str) -> None:
        name = node["metadata"]["name"]
        await self.recorder.event(node, "Normal", status, f"Node {name} status is now: {status}")


def new_nodeipam_controller(client: Client, informers: SharedInformers, *, cluster_cidr: str = CLUSTER_CIDR,
                            node_cidr_mask_size: int = NODE_CIDR_MASK_SIZE,
                            recorder: EventRecorder | None = None) -> Controller:
    """A Controller that gives every Node a pod CIDR (`nodeipam` with the RangeAllocator).

    `cluster_cidr` and `node_cidr_mask_size` are kube-controller-manager's `--cluster-cidr` and
    `--node-cidr-mask-size`; ValueError when the mask does not fit the range.
    """
    reconciler = NodeIPAMReconciler(client, informers, cluster_cidr=cluster_cidr,
                                    node_cidr_mask_size=node_cidr_mask_size, recorder=recorder)
    controller = Controller("node-ipam-controller", reconciler)
    controller.watches(reconciler.nodes, reconciler.on_node)
    return controller
