"""The DaemonSet controller: one pod on every eligible node, rolled forward node by node.

One reconcile of a DaemonSet, as upstream's `syncDaemonSet` (1.32):

1. History: claim its ControllerRevisions; the one whose data is the
   current template is *current* (created as `<name>-<hash>`, labelled
   `controller-revision-hash`, when missing; renumbered to the newest
   number after a rollback; duplicates merged), the others are *old*.
2. Unless the expectations of an earlier sync are pending, *manage*: for
   each node (`_daemon_util.node_should_run`) create the missing daemon
   pod, delete failed ones (with a per-node backoff, 1 s doubling to 15
   min, and a `FailedDaemonPod` event), delete surplus ones (the oldest
   stays; with `maxSurge` an old and a new one may overlap until the new
   one is available) and delete pods from nodes that may not keep them.
   Pods are created unscheduled, `generateName: <name>-`, with a required
   node affinity `metadata.name In [<node>]` that the scheduler honours, in
   slow-start batches; creates and deletes are expected (`Expectations`).
3. `RollingUpdate` (when nothing is pending): without surge, delete old
   pods while fewer than `maxUnavailable` daemon pods are unavailable
   (unavailable old pods first), and `manage` recreates them at the new
   revision; with `maxSurge`, create new pods beside available old ones
   (at most `maxSurge` at a time) and delete an old pod once its new one
   is available. `OnDelete` only replaces what users delete.
4. Old revisions beyond `revisionHistoryLimit` that no pod uses are
   deleted, lowest revision first.
5. Status: desiredNumberScheduled, currentNumberScheduled,
   numberMisscheduled, numberReady, numberAvailable, numberUnavailable,
   updatedNumberScheduled and (once managed) observedGeneration.

Nodes drive reconciles: a new node enqueues every DaemonSet that should
run there, a change of labels or taints every DaemonSet whose eligibility
on it changed, a deleted node every DaemonSet (upstream waits for the pod
garbage collector's deletes instead).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import AlreadyExists, APIError, Conflict, NotFound
from timoner.api.selectors import label_selector_from_dict
from timoner.client import Client, Clock, EventRecorder, Informer, resource_for

from . import _daemon_util as du
from . import _history as history
from ._expectations import Expectations
from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._pods import is_available, is_ready, slow_start_batch
from ._refs import ClaimManager, new_controller_ref, resolve_controller_ref, selecting_controllers

__all__ = ["DAEMON_SETS", "NODES", "DaemonSetReconciler", "new_daemonset_controller"]

log = logging.getLogger("timoner.controllers.daemonset")

Obj = dict[str, Any]

DAEMON_SETS = resource_for("apps/v1", "DaemonSet")
PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")
COMPONENT = "daemonset-controller"
BURST_REPLICAS = 250
HASH = history.REVISION_HASH_LABEL


def _typed(obj: Obj) -> Obj:
    return {**copy.deepcopy(obj), "apiVersion": "apps/v1", "kind": "DaemonSet"}


def _name(obj: Obj) -> str:
    return obj["metadata"]["name"]


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


@dataclass(frozen=True, slots=True)
class _Plan:
    """What `manage` (or a rolling update) asks of `_sync_nodes`."""

    create_on: list[str]
    delete: list[Obj]


class DaemonSetReconciler:
    """Reconciles DaemonSets against the nodes; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None,
                 burst_replicas: int = BURST_REPLICAS, clock: Clock | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.sets: Informer = informers.get(DAEMON_SETS)
        self.pods: Informer = informers.get(PODS)
        self.nodes: Informer = informers.get(NODES)
        self.revisions: Informer = informers.get(history.CONTROLLER_REVISIONS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.burst_replicas = burst_replicas
        self.expectations = Expectations(clock=clock)
        self.backoff = du.FailedPodBackoff()
        self.now = wall_clock
        self.controller: Controller | None = None

    # -- informer changes to requests ------------------------------------------------------------

    def on_set(self, change: Change) -> list[Request]:
        if change.type == "delete":
            self.expectations.delete(_key(change.obj))
        return [Request.of(change.obj)]

    def on_pod(self, change: Change) -> list[Request]:
        pod, old = change.obj, change.old
        if change.type == "delete" or (change.type == "add" and pod["metadata"].get("deletionTimestamp")):
            return self._pod_gone(pod)
        if change.type == "add":
            ds = self._resolve(pod)
            if ds is not None:
                self.expectations.creation_observed(_key(ds))
                return [Request.of(ds)]
            return self._matching_sets(pod) if controller_ref(pod) is None else []
        assert old is not None
        if pod["metadata"].get("resourceVersion") == old["metadata"].get("resourceVersion"):
            return []
        if pod["metadata"].get("deletionTimestamp"):
            return self._pod_gone(pod)
        ref, old_ref = controller_ref(pod), controller_ref(old)
        requests: list[Request] = []
        if ref != old_ref and old_ref is not None:
            owner = self._resolve(old)
            if owner is not None:
                requests.append(Request.of(owner))
        if ref is not None:
            ds = self._resolve(pod)
            if ds is None:
                return requests
            min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready and not is_ready(old) and is_ready(pod) and self.controller is not None:
                self.controller.enqueue(Request.of(ds), after=min_ready + 1.0)
            return [*requests, Request.of(ds)]
        if ref != old_ref or pod["metadata"].get("labels") != old["metadata"].get("labels"):
            requests += self._matching_sets(pod)
        return requests

    def _pod_gone(self, pod: Obj) -> list[Request]:
        ds = self._resolve(pod)
        if ds is None:
            return []
        self.expectations.deletion_observed(_key(ds), _key(pod))
        return [Request.of(ds)]

    def on_revision(self, change: Change) -> list[Request]:
        requests = []
        for obj in (change.obj, change.old):
            if obj is None:
                continue
            ds = self._resolve(obj)
            if ds is not None:
                requests.append(Request.of(ds))
            elif controller_ref(obj) is None and change.type != "delete":
                requests += self._matching_sets(obj)
        return requests

    def on_node(self, change: Change) -> list[Request]:
        node, old = change.obj, change.old
        sets = self.sets.lister.list()
        if change.type == "delete":
            return [Request.of(ds) for ds in sets]
        if change.type == "add":
            return [Request.of(ds) for ds in sets if du.node_should_run(node, ds)[0]]
        assert old is not None
        if (node["metadata"].get("labels") == old["metadata"].get("labels")
                and (node.get("spec") or {}).get("taints") == (old.get("spec") or {}).get("taints")):
            return []
        return [Request.of(ds) for ds in sets if du.node_should_run(old, ds) != du.node_should_run(node, ds)]

    def _resolve(self, obj: Obj) -> Obj | None:
        return resolve_controller_ref(self.sets.lister, obj["metadata"].get("namespace"), controller_ref(obj),
                                      kind="DaemonSet", group="apps")

    def _matching_sets(self, obj: Obj) -> list[Request]:
        return [Request.of(ds) for ds in selecting_controllers(self.sets.lister, obj)]

    # -- one sync ---------------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        key = f"{request.namespace}/{request.name}"
        cached = self.sets.lister.get(request.namespace, request.name)
        if cached is None:
            self.expectations.delete(key)
            return Result()
        ds = _typed(cached)
        if ds["spec"].get("selector") == {}:
            await self.recorder.event(ds, "Warning", "SelectingAll",
                                      "This daemon set is selecting all pods. A non-empty selector is required.")
            return Result()
        try:
            selector = label_selector_from_dict(ds["spec"].get("selector"))
        except APIError as exc:
            log.warning("daemonset %s has an invalid selector: %s", key, exc)
            return Result()
        if ds["metadata"].get("deletionTimestamp"):
            # Its pods and revisions may be going already: no status can be trusted now (as upstream).
            return Result()
        nodes = self.nodes.lister.list()
        fetch = self._fetch(request)
        current, old = await self._construct_history(ds, selector, fetch)
        hash_ = (current["metadata"].get("labels") or {}).get(HASH, "")
        pods = await ClaimManager(self.client, PODS, ds, selector, fetch_owner=fetch).claim(
            self.pods.lister.list(request.namespace))
        by_node = du.pods_by_node(pods)
        if not self.expectations.satisfied(key):
            return self._requeue(ds, await self._update_status(ds, nodes, hash_, by_node, observed=False))
        error: APIError | None = None
        try:
            await self._manage(ds, nodes, hash_, by_node, key)
            if self.expectations.satisfied(key) and (ds["spec"].get("updateStrategy") or {}).get("type") != "OnDelete":
                await self._rolling_update(ds, nodes, hash_, by_node, key)
            await self._cleanup_history(ds, old, by_node)
        except APIError as exc:
            error = exc
        counts = await self._update_status(ds, nodes, hash_, by_node, observed=True)
        if error is not None:
            raise error
        return self._requeue(ds, counts)

    def _requeue(self, ds: Obj, counts: Obj) -> Result:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        if min_ready and counts["numberReady"] != counts["numberAvailable"]:
            return Result(requeue_after=float(min_ready))
        return Result()

    def _fetch(self, request: Request) -> Callable[[], Awaitable[Obj]]:
        async def fetch() -> Obj:
            return await self.client.get(DAEMON_SETS, request.name, namespace=request.namespace)
        return fetch

    # -- history ----------------------------------------------------------------------------------

    async def _construct_history(self, ds: Obj, selector: Any,
                                 fetch: Callable[[], Awaitable[Obj]]) -> tuple[Obj, list[Obj]]:
        """(the current revision, the old ones): upstream's constructHistory."""
        namespace = ds["metadata"]["namespace"]
        revisions = await ClaimManager(self.client, history.CONTROLLER_REVISIONS, ds, selector,
                                       fetch_owner=fetch).claim(self.revisions.lister.list(namespace))
        wanted = {"data": history.template_patch(ds)}
        current, old = [], []
        for revision in revisions:
            if HASH not in (revision["metadata"].get("labels") or {}):
                # Label it with its name, not a fresh hash: no collision to worry about (as upstream).
                revision = await self.client.patch(history.CONTROLLER_REVISIONS, _name(revision),
                                                   {"metadata": {"labels": {HASH: _name(revision)}}},
                                                   namespace=namespace)
            (current if history.equal_revision(revision, wanted) else old).append(revision)
        number = history.next_revision(old)
        if not current:
            return await self._snapshot(ds, number), old
        keep = await self._dedup(ds, current)
        if int(keep.get("revision") or 0) < number:
            keep = await history.renumber(self.client, keep, number)
        return keep, old

    async def _snapshot(self, ds: Obj, number: int) -> Obj:
        namespace = ds["metadata"]["namespace"]
        collision_count = (ds.get("status") or {}).get("collisionCount")
        revision = history.new_revision(ds, history.template_patch(ds), number, collision_count, hash_label=HASH)
        try:
            return await self.client.create(history.CONTROLLER_REVISIONS, revision, namespace=namespace)
        except AlreadyExists:
            existing = await self.client.get(history.CONTROLLER_REVISIONS, _name(revision), namespace=namespace)
            if history.equal_revision(existing, revision):
                return existing
            fresh = _typed(await self.client.get(DAEMON_SETS, _name(ds), namespace=namespace))
            if (fresh.get("status") or {}).get("collisionCount") != collision_count:
                raise Conflict(f"found a stale collision count of DaemonSet {_key(ds)}; will retry") from None
            fresh.setdefault("status", {})["collisionCount"] = int(collision_count or 0) + 1
            await self.client.update(DAEMON_SETS, fresh, subresource="status")
            raise

    async def _dedup(self, ds: Obj, current: list[Obj]) -> Obj:
        """Keep the highest-numbered of several equal revisions; move pods of the others to its hash."""
        keep = max(current, key=lambda r: int(r.get("revision") or 0))
        keep_hash = (keep["metadata"].get("labels") or {}).get(HASH)
        namespace = ds["metadata"]["namespace"]
        for revision in current:
            if revision is keep:
                continue
            dup_hash = (revision["metadata"].get("labels") or {}).get(HASH)
            for pod in self.pods.lister.list(namespace):
                if (controller_ref(pod) or {}).get("uid") == ds["metadata"]["uid"] and \
                        (pod["metadata"].get("labels") or {}).get(HASH) == dup_hash:
                    await self.client.patch(PODS, _name(pod), {"metadata": {"labels": {HASH: keep_hash}}},
                                            namespace=namespace, patch_type="strategic")
            try:
                await self.client.delete(history.CONTROLLER_REVISIONS, _name(revision), namespace=namespace)
            except NotFound:
                pass
        return keep

    async def _cleanup_history(self, ds: Obj, old: list[Obj], by_node: dict[str, list[Obj]]) -> None:
        to_kill = len(old) - int(ds["spec"].get("revisionHistoryLimit", 10) or 0)
        if to_kill <= 0:
            return
        live = history.live_hashes(pod for pods in by_node.values() for pod in pods)
        for revision in history.sort_revisions(old):
            if to_kill <= 0:
                break
            if (revision["metadata"].get("labels") or {}).get(HASH) in live:
                continue
            try:
                await self.client.delete(history.CONTROLLER_REVISIONS, _name(revision),
                                         namespace=ds["metadata"]["namespace"])
            except NotFound:
                pass
            to_kill -= 1

    # -- manage -----------------------------------------------------------------------------------

    async def _manage(self, ds: Obj, nodes: list[Obj], hash_: str, by_node: dict[str, list[Obj]], key: str) -> None:
        create_on: list[str] = []
        delete: list[Obj] = []
        for node in nodes:
            more_create, more_delete = await self._pods_should_be_on_node(node, by_node, ds, hash_)
            create_on += more_create
            delete += more_delete
        # Unscheduled pods for nodes that are gone would wait forever: nothing else deletes them.
        names = {node["metadata"]["name"] for node in nodes}
        for node_name, pods in sorted(by_node.items()):
            if node_name not in names:
                delete += [pod for pod in pods if not (pod.get("spec") or {}).get("nodeName")]
        await self._sync_nodes(ds, _Plan(create_on, delete), hash_, key)

    async def _pods_should_be_on_node(self, node: Obj, by_node: dict[str, list[Obj]], ds: Obj,
                                      hash_: str) -> tuple[list[str], list[Obj]]:
        name = node["metadata"]["name"]
        should_run, should_continue = du.node_should_run(node, ds)
        pods = by_node.get(name)
        if should_run and not pods:
            return [name], []
        if not should_continue:
            return [], [pod for pod in pods or () if not pod["metadata"].get("deletionTimestamp")]
        delete: list[Obj] = []
        running: list[Obj] = []
        for pod in pods or ():
            if pod["metadata"].get("deletionTimestamp"):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Failed":
                # Kubelets that reject a pod make it fail at once: back off, or we fight them in a hot loop.
                backoff_key = f"{ds['metadata']['uid']}/{name}"
                now = time.monotonic()
                delay = self.backoff.in_backoff(backoff_key, now)
                if delay:
                    if self.controller is not None:
                        self.controller.enqueue(Request.of(ds), after=delay)
                    continue
                self.backoff.next(backoff_key, now)
                await self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                          f"Found failed daemon pod {pod['metadata']['namespace']}/{_name(pod)} "
                                          f"on node {name}, will try to kill it")
                delete.append(pod)
            elif phase == "Succeeded":
                delete.append(pod)
            else:
                running.append(pod)
        if du.surge_count(ds, 1) <= 0:
            # Without surge one pod per node: the oldest stays.
            delete += du.sort_by_creation_and_phase(running)[1:]
            return [], delete
        if len(running) <= 1:
            return ([name] if not running and should_run else []), delete
        # With surge an old and a new pod may overlap: the new one until it is available, the old while ready.
        oldest_new = oldest_old = None
        for pod in du.sort_by_creation_and_phase(running):
            if (pod["metadata"].get("labels") or {}).get(HASH) == hash_:
                if oldest_new is None:
                    oldest_new = pod
                    continue
            elif oldest_old is None:
                oldest_old = pod
                continue
            delete.append(pod)
        if oldest_new is not None and oldest_old is not None:
            min_ready = int(ds["spec"].get("minReadySeconds") or 0)
            if not is_ready(oldest_old) or is_available(oldest_new, min_ready, self.now()):
                delete.append(oldest_old)
        return [], delete

    async def _sync_nodes(self, ds: Obj, plan: _Plan, hash_: str, key: str) -> None:
        """Create daemon pods on `plan.create_on` (slow start) and delete `plan.delete`, as expected creates/deletes."""
        create_on = plan.create_on[:self.burst_replicas]
        victims = plan.delete[:self.burst_replicas]
        if not create_on and not victims:
            return
        self.expectations.expect(key, creations=len(create_on), deletions=[_key(p) for p in victims])
        namespace = ds["metadata"]["namespace"]
        template = du.pod_template(ds, hash_)
        ref = new_controller_ref(ds)
        nodes = iter(create_on)
        errors: list[BaseException] = []
        attempted = 0

        async def create() -> None:
            nonlocal attempted
            attempted += 1
            node_name = next(nodes)
            pod = du.daemon_pod(template, ds, ref, node_name)
            try:
                created = await self.client.create(PODS, pod, namespace=namespace)
            except APIError as exc:
                self.expectations.creation_observed(key)
                if not any(c.reason == "NamespaceTerminating" for c in exc.causes):
                    await self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {exc}")
                raise
            await self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {_name(created)}")

        if create_on:
            log.info("daemonset %s: creating %d pods on %s", key, len(create_on), ", ".join(create_on))
            _, error = await slow_start_batch(len(create_on), 1, create)
            if error is not None:
                # Failed creates lowered the expectations already; the ones never tried will never be seen either.
                for _ in range(len(create_on) - attempted):
                    self.expectations.creation_observed(key)
                if not (isinstance(error, APIError) and any(c.reason == "NamespaceTerminating" for c in error.causes)):
                    errors.append(error)

        async def delete(pod: Obj) -> None:
            try:
                await self.client.delete(PODS, _name(pod), namespace=namespace,
                                         preconditions={"uid": pod["metadata"]["uid"]})
            except NotFound:
                self.expectations.deletion_observed(key, _key(pod))
                return
            except APIError as exc:
                self.expectations.deletion_observed(key, _key(pod))
                await self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {exc}")
                errors.append(exc)
                return
            await self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {_name(pod)}")

        if victims:
            log.info("daemonset %s: deleting pods %s", key, ", ".join(_name(p) for p in victims))
            await asyncio.gather(*(delete(pod) for pod in victims))
        if errors:
            raise errors[0]

    # -- rolling update ---------------------------------------------------------------------------

    async def _rolling_update(self, ds: Obj, nodes: list[Obj], hash_: str, by_node: dict[str, list[Obj]],
                              key: str) -> None:
        by_node = {name: list(pods) for name, pods in by_node.items()}
        desired = 0
        for node in nodes:
            if du.node_should_run(node, ds)[0]:
                desired += 1
                by_node.setdefault(node["metadata"]["name"], [])
        max_surge, max_unavailable = du.surge_count(ds, desired), du.unavailable_count(ds, desired)
        if desired > 0 and max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        now = self.now()
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        generation = du.template_generation(ds)
        nodes_by_name = {node["metadata"]["name"]: node for node in nodes}

        def available(pod: Obj) -> bool:
            return is_available(pod, min_ready, now)

        if max_surge == 0:
            unavailable = 0
            replace: list[Obj] = []
            candidates: list[Obj] = []
            for name in sorted(by_node):
                new, old, ok = du.find_updated_pods_on_node(by_node[name], hash_, generation)
                if not ok or (new is None) == (old is None):
                    unavailable += 1  # manage sorts it out: count it as down
                elif new is not None:
                    unavailable += 0 if available(new) else 1
                elif old is not None and not available(old):
                    replace.append(old)
                    unavailable += 1
                elif old is not None and unavailable < max_unavailable:
                    candidates.append(old)
            room = min(max(0, max_unavailable - unavailable), len(candidates))
            await self._sync_nodes(ds, _Plan([], replace + candidates[:room]), hash_, key)
            return

        delete_old: list[Obj] = []
        not_run_candidates: list[Obj] = []
        candidate_nodes: list[str] = []
        allowed_nodes: list[str] = []
        surging = available_count = 0
        for name in sorted(by_node):
            new, old, ok = du.find_updated_pods_on_node(by_node[name], hash_, generation)
            if not ok:
                surging += 1
                continue
            if (old is not None and available(old)) or (old is None and new is not None and available(new)):
                available_count += 1
            if old is None:
                continue
            node = nodes_by_name.get(name)
            should_run = node is not None and du.node_should_run(node, ds)[0]
            if new is None:
                if not available(old):
                    if not should_run:
                        delete_old.append(old)
                    else:
                        allowed_nodes.append(name)
                elif not should_run:
                    not_run_candidates.append(old)
                elif surging < max_surge:
                    candidate_nodes.append(name)
            elif not available(new):
                surging += 1
            else:
                delete_old.append(old)
        room = min(max(0, max_surge - surging), len(candidate_nodes))
        # Pods on nodes that should no longer run one go only once their replacements elsewhere are available.
        spare = min(max(0, available_count - desired), len(not_run_candidates))
        delete_old += not_run_candidates[:spare]
        await self._sync_nodes(ds, _Plan(allowed_nodes + candidate_nodes[:room], delete_old), hash_, key)

    # -- status -----------------------------------------------------------------------------------

    async def _update_status(self, ds: Obj, nodes: list[Obj], hash_: str, by_node: dict[str, list[Obj]], *,
                             observed: bool) -> Obj:
        now = self.now()
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        generation = du.template_generation(ds)
        counts = dict.fromkeys(("desiredNumberScheduled", "currentNumberScheduled", "numberMisscheduled",
                                "numberReady", "updatedNumberScheduled", "numberAvailable"), 0)
        for node in nodes:
            should_run = du.node_should_run(node, ds)[0]
            pods = by_node.get(node["metadata"]["name"], [])
            if not should_run:
                counts["numberMisscheduled"] += 1 if pods else 0
                continue
            counts["desiredNumberScheduled"] += 1
            if not pods:
                continue
            counts["currentNumberScheduled"] += 1
            pod = du.sort_by_creation_and_phase(pods)[0]
            if is_ready(pod):
                counts["numberReady"] += 1
                if is_available(pod, min_ready, now):
                    counts["numberAvailable"] += 1
            if du.is_pod_updated(pod, hash_, generation):
                counts["updatedNumberScheduled"] += 1
        counts["numberUnavailable"] = counts["desiredNumberScheduled"] - counts["numberAvailable"]
        old = ds.get("status") or {}
        gen = int(ds["metadata"].get("generation") or 0)
        if (all(int(old.get(k) or 0) == v for k, v in counts.items())
                and (not observed or int(old.get("observedGeneration") or 0) >= gen)):
            return counts
        body = ds
        for attempt in range(2):
            status = {**(body.get("status") or {}), **counts}
            if observed:
                status["observedGeneration"] = gen
            for k in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
                if not status.get(k):
                    status.pop(k, None)
            try:
                await self.client.update(DAEMON_SETS, {**body, "status": status}, subresource="status")
                break
            except Conflict:
                if attempt:
                    raise
                body = _typed(await self.client.get(DAEMON_SETS, _name(ds), namespace=ds["metadata"]["namespace"]))
        return counts


def new_daemonset_controller(client: Client, informers: SharedInformers, *, workers: int = 2,
                             clock: Clock | None = None, recorder: EventRecorder | None = None) -> Controller:
    """A Controller for DaemonSets, fed by their pods, revisions and the nodes."""
    reconciler = DaemonSetReconciler(client, informers, recorder=recorder, clock=clock)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock)
    reconciler.controller = controller
    controller.watches(reconciler.sets, reconciler.on_set)
    controller.watches(reconciler.pods, reconciler.on_pod)
    controller.watches(reconciler.revisions, reconciler.on_revision)
    controller.watches(reconciler.nodes, reconciler.on_node)
    return controller
