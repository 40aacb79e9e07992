"""`PodWorkers`: one `PodWorker` per pod bound to this node, fed by the agent's pod informer.

Workers are keyed by uid, not by name: a pod deleted and recreated under
the same name is a new pod with new containers. Informer handlers only
record the latest object and wake the worker; all work happens in the
workers' own tasks.

Restart safety: `run` first asks the runtime for the containers a previous
agent left (`Runtime.recover`), waits for the informer's first list, then
hands each pod's containers to its worker (which adopts them without
restarting) and stops the containers of pods no longer bound here. Until
then handler calls are ignored: the informer's store is read in full once
recovery is done. Volume directories of pods no longer bound here (and not
running) are torn down then too (`VolumeManager.teardown`), as are their
hosts and resolv.conf files (`PodEtcFiles.remove`), and the
runtime forgets those pods (`Runtime.remove_pod`: their containers'
records and logs), as kubelet's garbage collection does for pods deleted
while it was down. A worker does the same for its pod once its deletion
completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from timoner.client import Client, Clock, Informer

from ..runtime import ContainerState, Runtime, State
from ._dns import PodEtcFiles
from ._env import PodNetwork
from ._network import PodNetworkPlugin
from ._volumes import VolumeManager
from ._worker import PodWorker, PodWorkerConfig

__all__ = ["PodWorkers"]

log = logging.getLogger("timoner.node.pods")

ORPHAN_GRACE_SECONDS = 30.0  # the pod (and its grace period) is gone: upstream's default grace
SERVICES_SYNC_WAIT = 5.0  # at most, for the Service informer's first list before the workers start

Obj = dict[str, Any]


def _uid(pod: Obj) -> str:
    return (pod.get("metadata") or {}).get("uid", "")


class PodWorkers:
    """The pod workers of one node; see the module docstring. Register `on_add/on_update/on_delete` on the informer."""

    def __init__(self, client: Client, runtime: Runtime, *, informer: Informer, network: PodNetwork, clock: Clock,
                 config: PodWorkerConfig | None = None, volumes: VolumeManager | None = None,
                 pod_network: PodNetworkPlugin | None = None, services: Informer | None = None,
                 etc_files: PodEtcFiles | None = None) -> None:
        self.client = client
        self.runtime = runtime
        self.informer = informer
        self.network = network
        self.clock = clock
        self.config = config or PodWorkerConfig()
        self.volumes = volumes
        self.pod_network = pod_network
        self.services = services
        self.etc_files = etc_files
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._recovered: dict[str, list[ContainerState]] = {}
        self._ready = False
        self.recovered = asyncio.Event()

    # -- informer handlers ----------------------------------------------------------------

    def on_add(self, pod: Obj) -> None:
        if not self._ready:
            return
        uid = _uid(pod)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        worker = PodWorker(self.client, self.runtime, pod=pod, network=self.network, clock=self.clock,
                           config=self.config, recovered=self._recovered.pop(uid, None), volumes=self.volumes,
                           pod_network=self.pod_network, services=self.services, etc_files=self.etc_files)
        self.workers[uid] = worker
        self._tasks[uid] = asyncio.create_task(worker.run(), name=f"pod-worker-{uid}")

    def on_update(self, old: Obj, new: Obj) -> None:
        if _uid(old) != _uid(new):
            self.on_delete(old)  # recreated under the same name between two lists
        self.on_add(new)

    def on_delete(self, pod: Obj) -> None:
        if not self._ready:
            return
        uid = _uid(pod)
        worker = self.workers.pop(uid, None)
        task = self._tasks.pop(uid, None)
        if worker is None or task is None:
            return
        if task.done():
            return
        worker.remove()
        # The worker finishes by itself once its containers are stopped; keep a reference until then.
        self._tasks[f"gone-{uid}"] = task
        task.add_done_callback(lambda _: self._tasks.pop(f"gone-{uid}", None))

    # -- the loop -------------------------------------------------------------------------

    async def _remove_gone_pods(self, still_running: set[str]) -> None:
        """After recovery: the volumes, and what the runtime keeps (records, logs), of pods no longer here."""

        def here(uid: str) -> bool:
            # Asked just before each removal: pods keep arriving meanwhile. A worker finishing a delete
            # (`gone-<uid>`) cleans up after itself.
            return uid in self.workers or f"gone-{uid}" in self._tasks or uid in still_running

        if self.volumes is not None:
            for uid in self.volumes.pods_on_disk():
                if not here(uid):
                    await self.volumes.teardown(uid)
        if self.etc_files is not None:
            for uid in self.etc_files.pods_on_disk():
                if not here(uid):
                    await self.etc_files.remove(uid)
        if self.pod_network is not None:
            for uid in self.pod_network.pods():
                if not here(uid):
                    log.info("freeing the network of pod %s, no longer bound here", uid)
                    try:
                        await self.pod_network.teardown(uid)
                    except Exception as exc:
                        log.warning("could not tear down the network of pod %s: %s", uid, exc)
        for uid in await self.runtime.pod_uids():
            if here(uid):
                continue
            log.info("removing the containers and logs of pod %s, no longer bound here", uid)
            try:
                await self.runtime.remove_pod(uid)
            except Exception as exc:
                log.warning("could not remove the containers of pod %s: %s", uid, exc)

    async def run(self) -> None:
        """Recover, start a worker per bound pod, then keep them running until cancelled."""
        try:
            recovered = await self.runtime.recover()
            for state in recovered:
                self._recovered.setdefault(state.spec.pod_uid, []).append(state)
            await self.informer.has_synced.wait()
            if self.services is not None:
                # Containers cannot start before the Services are known (`_services`): give the first list a
                # moment rather than have the first containers wait a whole retry interval.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SERVICES_SYNC_WAIT):
                        await self.services.has_synced.wait()
            self._ready = True
            for pod in self.informer.lister.list():
                self.on_add(pod)
            orphans = [s for states in self._recovered.values() for s in states if s.state is State.RUNNING]
            self._recovered.clear()
            still_running: set[str] = set()
            if orphans:
                log.info("stopping %d containers of pods no longer bound here", len(orphans))
                results = await asyncio.gather(*(self.runtime.stop(s.id, ORPHAN_GRACE_SECONDS) for s in orphans),
                                               return_exceptions=True)
                for state, result in zip(orphans, results, strict=True):
                    if isinstance(result, BaseException):
                        log.warning("could not stop orphaned container %s: %s", state.id, result)
                        still_running.add(state.spec.pod_uid)
            await self._remove_gone_pods(still_running)
            self.recovered.set()
            await asyncio.Event().wait()  # workers run in their own tasks; this only holds them
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
