"""The resource quota controller: `status.hard` and `status.used` of every ResourceQuota.

Upstream's pkg/controller/resourcequota, over shared informers:

- a quota is synced when it is added or its `spec.hard` changes (not on
  its status changes: the admission plugin's charges must not be undone
  by a recount from caches that have not seen the charged object yet),
  and again every
  `resync_period` seconds (kube-controller-manager's
  `--resource-quota-sync-period`, 5 minutes): `status.hard` becomes
  `spec.hard` and `status.used` the usage of the namespace's objects, as
  `timoner.api.quota.calculate_usage` counts it; the status is written
  (`resourcequotas/status`, conditional on the resourceVersion read) only
  when it changed;
- the quotas of a namespace are synced again when an object they may
  count is deleted, or updated so that its usage changes (a pod that
  finished frees its compute resources); creations are charged by the
  ResourceQuota admission plugin already, as upstream leaves them to it.

Counted kinds are those with an informer here: pods, services,
PersistentVolumeClaims, ConfigMaps, Secrets, ReplicationControllers,
ResourceQuotas, and the workload kinds of `apps` and `batch`. A `count/`
name of any other resource keeps whatever `used` value it had.
"""

from __future__ import annotations

import logging
from typing import Any

from timoner.api.errors import NotFound
from timoner.api.quota import Evaluator, calculate_usage, equals, evaluator_for, mask, parse_list, to_json
from timoner.client import Client, Clock, Informer, Resource, resource_for

from ._clock import WallClock
from ._framework import Change, Controller, Request, Result, SharedInformers

__all__ = ["COMPONENT", "QUOTA_SYNC_PERIOD", "ResourceQuotaReconciler", "new_resourcequota_controller"]

log = logging.getLogger("timoner.controllers.resourcequota")

Obj = dict[str, Any]

COMPONENT = "resourcequota-controller"
QUOTA_SYNC_PERIOD = 300.0
RESOURCE_QUOTAS = resource_for("v1", "ResourceQuota")
COUNTED: tuple[Resource, ...] = (
    resource_for("v1", "Pod"),
    resource_for("v1", "Service"),
    resource_for("v1", "PersistentVolumeClaim"),
    resource_for("v1", "ConfigMap"),
    resource_for("v1", "Secret"),
    resource_for("v1", "ReplicationController"),
    RESOURCE_QUOTAS,
    resource_for("apps/v1", "Deployment"),
    resource_for("apps/v1", "ReplicaSet"),
    resource_for("apps/v1", "StatefulSet"),
    resource_for("apps/v1", "DaemonSet"),
    resource_for("batch/v1", "Job"),
    resource_for("batch/v1", "CronJob"),
)


class ResourceQuotaReconciler:
    """Recounts one ResourceQuota's usage and writes its status when it changed."""

    def __init__(self, client: Client, informers: SharedInformers, *, resync_period: float = QUOTA_SYNC_PERIOD,
                 clock: Clock | None = None) -> None:
        self.client = client
        self.quotas: Informer = informers.get(RESOURCE_QUOTAS)
        self.counted: dict[Evaluator, Informer] = {
            evaluator_for(r.group, r.plural): informers.get(r) for r in COUNTED}
        self.resync_period = resync_period
        self.clock = clock or WallClock()

    def on_quota(self, change: Change) -> list[Request]:
        """A quota added, or its `spec.hard` changed; its status changes are this controller's and the
        admission plugin's own, and a recount for each would race with the admission's charges."""
        if change.type == "update" and change.old is not None and equals(
                parse_list((change.old.get("spec") or {}).get("hard")),
                parse_list((change.obj.get("spec") or {}).get("hard"))):
            return []
        return [Request.of(change.obj)]

    def on_object(self, evaluator: Evaluator):
        """A mapper: the quotas of the object's namespace that count its kind, when its usage may have changed."""

        def mapper(change: Change) -> list[Request]:
            if change.type == "add":
                return []  # admission charged it
            if change.type == "update" and change.old is not None:
                now = self.clock.now()
                if equals(evaluator.usage(change.old, now=now), evaluator.usage(change.obj, now=now)):
                    return []
            namespace = (change.obj.get("metadata") or {}).get("namespace")
            if not namespace:
                return []
            return [Request.of(quota) for quota in self.quotas.lister.list(namespace)
                    if evaluator.matching_resources((quota.get("spec") or {}).get("hard") or {})]

        return mapper

    def usage(self, quota: Obj) -> dict[str, str]:
        """`status.used` as it should be: the old values, recounted where an informer can, masked to `spec.hard`."""
        namespace = quota["metadata"].get("namespace")
        hard = parse_list((quota.get("spec") or {}).get("hard"))
        used = parse_list((quota.get("status") or {}).get("used"))
        fresh = calculate_usage(quota, self.counted, lambda ev: self.counted[ev].lister.list(namespace),
                                now=self.clock.now())
        used.update(fresh)
        return to_json(mask(used, hard))

    async def reconcile(self, request: Request) -> Result:
        quota = self.quotas.lister.get(request.namespace, request.name)
        if quota is None:
            return Result()
        spec_hard = (quota.get("spec") or {}).get("hard") or {}
        status = quota.get("status") or {}
        used = self.usage(quota)
        dirty = ("hard" not in status or "used" not in status
                 or not equals(parse_list(spec_hard), parse_list(status.get("hard")))
                 or not equals(parse_list(used), parse_list(status.get("used"))))
        if dirty:
            new = {**quota, "status": {"hard": to_json(parse_list(spec_hard)), "used": used}}
            try:
                await self.client.update(RESOURCE_QUOTAS, new, namespace=request.namespace, subresource="status")
            except NotFound:
                return Result()
            log.debug("quota %s: used %s", request, used)
        return Result(requeue_after=self.resync_period)


def new_resourcequota_controller(client: Client, informers: SharedInformers, *, workers: int = 5,
                                 resync_period: float = QUOTA_SYNC_PERIOD, clock: Clock | None = None) -> Controller:
    """A Controller keeping every ResourceQuota's status (`--concurrent-resource-quota-syncs` = 5)."""
    reconciler = ResourceQuotaReconciler(client, informers, resync_period=resync_period, clock=clock)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock or reconciler.clock)
    controller.watches(reconciler.quotas, reconciler.on_quota)
    for evaluator, informer in reconciler.counted.items():
        controller.watches(informer, reconciler.on_object(evaluator))
    return controller
