"""The StatefulSet controller: pods with stable names and storage, created, deleted and updated in order.

One reconcile of a StatefulSet, as upstream's `UpdateStatefulSet` (1.32):

1. Claim its ControllerRevisions and its pods (only pods named
   `<set>-<ordinal>` are candidates, as upstream's `isMemberOf`).
2. Revisions (`_history`): the *update revision* holds the set's current
   template: the newest revision if its data is the same, an older equal
   one renumbered to the next number (a rollback), or a new one. The
   *current revision* is the one `status.currentRevision` names (the
   update revision on the first sync).
3. Pods for ordinals `[start, start + replicas)` are the replicas; pods
   with other ordinals are condemned. A missing replica is made at the
   current revision below the partition, else at the update revision.
   Replicas are processed in ordinal order: a Failed or Succeeded pod is
   deleted (and recreated on a later sync); a missing one is created, PVCs
   first; a pod whose identity, storage or claim ownership drifted is
   updated. With `podManagementPolicy: OrderedReady` the walk stops at the
   first pod it creates or that is not Running, Ready and available for
   `minReadySeconds`; `Parallel` goes on (and runs in slow-start batches).
4. Condemned pods are deleted highest ordinal first, one at a time and only
   when every replica is healthy for OrderedReady; all at once for Parallel.
5. Updates: `OnDelete` stops here. `RollingUpdate` deletes the highest
   ordinal at or above `partition` that is not at the update revision, and
   waits for it to come back healthy before the next; with `maxUnavailable`
   set, up to that many are down at once (upstream's
   MaxUnavailableStatefulSet behaviour).
6. Status: replicas, readyReplicas, availableReplicas, currentReplicas,
   updatedReplicas, currentRevision/updateRevision (the update revision
   becomes current once all replicas are updated and ready),
   observedGeneration, collisionCount. Then revisions beyond
   `revisionHistoryLimit` that no pod uses are deleted, oldest first.

Claims follow `persistentVolumeClaimRetentionPolicy` through owner
references (see `_stateful_util`); the garbage collector does the deleting.
Events are upstream's: "create Pod web-0 in StatefulSet web successful",
"create Claim data-web-0 Pod web-0 in StatefulSet web success", ...
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from timoner.api.errors import AlreadyExists, APIError, Conflict, NotFound
from timoner.api.selectors import LabelSelector, label_selector_from_dict
from timoner.client import Client, Clock, EventRecorder, Informer, resource_for

from . import _history as history
from . import _stateful_util as su
from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._pods import is_ready
from ._refs import ClaimManager, resolve_controller_ref, selecting_controllers

__all__ = ["PVCS", "STATEFUL_SETS", "StatefulSetReconciler", "new_statefulset_controller"]

log = logging.getLogger("timoner.controllers.statefulset")

Obj = dict[str, Any]

STATEFUL_SETS = resource_for("apps/v1", "StatefulSet")
PODS = resource_for("v1", "Pod")
PVCS = resource_for("v1", "PersistentVolumeClaim")
COMPONENT = "statefulset-controller"
MAX_BATCH = 500


def _typed(obj: Obj) -> Obj:
    return {**copy.deepcopy(obj), "apiVersion": "apps/v1", "kind": "StatefulSet"}


def _name(obj: Obj) -> str:
    return obj["metadata"]["name"]


def _wire_status(status: Obj) -> Obj:
    """The status as Go writes it: zero counts and empty revisions omitted where the API omits them."""
    out: Obj = {"replicas": status.get("replicas", 0), "availableReplicas": status.get("availableReplicas", 0)}
    for key in ("observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas", "currentRevision",
                "updateRevision"):
        if status.get(key):
            out[key] = status[key]
    if status.get("collisionCount") is not None:
        out["collisionCount"] = status["collisionCount"]
    return out


class StatefulSetReconciler:
    """Reconciles StatefulSets through their pods, claims and revisions; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.sets: Informer = informers.get(STATEFUL_SETS)
        self.pods: Informer = informers.get(PODS)
        self.revisions: Informer = informers.get(history.CONTROLLER_REVISIONS)
        self.claims: Informer = informers.get(PVCS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.now = wall_clock
        self.controller: Controller | None = None

    # -- informer changes to requests ------------------------------------------------------

    def on_pod(self, change: Change) -> list[Request]:
        pod, old = change.obj, change.old
        if change.type == "delete" or (change.type == "add" and pod["metadata"].get("deletionTimestamp")):
            return self._owner(pod)
        if change.type == "add":
            if controller_ref(pod) is not None:
                return self._owner(pod)
            return self._matching_sets(pod)
        assert old is not None
        if pod["metadata"].get("resourceVersion") == old["metadata"].get("resourceVersion"):
            return []
        ref, old_ref = controller_ref(pod), controller_ref(old)
        requests = self._owner(old) if ref != old_ref and old_ref is not None else []
        if ref is not None:
            owners = self._owner(pod)
            for request in owners:
                sts = self.sets.lister.get(request.namespace, request.name) or {}
                min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
                if min_ready and not is_ready(old) and is_ready(pod) and self.controller is not None:
                    self.controller.enqueue(request, after=min_ready + 0.1)
            return requests + owners
        if ref != old_ref or pod["metadata"].get("labels") != old["metadata"].get("labels"):
            requests += self._matching_sets(pod)
        return requests

    def on_revision(self, change: Change) -> list[Request]:
        return self._owner(change.obj) + (self._owner(change.old) if change.old is not None else [])

    def _owner(self, obj: Obj) -> list[Request]:
        sts = resolve_controller_ref(self.sets.lister, obj["metadata"].get("namespace"), controller_ref(obj),
                                     kind="StatefulSet", group="apps")
        return [] if sts is None else [Request.of(sts)]

    def _matching_sets(self, pod: Obj) -> list[Request]:
        return [Request.of(sts) for sts in selecting_controllers(self.sets.lister, pod)]

    # -- one sync ------------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        cached = self.sets.lister.get(request.namespace, request.name)
        if cached is None:
            return Result()
        sts = _typed(cached)
        try:
            selector = label_selector_from_dict(sts["spec"].get("selector"))
        except APIError as exc:
            log.warning("statefulset %s has an invalid selector: %s", request, exc)
            return Result()
        if selector.empty:
            log.warning("statefulset %s selects all pods; a non-empty selector is required", request)
            return Result()
        fetch = self._fetch(request)
        revisions = await ClaimManager(self.client, history.CONTROLLER_REVISIONS, sts, selector,
                                       fetch_owner=fetch).claim(self.revisions.lister.list(request.namespace))
        pods = await self._claim_pods(sts, selector, fetch)
        status = await self._sync(sts, pods, history.sort_revisions(revisions))
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready and status.get("availableReplicas", 0) != su.replicas(sts):
            return Result(requeue_after=float(min_ready))
        return Result()

    def _fetch(self, request: Request) -> Callable[[], Awaitable[Obj]]:
        async def fetch() -> Obj:
            return await self.client.get(STATEFUL_SETS, request.name, namespace=request.namespace)
        return fetch

    async def _claim_pods(self, sts: Obj, selector: LabelSelector, fetch: Callable[[], Awaitable[Obj]]) -> list[Obj]:
        claims = ClaimManager(self.client, PODS, sts, selector, fetch_owner=fetch)
        pods = self.pods.lister.list(sts["metadata"]["namespace"])
        return await claims.claim(pods, extra=lambda pod: su.is_member(sts, pod))

    async def _sync(self, sts: Obj, pods: list[Obj], revisions: list[Obj]) -> Obj:
        current, update, collision_count = await self._revisions(sts, revisions)
        status, error = await self._update_set(sts, current, update, collision_count, pods)
        try:
            await self._update_status(sts, status)
        finally:
            await self._truncate_history(sts, pods, revisions, current, update)
        if error is not None:
            raise error
        return status

    # -- revisions ------------------------------------------------------------------------------

    async def _revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """(current revision, update revision, collision count): upstream's getStatefulSetRevisions."""
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        candidate = history.new_revision(sts, history.template_patch(sts), history.next_revision(revisions),
                                         collision_count)
        equal = history.find_equal_revisions(revisions, candidate)
        if equal and revisions and history.equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            update = await history.renumber(self.client, equal[-1], candidate["revision"])
        else:
            created = await history.create_revision(self.client, sts, candidate, collision_count)
            update, collision_count = created.revision, created.collision_count
        wanted = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == wanted), None) or update
        return current, update, collision_count

    async def _truncate_history(self, sts: Obj, pods: list[Obj], revisions: list[Obj], current: Obj | None,
                                update: Obj | None) -> None:
        live = {r["metadata"]["name"] for r in (current, update) if r is not None}
        live |= {su.pod_revision(pod) for pod in pods}
        old = [r for r in revisions if r["metadata"]["name"] not in live]
        limit = int(sts["spec"].get("revisionHistoryLimit", 10) or 0)
        for revision in old[:max(0, len(old) - limit)]:
            try:
                await self.client.delete(history.CONTROLLER_REVISIONS, _name(revision),
                                         namespace=revision["metadata"].get("namespace"))
            except NotFound:
                pass

    # -- pods -----------------------------------------------------------------------------------

    async def _update_set(self, sts: Obj, current: Obj, update: Obj, collision_count: int,
                          pods: list[Obj]) -> tuple[Obj, APIError | None]:
        """Create, delete and update pods toward the set; the status to write and the error that stopped it."""
        current_set = history.apply_revision(sts, current)
        update_set = history.apply_revision(sts, update)
        current_name, update_name = _name(current), _name(update)
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        status: Obj = {"observedGeneration": sts["metadata"].get("generation"), "currentRevision": current_name,
                       "updateRevision": update_name, "collisionCount": collision_count}
        status.update(su.compute_status(pods, min_ready, current_name, update_name, now=self.now()))

        start, count = su.start_ordinal(sts), su.replicas(sts)
        replicas: list[Obj | None] = [None] * count
        condemned: list[Obj] = []
        for pod in pods:
            if su.in_ordinal_range(pod, sts):
                replicas[su.ordinal(pod) - start] = pod
            elif su.ordinal(pod) >= 0:
                condemned.append(pod)
        for i in range(count):
            if replicas[i] is None:
                replicas[i] = su.new_versioned_pod(current_set, update_set, current_name, update_name, start + i)
        members: list[Obj] = [pod for pod in replicas if pod is not None]
        condemned.sort(key=su.ordinal, reverse=True)
        unhealthy = [pod for pod in members if not su.is_healthy(pod)]
        unhealthy += [pod for pod in reversed(condemned) if not su.is_healthy(pod)]
        first_unhealthy = unhealthy[0] if unhealthy else None

        def final() -> Obj:
            status.update(su.compute_status(members + condemned, min_ready, current_name, update_name,
                                            now=self.now()))
            return status

        if sts["metadata"].get("deletionTimestamp"):
            return status, None
        monotonic = sts["spec"].get("podManagementPolicy") != "Parallel"

        async def process_replica(i: int) -> bool:
            return await self._process_replica(sts, update_set, monotonic, members, i)

        async def fix_claims(i: int) -> bool:
            if not self._claims_match(update_set, condemned[i]):
                await self._update_claims(update_set, condemned[i])
            return False

        async def process_condemned(i: int) -> bool:
            return await self._process_condemned(sts, first_unhealthy, monotonic, condemned, i)

        try:
            for fn, items in ((process_replica, members), (fix_claims, condemned), (process_condemned, condemned)):
                if await _run_for_all(len(items), fn, monotonic):
                    return final(), None
        except APIError as exc:
            return final(), exc
        final()
        strategy = sts["spec"].get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            return status, None
        try:
            await self._rolling_update(sts, members, update_name, status)
        except APIError as exc:
            return status, exc
        return status, None

    async def _process_replica(self, sts: Obj, update_set: Obj, monotonic: bool, replicas: list[Obj], i: int) -> bool:
        """One replica: replace it if it finished, create it if missing, fix it if it drifted; True stops the walk."""
        pod = replicas[i]
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded"):
            # The replacement comes on a later sync, once this one is gone from the store.
            if not su.is_terminating(pod):
                await self._delete_pod(sts, pod)
            return True
        if not su.is_created(pod):
            if self._claims_stale(sts, pod):
                return True
            await self._create_pod(sts, pod)
            if monotonic:
                return True
            # Parallel goes on with the pod as built (no phase yet), as upstream does.
        if (pod.get("status") or {}).get("phase") == "Pending":
            await self._create_claims(sts, pod)
            await self._update_claims(sts, pod)
        if monotonic and (su.is_terminating(pod) or not su.is_running_and_ready(pod)):
            return True
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if monotonic and not su.is_running_and_available(pod, min_ready, self.now()):
            return True
        if su.identity_matches(sts, pod) and su.storage_matches(sts, pod) and self._claims_match(update_set, pod):
            return False
        await self._update_pod(update_set, copy.deepcopy(pod))
        return False

    async def _process_condemned(self, sts: Obj, first_unhealthy: Obj | None, monotonic: bool,
                                 condemned: list[Obj], i: int) -> bool:
        pod = condemned[i]
        if su.is_terminating(pod):
            return monotonic  # OrderedReady waits for it to go away
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if monotonic and pod is not first_unhealthy and (
                not su.is_running_and_ready(pod) or not su.is_running_and_available(pod, min_ready, self.now())):
            return True
        await self._delete_pod(sts, pod)
        return True

    async def _rolling_update(self, sts: Obj, replicas: list[Obj], update_revision: str, status: Obj) -> None:
        rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        partition = int(rolling.get("partition") or 0)
        limit = su.max_unavailable(sts)
        if limit is not None:
            # maxUnavailable: replace up to that many at once, counting the ones already down.
            budget = limit - sum(1 for pod in replicas if not su.is_healthy(pod))
            for target in range(len(replicas) - 1, partition - 1, -1):
                if budget <= 0:
                    return
                pod = replicas[target]
                if su.pod_revision(pod) != update_revision and not su.is_terminating(pod):
                    await self._delete_pod(sts, pod, missing_ok=True)
                    budget -= 1
                    status["currentReplicas"] = status.get("currentReplicas", 0) - 1
            return
        for target in range(len(replicas) - 1, partition - 1, -1):
            pod = replicas[target]
            if su.pod_revision(pod) != update_revision and not su.is_terminating(pod):
                await self._delete_pod(sts, pod, missing_ok=True)
                status["currentReplicas"] = status.get("currentReplicas", 0) - 1
                return
            if not su.is_healthy(pod):
                return  # wait for the replaced pod to come back healthy

    # -- pod and claim writes -------------------------------------------------------------------

    async def _pod_event(self, verb: str, sts: Obj, pod: Obj, error: BaseException | None) -> None:
        if error is None:
            await self.recorder.event(sts, "Normal", f"Successful{verb.title()}",
                                      f"{verb} Pod {_name(pod)} in StatefulSet {_name(sts)} successful")
        else:
            await self.recorder.event(sts, "Warning", f"Failed{verb.title()}",
                                      f"{verb} Pod {_name(pod)} in StatefulSet {_name(sts)} failed error: {error}")

    async def _create_pod(self, sts: Obj, pod: Obj) -> Obj:
        try:
            await self._create_claims(sts, pod)
        except APIError as exc:
            await self._pod_event("create", sts, pod, exc)
            raise
        try:
            created = await self.client.create(PODS, pod, namespace=sts["metadata"]["namespace"])
        except AlreadyExists:
            raise  # our cache is behind; the next sync sees it
        except APIError as exc:
            await self._pod_event("create", sts, pod, exc)
            raise
        try:
            await self._update_claims(sts, created)
        except APIError as exc:
            await self._pod_event("update", sts, created, exc)
            raise
        await self._pod_event("create", sts, pod, None)
        return created

    async def _delete_pod(self, sts: Obj, pod: Obj, *, missing_ok: bool = False) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], namespace=meta.get("namespace"),
                                     preconditions={"uid": meta["uid"]} if meta.get("uid") else None)
        except NotFound as exc:
            if missing_ok:
                return
            await self._pod_event("delete", sts, pod, exc)
            raise
        except APIError as exc:
            await self._pod_event("delete", sts, pod, exc)
            raise
        await self._pod_event("delete", sts, pod, None)

    async def _update_pod(self, update_set: Obj, pod: Obj) -> None:
        """Bring a live pod's identity, storage and claim ownership in line (upstream's UpdateStatefulPod)."""
        error: APIError | None = None
        for attempt in range(5):
            consistent = True
            if not su.identity_matches(update_set, pod):
                su.update_identity(update_set, pod)
                consistent = False
            try:
                if not su.storage_matches(update_set, pod):
                    su.update_storage(update_set, pod)
                    consistent = False
                    await self._create_claims(update_set, pod)
                if not self._claims_match(update_set, pod):
                    await self._update_claims(update_set, pod)
                    consistent = False
                if consistent:
                    return
                await self.client.update(PODS, {**pod, "apiVersion": "v1", "kind": "Pod"})
                error = None
                break
            except Conflict as exc:
                error = exc
                if attempt == 4:
                    break
                meta = pod["metadata"]
                pod = await self.client.get(PODS, meta["name"], namespace=meta.get("namespace"))
            except APIError as exc:
                error = exc
                break
        await self._pod_event("update", update_set, pod, error)
        if error is not None:
            raise error

    def _claim(self, namespace: str, name: str) -> Obj | None:
        return self.claims.lister.get(namespace, name)

    async def _create_claims(self, sts: Obj, pod: Obj) -> None:
        """Create the pod's missing PVCs; one failure does not stop the others, the first is raised."""
        errors: list[APIError] = []
        namespace = sts["metadata"]["namespace"]
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            existing = self._claim(namespace, claim["metadata"]["name"])
            if existing is None:
                try:
                    await self.client.create(PVCS, claim, namespace=namespace)
                except AlreadyExists:
                    # Our cache is behind the store; what matters is that it exists and is not going away.
                    try:
                        existing = await self.client.get(PVCS, claim["metadata"]["name"], namespace=namespace)
                    except APIError as exc:
                        errors.append(exc)
                        continue
                except APIError as exc:
                    errors.append(exc)
                    await self.recorder.event(sts, "Warning", "FailedCreate",
                                              f"create Claim {claim['metadata']['name']} for Pod {_name(pod)} in "
                                              f"StatefulSet {_name(sts)} failed error: {exc}")
                    continue
                else:
                    await self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                              f"create Claim {claim['metadata']['name']} Pod {_name(pod)} in "
                                              f"StatefulSet {_name(sts)} success")
                    continue
            if existing["metadata"].get("deletionTimestamp"):
                errors.append(Conflict(f"pvc {claim['metadata']['name']} is being deleted"))
        if errors:
            raise errors[0]

    def _claims_stale(self, sts: Obj, pod: Obj) -> bool:
        """A claim still owned by an earlier pod of this name: wait for the garbage collector (whenScaled: Delete)."""
        if su.retention_policy(sts)[1] == su.RETAIN:
            return False
        namespace = sts["metadata"]["namespace"]
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            existing = self._claim(namespace, claim["metadata"]["name"])
            if existing is not None and su.claim_is_stale(existing, pod):
                return True
        return False

    def _claims_match(self, sts: Obj, pod: Obj) -> bool:
        namespace = sts["metadata"]["namespace"]
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            existing = self._claim(namespace, claim["metadata"]["name"])
            if existing is not None and not su.is_claim_owner_up_to_date(existing, sts, pod):
                return False
        return True

    async def _update_claims(self, sts: Obj, pod: Obj) -> None:
        """Set the owner references the retention policy wants on the pod's claims."""
        namespace = sts["metadata"]["namespace"]
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            existing = self._claim(namespace, claim["metadata"]["name"])
            if existing is None or su.is_claim_owner_up_to_date(existing, sts, pod):
                continue
            refs = su.claim_owner_refs(existing, sts, pod)
            meta = existing["metadata"]
            await self.client.patch(PVCS, meta["name"],
                                    {"metadata": {"uid": meta.get("uid"), "ownerReferences": refs or None}},
                                    namespace=namespace)

    # -- status ---------------------------------------------------------------------------------

    async def _update_status(self, sts: Obj, status: Obj) -> None:
        su.complete_rolling_update(sts, status)
        if not su.inconsistent_status(sts, status):
            return
        body = _typed(sts)
        for attempt in range(3):
            body["status"] = _wire_status(status)
            try:
                await self.client.update(STATEFUL_SETS, body, subresource="status")
                return
            except Conflict:
                if attempt == 2:
                    raise
                body = _typed(await self.client.get(STATEFUL_SETS, _name(sts), namespace=sts["metadata"]["namespace"]))


async def _run_for_all(count: int, fn: Callable[[int], Awaitable[bool]], monotonic: bool) -> bool:
    """Upstream's runForAll: in order, stopping when `fn` says so (monotonic), or in slow-start batches."""
    if monotonic:
        for i in range(count):
            if await fn(i):
                return True
        return False
    done, batch = 0, min(count, 1)
    while batch > 0:
        results = await asyncio.gather(*(fn(i) for i in range(done, done + batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if not isinstance(err, Exception):
                raise err
        if errors:
            raise errors[0]
        done += batch
        batch = min(2 * batch, count - done, MAX_BATCH)
    return False


def new_statefulset_controller(client: Client, informers: SharedInformers, *, workers: int = 5,
                               clock: Clock | None = None, recorder: EventRecorder | None = None) -> Controller:
    """A Controller for StatefulSets, fed by their pods and ControllerRevisions."""
    reconciler = StatefulSetReconciler(client, informers, recorder=recorder)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock)
    reconciler.controller = controller
    controller.for_(reconciler.sets)
    controller.watches(reconciler.pods, reconciler.on_pod)
    controller.watches(reconciler.revisions, reconciler.on_revision)
    return controller
