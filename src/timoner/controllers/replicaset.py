"""The ReplicaSet controller (and the ReplicationController one, the same code on the older kind).

One reconcile of a ReplicaSet, as upstream's `syncReplicaSet`:

1. Take the active pods of its namespace (not finished, not being
   deleted) and *claim* them: adopt orphans that match the selector,
   release owned pods that no longer match (`_refs.ClaimManager`).
2. Unless the expectations of an earlier sync are still pending (the pod
   informer has not yet shown our own creates and deletes), create or
   delete pods toward `spec.replicas`: creates in slow-start batches (1, 2,
   4, ...; at most 500 per sync), deletes of the pods ranked first by
   `rank_pods_for_deletion`. Each create and delete is an Event on the
   ReplicaSet (SuccessfulCreate, FailedCreate, SuccessfulDelete,
   FailedDelete).
3. Write the status: replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas (ready for `minReadySeconds`), observedGeneration and
   the ReplicaFailure condition (set while creates or deletes fail).

A ready pod that is not yet available brings its ReplicaSet back when
`minReadySeconds` have passed, so availability is noticed without another
event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import APIError, Conflict, NotFound
from timoner.api.selectors import LabelSelector, label_selector_from_dict
from timoner.client import Client, Clock, EventRecorder, Informer, Resource, resource_for

from ._expectations import Expectations
from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._pods import (
    is_active,
    is_available,
    is_ready,
    now_rfc3339,
    parse_time,
    pod_from_template,
    rank_pods_for_deletion,
    ready_condition,
    slow_start_batch,
)
from ._refs import ClaimManager, new_controller_ref, resolve_controller_ref, selecting_controllers

__all__ = ["BURST_REPLICAS", "REPLICA_SET", "REPLICATION_CONTROLLER", "ReplicaSetReconciler", "ReplicatedKind",
           "new_replicaset_controller"]

log = logging.getLogger("timoner.controllers.replicaset")

Obj = dict[str, Any]

PODS = resource_for("v1", "Pod")
BURST_REPLICAS = 500  # upstream's burstReplicas: the most pods created or deleted in one sync
REPLICA_FAILURE = "ReplicaFailure"


@dataclass(frozen=True, slots=True)
class ReplicatedKind:
    """What differs between ReplicaSets and ReplicationControllers: the resource, the names, the selector."""

    resource: Resource
    api_version: str
    kind: str
    component: str
    map_selector: bool  # a plain label map (ReplicationController) instead of a LabelSelector

    def selector(self, obj: Obj) -> LabelSelector:
        spec = obj.get("spec") or {}
        if self.map_selector:
            return label_selector_from_dict({"matchLabels": spec.get("selector") or {}})
        return label_selector_from_dict(spec.get("selector"))

    def with_type(self, obj: Obj) -> Obj:
        """`obj` with apiVersion and kind set (list items need not carry them)."""
        return {**obj, "apiVersion": self.api_version, "kind": self.kind}


REPLICA_SET = ReplicatedKind(resource_for("apps/v1", "ReplicaSet"), "apps/v1", "ReplicaSet",
                             "replicaset-controller", False)
REPLICATION_CONTROLLER = ReplicatedKind(resource_for("v1", "ReplicationController"), "v1", "ReplicationController",
                                        "replication-controller", True)


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta['name']}"


def calculate_status(rs: Obj, pods: list[Obj], manage_error: BaseException | None, *, now: float) -> Obj:
    """The status a ReplicaSet should have given its claimed active pods (upstream's calculateStatus)."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully_labeled = ready = available = 0
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if is_ready(pod):
            ready += 1
            if is_available(pod, min_ready, now):
                available += 1
    old = rs.get("status") or {}
    conditions = [dict(c) for c in old.get("conditions") or ()]
    failure = next((c for c in conditions if c.get("type") == REPLICA_FAILURE), None)
    if manage_error is not None and failure is None:
        diff = len(pods) - int(spec.get("replicas", 1))
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conditions.append({"type": REPLICA_FAILURE, "status": "True", "lastTransitionTime": now_rfc3339(now),
                           "reason": reason, "message": str(manage_error)})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != REPLICA_FAILURE]
    status: Obj = {"replicas": len(pods)}
    for name, value in (("fullyLabeledReplicas", fully_labeled), ("readyReplicas", ready),
                        ("availableReplicas", available)):
        if value:
            status[name] = value
    if old.get("observedGeneration"):
        status["observedGeneration"] = old["observedGeneration"]
    if conditions:
        status["conditions"] = conditions
    return status


class ReplicaSetReconciler:
    """Reconciles ReplicaSets (or ReplicationControllers) toward `spec.replicas`; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, kind: ReplicatedKind = REPLICA_SET,
                 recorder: EventRecorder | None = None, burst_replicas: int = BURST_REPLICAS,
                 clock: Clock | None = None, wall_clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.kind = kind
        self.sets: Informer = informers.get(kind.resource)
        self.pods: Informer = informers.get(PODS)
        self.recorder = recorder or EventRecorder(client, component=kind.component)
        self.burst_replicas = burst_replicas
        self.expectations = Expectations(clock=clock)
        self.now = wall_clock
        self.controller: Controller | None = None

    # -- informer changes to requests ------------------------------------------------------

    def on_set(self, change: Change) -> Iterable[Request]:
        if change.type == "delete":
            self.expectations.delete(_key(change.obj))
        return (Request.of(change.obj),)

    def on_pod(self, change: Change) -> list[Request]:
        pod, old = change.obj, change.old
        if change.type == "delete":
            return self._pod_gone(pod)
        if change.type == "add":
            if pod["metadata"].get("deletionTimestamp"):
                return self._pod_gone(pod)
            ref = controller_ref(pod)
            if ref is not None:
                rs = self._resolve(pod, ref)
                if rs is None:
                    return []
                self.expectations.creation_observed(_key(rs))
                return [Request.of(rs)]
            return [Request.of(rs) for rs in self._matching_sets(pod)]
        assert old is not None
        if pod["metadata"].get("resourceVersion") == old["metadata"].get("resourceVersion"):
            return []
        labels_changed = pod["metadata"].get("labels") != old["metadata"].get("labels")
        if pod["metadata"].get("deletionTimestamp"):
            requests = self._pod_gone(pod)
            if labels_changed:
                requests += self._pod_gone(old)
            return requests
        ref, old_ref = controller_ref(pod), controller_ref(old)
        ref_changed = ref != old_ref
        requests: list[Request] = []
        if ref_changed and old_ref is not None:
            owner = self._resolve(old, old_ref)
            if owner is not None:
                requests.append(Request.of(owner))
        if ref is not None:
            rs = self._resolve(pod, ref)
            if rs is None:
                return requests
            requests.append(Request.of(rs))
            min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready and not is_ready(old) and is_ready(pod) and self.controller is not None:
                self.controller.enqueue(Request.of(rs), after=min_ready + 0.1)
            return requests
        if labels_changed or ref_changed:
            requests += [Request.of(rs) for rs in self._matching_sets(pod)]
        return requests

    def _pod_gone(self, pod: Obj) -> list[Request]:
        ref = controller_ref(pod)
        if ref is None:
            return []
        rs = self._resolve(pod, ref)
        if rs is None:
            return []
        self.expectations.deletion_observed(_key(rs), _key(pod))
        return [Request.of(rs)]

    def _resolve(self, pod: Obj, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.sets.lister, pod["metadata"].get("namespace"), ref, kind=self.kind.kind)

    def _matching_sets(self, pod: Obj) -> list[Obj]:
        return selecting_controllers(self.sets.lister, pod, selector=self.kind.selector)

    # -- one sync ------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        key = f"{request.namespace}/{request.name}"
        cached = self.sets.lister.get(request.namespace, request.name)
        if cached is None:
            self.expectations.delete(key)
            return Result()
        rs = self.kind.with_type(cached)
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = self.kind.selector(rs)
        except APIError as exc:
            log.warning("%s %s has an invalid selector: %s", self.kind.kind, key, exc)
            return Result()
        active = [pod for pod in self.pods.lister.list(request.namespace) if is_active(pod)]
        claims = ClaimManager(self.client, PODS, rs, selector, fetch_owner=self._fetch(request))
        pods = await claims.claim(active)
        manage_error: BaseException | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                await self._manage_replicas(pods, rs, key)
            except APIError as exc:
                manage_error = exc
        now = self.now()
        status = calculate_status(rs, pods, manage_error, now=now)
        await self._update_status(rs, status)
        if manage_error is not None:
            raise manage_error
        return Result(requeue_after=self._next_available(rs, pods, now))

    def _fetch(self, request: Request) -> Callable[[], Any]:
        async def fetch() -> Obj:
            return await self.client.get(self.kind.resource, request.name, namespace=request.namespace)
        return fetch

    def _next_available(self, rs: Obj, pods: list[Obj], now: float) -> float:
        """Seconds until the next ready pod becomes available (0: none is waiting)."""
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if not min_ready:
            return 0.0
        waits = []
        for pod in pods:
            if is_ready(pod) and not is_available(pod, min_ready, now):
                since = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
                if since is not None:
                    waits.append(since + min_ready - now)
        return max(0.1, min(waits) + 0.1) if waits else 0.0

    async def _manage_replicas(self, pods: list[Obj], rs: Obj, key: str) -> None:
        namespace = rs["metadata"]["namespace"]
        diff = len(pods) - int((rs.get("spec") or {}).get("replicas", 1))
        if diff < 0:
            count = min(-diff, self.burst_replicas)
            self.expectations.expect_creations(key, count)
            log.info("%s %s: too few replicas, need %d, creating %d", self.kind.kind, key,
                     rs["spec"].get("replicas", 1), count)
            ref = new_controller_ref(rs)

            async def create() -> None:
                pod = pod_from_template(rs["spec"].get("template") or {}, rs, ref)
                try:
                    created = await self.client.create(PODS, pod, namespace=namespace)
                except APIError as exc:
                    await self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {exc}")
                    raise
                await self.recorder.event(rs, "Normal", "SuccessfulCreate",
                                          f"Created pod: {created['metadata']['name']}")

            successes, error = await slow_start_batch(count, 1, create)
            # Creates we never made will never be observed; stop waiting for them.
            for _ in range(count - successes):
                self.expectations.creation_observed(key)
            if error is not None:
                if isinstance(error, APIError) and any(c.reason == "NamespaceTerminating" for c in error.causes):
                    return
                raise error
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            log.info("%s %s: too many replicas, need %d, deleting %d", self.kind.kind, key,
                     rs["spec"].get("replicas", 1), count)
            victims = pods
            if count < len(pods):
                victims = rank_pods_for_deletion(pods, self._related_pods(rs), now=self.now())[:count]
            self.expectations.expect_deletions(key, [_key(pod) for pod in victims])
            errors = []
            for pod in victims:  # sequential: deletes are cheap and ordered logs read better
                try:
                    await self.client.delete(PODS, pod["metadata"]["name"], namespace=namespace)
                except NotFound:
                    self.expectations.deletion_observed(key, _key(pod))
                    continue
                except APIError as exc:
                    self.expectations.deletion_observed(key, _key(pod))
                    await self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {exc}")
                    errors.append(exc)
                    continue
                await self.recorder.event(rs, "Normal", "SuccessfulDelete",
                                          f"Deleted pod: {pod['metadata']['name']}")
            if errors:
                raise errors[0]

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of the ReplicaSets that share this one's controller (all of a Deployment's revisions)."""
        namespace = rs["metadata"]["namespace"]
        owner = controller_ref(rs)
        if owner is None:
            uids = {rs["metadata"]["uid"]}
        else:
            uids = {other["metadata"]["uid"] for other in self.sets.lister.list(namespace)
                    if (controller_ref(other) or {}).get("uid") == owner.get("uid")}
            uids.add(rs["metadata"]["uid"])
        return [pod for pod in self.pods.lister.list(namespace) if (controller_ref(pod) or {}).get("uid") in uids]

    async def _update_status(self, rs: Obj, status: Obj) -> Obj:
        generation = rs["metadata"].get("generation", 0)
        old = rs.get("status") or {}
        fields = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas")
        if (all(int(old.get(f) or 0) == int(status.get(f) or 0) for f in fields)
                and old.get("conditions") == status.get("conditions")
                and old.get("observedGeneration") == generation):
            return rs
        status = {**status, "observedGeneration": generation}
        for attempt in range(2):
            try:
                return await self.client.update(self.kind.resource, {**rs, "status": status}, subresource="status")
            except Conflict:
                if attempt:
                    raise
                rs = self.kind.with_type(await self.client.get(self.kind.resource, rs["metadata"]["name"],
                                                               namespace=rs["metadata"]["namespace"]))
        return rs


def new_replicaset_controller(client: Client, informers: SharedInformers, *, kind: ReplicatedKind = REPLICA_SET,
                              workers: int = 5, clock: Clock | None = None,
                              recorder: EventRecorder | None = None) -> Controller:
    """A Controller for ReplicaSets (or, with `kind=REPLICATION_CONTROLLER`, ReplicationControllers)."""
    reconciler = ReplicaSetReconciler(client, informers, kind=kind, clock=clock, recorder=recorder)
    controller = Controller(kind.component, reconciler, workers=workers, clock=clock)
    reconciler.controller = controller
    controller.watches(reconciler.sets, reconciler.on_set)
    controller.watches(reconciler.pods, reconciler.on_pod)
    return controller
