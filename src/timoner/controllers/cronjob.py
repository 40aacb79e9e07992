"""The CronJob controller: a Job per scheduled time, as upstream's `ControllerV2.syncCronJob` does it.

One reconcile of a CronJob (`batch/v1`):

1. Its Jobs are those whose controller ownerReference names it. Finished
   Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are
   deleted, oldest start first (background propagation).
2. `status.active` is brought in line: finished Jobs leave it
   (SawCompletedJob), vanished ones too (MissingJob, after a fresh GET);
   `lastSuccessfulTime` follows the newest completion.
3. Unless it is being deleted, suspended, or its time zone cannot be
   loaded (UnknownTimeZone), the latest scheduled time not yet handled is
   found (`_cronjob_util.most_recent_schedule_time`, at most one Job per
   sync, a warning past 100 missed times). Too late for
   `startingDeadlineSeconds`: MissSchedule. Forbid with an active Job:
   JobAlreadyActive. Replace: the active Jobs are deleted first. Then the
   Job `<name>-<minutes since epoch>` is created from `jobTemplate` with
   the annotation `batch.kubernetes.io/cronjob-scheduled-timestamp`; the
   name makes a second create of the same time an AlreadyExists, which is
   how a crash between create and status write never doubles a run.
4. The status is written, and the CronJob comes back 100 ms after its next
   scheduled time.

Schedules are read by `timoner.api.cron` (robfig/cron's grammar and time
arithmetic); `spec.timeZone` becomes the schedule's zone, and without one
the controller's local zone is used, as kube-controller-manager's. The
clock is injectable (`timoner.client.Clock` whose `now()` is epoch
seconds) so tests can move time. Events come from `cronjob-controller`.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import zoneinfo
from collections.abc import Callable
from typing import Any

from timoner.api.cron import CronError, Schedule, parse_schedule
from timoner.api.errors import AlreadyExists, APIError, NotFound
from timoner.client import Client, Clock, EventRecorder, Informer, resource_for

from ._clock import WallClock
from ._cronjob_util import InvalidSchedule, Missed, job_name, most_recent_schedule_time, requeue_delay
from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._job_util import find_condition
from ._pods import parse_time
from ._refs import new_controller_ref

__all__ = ["COMPONENT", "CRONJOBS", "SCHEDULED_TIMESTAMP", "CronJobReconciler", "local_zone", "new_cronjob_controller"]

log = logging.getLogger("timoner.controllers.cronjob")

Obj = dict[str, Any]

CRONJOBS = resource_for("batch/v1", "CronJob")
JOBS = resource_for("batch/v1", "Job")
COMPONENT = "cronjob-controller"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def local_zone() -> dt.tzinfo:
    """The process's zone as Go's time.Local finds it: $TZ (empty: UTC), else /etc/localtime, else UTC."""
    name = os.environ.get("TZ")
    if name is not None:
        if not name:
            return dt.UTC
        try:
            return zoneinfo.ZoneInfo(name.lstrip(":"))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return dt.UTC
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="Local")
    except (OSError, ValueError):
        return dt.UTC


def _finished(job: Obj) -> str | None:
    """"Complete" or "Failed" when that condition is True, else None."""
    for kind in ("Complete", "Failed"):
        condition = find_condition((job.get("status") or {}).get("conditions"), kind)
        if condition is not None and condition.get("status") == "True":
            return kind
    return None


def _rfc3339(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CronJobReconciler:
    """Creates a CronJob's Jobs on schedule and keeps its status; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None,
                 clock: Clock | None = None, zone: dt.tzinfo | None = None) -> None:
        self.client = client
        self.cronjobs: Informer = informers.get(CRONJOBS)
        self.jobs: Informer = informers.get(JOBS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.clock = clock or WallClock()
        self.zone = zone or local_zone()

    def on_job(self, change: Change) -> list[Request]:
        requests: list[Request] = []
        for obj in (change.old, change.obj):
            ref = controller_ref(obj) if obj is not None else None
            if ref is None or ref.get("kind") != "CronJob":
                continue
            request = Request((obj.get("metadata") or {}).get("namespace", ""), ref.get("name", ""))
            if request not in requests:
                requests.append(request)
        return requests

    async def reconcile(self, request: Request) -> Result:
        cached = self.cronjobs.lister.get(request.namespace, request.name)
        if cached is None:
            return Result()
        cronjob = {**copy.deepcopy(cached), "apiVersion": "batch/v1", "kind": "CronJob"}
        uid = cronjob["metadata"]["uid"]
        jobs = [job for job in self.jobs.lister.list(request.namespace) if (controller_ref(job) or {}).get("uid") == uid]
        changed = await self._clean_history(cronjob, jobs)
        requeue_after: float | None = None
        error: BaseException | None = None
        try:
            requeue_after, synced = await self._sync(cronjob, jobs)
            changed = changed or synced
        except APIError as exc:
            error = exc
            changed = True
        if changed:
            await self.client.update(CRONJOBS, cronjob, subresource="status")
        if requeue_after is not None:
            return Result(requeue_after=max(requeue_after, 0.001))
        if error is not None:
            raise error
        return Result()

    # -- history -------------------------------------------------------------------------------

    async def _clean_history(self, cronjob: Obj, jobs: list[Obj]) -> bool:
        spec = cronjob.get("spec") or {}
        changed = False
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                            ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            finished = [job for job in jobs if _finished(job) == kind]
            excess = len(finished) - int(limit)
            if excess <= 0:
                continue
            finished.sort(key=lambda j: (parse_time((j.get("status") or {}).get("startTime")) is None,
                                         parse_time((j.get("status") or {}).get("startTime")) or 0.0,
                                         j["metadata"]["name"]))
            for job in finished[:excess]:
                changed |= await self._delete_job(cronjob, job)
        return changed

    async def _delete_job(self, cronjob: Obj, job: Obj) -> bool:
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], namespace=meta["namespace"], propagation_policy="Background")
        except NotFound:
            pass
        except APIError as exc:
            await self.recorder.event(cronjob, "Warning", "FailedDelete", f"Deleted job: {exc}")
            return False
        self._drop_active(cronjob, meta.get("uid", ""))
        await self.recorder.event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {meta['name']}")
        return True

    @staticmethod
    def _drop_active(cronjob: Obj, uid: str) -> None:
        status = cronjob.setdefault("status", {})
        active = [ref for ref in status.get("active") or () if ref.get("uid") != uid]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    # -- one sync (upstream's syncCronJob) ----------------------------------------------------------

    async def _sync(self, cronjob: Obj, jobs: list[Obj]) -> tuple[float | None, bool]:
        """(seconds until the next look, whether the status changed)."""
        meta, spec = cronjob["metadata"], cronjob.get("spec") or {}
        status = cronjob.setdefault("status", {})
        changed = False
        active_uids = {ref.get("uid") for ref in status.get("active") or ()}
        for job in jobs:
            job_uid, finished = job["metadata"].get("uid"), _finished(job)
            if job_uid not in active_uids and finished is None:
                fresh = await self.client.get(CRONJOBS, meta["name"], namespace=meta["namespace"])
                if job_uid in {ref.get("uid") for ref in (fresh.get("status") or {}).get("active") or ()}:
                    cronjob.clear()
                    cronjob.update({**fresh, "apiVersion": "batch/v1", "kind": "CronJob"})
                    meta, status = cronjob["metadata"], cronjob.setdefault("status", {})
                    active_uids = {ref.get("uid") for ref in status.get("active") or ()}
                    continue
                await self.recorder.event(cronjob, "Warning", "UnexpectedJob",
                                          f"Saw a job that the controller did not create or forgot: {job['metadata']['name']}")
            elif job_uid in active_uids and finished is not None:
                self._drop_active(cronjob, job_uid)
                active_uids.discard(job_uid)
                await self.recorder.event(cronjob, "Normal", "SawCompletedJob",
                                          f"Saw completed job: {job['metadata']['name']}, condition: {finished}")
                changed = True
            if finished == "Complete":
                completed = parse_time((job.get("status") or {}).get("completionTime"))
                last = parse_time(status.get("lastSuccessfulTime"))
                if completed is not None and (last is None or completed > last):
                    status["lastSuccessfulTime"] = job["status"]["completionTime"]
                    changed = True
        children = {job["metadata"].get("uid") for job in jobs}
        for ref in list(status.get("active") or ()):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(JOBS, ref.get("name", ""), namespace=ref.get("namespace") or meta["namespace"])
            except NotFound:
                await self.recorder.event(cronjob, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
                self._drop_active(cronjob, ref.get("uid", ""))
                changed = True
        if meta.get("deletionTimestamp"):
            return None, changed
        zone = self._zone(spec)
        if zone is None:
            await self.recorder.event(cronjob, "Warning", "UnknownTimeZone",
                                      f"invalid timeZone: {spec.get('timeZone')!r}: unknown time zone {spec.get('timeZone')}")
            return None, changed
        if spec.get("suspend"):
            return None, changed
        schedule_text = spec.get("schedule") or ""
        if "TZ" in schedule_text:
            await self.recorder.event(cronjob, "Warning", "UnsupportedSchedule",
                                      f"CRON_TZ or TZ used in schedule {schedule_text!r} is not officially supported, see "
                                      "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details")
        try:
            schedule = parse_schedule(schedule_text)
        except CronError as exc:
            await self.recorder.event(cronjob, "Warning", "UnparseableSchedule",
                                      f"unparseable schedule: {schedule_text!r} : {exc}")
            return None, changed
        next_time = self._stepper(schedule, zone)
        now = self.clock.now()
        created = parse_time(meta.get("creationTimestamp")) or now
        last = parse_time(status.get("lastScheduleTime"))
        deadline = spec.get("startingDeadlineSeconds")

        def delay() -> float | None:
            return requeue_delay(next_time, created=created, last_scheduled=parse_time(status.get("lastScheduleTime")),
                                 now=now)

        try:
            times = most_recent_schedule_time(next_time, created=created, last_scheduled=last,
                                              starting_deadline=deadline, now=now)
        except InvalidSchedule as exc:
            await self.recorder.event(cronjob, "Warning", "InvalidSchedule", f"invalid schedule: {schedule_text} : {exc}")
            return None, changed
        if times.missed is Missed.MANY:
            await self.recorder.event(cronjob, "Warning", "TooManyMissedTimes",
                                      "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                      "or check clock skew")
        scheduled = times.most_recent
        if scheduled is None:
            return delay(), changed
        if deadline is not None and scheduled + int(deadline) < now:
            when = dt.datetime.fromtimestamp(scheduled, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
            await self.recorder.event(cronjob, "Warning", "MissSchedule", f"Missed scheduled time to start a job: {when}")
            return delay(), changed
        name = job_name(meta["name"], scheduled)
        if any(ref.get("name") == name for ref in status.get("active") or ()) or last == scheduled:
            return delay(), changed
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            await self.recorder.event(cronjob, "Normal", "JobAlreadyActive",
                                      "Not starting job because prior execution is running and concurrency policy is Forbid")
            return delay(), changed
        if policy == "Replace":
            for ref in list(status.get("active") or ()):
                try:
                    job = await self.client.get(JOBS, ref.get("name", ""), namespace=ref.get("namespace") or meta["namespace"])
                except APIError as exc:
                    await self.recorder.event(cronjob, "Warning", "FailedGet", f"Get job: {exc}")
                    raise
                if not await self._delete_job(cronjob, job):
                    raise APIError(f"could not replace job {meta['namespace']}/{ref.get('name')}")
                changed = True
        job = self._job_for(cronjob, scheduled, name, zone if spec.get("timeZone") else dt.UTC)
        try:
            created_job = await self.client.create(JOBS, job, namespace=meta["namespace"])
            await self.recorder.event(cronjob, "Normal", "SuccessfulCreate", f"Created job {name}")
        except AlreadyExists:
            created_job = await self.client.get(JOBS, name, namespace=meta["namespace"])
            if (controller_ref(created_job) or {}).get("uid") != meta["uid"]:
                return None, changed  # someone else's Job: assume its owner keeps the status
            if created_job["metadata"].get("uid") in {ref.get("uid") for ref in status.get("active") or ()}:
                return None, changed
        except APIError as exc:
            if not any(c.reason == "NamespaceTerminating" for c in exc.causes):
                await self.recorder.event(cronjob, "Warning", "FailedCreate", f"Error creating job: {exc}")
            raise
        job_meta = created_job["metadata"]
        status.setdefault("active", []).append({
            "kind": "Job", "namespace": job_meta["namespace"], "name": job_meta["name"], "uid": job_meta["uid"],
            "apiVersion": "batch/v1", "resourceVersion": job_meta.get("resourceVersion", "")})
        status["lastScheduleTime"] = _rfc3339(scheduled)
        return delay(), True

    def _zone(self, spec: Obj) -> dt.tzinfo | None:
        name = spec.get("timeZone")
        if name is None:
            return self.zone
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return None

    @staticmethod
    def _stepper(schedule: Schedule, zone: dt.tzinfo) -> Callable[[float], float | None]:
        """Epoch seconds to the next activation, reading the schedule in `zone` unless it names its own."""

        def next_time(t: float) -> float | None:
            nxt = schedule.next(dt.datetime.fromtimestamp(t, zone))
            return None if nxt is None else nxt.timestamp()

        return next_time

    @staticmethod
    def _job_for(cronjob: Obj, scheduled: float, name: str, zone: dt.tzinfo) -> Obj:
        """The Job for one scheduled time (upstream's getJobFromTemplate2)."""
        template = cronjob["spec"].get("jobTemplate") or {}
        template_meta = template.get("metadata") or {}
        stamp = dt.datetime.fromtimestamp(scheduled, zone).isoformat().replace("+00:00", "Z")
        annotations = {**(template_meta.get("annotations") or {}), SCHEDULED_TIMESTAMP: stamp}
        meta: Obj = {"name": name, "annotations": annotations, "ownerReferences": [new_controller_ref(cronjob)]}
        if template_meta.get("labels"):
            meta["labels"] = dict(template_meta["labels"])
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                "spec": copy.deepcopy(template.get("spec") or {})}


def new_cronjob_controller(client: Client, informers: SharedInformers, *, workers: int = 5, clock: Clock | None = None,
                           recorder: EventRecorder | None = None, zone: dt.tzinfo | None = None) -> Controller:
    """A Controller for batch/v1 CronJobs; `clock.now()` must be epoch seconds (default: the wall clock)."""
    reconciler = CronJobReconciler(client, informers, recorder=recorder, clock=clock, zone=zone)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock or reconciler.clock)
    controller.for_(reconciler.cronjobs)
    controller.watches(reconciler.jobs, reconciler.on_job)
    return controller
