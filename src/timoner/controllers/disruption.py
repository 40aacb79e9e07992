"""The disruption controller: the status of PodDisruptionBudgets, which the `pods/eviction` subresource spends.

One sync of a budget, as upstream's `trySync`:

1. Its pods: those of its namespace its selector matches (an empty
   selector matches them all, a missing one none).
2. `expectedPods` and `desiredHealthy`: an integer `minAvailable` is the
   desired count itself, with the pods found as the expected ones;
   `maxUnavailable` or a percentage `minAvailable` take the sum of the
   scales of the pods' controllers (a Deployment through its ReplicaSet,
   a ReplicaSet, ReplicationController or StatefulSet from the caches,
   anything else through its `scale` subresource) and scale the
   percentage of it, rounding up. Pods without a controller are left out
   of that sum, with an `UnmanagedPods` warning.
3. `disruptedPods`: the evictions the API server approved but whose pods
   this controller has not yet seen being deleted. An entry keeps its
   pod out of the healthy count for two minutes; after that the pod is
   assumed not to be going (a `NotDeleted` warning) and the entry dropped.
   The budget comes back when the earliest entry expires.
4. `currentHealthy` (Ready pods not being deleted nor just evicted),
   `disruptionsAllowed` (healthy minus desired, never negative, and 0
   while no pod is expected), `observedGeneration` and the
   `DisruptionAllowed` condition (SufficientPods / InsufficientPods),
   written only when something changed, as a conditional update of
   `status` so that an eviction's decrement is never overwritten.

A sync that fails for another reason than a conflict writes the fail-safe
status: no disruption allowed, condition reason `SyncFailed` with the error.

A second, small controller clears stale `DisruptionTarget` pod conditions:
an eviction marks its pod before deleting it, and a pod still not being
deleted two minutes later gets the condition set back to False.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from timoner.api.disruption import (
    DELETION_TIMEOUT,
    DISRUPTION_ALLOWED,
    DISRUPTION_TARGET,
    SYNC_FAILED,
    conditions_up_to_date,
    is_pod_ready,
    scaled_value,
    set_status_condition,
    update_disruption_allowed_condition,
)
from timoner.api.errors import APIError, Conflict, NotFound
from timoner.api.selectors import label_selector_from_dict
from timoner.client import Client, EventRecorder, Informer, Resource, resource_for

from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._pods import now_rfc3339, parse_time

__all__ = [
    "BudgetSize",
    "DisruptedPods",
    "DisruptionReconciler",
    "StalePodDisruptionReconciler",
    "budget_size",
    "budget_status",
    "count_healthy",
    "disrupted_pods",
    "new_disruption_controller",
    "new_stale_pod_disruption_controller",
    "stale_disruption_wait",
    "uses_scale",
]

log = logging.getLogger("timoner.controllers.disruption")

Obj = dict[str, Any]

PDBS = resource_for("policy/v1", "PodDisruptionBudget")
PODS = resource_for("v1", "Pod")
REPLICA_SETS = resource_for("apps/v1", "ReplicaSet")
REPLICATION_CONTROLLERS = resource_for("v1", "ReplicationController")
DEPLOYMENTS = resource_for("apps/v1", "Deployment")
STATEFUL_SETS = resource_for("apps/v1", "StatefulSet")

COMPONENT = "controllermanager"  # upstream's event source for this controller
STALE_POD_DISRUPTION_TIMEOUT = 120.0
TERMINATION_BY_KUBELET = "TerminationByKubelet"


# -- the arithmetic (pure) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetSize:
    """How many pods a budget expects and how many of them must stay healthy."""

    expected: int
    desired: int


def uses_scale(spec: Mapping[str, Any]) -> bool:
    """Whether the budget needs its pods' controllers' scale: `maxUnavailable`, or `minAvailable` as a percentage."""
    if spec.get("maxUnavailable") is not None:
        return True
    min_available = spec.get("minAvailable")
    return min_available is not None and not isinstance(min_available, int)


def budget_size(spec: Mapping[str, Any], *, pod_count: int, scale: int) -> BudgetSize:
    """`expectedPods` and `desiredHealthy` (upstream's getExpectedPodCount); `scale` matters only when `uses_scale`.

    Percentages round up: `minAvailable: 50%` of 3 wants 2 healthy, `maxUnavailable: 50%` of 3 allows 2 down.
    A spec with neither field expects nothing, so it allows no disruption. ValueError for a malformed value.
    """
    max_unavailable = spec.get("maxUnavailable")
    min_available = spec.get("minAvailable")
    if max_unavailable is not None:
        unavailable = scaled_value(max_unavailable, scale, round_up=True)
        return BudgetSize(scale, max(0, scale - unavailable))
    if min_available is not None:
        if isinstance(min_available, int):
            return BudgetSize(pod_count, min_available)
        return BudgetSize(scale, scaled_value(min_available, scale, round_up=True))
    return BudgetSize(0, 0)


@dataclass(frozen=True, slots=True)
class DisruptedPods:
    """What is left of a budget's `disruptedPods` after a look at its pods."""

    kept: dict[str, str]  # pod name -> when the eviction was approved (RFC 3339)
    recheck_at: float | None  # when the earliest kept entry expires (epoch seconds)
    expired: list[Obj] = field(default_factory=list)  # pods evicted long ago and still not being deleted


def disrupted_pods(pods: Iterable[Obj], recorded: Mapping[str, str] | None, now: float) -> DisruptedPods:
    """Upstream's buildDisruptedPodMap: keep the entries of pods not yet being deleted, for DELETION_TIMEOUT."""
    kept: dict[str, str] = {}
    expired: list[Obj] = []
    recheck_at: float | None = None
    if not recorded:
        return DisruptedPods(kept, None, expired)
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue  # the eviction's delete happened
        when = recorded.get(meta.get("name", ""))
        if when is None:
            continue
        since = parse_time(when)
        expected_deletion = (since if since is not None else 0.0) + DELETION_TIMEOUT
        if expected_deletion < now:
            expired.append(pod)
            continue
        kept[meta["name"]] = when
        if recheck_at is None or expected_deletion < recheck_at:
            recheck_at = expected_deletion
    return DisruptedPods(kept, recheck_at, expired)


def count_healthy(pods: Iterable[Obj], disrupted: Mapping[str, str], now: float) -> int:
    """Ready pods that are neither being deleted nor evicted within DELETION_TIMEOUT (upstream's countHealthyPods)."""
    healthy = 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        when = disrupted.get(meta.get("name", ""))
        if when is not None:
            since = parse_time(when)
            if since is not None and since + DELETION_TIMEOUT > now:
                continue
        if is_pod_ready(pod):
            healthy += 1
    return healthy


def budget_status(pdb: Mapping[str, Any], *, current_healthy: int, size: BudgetSize, disrupted: Mapping[str, str],
                  now: str) -> Obj | None:
    """The status the budget should have, or None when it has it already (upstream's updatePdbStatus)."""
    old = pdb.get("status") or {}
    generation = int((pdb.get("metadata") or {}).get("generation") or 0)
    allowed = current_healthy - size.desired
    if size.expected <= 0 or allowed <= 0:
        # A budget matching no pod yet stays safe when its first pods appear before the next sync.
        allowed = 0
    if (int(old.get("currentHealthy") or 0) == current_healthy
            and int(old.get("desiredHealthy") or 0) == size.desired
            and int(old.get("expectedPods") or 0) == size.expected
            and int(old.get("disruptionsAllowed") or 0) == allowed
            and (old.get("disruptedPods") or {}) == dict(disrupted)
            and int(old.get("observedGeneration") or 0) == generation
            and conditions_up_to_date(pdb)):
        return None
    status: Obj = {"currentHealthy": current_healthy, "desiredHealthy": size.desired,
                   "disruptionsAllowed": allowed, "expectedPods": size.expected, "observedGeneration": generation,
                   "conditions": copy.deepcopy(list(old.get("conditions") or ()))}
    if disrupted:
        status["disruptedPods"] = dict(disrupted)
    update_disruption_allowed_condition(status, now)
    return status


def fail_safe_status(pdb: Mapping[str, Any], error: BaseException, now: str) -> Obj:
    """The status of a budget whose sync failed: no disruption allowed, `DisruptionAllowed` False with SyncFailed."""
    status: Obj = copy.deepcopy(dict(pdb.get("status") or {}))
    for name in ("currentHealthy", "desiredHealthy", "expectedPods"):
        status.setdefault(name, 0)
    status["disruptionsAllowed"] = 0
    set_status_condition(status.setdefault("conditions", []), {
        "type": DISRUPTION_ALLOWED, "status": "False", "reason": SYNC_FAILED, "message": str(error),
        "observedGeneration": int(status.get("observedGeneration") or 0)}, now)
    return status


def stale_disruption_wait(pod: Mapping[str, Any], now: float, timeout: float = STALE_POD_DISRUPTION_TIMEOUT
                          ) -> float | None:
    """Seconds until the pod's DisruptionTarget condition counts as stale (0: now); None if it never will.

    Only a True condition on a pod neither being deleted nor finished, not set by the kubelet, goes stale.
    """
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    condition = next((c for c in status.get("conditions") or () if c.get("type") == DISRUPTION_TARGET), None)
    if condition is None or condition.get("status") != "True" or condition.get("reason") == TERMINATION_BY_KUBELET:
        return None
    since = parse_time(condition.get("lastTransitionTime")) or 0.0
    return max(0.0, timeout - (now - since))


# -- finding the pods' controllers and their scale ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scale:
    uid: str
    replicas: int


Finder = Callable[[Obj, str], Awaitable[_Scale | None]]


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


class DisruptionReconciler:
    """Computes and writes PodDisruptionBudget status; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.pdbs: Informer = informers.get(PDBS)
        self.pods: Informer = informers.get(PODS)
        self.replica_sets: Informer = informers.get(REPLICA_SETS)
        self.replication_controllers: Informer = informers.get(REPLICATION_CONTROLLERS)
        self.deployments: Informer = informers.get(DEPLOYMENTS)
        self.stateful_sets: Informer = informers.get(STATEFUL_SETS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.now = wall_clock
        # Upstream's order: the caches first, the scale subresource last.
        self.finders: list[Finder] = [self._replication_controller, self._deployment, self._replica_set,
                                      self._stateful_set, self._scale_subresource]

    # -- informer changes to requests ------------------------------------------------------

    def on_pod(self, change: Change) -> list[Request]:
        """The budgets selecting the pod (before and after a label change)."""
        requests: list[Request] = []
        for pod in (change.old, change.obj):
            if pod is None:
                continue
            meta = pod.get("metadata") or {}
            for pdb in self.pdbs.lister.list(meta.get("namespace", "")):
                try:
                    selector = label_selector_from_dict((pdb.get("spec") or {}).get("selector"))
                except APIError:
                    continue
                request = Request.of(pdb)
                if selector.matches(meta.get("labels")) and request not in requests:
                    requests.append(request)
        return requests

    # -- one sync ---------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        cached = self.pdbs.lister.get(request.namespace, request.name)
        if cached is None:
            return Result()
        pdb = {**cached, "apiVersion": "policy/v1", "kind": "PodDisruptionBudget"}
        try:
            recheck_at = await self._try_sync(pdb)
        except Conflict:
            raise  # a newer budget or pod exists: sync again, no fail-safe needed
        except (APIError, ValueError) as exc:
            log.warning("disruption: syncing %s failed: %s", request, exc)
            await self._write_status(pdb, fail_safe_status(pdb, exc, now_rfc3339(self.now())))
            return Result(requeue=True)
        if recheck_at is not None:
            return Result(requeue_after=max(0.1, recheck_at - self.now() + 0.1))
        return Result()

    async def _try_sync(self, pdb: Obj) -> float | None:
        namespace = pdb["metadata"]["namespace"]
        spec = pdb.get("spec") or {}
        try:
            selector = label_selector_from_dict(spec.get("selector"))
        except APIError as exc:
            await self.recorder.event(pdb, "Warning", "NoPods", f"Failed to get pods: {exc}")
            raise
        pods = self.pods.lister.list(namespace, selector)
        if not pods:
            await self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        try:
            scale, unmanaged = await self._expected_scale(pods) if uses_scale(spec) else (0, [])
            size = budget_size(spec, pod_count=len(pods), scale=scale)
        except (APIError, ValueError) as exc:
            if isinstance(exc, Conflict):
                raise
            await self.recorder.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                      f"Failed to calculate the number of expected pods: {exc}")
            raise
        if unmanaged:
            await self.recorder.event(
                pdb, "Warning", "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. "
                "As a result, the status of the PDB cannot be calculated correctly, which may result in undefined "
                'behavior. To account for these pods please set ".spec.minAvailable" field of the PDB to an '
                "integer value.")
        now = self.now()
        disrupted = disrupted_pods(pods, (pdb.get("status") or {}).get("disruptedPods"), now)
        for pod in disrupted.expired:
            log.info("disruption: pod %s/%s was expected to be deleted but it wasn't", namespace,
                     pod["metadata"]["name"])
            await self.recorder.event(pod, "Warning", "NotDeleted",
                                      f"Pod was expected by PDB {namespace}/{pdb['metadata']['name']} to be "
                                      "deleted but it wasn't", kind="Pod", api_version="v1")
        status = budget_status(pdb, current_healthy=count_healthy(pods, disrupted.kept, now), size=size,
                               disrupted=disrupted.kept, now=now_rfc3339(now))
        if status is not None:
            await self._write_status(pdb, status)
        return disrupted.recheck_at

    async def _write_status(self, pdb: Obj, status: Obj) -> None:
        # Conditional on the cached resourceVersion: a concurrent eviction's decrement wins, and we sync again.
        await self.client.update(PDBS, {**pdb, "status": status}, subresource="status")

    async def _expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """The sum of the scales of the pods' controllers, and the names of pods without one."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            for finder in self.finders:
                found = await finder(ref, pod["metadata"]["namespace"])
                if found is not None:
                    scales[found.uid] = found.replicas
                    break
            else:
                raise ValueError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
        return sum(scales.values()), unmanaged

    # -- the finders, as upstream's: each answers for its kind, or None ----------------------------

    @staticmethod
    def _cached(informer: Informer, ref: Obj, namespace: str) -> Obj | None:
        obj = informer.lister.get(namespace, ref.get("name", ""))
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            return None
        return obj

    async def _replication_controller(self, ref: Obj, namespace: str) -> _Scale | None:
        if ref.get("kind") != "ReplicationController" or _group(ref.get("apiVersion", "")) != "":
            return None
        rc = self._cached(self.replication_controllers, ref, namespace)
        return _Scale(rc["metadata"]["uid"], _replicas(rc)) if rc is not None else None

    async def _deployment(self, ref: Obj, namespace: str) -> _Scale | None:
        if ref.get("kind") != "ReplicaSet" or _group(ref.get("apiVersion", "")) not in ("apps", "extensions"):
            return None
        rs = self._cached(self.replica_sets, ref, namespace)
        owner = controller_ref(rs) if rs is not None else None
        if owner is None or owner.get("kind") != "Deployment" or _group(owner.get("apiVersion", "")) not in (
                "apps", "extensions"):
            return None
        deployment = self._cached(self.deployments, owner, namespace)
        return _Scale(deployment["metadata"]["uid"], _replicas(deployment)) if deployment is not None else None

    async def _replica_set(self, ref: Obj, namespace: str) -> _Scale | None:
        if ref.get("kind") != "ReplicaSet" or _group(ref.get("apiVersion", "")) not in ("apps", "extensions"):
            return None
        rs = self._cached(self.replica_sets, ref, namespace)
        if rs is None or (controller_ref(rs) or {}).get("kind") == "Deployment":
            return None  # a Deployment's ReplicaSet counts through its Deployment
        return _Scale(rs["metadata"]["uid"], _replicas(rs))

    async def _stateful_set(self, ref: Obj, namespace: str) -> _Scale | None:
        if ref.get("kind") != "StatefulSet" or _group(ref.get("apiVersion", "")) != "apps":
            return None
        sts = self._cached(self.stateful_sets, ref, namespace)
        return _Scale(sts["metadata"]["uid"], _replicas(sts)) if sts is not None else None

    async def _scale_subresource(self, ref: Obj, namespace: str) -> _Scale | None:
        api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
        resource = await self._resource_of(api_version, kind)
        try:
            scale = await self.client.get(resource, ref.get("name", ""), namespace=namespace, subresource="scale")
        except NotFound:
            # Either the object is gone, or its kind has no scale subresource: only the first is fine.
            if not await self._has_scale(resource):
                group = f".{resource.group}" if resource.group else ""
                raise ValueError(f"{resource.plural}{group} does not implement the scale subresource") from None
            return None
        if (scale.get("metadata") or {}).get("uid") != ref.get("uid"):
            return None
        return _Scale(scale["metadata"]["uid"], int((scale.get("spec") or {}).get("replicas") or 0))

    async def _discovery(self, api_version: str) -> list[Obj]:
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        return list((await self.client.request("GET", path) or {}).get("resources") or ())

    async def _resource_of(self, api_version: str, kind: str) -> Resource:
        """The REST resource of a kind (upstream's RESTMapper): built in, or found through discovery."""
        try:
            return resource_for(api_version, kind)
        except KeyError:
            pass
        group, _, version = api_version.rpartition("/")
        for entry in await self._discovery(api_version):
            if entry.get("kind") == kind and "/" not in entry.get("name", ""):
                return Resource(group, version, entry["name"], bool(entry.get("namespaced")))
        raise ValueError(f'no matches for kind "{kind}" in version "{api_version}"')

    async def _has_scale(self, resource: Resource) -> bool:
        wanted = f"{resource.plural}/scale"
        return any(entry.get("name") == wanted and entry.get("kind") == "Scale"
                   for entry in await self._discovery(resource.group_version))


class StalePodDisruptionReconciler:
    """Sets a pod's stale DisruptionTarget condition back to False (see the module docstring)."""

    def __init__(self, client: Client, informers: SharedInformers, *, timeout: float = STALE_POD_DISRUPTION_TIMEOUT,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.pods: Informer = informers.get(PODS)
        self.timeout = timeout
        self.now = wall_clock
        self.controller: Controller | None = None

    def on_pod(self, change: Change) -> list[Request]:
        if change.type == "delete":
            return []
        wait = stale_disruption_wait(change.obj, self.now(), self.timeout)
        if wait is None:
            return []
        if wait > 0 and self.controller is not None:
            self.controller.enqueue(Request.of(change.obj), after=wait)
            return []
        return [Request.of(change.obj)]

    async def reconcile(self, request: Request) -> Result:
        pod = self.pods.lister.get(request.namespace, request.name)
        if pod is None:
            return Result()
        now = self.now()
        wait = stale_disruption_wait(pod, now, self.timeout)
        if wait is None:
            return Result()
        if wait > 0:
            return Result(requeue_after=wait)
        status = copy.deepcopy(pod.get("status") or {})
        status["conditions"] = [
            {"type": DISRUPTION_TARGET, "status": "False", "lastProbeTime": None,
             "lastTransitionTime": now_rfc3339(now)} if c.get("type") == DISRUPTION_TARGET else c
            for c in status.get("conditions") or ()]
        await self.client.update(PODS, {**pod, "apiVersion": "v1", "kind": "Pod", "status": status},
                                 subresource="status")
        log.info("disruption: reset the stale DisruptionTarget condition of pod %s to False", request)
        return Result()


def new_disruption_controller(client: Client, informers: SharedInformers, *, workers: int = 1,
                              recorder: EventRecorder | None = None) -> Controller:
    """A Controller that keeps every PodDisruptionBudget's status (`disruption` in kube-controller-manager)."""
    reconciler = DisruptionReconciler(client, informers, recorder=recorder)
    controller = Controller("disruption-controller", reconciler, workers=workers)
    controller.for_(reconciler.pdbs)
    controller.watches(reconciler.pods, reconciler.on_pod)
    return controller


def new_stale_pod_disruption_controller(client: Client, informers: SharedInformers, *,
                                        timeout: float = STALE_POD_DISRUPTION_TIMEOUT) -> Controller:
    """A Controller that clears DisruptionTarget conditions left on pods that were never deleted."""
    reconciler = StalePodDisruptionReconciler(client, informers, timeout=timeout)
    controller = Controller("disruption-stale-pod-controller", reconciler)
    reconciler.controller = controller
    controller.watches(reconciler.pods, reconciler.on_pod)
    return controller
