"""The ReplicaSet (and ReplicationController) controller against a real API server, with a hollow node."""

from __future__ import annotations

import asyncio
import contextlib
import re

from controller_helpers import (
    PODS,
    RCS,
    REPLICA_SETS,
    condition,
    controller_of,
    events_for,
    is_ready,
    pods_of,
    replica_set,
)

from timoner.api.errors import Forbidden, NotFound
from timoner.client import Client, load_kubeconfig
from timoner.controllers import Manager, new_replicaset_controller


async def _rs(client, namespace, name):
    return await client.get(REPLICA_SETS, name, namespace=namespace)


async def test_replicaset_creates_ready_pods_named_after_it_and_reports_status(cluster, client, namespace, eventually):
    await client.create(REPLICA_SETS, replica_set("web", replicas=3), namespace=namespace)

    async def ready():
        rs = await _rs(client, namespace, "web")
        s = rs.get("status") or {}
        return (s.get("replicas"), s.get("readyReplicas"), s.get("availableReplicas"),
                s.get("fullyLabeledReplicas"), s.get("observedGeneration")) == (3, 3, 3, 3, 1) and rs

    rs = await eventually(ready, 30, "3 ready replicas")
    pods = await pods_of(client, namespace)
    assert len(pods) == 3 and all(is_ready(p) for p in pods)
    for pod in pods:
        assert re.fullmatch(r"web-[a-z0-9]{5}", pod["metadata"]["name"]), pod["metadata"]["name"]
        ref = controller_of(pod)
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs["metadata"]["uid"],
                       "controller": True, "blockOwnerDeletion": True}
        assert pod["metadata"]["labels"] == {"app": "web"}

    async def three_created():
        events = await events_for(client, namespace, "web")
        return len([e for e in events if e[1] == "SuccessfulCreate"]) == 3 and events
    events = await eventually(three_created, 30, "3 SuccessfulCreate events")
    created = [e for e in events if e[1] == "SuccessfulCreate"]
    assert len(created) == 3 and all(e[3] == "replicaset-controller" for e in created)
    assert {e[2] for e in created} == {f"Created pod: {p['metadata']['name']}" for p in pods}


async def test_scaling_down_deletes_the_unscheduled_pod_first(bare, client, namespace, eventually):
    # An orphan the scheduler cannot place (no node has the label): adopted, Pending and unassigned.
    stuck = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck", "labels": {"app": "web"}},
             "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeSelector": {"disk": "none"}}}
    await client.create(PODS, stuck, namespace=namespace)
    await client.create(REPLICA_SETS, replica_set("web", replicas=3), namespace=namespace)
    await _start_after_objects(bare)
    await eventually(lambda: _status_is(client, namespace, "web", replicas=3, readyReplicas=2), 30,
                     "2 ready pods and the stuck one")
    pod = await client.get(PODS, "stuck", namespace=namespace)
    assert controller_of(pod)["name"] == "web" and not pod["spec"].get("nodeName")
    assert len(await pods_of(client, namespace)) == 3

    await client.patch(REPLICA_SETS, "web", {"spec": {"replicas": 2}}, namespace=namespace)

    async def stuck_gone():
        names = {p["metadata"]["name"] for p in await pods_of(client, namespace)}
        return len(names) == 2 and "stuck" not in names
    await eventually(stuck_gone, 30, "the unscheduled pod deleted")
    deleted = ("Normal", "SuccessfulDelete", "Deleted pod: stuck", "replicaset-controller")

    async def recorded():
        return deleted in await events_for(client, namespace, "web")
    await eventually(recorded, 30, "the SuccessfulDelete event")
    await eventually(lambda: _status_is(client, namespace, "web", replicas=2, readyReplicas=2), 30, "2 ready")


async def test_orphans_are_adopted_and_pods_that_stop_matching_are_released(bare, client, namespace, eventually):
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "stray", "labels": {"app": "web"}},
              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    await client.create(PODS, orphan, namespace=namespace)
    await client.create(REPLICA_SETS, replica_set("web", replicas=2), namespace=namespace)
    rs = await _rs(client, namespace, "web")
    await _start_after_objects(bare)

    async def adopted():
        pod = await client.get(PODS, "stray", namespace=namespace)
        return (controller_of(pod) or {}).get("uid") == rs["metadata"]["uid"] and pod
    pod = await eventually(adopted, 30, "the orphan adopted")
    assert controller_of(pod)["blockOwnerDeletion"] is True
    await eventually(lambda: _status_is(client, namespace, "web", replicas=2, readyReplicas=2), 30, "2 ready")
    assert len(await pods_of(client, namespace)) == 2  # the adopted pod counts: only one was created

    await client.patch(PODS, "stray", {"metadata": {"labels": {"app": "other"}}}, namespace=namespace)

    async def released():
        pod = await client.get(PODS, "stray", namespace=namespace)
        return controller_of(pod) is None and pod
    await eventually(released, 30, "the pod released")
    # ... and replaced: two pods match again, besides the released one.
    await eventually(lambda: _count(client, namespace, "app=web", 2), 30, "a replacement")


async def test_a_deleted_pod_is_replaced_once(cluster, client, namespace, eventually):
    await client.create(REPLICA_SETS, replica_set("web", replicas=5), namespace=namespace)
    await eventually(lambda: _status_is(client, namespace, "web", readyReplicas=5), 30, "5 ready")
    victim = (await pods_of(client, namespace))[0]["metadata"]["name"]
    await client.delete(PODS, victim, namespace=namespace)

    async def replaced():
        names = {p["metadata"]["name"] for p in await pods_of(client, namespace, active=False)}
        return victim not in names and len(names) == 5 and await _status_is(
            client, namespace, "web", replicas=5, readyReplicas=5)
    await eventually(replaced, 30, "the pod replaced")

    async def creates():
        return len([e for e in await events_for(client, namespace, "web") if e[1] == "SuccessfulCreate"])
    assert await eventually(lambda: _at_least(creates, 6), 30, "6 creates") and await creates() == 6


class RefusingClient(Client):
    """A real client whose pod creates start failing after `allow` of them (as a quota or admission would)."""

    allow: int | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes: list[bool] = []  # one per pod create: allowed or refused

    async def create(self, resource, obj, **kwargs):
        if resource == PODS:
            refused = self.allow is not None and len(self.outcomes) >= self.allow
            self.outcomes.append(not refused)
            if refused:
                raise Forbidden('pods "x" is forbidden: exceeded quota: compute-resources')
        return await super().create(resource, obj, **kwargs)


async def test_failed_creates_stop_the_slow_start_and_set_replica_failure(server, client, namespace, eventually):
    async with RefusingClient(load_kubeconfig(server.kubeconfig)) as refusing:
        refusing.allow = 3
        manager = Manager(refusing, leader_election=False)
        manager.add(new_replicaset_controller(refusing, manager.informers))
        task = asyncio.create_task(manager.run())
        try:
            await client.create(REPLICA_SETS, replica_set("web", replicas=10), namespace=namespace)

            async def failing():
                rs = await _rs(client, namespace, "web")
                return condition(rs, "ReplicaFailure") and rs["status"]["replicas"] == 3 and rs
            rs = await eventually(failing, 30, "the ReplicaFailure condition with the 3 pods counted")
            # Batches of 1, 2 and 4: the third met the refusal, so no batch of 8 was tried. The retries
            # since (with backoff) each start over with a batch of one.
            outcomes = refusing.outcomes
            assert outcomes[:7] == [True] * 3 + [False] * 4, outcomes
            assert not any(outcomes[7:]), outcomes
            cond = condition(rs, "ReplicaFailure")
            assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
            assert "exceeded quota" in cond["message"]
            events = await events_for(client, namespace, "web")
            assert any(e[:2] == ("Warning", "FailedCreate") and "exceeded quota" in e[2] for e in events)

            refusing.allow = None  # the quota is lifted: the next retry creates the rest and clears the condition

            async def recovered():
                rs = await _rs(client, namespace, "web")
                return condition(rs, "ReplicaFailure") is None and rs["status"]["replicas"] == 10
            await eventually(recovered, 60, "all 10 created and the condition cleared")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_replication_controller_runs_pods_too(cluster, client, namespace, eventually):
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old"},
          "spec": {"replicas": 2, "selector": {"app": "old"},
                   "template": {"metadata": {"labels": {"app": "old"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    await client.create(RCS, rc, namespace=namespace)

    async def ready():
        s = (await client.get(RCS, "old", namespace=namespace)).get("status") or {}
        return s.get("readyReplicas") == 2 and s.get("replicas") == 2
    await eventually(ready, 30, "2 ready RC replicas")
    pods = await pods_of(client, namespace)
    assert {controller_of(p)["kind"] for p in pods} == {"ReplicationController"}

    async def two_created():
        events = await events_for(client, namespace, "old")
        return [e for e in events if e[1] == "SuccessfulCreate"] if len(events) >= 2 else None
    created = await eventually(two_created, 30, "2 SuccessfulCreate events")
    assert {e[3] for e in created} == {"replication-controller"}


async def _start_after_objects(cluster):
    """Node, scheduler and controller manager, started once the test's orphan pod and ReplicaSet exist.

    The manager's informers list both before any controller runs, so the first sync counts the orphan. A
    manager already running watches pods and ReplicaSets on two streams and may see the ReplicaSet first:
    it then creates every replica, adopts the orphan as one too many and deletes a pod (upstream does the
    same), which is right but not what these tests look at.
    """
    await cluster.start_node()
    cluster.start_scheduler()
    await cluster.start_manager()


async def _status_is(client, namespace, name, **want):
    try:
        s = (await _rs(client, namespace, name)).get("status") or {}
    except NotFound:
        return False
    return all(s.get(k, 0) == v for k, v in want.items())


async def _count(client, namespace, selector, n):
    return len(await pods_of(client, namespace, selector=selector)) == n


async def _at_least(count, n):
    return await count() >= n
