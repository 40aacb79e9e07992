"""The pod garbage collector: deletes the pods nobody else will, as upstream's PodGC controller.

Every `period` seconds (20, as upstream's gcCheckPeriod) it looks at all
pods and nodes in the caches and:

1. **Terminated pods** (`Succeeded`/`Failed`) beyond `terminated_pod_threshold`
   (kube-controller-manager's `--terminated-pod-gc-threshold`, 12500; 0 turns
   this off): the excess is deleted, evicted pods first (`Failed` with
   reason `Evicted`), then the oldest, names breaking ties.
2. **Terminating pods on out-of-service nodes**: a pod being deleted whose
   node is not Ready and carries the `node.kubernetes.io/out-of-service`
   taint will never be finished by a kubelet; it is force-deleted.
3. **Orphaned pods**: a pod bound to a node that does not exist. A missing
   node is quarantined for 40 s first (it may just not be in the cache
   yet), then looked up with a GET; only if that says 404 are its pods
   marked `Failed` with the condition `DisruptionTarget` (reason
   `DeletionByPodGC`) and force-deleted.
4. **Unscheduled terminating pods**: a pod being deleted that was never
   bound to a node has no kubelet to finish it; it is force-deleted.

"Force-deleted" is what upstream does: a pod not yet finished is first
marked `Failed` through its `status` (so that whoever watches it, a Job
say, sees it fail), then deleted with a grace period of 0.

The controller is one reconcile of a fixed request, requeued after each
pass; a pass with nodes in quarantine comes back when the first quarantine
ends rather than at the next period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from timoner.api.errors import APIError, NotFound
from timoner.client import Client, Informer, resource_for

from ._framework import Controller, Request, Result, SharedInformers
from ._pods import now_rfc3339, parse_time

__all__ = ["PodGCReconciler", "TERMINATED_POD_GC_THRESHOLD", "gc_order", "new_podgc_controller"]

log = logging.getLogger("timoner.controllers.podgc")

Obj = dict[str, Any]

PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")

TERMINATED_POD_GC_THRESHOLD = 12500
GC_CHECK_PERIOD = 20.0
QUARANTINE_TIME = 40.0
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
_REQUEST = Request("", "pod-garbage-collector")


def is_terminated(pod: Obj) -> bool:
    """In a terminal phase: anything but Pending, Running and Unknown (upstream's isPodTerminated)."""
    return (pod.get("status") or {}).get("phase") not in ("Pending", "Running", "Unknown")


def _is_evicted(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Failed" and status.get("reason") == "Evicted"


def gc_order(pods: list[Obj]) -> list[Obj]:
    """Terminated pods in the order PodGC deletes them: evicted first, then by creation time, then by name."""
    def key(pod: Obj) -> tuple[bool, float, str]:
        meta = pod.get("metadata") or {}
        return (not _is_evicted(pod), parse_time(meta.get("creationTimestamp")) or 0.0, meta.get("name", ""))
    return sorted(pods, key=key)


def _node_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or ())


class PodGCReconciler:
    """One pass of the pod garbage collector per reconcile; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *,
                 terminated_pod_threshold: int = TERMINATED_POD_GC_THRESHOLD, period: float = GC_CHECK_PERIOD,
                 quarantine: float = QUARANTINE_TIME, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.pods: Informer = informers.get(PODS)
        self.nodes: Informer = informers.get(NODES)
        self.threshold = terminated_pod_threshold
        self.period = period
        self.quarantine = quarantine
        self.clock = clock
        self._missing: dict[str, float] = {}  # node name -> when its quarantine ends

    async def reconcile(self, request: Request) -> Result:
        pods = self.pods.lister.list()
        existing = {node["metadata"]["name"] for node in self.nodes.lister.list()}
        if self.threshold > 0:
            await self._gc_terminated(pods)
        await self._gc_terminating_out_of_service(pods)
        await self._gc_orphaned(pods, existing)
        await self._gc_unscheduled_terminating(pods)
        wait = self.period
        if self._missing:
            wait = min(wait, max(0.1, min(self._missing.values()) - self.clock()))
        return Result(requeue_after=wait)

    async def _gc_terminated(self, pods: list[Obj]) -> None:
        terminated = [pod for pod in pods if is_terminated(pod)]
        excess = len(terminated) - self.threshold
        if excess <= 0:
            return
        log.info("podgc: garbage collecting %d terminated pods", excess)
        await self._delete_all(gc_order(terminated)[:excess])

    async def _gc_terminating_out_of_service(self, pods: list[Obj]) -> None:
        doomed = []
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                continue
            node = self.nodes.lister.get(None, (pod.get("spec") or {}).get("nodeName") or "")
            if node is None:
                continue
            taints = (node.get("spec") or {}).get("taints") or ()
            if not _node_ready(node) and any(t.get("key") == OUT_OF_SERVICE_TAINT for t in taints):
                doomed.append(pod)
        if doomed:
            log.info("podgc: garbage collecting %d terminating pods on out-of-service nodes", len(doomed))
            await self._delete_all(gc_order(doomed))

    async def _gc_orphaned(self, pods: list[Obj], existing: set[str]) -> None:
        now = self.clock()
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in existing:
                self._missing.setdefault(node, now + self.quarantine)
        deleted: set[str] = set()
        for node, until in list(self._missing.items()):
            if until > now:
                continue
            del self._missing[node]
            if node in existing:
                continue
            try:
                await self.client.get(NODES, node)
            except NotFound:
                deleted.add(node)
            except APIError as exc:
                log.warning("podgc: getting node %s: %s", node, exc)  # back in quarantine next pass if still missing
        condition = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                     "message": "PodGC: node no longer exists"}
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") in deleted:
                log.info("podgc: found orphaned pod %s/%s assigned to the missing node %s, deleting",
                         pod["metadata"]["namespace"], pod["metadata"]["name"], pod["spec"]["nodeName"])
                await self._fail_and_delete(pod, condition)

    async def _gc_unscheduled_terminating(self, pods: list[Obj]) -> None:
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp") and not (pod.get("spec") or {}).get("nodeName"):
                log.info("podgc: found unscheduled terminating pod %s/%s, deleting", pod["metadata"]["namespace"],
                         pod["metadata"]["name"])
                await self._fail_and_delete(pod)

    async def _delete_all(self, pods: list[Obj]) -> None:
        await asyncio.gather(*(self._fail_and_delete(pod) for pod in pods))

    async def _fail_and_delete(self, pod: Obj, condition: Obj | None = None) -> None:
        """Mark the pod Failed (with `condition`) unless it finished already, then delete it with no grace."""
        meta = pod["metadata"]
        try:
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                status: Obj = {"phase": "Failed"}
                if condition is not None:
                    status["conditions"] = [{**condition, "lastTransitionTime": now_rfc3339()}]
                # Strategic merge: the conditions merge by type, as upstream's apply of only these fields.
                await self.client.patch(PODS, meta["name"], {"status": status}, namespace=meta["namespace"],
                                        patch_type="strategic", subresource="status")
            await self.client.delete(PODS, meta["name"], namespace=meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})
        except NotFound:
            pass
        except APIError as exc:
            log.warning("podgc: deleting pod %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)


def new_podgc_controller(client: Client, informers: SharedInformers, *,
                         terminated_pod_threshold: int = TERMINATED_POD_GC_THRESHOLD,
                         period: float = GC_CHECK_PERIOD, quarantine: float = QUARANTINE_TIME) -> Controller:
    """A Controller that runs the pod garbage collector every `period` seconds (`podgc` in kube-controller-manager)."""
    reconciler = PodGCReconciler(client, informers, terminated_pod_threshold=terminated_pod_threshold,
                                 period=period, quarantine=quarantine)
    controller = Controller("pod-garbage-collector", reconciler)
    controller.enqueue(_REQUEST)
    return controller
