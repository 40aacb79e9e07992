"""The pod garbage collector against a real API server, with a small threshold, period and quarantine.

No node agent runs here: the tests write pod status themselves, as a kubelet would, so that each pod is
exactly in the state under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from controller_helpers import PODS, condition

from timoner.api.errors import NotFound
from timoner.client import resource_for
from timoner.controllers import Manager, new_podgc_controller

NODES = resource_for("v1", "Node")


def _start(bare, client, **options) -> Manager:
    manager = Manager(client, leader_election=False)
    manager.add(new_podgc_controller(client, manager.informers, **{"period": 0.3, **options}))
    bare.tasks["podgc"] = asyncio.create_task(manager.run())
    return manager


async def _pod(client, namespace, name, *, phase=None, reason=None, node=None, finalizers=None):
    meta = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    spec = {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 30}
    if node:
        spec["nodeName"] = node
    pod = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
                              namespace=namespace)
    if phase:
        pod["status"] = {**pod["status"], "phase": phase, **({"reason": reason} if reason else {})}
        pod = await client.update(PODS, pod, subresource="status")
    return pod


async def _names(client, namespace):
    return sorted(p["metadata"]["name"] for p in (await client.list(PODS, namespace=namespace))["items"])


async def _next_second(eventually):
    """Wait until the wall clock enters a new second, so creationTimestamps (whole seconds) differ."""
    start = int(time.time())
    await eventually(lambda: int(time.time()) > start, 5, "the next second")


async def test_terminated_pods_over_the_threshold_go_evicted_first_then_oldest(bare, client, namespace, eventually):
    await _pod(client, namespace, "zz-oldest", phase="Succeeded")
    await _next_second(eventually)
    await _pod(client, namespace, "aa-newer", phase="Succeeded")
    await _pod(client, namespace, "mm-newer", phase="Failed")
    await _pod(client, namespace, "running", phase="Running", node="n1")
    await _pod(client, namespace, "pending")
    await _next_second(eventually)
    await _pod(client, namespace, "yy-evicted", phase="Failed", reason="Evicted")

    controller = _start(bare, client, terminated_pod_threshold=2).controllers[0]
    expected = ["aa-newer", "mm-newer", "pending", "running"]
    await eventually(lambda: _same(_names(client, namespace), expected), 30, "the evicted and oldest pods deleted")
    # Later passes leave the survivors alone: two terminated pods are within the threshold.
    passes = controller.reconciles
    await eventually(lambda: controller.reconciles >= passes + 3, 20, "three more passes")
    assert await _names(client, namespace) == expected


async def test_a_zero_threshold_keeps_every_terminated_pod(bare, client, namespace, eventually):
    for i in range(3):
        await _pod(client, namespace, f"done-{i}", phase="Succeeded")
    manager = _start(bare, client, terminated_pod_threshold=0)
    await eventually(manager.leading.is_set, 20, "the collector running")
    controller = manager.controllers[0]
    await eventually(lambda: controller.reconciles >= 3, 20, "three passes")
    assert await _names(client, namespace) == ["done-0", "done-1", "done-2"]


async def test_pods_of_a_node_that_is_gone_are_failed_and_deleted_after_the_quarantine(
        bare, client, namespace, eventually):
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"{namespace}-real"}})
    try:
        await _pod(client, namespace, "kept", phase="Running", node=f"{namespace}-real")
        await _pod(client, namespace, "orphan", phase="Running", node=f"{namespace}-ghost")
        seen: list[dict] = []
        watcher = asyncio.create_task(_watch(client, namespace, seen))
        started = time.monotonic()
        _start(bare, client, quarantine=1.0)
        await eventually(lambda: _same(_names(client, namespace), ["kept"]), 30, "the orphan deleted")
        assert time.monotonic() - started >= 1.0  # not before the quarantine ended
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        marked = [o for o in seen if o["metadata"]["name"] == "orphan" and o["status"].get("phase") == "Failed"]
        assert marked, "the orphan was not marked Failed before its deletion"
        target = condition(marked[-1], "DisruptionTarget")
        assert (target["status"], target["reason"], target["message"]) == (
            "True", "DeletionByPodGC", "PodGC: node no longer exists")
    finally:
        await client.delete(NODES, f"{namespace}-real")


async def test_an_unscheduled_terminating_pod_is_failed_and_force_deleted(bare, client, namespace, eventually):
    # A finalizer keeps the pod around after the collector's delete, so its last state can be read.
    await _pod(client, namespace, "held", finalizers=["example.com/hold"])
    await client.delete(PODS, "held", namespace=namespace)
    _start(bare, client)

    async def failed():
        pod = await client.get(PODS, "held", namespace=namespace)
        return pod["status"].get("phase") == "Failed" and pod
    pod = await eventually(failed, 30, "the pod marked Failed")
    assert pod["metadata"]["deletionTimestamp"]
    await client.patch(PODS, "held", {"metadata": {"finalizers": None}}, namespace=namespace)
    await eventually(lambda: _gone(client, namespace, "held"), 30, "the pod gone")


async def test_a_terminating_pod_on_an_out_of_service_node_is_force_deleted(bare, client, namespace, eventually):
    node = f"{namespace}-down"
    await client.create(NODES, {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
        "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown",
                             "effect": "NoExecute"}]},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    try:
        await _pod(client, namespace, "stranded", phase="Running", node=node)
        await _pod(client, namespace, "alive", phase="Running", node=node)
        await client.delete(PODS, "stranded", namespace=namespace)  # graceful: waits for a kubelet that is gone
        assert (await client.get(PODS, "stranded", namespace=namespace))["metadata"]["deletionTimestamp"]
        _start(bare, client)
        await eventually(lambda: _gone(client, namespace, "stranded"), 30, "the stranded pod gone")
        assert await _names(client, namespace) == ["alive"]
    finally:
        await client.delete(NODES, node)


async def _same(names, expected):
    return await names == expected


async def _gone(client, namespace, name):
    try:
        await client.get(PODS, name, namespace=namespace)
    except NotFound:
        return True
    return False


async def _watch(client, namespace, seen):
    rv = (await client.list(PODS, namespace=namespace))["metadata"]["resourceVersion"]
    async for event in client.watch(PODS, namespace=namespace, resource_version=rv):
        seen.append(event.object)
