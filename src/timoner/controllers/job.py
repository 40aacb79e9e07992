"""The Job controller: pods that run to completion, counted exactly once, as upstream's `syncJob` does it.

One reconcile of a Job (`batch/v1`):

1. Claim the namespace's pods by the Job's selector (finished ones too).
   Pods carry the `batch.kubernetes.io/job-tracking` finalizer from
   creation, so none can vanish before it is counted.
2. Count: a finished pod that still holds the finalizer is new; first its
   UID goes to `status.uncountedTerminatedPods` (written), then its
   finalizer is removed, then it moves to `succeeded`/`failed` (written
   again). A crash between the steps loses nothing and counts nothing twice.
   Indexed Jobs count by index (`completedIndexes`) instead of by UID.
3. Decide whether the Job is done: a FailJob rule of `podFailurePolicy`,
   more failures than `backoffLimit` (or, for `OnFailure` pods, restarts),
   `activeDeadlineSeconds` passed, too many failed indexes; or enough
   successes (`completions`, or any success and nothing running for
   work-queue Jobs). As 1.32, FailureTarget / SuccessCriteriaMet are written
   first; Failed / Complete follow once no pod is left terminating or
   uncounted. A failing Job's active pods are deleted.
4. Otherwise (and once the previous sync's creates and deletes are seen)
   manage the pods: a suspended Job loses its active pods (Suspended
   condition); else create toward `min(parallelism, completions -
   succeeded)` (slow start, lowest free indexes first, each with its index
   annotation, label, hostname `<job>-<i>` and `JOB_COMPLETION_INDEX`),
   after the failure backoff (10 s doubling, 6 min cap), or delete extras.

Pods of a deleted or finished Job that still hold the finalizer have it
removed (upstream's orphan queue), so the garbage collector can finish.
Events (component `job-controller`): SuccessfulCreate, FailedCreate,
SuccessfulDelete, Completed, BackoffLimitExceeded, DeadlineExceeded,
PodFailurePolicy, Suspended, Resumed.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from timoner.api.errors import APIError, NotFound
from timoner.api.selectors import label_selector_from_dict
from timoner.client import Client, Clock, EventRecorder, Informer, resource_for

from ._clock import WallClock
from ._expectations import Expectations
from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._job_util import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    COMPLETION_INDEX,
    INDEX_FAILURE_COUNT,
    INDEX_IGNORED_FAILURE_COUNT,
    TRACKING_FINALIZER,
    BackoffRecord,
    completion_index,
    find_condition,
    finish_time,
    format_indexes,
    generate_name_with_index,
    has_tracking_finalizer,
    index_failure_counts,
    is_finished,
    is_pod_failed,
    match_pod_failure_policy,
    new_condition,
    parse_indexes,
    remaining_backoff,
    set_condition,
)
from ._pods import (
    is_active,
    is_ready,
    now_rfc3339,
    parse_time,
    pod_from_template,
    rank_pods_for_deletion,
    slow_start_batch,
)
from ._refs import ClaimManager, new_controller_ref

__all__ = ["COMPONENT", "JOBS", "JobReconciler", "new_job_controller"]

log = logging.getLogger("timoner.controllers.job")

Obj = dict[str, Any]

JOBS = resource_for("batch/v1", "Job")
PODS = resource_for("v1", "Pod")
COMPONENT = "job-controller"
MAX_UNCOUNTED = 500  # upstream's MaxUncountedPods
MAX_CREATE_DELETE = 500  # MaxPodCreateDeletePerSync


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _uid(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("uid", "")


def _only_replace_failed(job: Obj) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def _indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def _per_index(job: Obj) -> bool:
    return _indexed(job) and (job.get("spec") or {}).get("backoffLimitPerIndex") is not None


@dataclass
class _Sync:
    """What one sync knows about a Job (upstream's syncJobCtx)."""

    job: Obj
    pods: list[Obj]
    active: list[Obj]
    ready: int
    terminating: int
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    expected_rm: set[str]
    succeeded: int = 0
    failed: int = 0
    finished: Obj | None = None
    prev_succeeded_indexes: set[int] = field(default_factory=set)
    succeeded_indexes: set[int] = field(default_factory=set)
    failed_indexes: set[int] | None = None
    delayed: dict[int, Obj] = field(default_factory=dict)  # per index: the failed pod a replacement takes counts from
    backoff: BackoffRecord = field(default_factory=BackoffRecord)
    requeue_after: float = 0.0

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.1)
        self.requeue_after = seconds if not self.requeue_after else min(self.requeue_after, seconds)


class JobReconciler:
    """Runs Jobs' pods to completion and keeps their status; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None,
                 clock: Clock | None = None, backoff_base: float = BACKOFF_BASE,
                 backoff_max: float = BACKOFF_MAX) -> None:
        self.client = client
        self.jobs: Informer = informers.get(JOBS)
        self.pods: Informer = informers.get(PODS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.clock = clock or WallClock()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.expectations = Expectations(clock=self.clock)
        self.finalizers_expected: dict[str, set[str]] = {}  # job key -> pod UIDs whose finalizer removal is unseen
        self.backoffs: dict[str, BackoffRecord] = {}

    # -- informer changes to requests ------------------------------------------------------

    def on_job(self, change: Change) -> list[Request]:
        if change.type == "delete":
            self._forget(_key(change.obj))
        return [Request.of(change.obj)]

    def on_pod(self, change: Change) -> list[Request]:
        pod, old = change.obj, change.old
        requests: list[Request] = []
        for obj in (old, pod):
            ref = controller_ref(obj) if obj is not None else None
            if ref is None or ref.get("kind") != "Job" or not str(ref.get("apiVersion", "")).startswith("batch/"):
                continue
            request = Request((obj.get("metadata") or {}).get("namespace", ""), ref.get("name", ""))
            if request not in requests:
                requests.append(request)
        if not requests:
            return []
        key = f"{requests[-1].namespace}/{requests[-1].name}"
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if change.type == "add":
            if deleting:
                self.expectations.deletion_observed(key, _key(pod))
            else:
                self.expectations.creation_observed(key)
        elif change.type == "update":
            if deleting:
                self.expectations.deletion_observed(key, _key(pod))
            if not has_tracking_finalizer(pod):
                self._finalizer_removed(key, _uid(pod))
        else:
            self.expectations.deletion_observed(key, _key(pod))
            self._finalizer_removed(key, _uid(pod))
        return requests

    def _finalizer_removed(self, key: str, uid: str) -> None:
        expected = self.finalizers_expected.get(key)
        if expected is not None:
            expected.discard(uid)

    def _forget(self, key: str) -> None:
        self.expectations.delete(key)
        self.finalizers_expected.pop(key, None)
        self.backoffs.pop(key, None)

    # -- one sync ------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        key = f"{request.namespace}/{request.name}"
        cached = self.jobs.lister.get(request.namespace, request.name)
        if cached is None:
            self._forget(key)
            await self._release_orphans(request.namespace, request.name, keep_uid=None)
            return Result()
        job = {**copy.deepcopy(cached), "apiVersion": "batch/v1", "kind": "Job"}
        if is_finished(job):
            self.backoffs.pop(key, None)
            await self._release_orphans(request.namespace, request.name, keep_uid=None)
            return Result()
        await self._release_orphans(request.namespace, request.name, keep_uid=_uid(job))
        spec = job.setdefault("spec", {})
        if spec.get("completionMode") not in (None, "NonIndexed", "Indexed"):
            await self.recorder.event(job, "Warning", "UnknownCompletionMode",
                                      "Skipped Job sync because completion mode is unknown")
            return Result()
        status = job.setdefault("status", {})
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = uncounted
        satisfied = self.expectations.satisfied(key)
        pods = await self._claim(job)
        active = [p for p in pods if is_active(p)]
        ctx = _Sync(job, pods, active, ready=sum(1 for p in active if is_ready(p)),
                    terminating=sum(1 for p in pods if p["metadata"].get("deletionTimestamp")
                                    and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")),
                    uncounted_succeeded=set(uncounted.get("succeeded") or ()),
                    uncounted_failed=set(uncounted.get("failed") or ()),
                    expected_rm=set(self.finalizers_expected.get(key) or ()))
        now = self.clock.now()
        new_succeeded, new_failed = self._new_finished(ctx)
        policy = spec.get("podFailurePolicy")
        ctx.succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(ctx.uncounted_succeeded)
        ctx.failed = (int(status.get("failed") or 0) + len(ctx.uncounted_failed)
                      + sum(1 for p in new_failed if match_pod_failure_policy(policy, p).count_failed))
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = now_rfc3339(now)
        ctx.backoff = self.backoffs.get(key, BackoffRecord()).update(new_succeeded, new_failed)
        self._decide_failure(ctx, now)
        if _indexed(job):
            self._count_indexes(ctx, now)
        manage_error: BaseException | None = None
        suspend_changed = False
        if ctx.finished is not None:
            deleted_ready, deleted, manage_error = await self._delete_pods(job, ctx.active, keep_finalizer=True)
            if deleted != len(ctx.active) or not satisfied:
                ctx.finished = None  # pods or finalizers may remain that the cache has not shown yet
            active_count = len(ctx.active) - deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            active_count = len(ctx.active)
            managed = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                try:
                    active_count = await self._manage(ctx, key, now)
                except APIError as exc:
                    manage_error = exc
                    active_count = len(ctx.active)
                managed = True
            completions = spec.get("completions")
            if completions is None:
                complete = ctx.succeeded > 0 and active_count == 0
            else:
                complete = ctx.succeeded >= int(completions) and active_count == 0
            if complete:
                ctx.finished = new_condition("SuccessCriteriaMet", "True", "CompletionsReached",
                                             "Reached expected number of succeeded pods", now)
            elif managed:
                suspend_changed = await self._suspend_condition(ctx, now)
        needs_update = (suspend_changed or active_count != int(status.get("active") or 0)
                        or status.get("ready") != ctx.ready or status.get("terminating") != ctx.terminating)
        status["active"] = active_count
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self._track(ctx, key, needs_update, now)
        if manage_error is not None:
            raise manage_error
        return Result(requeue_after=ctx.requeue_after)

    # -- counting ------------------------------------------------------------------------

    def _new_finished(self, ctx: _Sync) -> tuple[list[Obj], list[Obj]]:
        """Finished pods not yet counted anywhere (upstream's getNewFinishedPods)."""
        only_failed = _only_replace_failed(ctx.job)
        completions = (ctx.job["spec"].get("completions"))
        succeeded, failed = [], []
        for pod in ctx.pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in ctx.expected_rm:
                continue
            if _indexed(ctx.job):
                ix = completion_index(pod)
                if ix is None or ix >= int(completions or 0):
                    continue
            if (pod.get("status") or {}).get("phase") == "Succeeded":
                if uid not in ctx.uncounted_succeeded:
                    succeeded.append(pod)
            elif is_pod_failed(pod, only_failed) and uid not in ctx.uncounted_failed:
                failed.append(pod)
        return succeeded, failed

    def _decide_failure(self, ctx: _Sync, now: float) -> None:
        job, spec, status = ctx.job, ctx.job["spec"], ctx.job["status"]
        ctx.finished = find_condition(status.get("conditions"), "SuccessCriteriaMet")
        if ctx.finished is not None and ctx.finished.get("status") != "True":
            ctx.finished = None
        if ctx.finished is None:
            target = find_condition(status.get("conditions"), "FailureTarget")
            if target is not None and target.get("status") == "True":
                ctx.finished = new_condition("Failed", "True", target.get("reason", ""), target.get("message", ""), now)
            elif spec.get("podFailurePolicy") is not None:
                only_failed = _only_replace_failed(job)
                for pod in ctx.pods:
                    if is_pod_failed(pod, only_failed):
                        message = match_pod_failure_policy(spec["podFailurePolicy"], pod).message
                        if message is not None:
                            ctx.finished = new_condition("FailureTarget", "True", "PodFailurePolicy", message, now)
                            break
        if ctx.finished is not None:
            return
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        started = parse_time(status.get("startTime"))
        deadline = spec.get("activeDeadlineSeconds")
        if ctx.failed > backoff_limit or self._past_backoff_on_failure(job, ctx.pods, backoff_limit):
            ctx.finished = new_condition("FailureTarget", "True", "BackoffLimitExceeded",
                                         "Job has reached the specified backoff limit", now)
        elif deadline is not None and started is not None and not spec.get("suspend"):
            if now - started >= int(deadline):
                ctx.finished = new_condition("FailureTarget", "True", "DeadlineExceeded",
                                             "Job was active longer than specified deadline", now)
            else:
                ctx.requeue(int(deadline) - (now - started))

    @staticmethod
    def _past_backoff_on_failure(job: Obj, pods: list[Obj], limit: int) -> bool:
        """For `OnFailure` pods, container restarts count against `backoffLimit` (upstream's pastBackoffLimitOnFailure)."""
        template_spec = ((job["spec"].get("template") or {}).get("spec") or {})
        if template_spec.get("restartPolicy") != "OnFailure":
            return False
        restarts = 0
        for pod in pods:
            status = pod.get("status") or {}
            if status.get("phase") in ("Running", "Pending"):
                for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                    restarts += int(s.get("restartCount") or 0)
        return restarts > 0 if limit == 0 else restarts >= limit

    def _count_indexes(self, ctx: _Sync, now: float) -> None:
        job, spec, status = ctx.job, ctx.job["spec"], ctx.job["status"]
        completions = int(spec.get("completions") or 0)
        ctx.prev_succeeded_indexes = parse_indexes(status.get("completedIndexes"), completions)
        ctx.succeeded_indexes = set(ctx.prev_succeeded_indexes)
        for pod in ctx.pods:
            ix = completion_index(pod)
            if ((pod.get("status") or {}).get("phase") == "Succeeded" and ix is not None and ix < completions
                    and has_tracking_finalizer(pod)):
                ctx.succeeded_indexes.add(ix)
        ctx.succeeded = len(ctx.succeeded_indexes)
        if not _per_index(job):
            return
        policy = spec.get("podFailurePolicy")
        limit = int(spec["backoffLimitPerIndex"])
        only_failed = _only_replace_failed(job)
        failed = parse_indexes(status.get("failedIndexes"), completions)
        for pod in ctx.pods:
            ix = completion_index(pod)
            if ix is None or ix >= completions or not has_tracking_finalizer(pod) or not is_pod_failed(pod, only_failed):
                continue
            verdict = match_pod_failure_policy(policy, pod)
            if verdict.action == "FailIndex" or (verdict.count_failed and index_failure_counts(pod)[0] >= limit):
                failed.add(ix)
        ctx.failed_indexes = failed
        if ctx.finished is None:
            max_failed = spec.get("maxFailedIndexes")
            if max_failed is not None and len(failed) > int(max_failed):
                ctx.finished = new_condition("FailureTarget", "True", "MaxFailedIndexesExceeded",
                                             "Job has exceeded the specified maximal number of failed indexes", now)
            elif failed and len(failed) + len(ctx.succeeded_indexes) >= completions:
                ctx.finished = new_condition("FailureTarget", "True", "FailedIndexes", "Job has failed indexes", now)
        # The newest failed pod of each still-pending index keeps its finalizer until its replacement
        # exists: the replacement takes its failure counts from it.
        active_indexes = {completion_index(p) for p in ctx.active}
        for pod in ctx.pods:
            ix = completion_index(pod)
            if (ix is None or ix >= completions or not has_tracking_finalizer(pod) or _uid(pod) in ctx.expected_rm
                    or not is_pod_failed(pod, only_failed) or ix in ctx.succeeded_indexes or ix in failed
                    or ix in active_indexes):
                continue
            held = ctx.delayed.get(ix)
            if held is None or (sum(index_failure_counts(held)) <= sum(index_failure_counts(pod))
                                and finish_time(pod) >= finish_time(held)):
                ctx.delayed[ix] = pod

    # -- managing pods ---------------------------------------------------------------------

    async def _manage(self, ctx: _Sync, key: str, now: float) -> int:
        """Create or delete pods toward the wanted number of active ones; returns the new active count."""
        job, spec = ctx.job, ctx.job["spec"]
        active = len(ctx.active)
        if spec.get("suspend"):
            victims = self._for_removal(job, ctx.active, active)
            return active - await self._delete_counted(ctx, key, victims)
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        completions = spec.get("completions")
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - ctx.succeeded, parallelism))
        victims = self._for_removal(job, ctx.active, max(0, active - want))[:MAX_CREATE_DELETE]
        if victims:
            # Deletes and creates never mix in one sync; deletes go first.
            return active - await self._delete_counted(ctx, key, victims)
        terminating = ctx.terminating if _only_replace_failed(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active
        if not _per_index(job):
            wait = remaining_backoff(ctx.backoff.failures, ctx.backoff.last_failure, now,
                                     base=self.backoff_base, cap=self.backoff_max)
            if wait > 0:
                ctx.requeue(wait)
                return active
        diff = min(diff, MAX_CREATE_DELETE)
        indexes: list[int | None] = [None] * diff
        if _indexed(job):
            pending = self._pending_indexes(ctx, diff, int(completions or 0))
            if _per_index(job):
                ready_now, waits = [], []
                for ix in pending:
                    held = ctx.delayed.get(ix)
                    wait = 0.0
                    if held is not None:
                        wait = remaining_backoff(sum(index_failure_counts(held)) + 1, finish_time(held), now,
                                                 base=self.backoff_base, cap=self.backoff_max)
                    if wait > 0:
                        waits.append(wait)
                    else:
                        ready_now.append(ix)
                if not ready_now and waits:
                    ctx.requeue(min(waits))
                    return active
                pending = ready_now
            indexes = list(pending)
            diff = len(indexes)
        if diff <= 0:
            return active
        return active + await self._create(ctx, key, indexes)

    def _pending_indexes(self, ctx: _Sync, count: int, completions: int) -> list[int]:
        """The lowest indexes that neither succeeded, failed, nor have a pod running (upstream's firstPendingIndexes)."""
        taken = set(ctx.succeeded_indexes) | {completion_index(p) for p in ctx.active}
        if ctx.failed_indexes:
            taken |= ctx.failed_indexes
        if _only_replace_failed(ctx.job):
            taken |= {completion_index(p) for p in ctx.pods if p["metadata"].get("deletionTimestamp")
                      and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")}
        out = []
        for ix in range(completions):
            if len(out) >= count:
                break
            if ix not in taken:
                out.append(ix)
        return out

    @staticmethod
    def _for_removal(job: Obj, pods: list[Obj], at_least: int) -> list[Obj]:
        """Pods to delete: for Indexed Jobs first those without a valid index and duplicates, then by rank."""
        remove: list[Obj] = []
        left = list(pods)
        if _indexed(job):
            completions = int(job["spec"].get("completions") or 0)
            by_index: dict[int, list[Obj]] = {}
            left = []
            for pod in pods:
                ix = completion_index(pod)
                if ix is None or ix >= completions:
                    remove.append(pod)
                else:
                    by_index.setdefault(ix, []).append(pod)
            for same in by_index.values():
                ranked = rank_pods_for_deletion(same, [], now=None)
                remove.extend(ranked[:-1])
                left.append(ranked[-1])
        if len(remove) < at_least:
            remove += rank_pods_for_deletion(left, [], now=None)[:at_least - len(remove)]
        return remove

    async def _create(self, ctx: _Sync, key: str, indexes: list[int | None]) -> int:
        job = ctx.job
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        template = copy.deepcopy(job["spec"].get("template") or {})
        meta = template.setdefault("metadata", {})
        if TRACKING_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), TRACKING_FINALIZER]
        if _indexed(job):
            pod_spec = template.setdefault("spec", {})
            for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
                env = container.setdefault("env", [])
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                    env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "apiVersion": "v1", "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
        ref = new_controller_ref(job)
        queue = list(indexes)
        policy = job["spec"].get("podFailurePolicy")

        async def create_one() -> None:
            index = queue.pop(0)
            pod = pod_from_template(template, job, ref)
            if index is not None:
                pod_meta = pod["metadata"]
                pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), COMPLETION_INDEX: str(index)}
                pod_meta["labels"] = {**(pod_meta.get("labels") or {}), COMPLETION_INDEX: str(index)}
                pod_meta["generateName"] = generate_name_with_index(name, index)
                pod["spec"]["hostname"] = f"{name}-{index}"
                if _per_index(job):
                    failures, ignored = 0, 0
                    held = ctx.delayed.get(index)
                    if held is not None:
                        failures, ignored = index_failure_counts(held)
                        if match_pod_failure_policy(policy, held).count_failed:
                            failures += 1
                        else:
                            ignored += 1
                    pod_meta["annotations"][INDEX_FAILURE_COUNT] = str(failures)
                    if ignored:
                        pod_meta["annotations"][INDEX_IGNORED_FAILURE_COUNT] = str(ignored)
            try:
                created = await self.client.create(PODS, pod, namespace=namespace)
            except APIError as exc:
                if any(c.reason == "NamespaceTerminating" for c in exc.causes):
                    return
                await self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {exc}")
                raise
            await self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

        count = len(indexes)
        self.expectations.expect_creations(key, count)
        log.info("Job %s: too few pods running, creating %d", key, count)
        successes, error = await slow_start_batch(count, 1, create_one)
        for _ in range(count - successes):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error
        return successes

    async def _delete_counted(self, ctx: _Sync, key: str, victims: list[Obj]) -> int:
        """Delete pods the Job no longer wants, their finalizer removed first so they are never counted."""
        self.expectations.expect_deletions(key, [_key(p) for p in victims])
        deleted_ready, deleted, error = await self._delete_pods(ctx.job, victims, keep_finalizer=False, key=key)
        ctx.terminating += deleted
        ctx.ready -= deleted_ready
        if error is not None:
            raise error
        return deleted

    async def _delete_pods(self, job: Obj, pods: list[Obj], *, keep_finalizer: bool,
                           key: str | None = None) -> tuple[int, int, BaseException | None]:
        """(ready deleted, deleted, first error) after deleting `pods`."""
        ready = deleted = 0
        error: BaseException | None = None
        for pod in pods:
            meta = pod["metadata"]
            try:
                if not keep_finalizer and has_tracking_finalizer(pod):
                    await self._remove_finalizer(pod)
                await self.client.delete(PODS, meta["name"], namespace=meta["namespace"])
            except NotFound:
                if key is not None:
                    self.expectations.deletion_observed(key, _key(pod))
            except APIError as exc:
                if key is not None:
                    self.expectations.deletion_observed(key, _key(pod))
                await self.recorder.event(job, "Warning", "FailedDelete", f"Error deleting: {exc}")
                error = error or exc
                continue
            else:
                await self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
            deleted += 1
            ready += is_ready(pod)
        return ready, deleted, error

    async def _suspend_condition(self, ctx: _Sync, now: float) -> bool:
        job, status = ctx.job, ctx.job["status"]
        conditions = status.setdefault("conditions", [])
        if job["spec"].get("suspend"):
            changed = set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now)
            if changed:
                await self.recorder.event(job, "Normal", "Suspended", "Job suspended")
            return changed
        changed = set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now)
        if changed:
            await self.recorder.event(job, "Normal", "Resumed", "Job resumed")
            # activeDeadlineSeconds counts time continuously active, so resuming restarts the clock.
            status["startTime"] = now_rfc3339(now)
        if not conditions:
            status.pop("conditions", None)
        return changed

    # -- status and finalizers (upstream's trackJobStatusAndRemoveFinalizers) --------------------

    async def _track(self, ctx: _Sync, key: str, needs_flush: bool, now: float) -> None:
        job, spec = ctx.job, ctx.job["spec"]
        status = job["status"]
        uncounted = status["uncountedTerminatedPods"]
        indexed = _indexed(job)
        completions = int(spec.get("completions") or 0)
        policy = spec.get("podFailurePolicy")
        only_failed = _only_replace_failed(job)
        pods = sorted(ctx.pods, key=lambda p: (completion_index(p) is None, completion_index(p) or 0)) \
            if indexed else ctx.pods
        with_finalizer = {_uid(p) for p in pods if has_tracking_finalizer(p) and _uid(p) not in ctx.expected_rm}
        needs_flush |= _move_counted(status, with_finalizer)
        to_remove: list[Obj] = []
        new_indexes: list[int] = []
        reached_max = False
        for pod in pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in ctx.expected_rm:
                continue
            failed = is_pod_failed(pod, only_failed)
            if not self._can_remove_finalizer(ctx, pod, failed):
                continue
            to_remove.append(pod)
            ix = completion_index(pod)
            if (pod.get("status") or {}).get("phase") == "Succeeded" and uid not in ctx.uncounted_failed:
                if indexed:
                    if ix is not None and ix < completions and ix not in ctx.prev_succeeded_indexes:
                        new_indexes.append(ix)
                        needs_flush = True
                elif uid not in ctx.uncounted_succeeded:
                    uncounted.setdefault("succeeded", []).append(uid)
                    needs_flush = True
            elif failed or (ctx.finished is not None and ctx.finished["type"] != "SuccessCriteriaMet"):
                # Once the Job is finished, every pod not terminated counts as failed.
                if uid not in ctx.uncounted_failed and (not indexed or (ix is not None and ix < completions)):
                    if match_pod_failure_policy(policy, pod).count_failed:
                        uncounted.setdefault("failed", []).append(uid)
                        needs_flush = True
            if len(new_indexes) + len(uncounted.get("succeeded") or ()) + len(uncounted.get("failed") or ()) \
                    >= MAX_UNCOUNTED:
                reached_max = True  # the rest waits for the next sync, so one big Job cannot starve the others
                break
        if indexed:
            ctx.succeeded_indexes |= set(new_indexes)
            text = format_indexes(ctx.succeeded_indexes)
            if text != (status.get("completedIndexes") or ""):
                needs_flush = True
            status["succeeded"] = len(ctx.succeeded_indexes)
            status["completedIndexes"] = text
            if ctx.failed_indexes is not None:
                failed_text = format_indexes(ctx.failed_indexes)
                if status.get("failedIndexes") != failed_text:
                    status["failedIndexes"] = failed_text
                    needs_flush = True
        conditions = status.setdefault("conditions", [])
        if ctx.finished is not None and ctx.finished["type"] == "FailureTarget":
            conditions.append(ctx.finished)
            needs_flush = True
            ctx.finished = new_condition("Failed", "True", ctx.finished.get("reason", ""),
                                         ctx.finished.get("message", ""), now)
        if ctx.finished is not None and ctx.finished["type"] == "SuccessCriteriaMet":
            if find_condition(conditions, "SuccessCriteriaMet") is None:
                conditions.append(ctx.finished)
                needs_flush = True
            ctx.finished = new_condition("Complete", "True", ctx.finished.get("reason", ""),
                                         ctx.finished.get("message", ""), now)
        if not conditions:
            status.pop("conditions", None)
        needs_flush = await self._flush_and_remove(ctx, key, to_remove, with_finalizer, needs_flush)
        finished = not reached_max and self._enact_finished(ctx, now)
        if finished or needs_flush:
            ctx.job = await self._update_status(ctx.job)
            if finished:
                assert ctx.finished is not None
                if ctx.finished["type"] == "Complete":
                    await self.recorder.event(ctx.job, "Normal", "Completed", "Job completed")
                else:
                    await self.recorder.event(ctx.job, "Warning", ctx.finished.get("reason", ""),
                                              ctx.finished.get("message", ""))

    @staticmethod
    def _can_remove_finalizer(ctx: _Sync, pod: Obj, failed: bool) -> bool:
        if (ctx.job["metadata"].get("deletionTimestamp") or ctx.finished is not None
                or (pod.get("status") or {}).get("phase") == "Succeeded"):
            return True
        if not failed:
            return False
        ix = completion_index(pod)
        held = ctx.delayed.get(ix) if ix is not None else None
        return held is None or _uid(held) != _uid(pod)

    async def _flush_and_remove(self, ctx: _Sync, key: str, to_remove: list[Obj], with_finalizer: set[str],
                                needs_flush: bool) -> bool:
        """Write the uncounted UIDs, then remove finalizers, then count what lost them; True if a write is pending."""
        if needs_flush:
            ctx.job = await self._update_status(ctx.job)
            self.backoffs[key] = ctx.backoff
            needs_flush = False
        error: BaseException | None = None
        if to_remove:
            self.finalizers_expected.setdefault(key, set()).update(_uid(p) for p in to_remove)
            for pod in to_remove:
                try:
                    await self._remove_finalizer(pod)
                except NotFound:
                    pass
                except APIError as exc:
                    self._finalizer_removed(key, _uid(pod))
                    error = error or exc
                    continue
                with_finalizer.discard(_uid(pod))
        if _move_counted(ctx.job["status"], with_finalizer):
            needs_flush = True
        if error is not None:
            if needs_flush:
                ctx.job = await self._update_status(ctx.job)
            raise error
        return needs_flush

    def _enact_finished(self, ctx: _Sync, now: float) -> bool:
        """Add Complete or Failed once nothing is left uncounted or terminating."""
        if ctx.finished is None:
            return False
        status = ctx.job["status"]
        uncounted = status.get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed") or ctx.terminating > 0:
            return False
        finished = ctx.finished
        conditions = status.setdefault("conditions", [])
        set_condition(conditions, finished["type"], "True", finished.get("reason", ""), finished.get("message", ""), now)
        if finished["type"] == "Complete":
            status["completionTime"] = find_condition(conditions, "Complete")["lastTransitionTime"]  # type: ignore[index]
        return True

    async def _remove_finalizer(self, pod: Obj) -> None:
        meta = pod["metadata"]
        await self.client.patch(PODS, meta["name"], {"metadata": {
            "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}, namespace=meta["namespace"],
            patch_type="strategic")

    async def _update_status(self, job: Obj) -> Obj:
        body = {**job, "status": _wire_status(job["status"])}
        updated = await self.client.update(JOBS, body, subresource="status")
        updated = {**updated, "apiVersion": "batch/v1", "kind": "Job"}
        updated.setdefault("status", {}).setdefault("uncountedTerminatedPods", {})
        return updated

    # -- pods ------------------------------------------------------------------------------

    async def _claim(self, job: Obj) -> list[Obj]:
        meta = job["metadata"]
        selector = label_selector_from_dict(job["spec"].get("selector"))
        candidates = self.pods.lister.list(meta["namespace"])

        async def fetch() -> Obj:
            return await self.client.get(JOBS, meta["name"], namespace=meta["namespace"])

        claims = ClaimManager(self.client, PODS, job, selector, fetch_owner=fetch)
        owned_before = {_uid(p) for p in candidates if (controller_ref(p) or {}).get("uid") == _uid(job)}
        pods = await claims.claim(candidates)
        out = []
        for pod in pods:
            if _uid(pod) not in owned_before and not has_tracking_finalizer(pod):
                # Adopted: count it as though it had been ours from the start (upstream does the same).
                pod = {**pod, "metadata": {**pod["metadata"],
                                           "finalizers": [*(pod["metadata"].get("finalizers") or []), TRACKING_FINALIZER]}}
            out.append(pod)
        return out

    async def _release_orphans(self, namespace: str, name: str, *, keep_uid: str | None) -> None:
        """Remove the tracking finalizer from pods of a Job `name` that is gone, finished, or not `keep_uid`."""
        for pod in self.pods.lister.list(namespace):
            ref = controller_ref(pod)
            if (ref is None or ref.get("kind") != "Job" or ref.get("name") != name or not has_tracking_finalizer(pod)
                    or (keep_uid is not None and ref.get("uid") == keep_uid)):
                continue
            try:
                await self._remove_finalizer(pod)
            except NotFound:
                pass


def _move_counted(status: Obj, with_finalizer: set[str]) -> bool:
    """Move uncounted UIDs whose pods lost their finalizer into succeeded/failed (cleanUncountedPodsWithoutFinalizers)."""
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    changed = False
    for field_name, counter in (("succeeded", "succeeded"), ("failed", "failed")):
        uids = uncounted.get(field_name) or []
        keep = [uid for uid in uids if uid in with_finalizer]
        if len(keep) != len(uids):
            status[counter] = int(status.get(counter) or 0) + len(uids) - len(keep)
            uncounted[field_name] = keep
            changed = True
    return changed


def _wire_status(status: Obj) -> Obj:
    """The status as Go writes it: zero counters and empty lists omitted, ready/terminating always present."""
    out = {k: v for k, v in status.items() if v is not None}
    for name in ("active", "succeeded", "failed"):
        if not out.get(name):
            out.pop(name, None)
    out["uncountedTerminatedPods"] = {k: v for k, v in (status.get("uncountedTerminatedPods") or {}).items() if v}
    if not out.get("conditions"):
        out.pop("conditions", None)
    if not out.get("completedIndexes"):
        out.pop("completedIndexes", None)
    return out


def new_job_controller(client: Client, informers: SharedInformers, *, workers: int = 5, clock: Clock | None = None,
                       recorder: EventRecorder | None = None, backoff_base: float = BACKOFF_BASE,
                       backoff_max: float = BACKOFF_MAX) -> Controller:
    """A Controller for batch/v1 Jobs; `backoff_base`/`backoff_max` are the pod failure backoff (10 s, 6 min)."""
    reconciler = JobReconciler(client, informers, recorder=recorder, clock=clock, backoff_base=backoff_base,
                               backoff_max=backoff_max)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock or reconciler.clock)
    controller.watches(reconciler.jobs, reconciler.on_job)
    controller.watches(reconciler.pods, reconciler.on_pod)
    return controller
