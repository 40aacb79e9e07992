"""The scheduler's volume PreBind against a real API server: selected-node, waiting, and giving up.

The controller manager and the scheduler run; the Node is a bare object
with no agent (and so no provisioner) behind it, and the class names a
provisioner nobody runs: the claim is never provisioned unless the test
makes its volume.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from timoner.client import EVENTS, resource_for
from timoner.controllers import new_manager
from timoner.scheduler import Scheduler

PODS = resource_for("v1", "Pod")
PVCS = resource_for("v1", "PersistentVolumeClaim")
PVS = resource_for("v1", "PersistentVolume")
NODES = resource_for("v1", "Node")
STORAGE_CLASSES = resource_for("storage.k8s.io/v1", "StorageClass")
SELECTED = "volume.kubernetes.io/selected-node"


@pytest.fixture
async def control_plane(client):
    node = await client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                       "metadata": {"name": "bare", "labels": {"kubernetes.io/hostname": "bare"}}})
    node["status"] = {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                      "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                      "conditions": [{"type": "Ready", "status": "True"}]}
    await client.update(NODES, node, subresource="status")
    await client.create(STORAGE_CLASSES, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "later"},
        "provisioner": "example.com/nobody", "volumeBindingMode": "WaitForFirstConsumer"})
    tasks = [asyncio.create_task(new_manager(client, leader_election=False).run()),
             asyncio.create_task(Scheduler(client, initial_backoff=0.1, max_backoff=0.5).run())]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_pod_is_bound_only_once_its_claim_is(client, namespace, control_plane, eventually):
    await client.create(PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "later",
                                        "resources": {"requests": {"storage": "1Gi"}}}}, namespace=namespace)
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}},
                        namespace=namespace)

    async def annotations():
        return (await client.get(PVCS, "c", namespace=namespace))["metadata"].get("annotations") or {}

    async def selected():
        return (await annotations()).get(SELECTED) == "bare"

    await eventually(selected, timeout=30, what="the node selected for the claim")
    await eventually(lambda: has_event(client, namespace, "c", "ExternalProvisioning"), timeout=30,
                     what="ExternalProvisioning")
    assert (await annotations())["volume.kubernetes.io/storage-provisioner"] == "example.com/nobody"
    await asyncio.sleep(1.0)  # time enough for a wrong early binding to show
    assert not (await client.get(PODS, "p", namespace=namespace))["spec"].get("nodeName")

    # The provisioner gives up on this node: the scheduler's wait fails, says why, and tries again.
    claim = await client.get(PVCS, "c", namespace=namespace)
    claim["metadata"]["annotations"].pop(SELECTED)
    await client.update(PVCS, claim)
    reset = 'running PreBind plugin "VolumeBinding": selectedNode annotation reset for PVC "c"'
    # (An earlier FailedScheduling may say the claim was not found: the scheduler's cache can lag its create.)
    await eventually(lambda: has_event(client, namespace, "p", "FailedScheduling", reset), timeout=30,
                     what="FailedScheduling for the reset")
    await eventually(selected, timeout=30, what="the node selected again")

    # The volume appears (made by hand, as a provisioner would): the claim binds, then the pod.
    uid = (await client.get(PVCS, "c", namespace=namespace))["metadata"]["uid"]
    await client.create(PVS, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"v-{uid}"},
                              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                       "storageClassName": "later", "hostPath": {"path": "/tmp/tmn-unused"},
                                       "claimRef": {"namespace": namespace, "name": "c", "uid": uid}}})

    async def bound():
        return (await client.get(PODS, "p", namespace=namespace))["spec"].get("nodeName") == "bare"

    await eventually(bound, timeout=30, what="the pod bound to the node")
    assert (await client.get(PVCS, "c", namespace=namespace))["status"]["phase"] == "Bound"


async def has_event(client, namespace, name, reason, message=None):
    items = (await client.list(EVENTS, namespace=namespace, field_selector=f"involvedObject.name={name}"))["items"]
    return any(e["reason"] == reason and message in (None, e["message"]) for e in items)
