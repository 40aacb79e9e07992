"""The StatefulSet controller against a real API server: ordered pods on a hollow node, claims, revisions, rollouts."""

from __future__ import annotations

import asyncio
import contextlib

from controller_helpers import PODS, controller_of, events_for, is_ready, pods_of

from timoner.client import resource_for

STATEFUL_SETS = resource_for("apps/v1", "StatefulSet")
REVISIONS = resource_for("apps/v1", "ControllerRevision")
PVCS = resource_for("v1", "PersistentVolumeClaim")


def stateful_set(name, *, replicas=3, image="busybox", labels=None, claims=(), **spec):
    labels = labels or {"app": name}
    template = {"metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "c", "image": image}], "terminationGracePeriodSeconds": 1}}
    body = {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": dict(labels)},
            "template": template}
    if claims:
        body["volumeClaimTemplates"] = [
            {"metadata": {"name": claim, "labels": {"tier": "db"}},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
            for claim in claims]
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": body}


async def _sts(client, namespace, name):
    return await client.get(STATEFUL_SETS, name, namespace=namespace)


async def _status_is(client, namespace, name, **want):
    sts = await _sts(client, namespace, name)
    status = sts.get("status") or {}
    return all(status.get(k, 0) == v for k, v in want.items()) and sts


async def rolled_out(client, namespace, name):
    """What `kubectl rollout status` waits for (with the defaulted partition 0), plus current == update."""
    sts = await _sts(client, namespace, name)
    s, want = sts.get("status") or {}, sts["spec"]["replicas"]
    done = (s.get("observedGeneration", 0) >= sts["metadata"]["generation"] and s.get("readyReplicas", 0) == want
            and s.get("updatedReplicas", 0) == want and s.get("currentRevision") == s.get("updateRevision"))
    return sts if done else None


class PodLog:
    """Every change to a namespace's pods, in order, as (event type, name, ready, phase, deleting)."""

    def __init__(self, client, namespace):
        self.client, self.namespace = client, namespace
        self.events: list[tuple[str, str, bool, str, bool]] = []
        self._task = None

    async def __aenter__(self):
        listed = await self.client.list(PODS, namespace=self.namespace)
        rv = listed["metadata"]["resourceVersion"]
        started = asyncio.Event()

        async def run():
            nonlocal rv
            while True:
                started.set()
                async with contextlib.aclosing(self.client.watch(PODS, namespace=self.namespace,
                                                                 resource_version=rv)) as events:
                    async for event in events:
                        pod = event.object
                        if event.type == "BOOKMARK":
                            continue
                        rv = pod["metadata"]["resourceVersion"]
                        self.events.append((event.type, pod["metadata"]["name"], is_ready(pod),
                                            (pod.get("status") or {}).get("phase", ""),
                                            bool(pod["metadata"].get("deletionTimestamp"))))

        self._task = asyncio.create_task(run())
        await started.wait()
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    def first(self, kind, name, *, ready=None, deleting=None):
        for i, (event_type, pod, is_ready_, _, is_deleting) in enumerate(self.events):
            if pod != name or event_type != kind:
                continue
            if ready is not None and is_ready_ != ready:
                continue
            if deleting is not None and is_deleting != deleting:
                continue
            return i
        return None


async def test_ordered_ready_creates_pods_in_order_each_ready_before_the_next(cluster, client, namespace,
                                                                              eventually):
    async with PodLog(client, namespace) as log:
        await client.create(STATEFUL_SETS, stateful_set("web", replicas=3), namespace=namespace)
        sts = await eventually(lambda: rolled_out(client, namespace, "web"), 60, "3 ready replicas")
    status = sts["status"]
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"], status["currentReplicas"],
            status["updatedReplicas"], status["observedGeneration"]) == (3, 3, 3, 3, 3, 1)
    assert status["currentRevision"] == status["updateRevision"] and status["collisionCount"] == 0
    # web-1 is created only once web-0 is ready, web-2 only once web-1 is.
    for before, after in (("web-0", "web-1"), ("web-1", "web-2")):
        ready = log.first("MODIFIED", before, ready=True)
        created = log.first("ADDED", after)
        assert ready is not None and created is not None and ready < created, (before, after, log.events)

    pods = {p["metadata"]["name"]: p for p in await pods_of(client, namespace)}
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    for ordinal, (name, pod) in enumerate(sorted(pods.items())):
        labels = pod["metadata"]["labels"]
        assert labels == {"app": "web", "statefulset.kubernetes.io/pod-name": name,
                          "apps.kubernetes.io/pod-index": str(ordinal),
                          "controller-revision-hash": status["updateRevision"]}
        assert pod["spec"]["hostname"] == name and pod["spec"]["subdomain"] == "web"
        assert controller_of(pod) == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                      "uid": sts["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    revisions = (await client.list(REVISIONS, namespace=namespace))["items"]
    assert [r["metadata"]["name"] for r in revisions] == [status["updateRevision"]]
    revision = revisions[0]
    assert revision["revision"] == 1 and controller_of(revision)["uid"] == sts["metadata"]["uid"]
    assert revision["metadata"]["labels"]["app"] == "web"
    assert revision["data"]["spec"]["template"]["$patch"] == "replace"

    async def created_events():
        events = await events_for(client, namespace, "web")
        created = [e for e in events if e[1] == "SuccessfulCreate"]
        return len(created) == 3 and created
    created = await eventually(created_events, 30, "3 SuccessfulCreate events")
    assert {e[2] for e in created} == {f"create Pod web-{i} in StatefulSet web successful" for i in range(3)}
    assert all(e[3] == "statefulset-controller" for e in created)


async def test_scale_down_is_in_reverse_order_one_at_a_time(cluster, client, namespace, eventually):
    await client.create(STATEFUL_SETS, stateful_set("web", replicas=3), namespace=namespace)
    await eventually(lambda: rolled_out(client, namespace, "web"), 60, "3 ready replicas")
    async with PodLog(client, namespace) as log:
        await client.patch(STATEFUL_SETS, "web", {"spec": {"replicas": 1}}, namespace=namespace)
        await eventually(lambda: _status_is(client, namespace, "web", replicas=1, readyReplicas=1), 60, "1 replica")

        async def one_left():
            return [p["metadata"]["name"] for p in await pods_of(client, namespace, active=False)] == ["web-0"]
        await eventually(one_left, 60, "only web-0 left")
    # web-2 is gone before web-1 even starts terminating.
    gone_2 = log.first("DELETED", "web-2")
    deleting_1 = log.first("MODIFIED", "web-1", deleting=True)
    assert gone_2 is not None and deleting_1 is not None and gone_2 < deleting_1, log.events
    assert log.first("MODIFIED", "web-0", deleting=True) is None

    async def deleted_events():
        events = await events_for(client, namespace, "web")
        return {e[2] for e in events if e[1] == "SuccessfulDelete"} == {
            "delete Pod web-2 in StatefulSet web successful", "delete Pod web-1 in StatefulSet web successful"}
    await eventually(deleted_events, 30, "SuccessfulDelete events")


async def test_parallel_creates_all_pods_at_once_and_ordinals_start(cluster, client, namespace, eventually):
    # No node takes these pods: Parallel does not wait for one before creating the next.
    body = stateful_set("db", replicas=3, podManagementPolicy="Parallel", ordinals={"start": 5})
    body["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "none"}
    await client.create(STATEFUL_SETS, body, namespace=namespace)

    async def three():
        names = sorted(p["metadata"]["name"] for p in await pods_of(client, namespace))
        return names == ["db-5", "db-6", "db-7"]
    await eventually(three, 30, "db-5, db-6 and db-7 created without any being ready")
    await eventually(lambda: _status_is(client, namespace, "db", replicas=3, readyReplicas=0), 30, "status")
    pod = await client.get(PODS, "db-6", namespace=namespace)
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "6"


async def test_ordered_ready_waits_for_an_unready_pod(cluster, client, namespace, eventually):
    body = stateful_set("web", replicas=3)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "none"}
    await client.create(STATEFUL_SETS, body, namespace=namespace)
    await eventually(lambda: _status_is(client, namespace, "web", replicas=1), 30, "web-0 created")
    controller = next(c for c in cluster.managers[0].controllers if c.name == "statefulset-controller")
    # Every change to the set is a sync; none of them creates web-1 while web-0 is Pending.
    for i in range(3):
        seen = controller.reconciles
        await client.patch(STATEFUL_SETS, "web", {"metadata": {"labels": {"poke": str(i)}}}, namespace=namespace)
        await eventually(lambda seen=seen: controller.reconciles > seen, 30, "another sync")
    assert [p["metadata"]["name"] for p in await pods_of(client, namespace)] == ["web-0"]


async def test_claims_are_created_from_templates_and_mounted(cluster, client, namespace, eventually):
    body = stateful_set("db", replicas=2, claims=("data",), podManagementPolicy="Parallel",
                        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"})
    sts = await client.create(STATEFUL_SETS, body, namespace=namespace)

    async def claims():
        items = (await client.list(PVCS, namespace=namespace))["items"]
        names = sorted(c["metadata"]["name"] for c in items)
        return names == ["data-db-0", "data-db-1"] and items
    items = await eventually(claims, 30, "two claims")
    for claim in items:
        assert claim["metadata"]["labels"] == {"tier": "db", "app": "db"}
        assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"

    async def owned_by_set():
        items = (await client.list(PVCS, namespace=namespace))["items"]
        refs = [c["metadata"].get("ownerReferences") for c in items]
        want = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": sts["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}]
        return len(refs) == 2 and all(r == want for r in refs)
    await eventually(owned_by_set, 30, "claims owned by the set (whenDeleted: Delete)")

    pod = await eventually(lambda: _get_or_none(client, namespace, "db-1"), 30, "db-1")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in pod["spec"]["volumes"]

    async def claim_events():
        events = await events_for(client, namespace, "db")
        return {"create Claim data-db-0 Pod db-0 in StatefulSet db success",
                "create Claim data-db-1 Pod db-1 in StatefulSet db success"} <= {e[2] for e in events}
    await eventually(claim_events, 30, "claim events")

    # whenDeleted: Delete: the claims go with the set.
    await client.delete(STATEFUL_SETS, "db", namespace=namespace)

    async def claims_gone():
        return not (await client.list(PVCS, namespace=namespace))["items"]
    await eventually(claims_gone, 60, "claims garbage collected")


async def test_retained_claims_have_no_owner(cluster, client, namespace, eventually):
    body = stateful_set("db", replicas=1, claims=("data",))
    await client.create(STATEFUL_SETS, body, namespace=namespace)

    async def claim():
        items = (await client.list(PVCS, namespace=namespace))["items"]
        return items[0] if items else None
    found = await eventually(claim, 30, "claim")
    assert found["metadata"]["name"] == "data-db-0" and not found["metadata"].get("ownerReferences")


async def _get_or_none(client, namespace, name):
    items = (await client.list(PODS, namespace=namespace, field_selector=f"metadata.name={name}"))["items"]
    return items[0] if items else None


async def test_failed_pod_is_replaced(bare, client, namespace, eventually):
    # A manager alone: pods stay Pending, so nothing but this test moves their status.
    await bare.start_manager()
    await client.create(STATEFUL_SETS, stateful_set("web", replicas=1), namespace=namespace)
    pod = await eventually(lambda: _get_or_none(client, namespace, "web-0"), 30, "web-0")
    pod["status"]["phase"] = "Failed"
    await client.update(PODS, pod, subresource="status")

    async def replaced():
        fresh = await _get_or_none(client, namespace, "web-0")
        return fresh is not None and fresh["metadata"]["uid"] != pod["metadata"]["uid"] and fresh
    fresh = await eventually(replaced, 30, "a new web-0")
    assert fresh["status"]["phase"] == "Pending"


async def test_rolling_update_goes_in_reverse_order_and_undo_renumbers(cluster, client, namespace, eventually):
    await client.create(STATEFUL_SETS, stateful_set("web", replicas=3), namespace=namespace)
    first = await eventually(lambda: rolled_out(client, namespace, "web"), 60, "3 ready replicas")
    rev1 = first["status"]["updateRevision"]
    async with PodLog(client, namespace) as log:
        await client.patch(STATEFUL_SETS, "web", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                           namespace=namespace)
        second = await eventually(lambda: _rolled_to_new(client, namespace, "web", rev1), 90, "rolled to v2")
    rev2 = second["status"]["updateRevision"]
    assert rev2 != rev1 and second["status"]["currentRevision"] == rev2
    order = [log.first("MODIFIED", f"web-{i}", deleting=True) for i in (2, 1, 0)]
    assert None not in order and order == sorted(order), log.events
    for pod in await pods_of(client, namespace):
        assert pod["metadata"]["labels"]["controller-revision-hash"] == rev2
        assert pod["metadata"]["labels"]["v"] == "2"

    # What `kubectl rollout undo` sends: revision 1's data as a strategic merge patch.
    revision1 = await client.get(REVISIONS, rev1, namespace=namespace)
    await client.patch(STATEFUL_SETS, "web", revision1["data"], namespace=namespace, patch_type="strategic")
    third = await eventually(lambda: _rolled_to_new(client, namespace, "web", rev2), 90, "rolled back")
    assert third["status"]["updateRevision"] == rev1

    async def renumbered():
        revisions = {r["metadata"]["name"]: r["revision"]
                     for r in (await client.list(REVISIONS, namespace=namespace))["items"]}
        return revisions == {rev1: 3, rev2: 2}
    await eventually(renumbered, 30, "revision 1 renumbered to 3")


async def _rolled_to_new(client, namespace, name, old_revision):
    sts = await rolled_out(client, namespace, name)
    return sts if sts is not None and sts["status"]["updateRevision"] != old_revision else None


async def test_partition_keeps_lower_ordinals_and_on_delete_waits(cluster, client, namespace, eventually):
    body = stateful_set("web", replicas=3, updateStrategy={"type": "RollingUpdate",
                                                            "rollingUpdate": {"partition": 2}})
    await client.create(STATEFUL_SETS, body, namespace=namespace)
    first = await eventually(lambda: rolled_out(client, namespace, "web"), 60, "3 ready replicas")
    rev1 = first["status"]["updateRevision"]
    await client.patch(STATEFUL_SETS, "web", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                       namespace=namespace)

    async def partitioned():
        sts = await _sts(client, namespace, "web")
        s = sts.get("status") or {}
        return (s.get("updatedReplicas") == 1 and s.get("readyReplicas") == 3 and s.get("currentRevision") == rev1
                and s.get("updateRevision") != rev1 and sts)
    sts = await eventually(partitioned, 60, "web-2 updated, web-0 and web-1 kept")
    revisions = {p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"]
                 for p in await pods_of(client, namespace)}
    assert revisions == {"web-0": rev1, "web-1": rev1, "web-2": sts["status"]["updateRevision"]}

    # OnDelete: nothing rolls until a pod is deleted by hand.
    await client.patch(STATEFUL_SETS, "web", {"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None},
                                                       "template": {"metadata": {"labels": {"v": "3"}}}}},
                       namespace=namespace)
    sts = await eventually(lambda: _status_is(client, namespace, "web", updatedReplicas=0, readyReplicas=3), 60,
                           "v3 revision known, no pod updated")
    rev3 = sts["status"]["updateRevision"]
    web0 = await client.get(PODS, "web-0", namespace=namespace)
    await client.delete(PODS, "web-0", namespace=namespace)

    async def web0_replaced():
        pod = await _get_or_none(client, namespace, "web-0")
        return (pod is not None and pod["metadata"]["uid"] != web0["metadata"]["uid"]
                and pod["metadata"]["labels"]["controller-revision-hash"] == rev3 and pod)
    await eventually(web0_replaced, 60, "web-0 recreated at the new revision")
    pod = await client.get(PODS, "web-1", namespace=namespace)
    assert pod["metadata"]["labels"]["controller-revision-hash"] == rev1


async def test_scaled_down_claims_go_with_their_pod_when_when_scaled_is_delete(cluster, client, namespace,
                                                                               eventually):
    body = stateful_set("db", replicas=2, claims=("data",), podManagementPolicy="Parallel",
                        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": "Delete"})
    body["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "none"}  # Pending pods: nothing mounts the claims
    await client.create(STATEFUL_SETS, body, namespace=namespace)

    async def claims():
        items = (await client.list(PVCS, namespace=namespace))["items"]
        return sorted(c["metadata"]["name"] for c in items) == ["data-db-0", "data-db-1"] and items
    items = await eventually(claims, 30, "two claims")
    assert all(not c["metadata"].get("ownerReferences") for c in items)  # in range: no owner while whenDeleted Retain
    await eventually(lambda: _get_or_none(client, namespace, "db-1"), 30, "db-1")

    await client.patch(STATEFUL_SETS, "db", {"spec": {"replicas": 1}}, namespace=namespace)

    async def only_claim_0():
        names = [c["metadata"]["name"] for c in (await client.list(PVCS, namespace=namespace))["items"]]
        return names == ["data-db-0"]
    await eventually(only_claim_0, 60, "data-db-1 collected with db-1")
    assert await _get_or_none(client, namespace, "db-1") is None
    events = await events_for(client, namespace, "db")
    assert ("Normal", "SuccessfulDelete", "delete Pod db-1 in StatefulSet db successful",
            "statefulset-controller") in events


async def test_max_unavailable_replaces_that_many_at_once(cluster, client, namespace, eventually):
    body = stateful_set("web", replicas=3, updateStrategy={"type": "RollingUpdate",
                                                            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}})
    await client.create(STATEFUL_SETS, body, namespace=namespace)
    first = await eventually(lambda: rolled_out(client, namespace, "web"), 60, "3 ready replicas")
    async with PodLog(client, namespace) as log:
        await client.patch(STATEFUL_SETS, "web", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                           namespace=namespace)
        await eventually(lambda: _rolled_to_new(client, namespace, "web", first["status"]["updateRevision"]), 90,
                         "rolled to v2")
    # web-2 and web-1 go together, before either comes back; web-0 only after that.
    deleting = {i: log.first("MODIFIED", f"web-{i}", deleting=True) for i in range(3)}
    back = {i: log.first("ADDED", f"web-{i}") for i in range(3)}
    assert None not in deleting.values() and None not in back.values(), log.events
    assert max(deleting[2], deleting[1]) < min(back[2], back[1]), log.events
    assert deleting[0] > min(back[2], back[1]), log.events
