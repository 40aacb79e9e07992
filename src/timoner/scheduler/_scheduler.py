"""The runnable scheduler: informers feed a queue, one worker runs cycles, a binder commits.

Flow (kube-scheduler's, small):

1. Pod and node informers keep the local world; a pending pod that is
   ours (`spec.schedulerName`, no `nodeName`, not terminating, not
   finished) is queued by key.
2. One worker takes a key, builds a `Snapshot` from the listers plus the
   *assumed* pods, and runs the pure `schedule` cycle. There is a single
   worker on purpose: cycles then see each other's decisions.
3. Success: the pod is assumed onto the node at once (the next cycle
   counts it, so a burst cannot overcommit a node while bindings are in
   flight), and a background task POSTs `pods/<name>/binding`. The
   assumption is dropped when the informer shows the pod bound or gone,
   or when the binding fails (then the pod is retried with backoff).
4. Failure: the pod's `PodScheduled` condition becomes False/Unschedulable
   with the FitError message, a Warning `FailedScheduling` Event is
   posted, and the pod waits, as in upstream's unschedulable pool, until a
   cluster change could help (a node added or changed, a placed pod gone
   or finished), but never sooner than its per-pod exponential backoff.
   A slow periodic flush retries anyway in case an event was missed.

Pod updates that touch only status (our own condition patch included) do
not requeue an unschedulable pod; that is what keeps a failing pod from
looping.

Volumes (upstream's VolumeBinding PreBind): claims, volumes and
StorageClasses are watched too, and any change to them retries the
unschedulable pods. When the chosen node needs volume binding (see
`plugins.volume_binding`), the binder first writes it: the `claimRef` of
each static volume chosen (assumed at once, so the next cycle does not
take it again) and `volume.kubernetes.io/selected-node` on each claim to
provision; then waits, up to `bind_timeout` (upstream's 600 s), until the
PV controller (and the provisioner) have bound every claim, and only then
binds the pod. A failure (a write refused, a claim gone or its
selected-node taken away, the timeout) puts the pod back in the queue with
backoff and is a Warning `FailedScheduling`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from timoner.api.errors import APIError, Conflict, NotFound
from timoner.client import (
    Client,
    EventRecorder,
    ExponentialRateLimiter,
    Informer,
    ShutDown,
    WorkQueue,
    load_kubeconfig,
    object_key,
    resource_for,
)

from ._cycle import schedule
from ._snapshot import Snapshot, occupies_node
from ._volumes import VolumeBinder
from .plugins import VolumeBinding, VolumePlan, default_plugins

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler", "main"]

log = logging.getLogger("timoner.scheduler")

Obj = dict[str, Any]

DEFAULT_SCHEDULER_NAME = "default-scheduler"
PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")


def _rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Scheduler:
    """Schedules pending pods whose `spec.schedulerName` is `scheduler_name`; `await run()` until cancelled.

    `plugins` defaults to the default profile (`plugins.default_plugins()`).
    `initial_backoff`/`max_backoff` bound how soon an unschedulable pod is
    retried after a cluster change (upstream's podInitialBackoffSeconds and
    podMaxBackoffSeconds); `flush_interval` is the longest it waits without
    one (upstream: 5 minutes).
    """

    def __init__(self, client: Client, *, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                 plugins: Iterable[object] | None = None, initial_backoff: float = 1.0,
                 max_backoff: float = 10.0, flush_interval: float = 300.0, bind_timeout: float = 600.0) -> None:
        self.client = client
        self.scheduler_name = scheduler_name
        self.plugins = list(plugins) if plugins is not None else default_plugins()
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.flush_interval = flush_interval
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES)
        self.volumes = VolumeBinder(client, bind_timeout=bind_timeout, on_change=self._retry_unschedulable)
        # Binding errors retry through the queue's own per-key exponential limiter.
        self.queue: WorkQueue[str] = WorkQueue(
            rate_limiter=ExponentialRateLimiter(base=initial_backoff, max_delay=max_backoff))
        self._assumed: dict[str, Obj] = {}
        self._attempts: dict[str, int] = {}
        self._unschedulable: dict[str, float] = {}  # key -> monotonic time its backoff ends
        self._bindings: set[asyncio.Task[None]] = set()
        self._events = EventRecorder(client, component=scheduler_name, action="Scheduling",
                                     instance=f"{scheduler_name}-{socket.gethostname()}")

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handler(self._on_node_add, self._on_node_update)
        informers = [asyncio.create_task(self.pods.run()), asyncio.create_task(self.nodes.run())]
        informers += [asyncio.create_task(informer.run()) for informer in self.volumes.informers]
        try:
            await asyncio.gather(self.pods.has_synced.wait(), self.nodes.has_synced.wait(),
                                 *(informer.has_synced.wait() for informer in self.volumes.informers))
            log.info("%s: caches synced; scheduling", self.scheduler_name)
            while True:
                try:
                    key = await self.queue.get()
                except ShutDown:
                    return
                try:
                    await self._process(key)
                except Exception:
                    log.exception("%s: scheduling %s failed; retrying", self.scheduler_name, key)
                    self.queue.add_rate_limited(key)
                finally:
                    self.queue.done(key)
        finally:
            self.queue.shutdown()
            for task in [*informers, *self._bindings]:
                task.cancel()
            for task in [*informers, *self._bindings]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def responsible_for(self, pod: Obj) -> bool:
        """Whether this scheduler should place `pod` (upstream's queue admission)."""
        spec = pod.get("spec") or {}
        phase = (pod.get("status") or {}).get("phase")
        return (
            (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name
            and not spec.get("nodeName")
            and not pod["metadata"].get("deletionTimestamp")
            and phase not in ("Succeeded", "Failed")
        )

    def snapshot(self) -> Snapshot:
        """Nodes and placed pods from the caches, with assumed pods counted on their nodes."""
        pods = [self._assumed.get(object_key(pod), pod) for pod in self.pods.lister.list()]
        return Snapshot.build(self.nodes.lister.list(), pods, storage=self.volumes.storage())

    # -- informer handlers: quick, synchronous, only queue bookkeeping -----------------------

    def _on_pod_add(self, pod: Obj) -> None:
        if self.responsible_for(pod):
            self.queue.add(object_key(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        key = object_key(new)
        if (new.get("spec") or {}).get("nodeName"):
            self._assumed.pop(key, None)
            self._forget(key)
        if occupies_node(old) and not occupies_node(new):
            self._retry_unschedulable()  # a finished pod gave its node's resources back
        if not self.responsible_for(new):
            return
        changed = old.get("spec") != new.get("spec") or old["metadata"].get("labels") != new["metadata"].get("labels")
        if key not in self._unschedulable or changed:
            self.queue.add(key)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = object_key(pod)
        self._assumed.pop(key, None)
        self._forget(key)
        if occupies_node(pod):
            self._retry_unschedulable()

    def _on_node_add(self, node: Obj) -> None:
        self._retry_unschedulable()

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        # Heartbeats rewrite status conditions constantly; only what filters read may help a pod.
        def relevant(node: Obj) -> tuple[Any, ...]:
            status = node.get("status") or {}
            return (node.get("spec"), node["metadata"].get("labels"), status.get("allocatable"),
                    status.get("capacity"))

        if relevant(old) != relevant(new):
            self._retry_unschedulable()

    def _forget(self, key: str) -> None:
        self._unschedulable.pop(key, None)
        self._attempts.pop(key, None)
        self.queue.forget(key)

    def _retry_unschedulable(self) -> None:
        now = time.monotonic()
        for key, backoff_ends in self._unschedulable.items():
            self.queue.add_after(key, backoff_ends - now)

    # -- one pod -----------------------------------------------------------------------------

    async def _process(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        pod = self.pods.lister.get(namespace, name)
        if pod is None or not self.responsible_for(pod) or key in self._assumed:
            return
        result = schedule(pod, self.snapshot(), self.plugins)
        if result.node_name is None:
            await self._record_failure(key, pod, result.message)
            return
        self._unschedulable.pop(key, None)
        self._attempts.pop(key, None)
        self._assumed[key] = {**pod, "spec": {**pod["spec"], "nodeName": result.node_name}}
        plan = VolumeBinding.plan(result.state, result.node_name)
        self.volumes.assume(plan)
        task = asyncio.create_task(self._bind(key, pod, result.node_name, plan))
        self._bindings.add(task)
        task.add_done_callback(self._bindings.discard)

    async def _bind(self, key: str, pod: Obj, node_name: str, plan: VolumePlan | None = None) -> None:
        meta = pod["metadata"]
        if plan is not None and plan.claims:
            try:
                await self.volumes.bind(plan, node_name)
            except Exception as exc:
                message = f'running PreBind plugin "VolumeBinding": {exc}'
                log.warning("%s: binding volumes of %s on %s failed: %s", self.scheduler_name, key, node_name, exc)
                self.volumes.forget(plan)
                self._assumed.pop(key, None)
                self.queue.add_rate_limited(key)
                await self._event(pod, "Warning", "FailedScheduling", message)
                return
            self.volumes.forget(plan)
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        path = PODS.path(namespace=meta["namespace"], name=meta["name"], subresource="binding")
        try:
            await self.client.request("POST", path, body=binding)
        except (Conflict, NotFound) as exc:
            # Bound by someone else, being deleted, or gone: the informer will tell us which.
            log.info("%s: binding %s to %s refused: %s", self.scheduler_name, key, node_name, exc)
            self._assumed.pop(key, None)
            return
        except Exception as exc:
            log.warning("%s: binding %s to %s failed (%s); retrying", self.scheduler_name, key, node_name, exc)
            self._assumed.pop(key, None)
            self.queue.add_rate_limited(key)
            return
        self.queue.forget(key)
        await self._event(pod, "Normal", "Scheduled",
                          f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}")

    async def _record_failure(self, key: str, pod: Obj, message: str) -> None:
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        backoff = min(self.max_backoff, self.initial_backoff * 2 ** (attempts - 1))
        self._unschedulable[key] = time.monotonic() + backoff
        self.queue.add_after(key, self.flush_interval)
        log.info("%s: %s unschedulable: %s", self.scheduler_name, key, message)
        try:
            await self._set_unschedulable_condition(pod, message)
        except NotFound:
            return
        except APIError as exc:
            log.warning("%s: could not update %s's PodScheduled condition: %s", self.scheduler_name, key, exc)
        await self._event(pod, "Warning", "FailedScheduling", message)

    async def _set_unschedulable_condition(self, pod: Obj, message: str) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current and (current.get("status"), current.get("reason"), current.get("message")) == (
                "False", "Unschedulable", message):
            return  # unchanged: writing again would only churn resourceVersions
        transition = current["lastTransitionTime"] if current and current.get("status") == "False" else None
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                     "lastProbeTime": None, "lastTransitionTime": transition or _rfc3339()}
        meta = pod["metadata"]
        await self.client.patch(PODS, meta["name"], {"status": {"conditions": [condition]}},
                                namespace=meta["namespace"], patch_type="strategic", subresource="status")

    async def _event(self, pod: Obj, event_type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about `pod`; losing one is logged, never fatal."""
        await self._events.event(pod, event_type, reason, message, kind="Pod", api_version="v1")


async def main(kubeconfig: Path, *, scheduler_name: str = DEFAULT_SCHEDULER_NAME) -> None:
    """`timoner scheduler --kubeconfig FILE`: run one scheduler until cancelled."""
    async with Client(load_kubeconfig(kubeconfig), user_agent=scheduler_name) as client:
        await Scheduler(client, scheduler_name=scheduler_name).run()
