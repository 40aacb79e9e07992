"""The Deployment controller against a real API server: rollouts on a hollow node, watched as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import re

from controller_helpers import (
    DEPLOYMENTS,
    PODS,
    REPLICA_SETS,
    condition,
    controller_of,
    deployment,
    events_for,
    is_ready,
    pods_of,
    rollout_complete,
    sets_of,
)

from timoner.client import Informer
from timoner.controllers import Manager, new_deployment_controller

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
NOT_READY = {"timoner.dev/hollow-start-error": "image cannot be pulled"}


def _image_patch(image, annotations=None):
    template = {"spec": {"containers": [{"name": "c", "image": image}]}}
    if annotations is not None:
        template["metadata"] = {"annotations": annotations}
    return {"spec": {"template": template}}


async def _patch(client, namespace, name, body, patch_type="strategic"):
    return await client.patch(DEPLOYMENTS, name, body, namespace=namespace, patch_type=patch_type)


class PodSampler:
    """Every state of the namespace's pods, as a watch delivers them: the extremes a rollout went through."""

    def __init__(self, client, namespace):
        self.informer = Informer(client, PODS, namespace=namespace)
        self.min_ready: int | None = None
        self.max_active = 0
        self.mixed = False  # pods of two templates alive at once
        self.informer.add_handler(self._sample, lambda old, new: self._sample(new), self._sample)

    def _sample(self, _):
        pods = self.informer.lister.list()
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                  and p["status"].get("phase") not in ("Succeeded", "Failed")]
        ready = len([p for p in active if is_ready(p)])
        self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)
        self.max_active = max(self.max_active, len(active))
        live = {p["metadata"]["labels"].get(HASH) for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")}
        self.mixed = self.mixed or len(live) > 1

    async def __aenter__(self):
        self.task = asyncio.create_task(self.informer.run())
        await self.informer.has_synced.wait()
        self.min_ready, self.max_active, self.mixed = None, 0, False
        self._sample(None)
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_a_deployment_rolls_out_its_first_replica_set(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=3), namespace=namespace)
    d = await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "the rollout")
    (rs,) = await sets_of(client, namespace, "web")
    pod_hash = rs["metadata"]["labels"][HASH]
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", pod_hash)
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH: pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH: pod_hash}
    annotations = rs["metadata"]["annotations"]
    assert (annotations[REVISION], annotations["deployment.kubernetes.io/desired-replicas"],
            annotations["deployment.kubernetes.io/max-replicas"]) == ("1", "3", "4")  # 25% surge of 3 rounds up
    assert controller_of(rs)["kind"] == "Deployment" and controller_of(rs)["blockOwnerDeletion"] is True
    assert d["metadata"]["annotations"][REVISION] == "1"
    assert d["metadata"]["generation"] == 1  # the revision annotation is no spec change
    s = d["status"]
    assert (s["replicas"], s["updatedReplicas"], s["readyReplicas"], s["availableReplicas"],
            s.get("unavailableReplicas", 0), s["observedGeneration"]) == (3, 3, 3, 3, 0, 1)
    available, progressing = condition(d, "Available"), condition(d, "Progressing")
    assert (available["status"], available["reason"], available["message"]) == (
        "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.')
    pods = await pods_of(client, namespace)
    assert len(pods) == 3 and all(p["metadata"]["labels"][HASH] == pod_hash for p in pods)
    events = await events_for(client, namespace, "web")
    assert ("Normal", "ScalingReplicaSet", f"Scaled up replica set web-{pod_hash} from 0 to 3",
            "deployment-controller") in events


async def test_rolling_update_keeps_availability_and_surge_bounds(cluster, client, namespace, eventually):
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}
    await client.create(DEPLOYMENTS, deployment("web", replicas=4, **spec), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "the first rollout")
    async with PodSampler(client, namespace) as sampler:
        await _patch(client, namespace, "web", _image_patch("busybox:2"))
        d = await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "the second rollout")
        await eventually(lambda: _count_active(client, namespace, 4), 30, "old pods gone")
    assert sampler.min_ready >= 3, sampler.min_ready  # replicas - maxUnavailable
    assert sampler.max_active <= 5, sampler.max_active  # replicas + maxSurge
    old, new = await sets_of(client, namespace, "web")
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 4)
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
    assert d["metadata"]["annotations"][REVISION] == "2"
    pods = await pods_of(client, namespace)
    assert {p["metadata"]["labels"][HASH] for p in pods} == {new["metadata"]["labels"][HASH]}
    messages = [e[2] for e in await events_for(client, namespace, "web") if e[1] == "ScalingReplicaSet"]
    assert f"Scaled down replica set {old['metadata']['name']} from 4 to 3" in messages


async def _set_status(client, namespace, rs, available):
    """Write a ReplicaSet's status as its controller would, `available` pods ready and available."""
    rs = await client.get(REPLICA_SETS, rs["metadata"]["name"], namespace=namespace)
    status = {"replicas": available, "fullyLabeledReplicas": available, "readyReplicas": available,
              "availableReplicas": available, "observedGeneration": rs["metadata"]["generation"]}
    await client.update(REPLICA_SETS, {**rs, "status": status}, namespace=namespace, subresource="status")


async def test_a_lagging_replica_set_status_never_scales_an_old_replica_set_up(bare, client, namespace, eventually):
    """Only the Deployment controller runs; the test plays the ReplicaSet controller, whose status writes lag.

    The old ReplicaSet was scaled 4 -> 3 and its status still says 4 available when the new one's 2 become
    available: "cleaning up" the old one's unavailable replicas (3 - 4 = -1) must not scale it back up, past
    maxSurge; upstream's cleanupUnhealthyReplicas refuses that and the rollout waits for the status.
    """
    manager = Manager(client, leader_election=False)
    manager.add(new_deployment_controller(client, manager.informers))
    bare.tasks["manager"] = asyncio.create_task(manager.run())
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}
    await client.create(DEPLOYMENTS, deployment("web", replicas=4, **spec), namespace=namespace)

    async def sizes(*want):
        sets = await sets_of(client, namespace, "web")
        return [rs["spec"]["replicas"] for rs in sets] == list(want) and sets
    (old,) = await eventually(lambda: sizes(4), 30, "revision 1 at 4")
    await _set_status(client, namespace, old, 4)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "revision 1 complete")
    await _patch(client, namespace, "web", _image_patch("busybox:2"))
    # New at the surge (1), old down by the one unavailable allowed (3), new up to the surge again (2);
    # there it stops while the new pods are not available.
    old, new = await eventually(lambda: sizes(3, 2), 30, "old 3, new 2")
    await _set_status(client, namespace, new, 2)  # the old one's status still says 4 available

    async def seen():
        d = await client.get(DEPLOYMENTS, "web", namespace=namespace)
        return d["status"].get("availableReplicas") == 6 and d
    await eventually(seen, 30, "the Deployment status adding up 4 + 2 available")  # written after scaling
    assert [rs["spec"]["replicas"] for rs in await sets_of(client, namespace, "web")] == [3, 2]

    await _set_status(client, namespace, old, 3)  # the status catches up: the rollout goes on
    await eventually(lambda: sizes(1, 4), 30, "old 1, new 4")
    await _set_status(client, namespace, old, 1)
    await _set_status(client, namespace, new, 4)
    await eventually(lambda: sizes(0, 4), 30, "old 0, new 4")
    await _set_status(client, namespace, old, 0)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "revision 2 complete")


async def test_recreate_removes_every_old_pod_before_creating_new_ones(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=3, strategy={"type": "Recreate"}),
                        namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "the first rollout")
    async with PodSampler(client, namespace) as sampler:
        await _patch(client, namespace, "web", _image_patch("busybox:2"))
        await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "the recreate rollout")
    assert not sampler.mixed
    assert sampler.min_ready == 0


async def test_rollback_reuses_the_old_replica_set_with_the_next_revision(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=2), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "revision 1")
    (first,) = await sets_of(client, namespace, "web")
    await _patch(client, namespace, "web", _image_patch("busybox:2"))
    await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "revision 2")
    # What `kubectl rollout undo` does: the old template (without the hash label) back into the Deployment.
    template = first["spec"]["template"]
    template["metadata"]["labels"].pop(HASH)
    await _patch(client, namespace, "web", [{"op": "replace", "path": "/spec/template", "value": template}],
                 patch_type="json")
    d = await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "the rollback")
    sets = await sets_of(client, namespace, "web")
    assert len(sets) == 2  # no third ReplicaSet: the first one is new again
    newest = sets[-1]
    assert newest["metadata"]["uid"] == first["metadata"]["uid"]
    assert newest["metadata"]["annotations"][REVISION] == "3"
    assert newest["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert d["metadata"]["annotations"][REVISION] == "3"


async def test_pause_holds_template_changes_until_resume(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=2), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "revision 1")
    await _patch(client, namespace, "web", {"spec": {"paused": True}})

    async def paused():
        d = await client.get(DEPLOYMENTS, "web", namespace=namespace)
        c = condition(d, "Progressing")
        return (c["status"], c["reason"], c["message"]) == ("Unknown", "DeploymentPaused", "Deployment is paused") and d
    await eventually(paused, 30, "the paused condition")
    await _patch(client, namespace, "web", _image_patch("busybox:2"))
    await _patch(client, namespace, "web", {"spec": {"replicas": 3}})  # scaling still happens while paused

    async def scaled():
        d = await client.get(DEPLOYMENTS, "web", namespace=namespace)
        return d["status"].get("observedGeneration") == d["metadata"]["generation"] and \
            d["status"].get("availableReplicas") == 3 and d
    await eventually(scaled, 30, "scaled to 3 while paused")
    assert len(await sets_of(client, namespace, "web")) == 1  # no rollout while paused
    await _patch(client, namespace, "web", {"spec": {"paused": False}})
    await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "the rollout after resume")
    sets = await sets_of(client, namespace, "web")
    assert [rs["spec"]["replicas"] for rs in sets] == [0, 3]


async def test_a_stuck_rollout_exceeds_its_progress_deadline(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=2, progressDeadlineSeconds=2), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "revision 1")
    await _patch(client, namespace, "web", _image_patch("busybox:broken", NOT_READY))

    async def timed_out():
        d = await client.get(DEPLOYMENTS, "web", namespace=namespace)
        c = condition(d, "Progressing")
        return c["reason"] == "ProgressDeadlineExceeded" and d
    d = await eventually(timed_out, 30, "ProgressDeadlineExceeded")
    new = (await sets_of(client, namespace, "web"))[-1]
    c = condition(d, "Progressing")
    assert (c["status"], c["message"]) == ("False", f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.')
    # The old pods still serve: maxUnavailable (25% of 2, rounded down: 0) kept them.
    assert d["status"]["availableReplicas"] == 2
    assert condition(d, "Available")["status"] == "True"


async def test_scaling_mid_rollout_is_proportional(cluster, client, namespace, eventually):
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}}
    await client.create(DEPLOYMENTS, deployment("web", replicas=10, **spec), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "revision 1")
    await _patch(client, namespace, "web", _image_patch("busybox:broken", NOT_READY))

    async def stuck():
        sets = await sets_of(client, namespace, "web")
        sizes = [rs["spec"]["replicas"] for rs in sets]
        return len(sets) == 2 and sizes == [8, 5] and sets
    await eventually(stuck, 30, "the rollout stuck at 8 old + 5 new")  # 13 = 10 + surge; 8 = 10 - 2 unavailable
    await _patch(client, namespace, "web", {"spec": {"replicas": 20}})

    async def scaled():
        sets = await sets_of(client, namespace, "web")
        return [rs["spec"]["replicas"] for rs in sets] == [14, 9] and sets
    # 23 = 20 + 3 surge allowed, 10 more than the 13 there are, spread by each one's share of the old
    # maximum (13): old 8 * 23/13 = 14.2 -> 14, new 5 * 23/13 = 8.8 -> 9.
    sets = await eventually(scaled, 30, "proportional scaling")
    for rs in sets:
        annotations = rs["metadata"]["annotations"]
        assert (annotations["deployment.kubernetes.io/desired-replicas"],
                annotations["deployment.kubernetes.io/max-replicas"]) == ("20", "23")


async def test_revision_history_limit_deletes_old_replica_sets(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=1, revisionHistoryLimit=1), namespace=namespace)
    for i in range(2, 5):
        await eventually(lambda: rollout_complete(client, namespace, "web"), 60, f"revision {i - 1}")
        await _patch(client, namespace, "web", _image_patch(f"busybox:{i}"))
    await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "revision 4")

    async def cleaned():
        sets = await sets_of(client, namespace, "web")
        return [rs["metadata"]["annotations"][REVISION] for rs in sets] == ["3", "4"]
    await eventually(cleaned, 30, "only the newest old ReplicaSet kept")


async def test_deleting_a_deployment_collects_its_replica_sets_and_pods(cluster, client, namespace, eventually):
    await client.create(DEPLOYMENTS, deployment("web", replicas=2), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "the rollout")
    await client.delete(DEPLOYMENTS, "web", namespace=namespace, propagation_policy="Background")

    async def gone():
        sets = (await client.list(REPLICA_SETS, namespace=namespace))["items"]
        return not sets and not await pods_of(client, namespace, active=False)
    await eventually(gone, 30, "ReplicaSets and pods collected")


async def test_a_restarted_manager_finishes_the_rollout(cluster, client, namespace, eventually):
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    await client.create(DEPLOYMENTS, deployment("web", replicas=4, **spec), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "web"), 30, "revision 1")
    await _patch(client, namespace, "web", _image_patch("busybox:2"))

    async def started():
        return len(await sets_of(client, namespace, "web")) == 2
    await eventually(started, 30, "the rollout under way")
    await cluster.stop("manager")
    await cluster.start_manager("manager-2")
    d = await eventually(lambda: rollout_complete(client, namespace, "web"), 60, "the rollout finished")
    assert d["metadata"]["annotations"][REVISION] == "2"
    assert [rs["spec"]["replicas"] for rs in await sets_of(client, namespace, "web")] == [0, 4]


async def _count_active(client, namespace, n):
    return len(await pods_of(client, namespace)) == n and not [
        p for p in await pods_of(client, namespace, active=False) if p["metadata"].get("deletionTimestamp")]
