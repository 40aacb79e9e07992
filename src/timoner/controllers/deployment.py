"""The Deployment controller: rollouts as a sequence of ReplicaSet scalings, upstream's algorithm.

One reconcile of a Deployment (upstream's `syncDeployment`):

1. Claim its ReplicaSets (adopt orphans matching the selector, release
   those that stopped matching). The *new* ReplicaSet is the oldest whose
   pod template equals the Deployment's, `pod-template-hash` aside; all
   others are *old*. A new one is created on demand, named
   `<deployment>-<pod-template-hash>`, with the next revision
   (`deployment.kubernetes.io/revision`, the largest old revision + 1) and
   the desired/max replica annotations that proportional scaling reads.
2. Being deleted: only the status is brought up to date.
3. Paused, or a scaling event (`spec.replicas` differs from what the
   active ReplicaSets were annotated with): `sync` scales proportionally
   (a rollout in progress keeps its ratio) and nothing rolls.
4. Otherwise the strategy rolls: `RollingUpdate` scales the new
   ReplicaSet up as far as `maxSurge` allows, then scales old ones down as
   far as `maxUnavailable` allows (unhealthy old replicas first);
   `Recreate` scales every old ReplicaSet to zero, waits until none of
   their pods runs, then scales the new one up.
5. The status adds up the ReplicaSets' and sets the conditions:
   Available (MinimumReplicasAvailable / MinimumReplicasUnavailable) and,
   with `progressDeadlineSeconds`, Progressing (NewReplicaSetCreated,
   FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
   ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed). A
   rollout that stops moving is looked at again when its deadline passes.
6. Once complete, old ReplicaSets beyond `revisionHistoryLimit` that have
   no pods left are deleted, oldest revision first.

Rollback is what kubectl 1.32 does client side: it copies an old
ReplicaSet's template back into the Deployment, which then finds that
ReplicaSet as its new one and gives it the next revision (the revisions it
had are kept in `deployment.kubernetes.io/revision-history`).

Deviation: upstream writes the Deployment's revision annotation through
`deployments/status`; Timoner's status subresource keeps metadata as it
was, so the annotation is written by a merge patch of the Deployment's
metadata (which does not change its generation).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from timoner.api.errors import AlreadyExists, APIError, NotFound
from timoner.api.selectors import label_selector_from_dict
from timoner.client import Client, Clock, EventRecorder, Informer, resource_for

from . import _deployment_util as du
from ._framework import Change, Controller, Request, Result, SharedInformers, controller_ref
from ._progress import rollout_status, stuck_recheck
from ._refs import ClaimManager, new_controller_ref, resolve_controller_ref, selecting_controllers

__all__ = ["DEPLOYMENTS", "REPLICA_SETS", "DeploymentReconciler", "new_deployment_controller"]

log = logging.getLogger("timoner.controllers.deployment")

Obj = dict[str, Any]

DEPLOYMENTS = resource_for("apps/v1", "Deployment")
REPLICA_SETS = resource_for("apps/v1", "ReplicaSet")
PODS = resource_for("v1", "Pod")
COMPONENT = "deployment-controller"


def _typed(obj: Obj, kind: str) -> Obj:
    return {**copy.deepcopy(obj), "apiVersion": "apps/v1", "kind": kind}


def _name(obj: Obj) -> str:
    return obj["metadata"]["name"]


def _same_status(a: Obj | None, b: Obj | None) -> bool:
    """Equal as Go structs compare: absent and zero are the same."""
    def norm(status: Obj | None) -> Obj:
        return {k: v for k, v in (status or {}).items() if v not in (0, None, [], {})}
    return norm(a) == norm(b)


class _InvalidScaleDown(Exception):
    """A scale-down computed from a stale status would be a scale-up; the rollout waits for the next sync."""


class DeploymentReconciler:
    """Reconciles Deployments through their ReplicaSets; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.deployments: Informer = informers.get(DEPLOYMENTS)
        self.sets: Informer = informers.get(REPLICA_SETS)
        self.pods: Informer = informers.get(PODS)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.now = wall_clock

    # -- informer changes to requests --------------------------------------------------------

    def on_set(self, change: Change) -> list[Request]:
        rs, old = change.obj, change.old
        if change.type in ("delete", "add"):
            ref = controller_ref(rs)
            if ref is not None:
                return self._owner(rs, ref)
            if change.type == "delete" or rs["metadata"].get("deletionTimestamp"):
                return []
            return self._matching_deployments(rs)
        assert old is not None
        if rs["metadata"].get("resourceVersion") == old["metadata"].get("resourceVersion"):
            return []
        ref, old_ref = controller_ref(rs), controller_ref(old)
        requests: list[Request] = []
        if ref != old_ref and old_ref is not None:
            requests += self._owner(old, old_ref)
        if ref is not None:
            return requests + self._owner(rs, ref)
        if ref != old_ref or rs["metadata"].get("labels") != old["metadata"].get("labels"):
            requests += self._matching_deployments(rs)
        return requests

    def on_pod(self, change: Change) -> list[Request]:
        """A deleted pod may be the last old one a Recreate rollout waits for."""
        if change.type != "delete":
            return []
        pod = change.obj
        rs = resolve_controller_ref(self.sets.lister, pod["metadata"].get("namespace"), controller_ref(pod),
                                    kind="ReplicaSet")
        if rs is None:
            return []
        rs_ref = controller_ref(rs)
        if rs_ref is None:
            return []
        requests = self._owner(rs, rs_ref)
        for request in requests:
            d = self.deployments.lister.get(request.namespace, request.name)
            if d is None or du.is_rolling_update(d):
                return []
        return requests

    def _owner(self, obj: Obj, ref: Obj) -> list[Request]:
        d = resolve_controller_ref(self.deployments.lister, obj["metadata"].get("namespace"), ref, kind="Deployment")
        return [] if d is None else [Request.of(d)]

    def _matching_deployments(self, rs: Obj) -> list[Request]:
        return [Request.of(d) for d in selecting_controllers(self.deployments.lister, rs)]

    # -- one sync --------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        cached = self.deployments.lister.get(request.namespace, request.name)
        if cached is None:
            return Result()
        d = _typed(cached, "Deployment")
        d.setdefault("status", {})
        if (d.get("spec") or {}).get("selector") == {}:
            await self.recorder.event(d, "Warning", "SelectingAll",
                                      "This deployment is selecting all pods. A non-empty selector is required.")
            if int(d["status"].get("observedGeneration") or 0) < int(d["metadata"].get("generation") or 0):
                d["status"]["observedGeneration"] = d["metadata"].get("generation")
                await self._update_status(d)
            return Result()
        rs_list = await self._claim_sets(d)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self._all_sets_and_sync_revision(d, rs_list, create=False)
            await self._sync_status(d, [*old_rss, new_rs], new_rs)
            return Result()
        await self._check_paused_conditions(d)
        if d["spec"].get("paused"):
            return await self._sync(d, rs_list)
        if await self._is_scaling_event(d, rs_list):
            return await self._sync(d, rs_list)
        strategy = (d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            return await self._rollout_recreate(d, rs_list)
        if strategy == "RollingUpdate":
            return await self._rollout_rolling(d, rs_list)
        raise ValueError(f"unexpected deployment strategy type: {strategy}")

    async def _claim_sets(self, d: Obj) -> list[Obj]:
        namespace = d["metadata"]["namespace"]
        selector = label_selector_from_dict(d["spec"].get("selector"))

        async def fetch() -> Obj:
            return await self.client.get(DEPLOYMENTS, _name(d), namespace=namespace)

        claims = ClaimManager(self.client, REPLICA_SETS, d, selector, fetch_owner=fetch)
        return [_typed(rs, "ReplicaSet") for rs in await claims.claim(self.sets.lister.list(namespace))]

    def _pods_by_set(self, rs_list: list[Obj]) -> dict[str, list[Obj]]:
        uids = {rs["metadata"]["uid"] for rs in rs_list}
        out: dict[str, list[Obj]] = {uid: [] for uid in uids}
        namespace = rs_list[0]["metadata"]["namespace"] if rs_list else None
        if namespace is None:
            return out
        for pod in self.pods.lister.list(namespace):
            uid = (controller_ref(pod) or {}).get("uid")
            if uid in uids:
                out[uid].append(pod)
        return out

    # -- writes ----------------------------------------------------------------------------

    async def _update_status(self, d: Obj) -> None:
        updated = await self.client.update(DEPLOYMENTS, d, subresource="status")
        d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

    async def _set_revision(self, d: Obj, value: str) -> None:
        annotations = d["metadata"].setdefault("annotations", {})
        if annotations.get(du.REVISION) == value:
            return
        updated = await self.client.patch(DEPLOYMENTS, _name(d), {"metadata": {"annotations": {du.REVISION: value}}},
                                          namespace=d["metadata"]["namespace"])
        annotations[du.REVISION] = value
        if updated["metadata"].get("generation") == d["metadata"].get("generation"):
            d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

    async def _scale(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        """Set a ReplicaSet's size and replica annotations (upstream's scaleReplicaSet); True if resized."""
        size_changes = du.replicas(rs) != new_scale
        maximum = du.replicas(d) + du.max_surge(d)
        if not size_changes and not du.replicas_annotations_need_update(rs, du.replicas(d), maximum):
            return False, rs
        old_scale = du.replicas(rs)
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(body, du.replicas(d), maximum)
        updated = _typed(await self.client.update(REPLICA_SETS, body), "ReplicaSet")
        if size_changes:
            direction = "up" if new_scale > old_scale else "down"
            await self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                      f"Scaled {direction} replica set {_name(rs)} from {old_scale} to {new_scale}")
        return size_changes, updated

    async def _scale_if_needed(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        if du.replicas(rs) == new_scale:
            return False, rs
        return await self._scale(rs, new_scale, d)

    # -- new and old ReplicaSets -------------------------------------------------------------

    async def _all_sets_and_sync_revision(self, d: Obj, rs_list: list[Obj], *,
                                          create: bool) -> tuple[Obj | None, list[Obj]]:
        _, old_rss = du.find_old_replica_sets(d, rs_list)
        new_rs = await self._new_replica_set(d, rs_list, old_rss, create=create)
        return new_rs, old_rss

    async def _new_replica_set(self, d: Obj, rs_list: list[Obj], old_rss: list[Obj], *,
                               create: bool) -> Obj | None:
        existing = du.find_new_replica_set(d, rs_list)
        new_revision = du.max_revision(old_rss) + 1
        min_ready = int(d["spec"].get("minReadySeconds") or 0)
        if existing is not None:
            rs = copy.deepcopy(existing)
            annotations_changed = du.set_new_replica_set_annotations(d, rs, new_revision, exists=True)
            if annotations_changed or int(rs["spec"].get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                return _typed(await self.client.update(REPLICA_SETS, rs), "ReplicaSet")
            await self._set_revision(d, rs["metadata"]["annotations"].get(du.REVISION, ""))
            if du.has_progress_deadline(d) and du.get_condition(d["status"], du.PROGRESSING) is None:
                du.set_condition(d["status"], du.new_condition(
                    du.PROGRESSING, "True", du.FOUND_NEW_RS, f'Found new replica set "{_name(rs)}"', now=self.now()))
                await self._update_status(d)
            return rs
        if not create:
            return None
        return await self._create_new_replica_set(d, old_rss, new_revision)

    async def _create_new_replica_set(self, d: Obj, old_rss: list[Obj], new_revision: int) -> Obj:
        namespace = d["metadata"]["namespace"]
        template = copy.deepcopy(d["spec"].get("template") or {})
        pod_hash = du.pod_template_hash(template, d["status"].get("collisionCount"))
        labels = {**((template.get("metadata") or {}).get("labels") or {}), du.POD_TEMPLATE_HASH: pod_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(d["spec"].get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.POD_TEMPLATE_HASH: pod_hash}
        name = f"{_name(d)}-{pod_hash}"
        new_rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                         "ownerReferences": [new_controller_ref(d)]},
            "spec": {"replicas": 0, "minReadySeconds": int(d["spec"].get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        count = du.new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        new_rs["spec"]["replicas"] = count
        du.set_new_replica_set_annotations(d, new_rs, new_revision, exists=False)
        already_exists = False
        try:
            created = _typed(await self.client.create(REPLICA_SETS, new_rs, namespace=namespace), "ReplicaSet")
        except AlreadyExists:
            already_exists = True
            found = self.sets.lister.get(namespace, name)
            if found is None:
                raise
            ref = controller_ref(found)
            if not (ref is not None and ref.get("uid") == d["metadata"]["uid"]
                    and du.equal_ignore_hash(d["spec"].get("template"), found["spec"].get("template"))):
                # A different template hashed to the same name: bump collisionCount and try again.
                d["status"]["collisionCount"] = int(d["status"].get("collisionCount") or 0) + 1
                await self._update_status(d)
                log.info("deployment %s/%s: hash collision on %s; collisionCount is now %d", namespace, _name(d),
                         name, d["status"]["collisionCount"])
                raise
            created = _typed(found, "ReplicaSet")
        except APIError as exc:
            if any(c.reason == "NamespaceTerminating" for c in exc.causes):
                raise
            message = f'Failed to create new replica set "{name}": {exc}'
            if du.has_progress_deadline(d):
                du.set_condition(d["status"], du.new_condition(du.PROGRESSING, "False", du.FAILED_RS_CREATE,
                                                               message, now=self.now()))
                try:
                    await self._update_status(d)
                except APIError:
                    pass  # the failure to create is what matters
            await self.recorder.event(d, "Warning", du.FAILED_RS_CREATE, message)
            raise
        if not already_exists and count > 0:
            await self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                      f"Scaled up replica set {name} from 0 to {count}")
        await self._set_revision(d, str(new_revision))
        if not already_exists and du.has_progress_deadline(d):
            du.set_condition(d["status"], du.new_condition(du.PROGRESSING, "True", du.NEW_RS_CREATED,
                                                           f'Created new replica set "{name}"', now=self.now()))
            await self._update_status(d)
        return created

    # -- paused and scaling ----------------------------------------------------------------

    async def _check_paused_conditions(self, d: Obj) -> None:
        if not du.has_progress_deadline(d):
            return
        condition = du.get_condition(d["status"], du.PROGRESSING)
        if condition is not None and condition.get("reason") == du.TIMED_OUT:
            return  # a reported lack of progress is not overwritten by pausing
        paused_recorded = condition is not None and condition.get("reason") == du.PAUSED
        if d["spec"].get("paused") and not paused_recorded:
            du.set_condition(d["status"], du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED,
                                                           "Deployment is paused", now=self.now()))
        elif not d["spec"].get("paused") and paused_recorded:
            du.set_condition(d["status"], du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED,
                                                           "Deployment is resumed", now=self.now()))
        else:
            return
        await self._update_status(d)

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        new_rs, old_rss = await self._all_sets_and_sync_revision(d, rs_list, create=False)
        for rs in [*old_rss, new_rs]:
            if rs is None or du.replicas(rs) <= 0:
                continue
            desired = du.annotation_int(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    async def _sync(self, d: Obj, rs_list: list[Obj]) -> Result:
        """Scale without rolling (a scaling event, or a paused Deployment), then the status."""
        new_rs, old_rss = await self._all_sets_and_sync_revision(d, rs_list, create=False)
        await self._scale_proportionally(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_status(d, [*old_rss, new_rs], new_rs)
        return Result()

    async def _scale_proportionally(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Upstream's `scale`: spread a change of size over the active ReplicaSets by their share."""
        only = du.find_active_or_latest(new_rs, old_rss)
        if only is not None:
            if du.replicas(only) != du.replicas(d):
                await self._scale_if_needed(only, du.replicas(d), d)
            return
        if du.is_saturated(d, new_rs):
            for old in old_rss:
                if du.replicas(old) > 0:
                    await self._scale_if_needed(old, 0, d)
            return
        if not du.is_rolling_update(d):
            return
        for rs, size in du.proportional_sizes(d, [*old_rss, new_rs]):
            await self._scale(rs, size, d)

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest revisions beyond `revisionHistoryLimit` that have no pods left."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        for rs in du.sorted_by_revision(alive)[:diff]:
            status = rs.get("status") or {}
            if (int(status.get("replicas") or 0) != 0 or du.replicas(rs) != 0
                    or int(rs["metadata"].get("generation") or 0) > int(status.get("observedGeneration") or 0)):
                continue
            log.info("deployment %s/%s: deleting old replica set %s", d["metadata"]["namespace"], _name(d), _name(rs))
            try:
                await self.client.delete(REPLICA_SETS, _name(rs), namespace=rs["metadata"]["namespace"])
            except NotFound:
                pass

    async def _sync_status(self, d: Obj, all_rss: Iterable[Obj | None], new_rs: Obj | None) -> None:
        status = du.calculate_status(all_rss, new_rs, d, now=self.now())
        if _same_status(d["status"], status):
            return
        d["status"] = status
        await self._update_status(d)

    # -- rollouts ----------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> Result:
        new_rs, old_rss = await self._all_sets_and_sync_revision(d, rs_list, create=True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        if await self._reconcile_new(d, all_rss, new_rs):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        active_old = [rs for rs in old_rss if du.replicas(rs) > 0]
        if await self._reconcile_old(d, all_rss, active_old, new_rs):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if du.deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    async def _reconcile_new(self, d: Obj, all_rss: list[Obj], new_rs: Obj) -> bool:
        want = du.replicas(d)
        if du.replicas(new_rs) == want:
            return False
        if du.replicas(new_rs) > want:
            return (await self._scale_if_needed(new_rs, want, d))[0]
        return (await self._scale_if_needed(new_rs, du.new_rs_new_replicas(d, all_rss, new_rs), d))[0]

    async def _reconcile_old(self, d: Obj, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj) -> bool:
        old_count = sum(du.replicas(rs) for rs in old_rss)
        if old_count == 0:
            return False
        all_count = sum(du.replicas(rs) for rs in all_rss)
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = du.replicas(new_rs) - int((new_rs.get("status") or {}).get("availableReplicas") or 0)
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        try:
            old_rss, cleaned = await self._cleanup_unhealthy(d, old_rss, max_scaled_down)
            scaled = await self._scale_down_old(d, [*old_rss, new_rs], old_rss)
        except (APIError, _InvalidScaleDown) as exc:
            # As upstream: a failed scale-down is retried on the next sync, not reported as an error.
            log.info("deployment %s/%s: scaling down old replica sets: %s", d["metadata"]["namespace"], _name(d), exc)
            return False
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, d: Obj, old_rss: list[Obj], max_cleanup: int) -> tuple[list[Obj], int]:
        """Scale old ReplicaSets down by their unavailable replicas first: that costs no availability."""
        old_rss = du.sorted_by_creation(old_rss)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            if du.replicas(rs) == 0 or du.replicas(rs) == available:
                continue
            count = min(max_cleanup - total, du.replicas(rs) - available)
            if count < 0:
                # More available than wanted: the ReplicaSet was scaled down and its status does not show it
                # yet. "Cleaning up" would scale it back up, past maxSurge; upstream refuses, and so do we.
                raise _InvalidScaleDown(f"when cleaning up unhealthy replicas, got invalid request to scale down "
                                        f"{rs['metadata']['namespace']}/{_name(rs)} {du.replicas(rs)} -> "
                                        f"{du.replicas(rs) - count}")
            _, old_rss[i] = await self._scale_if_needed(rs, du.replicas(rs) - count, d)
            total += count
        return old_rss, total

    async def _scale_down_old(self, d: Obj, all_rss: list[Obj], old_rss: list[Obj]) -> int:
        min_available = du.replicas(d) - du.max_unavailable(d)
        available = sum(int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in all_rss)
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in du.sorted_by_creation(old_rss):
            if total >= budget:
                break
            if du.replicas(rs) == 0:
                continue
            count = min(du.replicas(rs), budget - total)
            await self._scale_if_needed(rs, du.replicas(rs) - count, d)
            total += count
        return total

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> Result:
        # The new ReplicaSet is not created yet: nothing may scale up before the old pods are gone.
        new_rs, old_rss = await self._all_sets_and_sync_revision(d, rs_list, create=False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled = False
        for i, rs in enumerate(old_rss):
            if du.replicas(rs) == 0:
                continue
            resized, old_rss[i] = await self._scale_if_needed(rs, 0, d)
            scaled = scaled or resized
        if scaled:
            return await self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)
        if self._old_pods_running(new_rs, old_rss, rs_list):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            new_rs, old_rss = await self._all_sets_and_sync_revision(d, rs_list, create=True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_if_needed(new_rs, du.replicas(d), d)
        if du.deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, new_rs: Obj | None, old_rss: list[Obj], rs_list: list[Obj]) -> bool:
        if sum(int((rs.get("status") or {}).get("replicas") or 0) for rs in old_rss) > 0:
            return True
        new_uid = new_rs["metadata"]["uid"] if new_rs is not None else None
        for uid, pods in self._pods_by_set(rs_list).items():
            if uid == new_uid:
                continue
            if any((pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for pod in pods):
                return True
        return False

    # -- progress ----------------------------------------------------------------------------

    async def _sync_rollout_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> Result:
        """Write the status with the Progressing and ReplicaFailure conditions; come back at the deadline."""
        now = self.now()
        status = rollout_status(d, all_rss, new_rs, now=now)
        if _same_status(d["status"], status):
            after = stuck_recheck(d, status, now=now)
            if after is None:
                return Result()
            return Result(requeue=True) if after == 0 else Result(requeue_after=after)
        d["status"] = status
        await self._update_status(d)
        return Result()


def new_deployment_controller(client: Client, informers: SharedInformers, *, workers: int = 5,
                              clock: Clock | None = None, recorder: EventRecorder | None = None) -> Controller:
    reconciler = DeploymentReconciler(client, informers, recorder=recorder)
    controller = Controller(COMPONENT, reconciler, workers=workers, clock=clock)
    controller.for_(reconciler.deployments)
    controller.watches(reconciler.sets, reconciler.on_set)
    controller.watches(reconciler.pods, reconciler.on_pod)
    return controller
