"""The TTL-after-finished controller: deletes finished Jobs `ttlSecondsAfterFinished` after they finished.

A Job is due once its Complete or Failed condition (status True) is
`ttlSecondsAfterFinished` seconds old; before that it is requeued for the
moment it will be. When due, the Job is read fresh from the API server
(the cache may predate a change of the TTL) and deleted with background
propagation, its uid and resourceVersion as preconditions, so a Job that
changed meanwhile is looked at again instead of deleted. The garbage
collector then removes its pods, as upstream's `ttlafterfinished`
controller leaves it to do.
"""

from __future__ import annotations

import logging
from typing import Any

from timoner.api.errors import Conflict, NotFound
from timoner.client import Client, Clock, Informer, resource_for

from ._clock import WallClock
from ._framework import Change, Controller, Request, Result, SharedInformers
from ._pods import parse_time

__all__ = ["COMPONENT", "TTLAfterFinishedReconciler", "expires_at", "new_ttl_after_finished_controller"]

log = logging.getLogger("timoner.controllers.ttlafterfinished")

Obj = dict[str, Any]

JOBS = resource_for("batch/v1", "Job")
COMPONENT = "ttl-after-finished-controller"


def expires_at(job: Obj) -> float | None:
    """When a finished Job with a TTL may be deleted (epoch seconds); None when it has no TTL or is not finished."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or (job.get("metadata") or {}).get("deletionTimestamp"):
        return None
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            finished = parse_time(condition.get("lastTransitionTime"))
            return None if finished is None else finished + int(ttl)
    return None


class TTLAfterFinishedReconciler:
    """Deletes a Job whose TTL after finishing has run out, or says when to look again."""

    def __init__(self, client: Client, informers: SharedInformers, *, clock: Clock | None = None) -> None:
        self.client = client
        self.jobs: Informer = informers.get(JOBS)
        self.clock = clock or WallClock()

    def on_job(self, change: Change) -> list[Request]:
        if change.type == "delete" or expires_at(change.obj) is None:
            return []
        return [Request.of(change.obj)]

    async def reconcile(self, request: Request) -> Result:
        cached = self.jobs.lister.get(request.namespace, request.name)
        if cached is None or (due := expires_at(cached)) is None:
            return Result()
        wait = due - self.clock.now()
        if wait > 0:
            return Result(requeue_after=wait)
        try:
            fresh = await self.client.get(JOBS, request.name, namespace=request.namespace)
        except NotFound:
            return Result()
        due = expires_at(fresh)
        if due is None:
            return Result()
        wait = due - self.clock.now()
        if wait > 0:
            return Result(requeue_after=wait)
        meta = fresh["metadata"]
        log.info("deleting Job %s/%s: finished more than ttlSecondsAfterFinished ago", request.namespace, request.name)
        try:
            await self.client.delete(JOBS, request.name, namespace=request.namespace, propagation_policy="Background",
                                     preconditions={"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]})
        except NotFound:
            pass
        except Conflict:
            return Result(requeue=True)  # it changed since we read it: look again
        return Result()


def new_ttl_after_finished_controller(client: Client, informers: SharedInformers, *, workers: int = 5,
                                      clock: Clock | None = None) -> Controller:
    """A Controller that deletes finished Jobs once `ttlSecondsAfterFinished` has passed."""
    reconciler = TTLAfterFinishedReconciler(client, informers, clock=clock)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock or reconciler.clock)
    controller.watches(reconciler.jobs, reconciler.on_job)
    return controller
