"""The controller manager (`timoner controllers`): shared informers, controllers, leader election.

`Manager.run`, one `Runnable`:

1. Campaign for the Lease `kube-system/timoner-controller-manager`
   (identity `<hostname>_<uuid>`, as kube-controller-manager's). A second
   manager waits here; when the leader stops it releases the Lease and the
   waiting one takes over at once, and when the leader dies its Lease
   expires (15 s) first.
2. As leader: start every shared informer (one per resource, however many
   controllers read it), wait until all have listed, then run the
   controllers' workers.
3. Leadership lost (no renewal for 10 s): everything stops and `run`
   raises `LeadershipLost`. kube-controller-manager exits then and leaves
   the restart to its supervisor; `main` builds a fresh manager (new
   caches, new queues) and campaigns again, which comes to the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from pathlib import Path

from timoner.client import Client, LeaderElector, load_kubeconfig

from ._framework import Controller, SharedInformers
from ._metrics import MetricsServer
from .cronjob import new_cronjob_controller
from .daemonset import new_daemonset_controller
from .deployment import new_deployment_controller
from .disruption import new_disruption_controller, new_stale_pod_disruption_controller
from .endpoints import new_endpoints_controller
from .endpointslice import MAX_ENDPOINTS_PER_SLICE, new_endpointslice_controller
from .job import new_job_controller
from .nodeipam import CLUSTER_CIDR, NODE_CIDR_MASK_SIZE, new_nodeipam_controller
from .persistentvolume import new_persistentvolume_controller
from .podgc import TERMINATED_POD_GC_THRESHOLD, new_podgc_controller
from .replicaset import REPLICATION_CONTROLLER, new_replicaset_controller
from .resourcequota import new_resourcequota_controller
from .statefulset import new_statefulset_controller
from .ttlafterfinished import new_ttl_after_finished_controller

__all__ = ["LEASE_NAME", "LEASE_NAMESPACE", "LeadershipLost", "Manager", "main", "new_manager"]

log = logging.getLogger("timoner.controllers.manager")

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "timoner-controller-manager"


class LeadershipLost(Exception):
    """This manager stopped leading; its caches and queues are spent."""


class Manager:
    """Runs controllers over shared informers while holding the leader Lease; see the module docstring.

    `leader_election=False` runs at once, for a process that knows it is
    alone. The lease timings are client-go's defaults for
    kube-controller-manager (15 s, 10 s, 2 s).
    """

    def __init__(self, client: Client, *, identity: str | None = None, leader_election: bool = True,
                 lease_namespace: str = LEASE_NAMESPACE, lease_name: str = LEASE_NAME,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0) -> None:
        self.client = client
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.informers = SharedInformers(client)
        self.controllers: list[Controller] = []
        self.leading = asyncio.Event()  # set once caches are synced and controllers run
        self.elector: LeaderElector | None = None
        if leader_election:
            self.elector = LeaderElector(client, namespace=lease_namespace, name=lease_name, identity=self.identity,
                                         lease_duration=lease_duration, renew_deadline=renew_deadline,
                                         retry_period=retry_period)

    def add(self, controller: Controller) -> Controller:
        self.controllers.append(controller)
        return controller

    async def run(self) -> None:
        """Lead (or wait to), run until cancelled; raises `LeadershipLost` if the Lease is lost."""
        if self.elector is None:
            await self._lead()
            return
        await self.elector.run(self._lead)
        raise LeadershipLost(f"{self.identity} lost the lease {self.elector.namespace}/{self.elector.name}")

    async def _lead(self) -> None:
        informers = list(self.informers)
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.resource.plural}") for i in informers]
        try:
            await asyncio.gather(*(i.has_synced.wait() for i in informers))
            log.info("controller manager %s: caches synced; starting %s", self.identity,
                     ", ".join(c.name for c in self.controllers))
            tasks += [asyncio.create_task(c.run(), name=c.name) for c in self.controllers]
            self.leading.set()
            await asyncio.gather(*tasks)
        finally:
            self.leading.clear()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def new_manager(client: Client, *, terminated_pod_gc_threshold: int = TERMINATED_POD_GC_THRESHOLD,
                cluster_cidr: str = CLUSTER_CIDR, node_cidr_mask_size: int = NODE_CIDR_MASK_SIZE,
                max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE, **options) -> Manager:
    """A manager with every controller Timoner has: ReplicaSet, ReplicationController, Deployment, StatefulSet, DaemonSet,
    Job, CronJob, TTL-after-finished, PersistentVolume, disruption (PodDisruptionBudgets), the pod garbage collector,
    Endpoints, EndpointSlices and node IPAM.

    The keywords are kube-controller-manager's `--terminated-pod-gc-threshold`, `--cluster-cidr`,
    `--node-cidr-mask-size` and `--max-endpoints-per-slice`; ValueError for a mask or slice size out of range.
    """
    manager = Manager(client, **options)
    manager.add(new_replicaset_controller(client, manager.informers))
    manager.add(new_replicaset_controller(client, manager.informers, kind=REPLICATION_CONTROLLER))
    manager.add(new_deployment_controller(client, manager.informers))
    manager.add(new_statefulset_controller(client, manager.informers))
    manager.add(new_daemonset_controller(client, manager.informers))
    manager.add(new_job_controller(client, manager.informers))
    manager.add(new_cronjob_controller(client, manager.informers))
    manager.add(new_ttl_after_finished_controller(client, manager.informers))
    manager.add(new_disruption_controller(client, manager.informers))
    manager.add(new_stale_pod_disruption_controller(client, manager.informers))
    manager.add(new_podgc_controller(client, manager.informers, terminated_pod_threshold=terminated_pod_gc_threshold))
    manager.add(new_persistentvolume_controller(client, manager.informers))
    manager.add(new_endpoints_controller(client, manager.informers))
    manager.add(new_endpointslice_controller(client, manager.informers, max_endpoints_per_slice=max_endpoints_per_slice))
    manager.add(new_nodeipam_controller(client, manager.informers, cluster_cidr=cluster_cidr,
                                        node_cidr_mask_size=node_cidr_mask_size))
    manager.add(new_resourcequota_controller(client, manager.informers))
    return manager


async def main(kubeconfig: Path, *, identity: str | None = None,
               terminated_pod_gc_threshold: int = TERMINATED_POD_GC_THRESHOLD, metrics_port: int = 0,
               cluster_cidr: str = CLUSTER_CIDR, node_cidr_mask_size: int = NODE_CIDR_MASK_SIZE,
               max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> None:
    """`timoner controllers --kubeconfig FILE`: run the controller manager until cancelled.

    `metrics_port` > 0 serves the current manager's reconcile counters at
    `http://127.0.0.1:<port>/metrics` (`_metrics`).
    """
    current: list[Manager] = []
    metrics = None
    if metrics_port:
        metrics = MetricsServer(lambda: current[0].controllers if current else (), port=metrics_port)
        await metrics.start()
    try:
        async with Client(load_kubeconfig(kubeconfig), user_agent="timoner-controller-manager") as client:
            while True:
                manager = new_manager(client, identity=identity,
                                      terminated_pod_gc_threshold=terminated_pod_gc_threshold,
                                      cluster_cidr=cluster_cidr, node_cidr_mask_size=node_cidr_mask_size,
                                      max_endpoints_per_slice=max_endpoints_per_slice)
                current[:] = [manager]
                try:
                    await manager.run()
                    return
                except LeadershipLost as exc:
                    log.error("%s; starting over as a candidate", exc)
                    await asyncio.sleep(1.0)
    finally:
        if metrics is not None:
            await metrics.stop()
