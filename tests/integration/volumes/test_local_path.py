"""Dynamic local-path volumes end to end: default class, WaitForFirstConsumer, data across pods, reclaim.

A real API server, the controller manager (PV controller), the scheduler
(VolumeBinding) and a node agent on the process runtime (local-path
provisioner, volume manager) run in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from timoner.api.errors import NotFound
from timoner.client import EVENTS, resource_for

PODS = resource_for("v1", "Pod")
PVCS = resource_for("v1", "PersistentVolumeClaim")
PVS = resource_for("v1", "PersistentVolume")
STORAGE_CLASSES = resource_for("storage.k8s.io/v1", "StorageClass")

LOOP = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


def claim(name, size="1Gi", **spec):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}}


def pod(name, claim_name, script, *, read_only=False):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                                     "volumeMounts": [{"name": "data", "mountPath": "/srv/tmn-data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name,
                                                                            "readOnly": read_only}}]}}


async def running(client, namespace, name, eventually):
    async def check():
        current = await client.get(PODS, name, namespace=namespace)
        statuses = (current.get("status") or {}).get("containerStatuses") or []
        return current if statuses and "running" in statuses[0]["state"] else None

    return await eventually(check, timeout=60, what=f"pod {name} running")


async def gone(client, resource, name, eventually, namespace=None):
    async def check():
        try:
            await client.get(resource, name, namespace=namespace)
        except NotFound:
            return True
        return False

    await eventually(check, timeout=60, what=f"{resource.plural} {name} gone")


async def delete_pod(client, namespace, name, eventually):
    with contextlib.suppress(NotFound):
        await client.delete(PODS, name, namespace=namespace)
    await gone(client, PODS, name, eventually, namespace)


async def reasons(client, namespace, name):
    items = (await client.list(EVENTS, namespace=namespace, field_selector=f"involvedObject.name={name}"))["items"]
    return {(e["reason"], e["message"]) for e in items}


async def test_default_class_provisions_for_the_first_consumer_and_data_outlives_the_pod(
        client, namespace, cluster, eventually):
    local_path = await client.get(STORAGE_CLASSES, "local-path")
    assert local_path["provisioner"] == "rancher.io/local-path"
    assert local_path["volumeBindingMode"] == "WaitForFirstConsumer"
    assert local_path["reclaimPolicy"] == "Delete"

    created = await client.create(PVCS, claim("data", "64Mi"), namespace=namespace)
    assert created["spec"]["storageClassName"] == "local-path"  # DefaultStorageClass admission
    await eventually(lambda: reasons_include(client, namespace, "data", "WaitForFirstConsumer"), timeout=30,
                     what="the WaitForFirstConsumer event")
    assert (await client.get(PVCS, "data", namespace=namespace))["status"]["phase"] == "Pending"
    assert (await client.list(PVS))["items"] == []

    await client.create(PODS, pod("writer", "data", f"echo hello > /srv/tmn-data/greeting; {LOOP}"),
                        namespace=namespace)
    writer = await running(client, namespace, "writer", eventually)
    assert writer["spec"]["nodeName"] == cluster.node_name

    bound = await client.get(PVCS, "data", namespace=namespace)
    uid = bound["metadata"]["uid"]
    pv_name = f"pvc-{uid}"
    assert bound["spec"]["volumeName"] == pv_name
    assert bound["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "64Mi"}}
    annotations = bound["metadata"]["annotations"]
    assert annotations["volume.kubernetes.io/selected-node"] == cluster.node_name
    assert annotations["volume.kubernetes.io/storage-provisioner"] == "rancher.io/local-path"
    assert annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert annotations["pv.kubernetes.io/bound-by-controller"] == "yes"

    pv = await client.get(PVS, pv_name)
    directory = cluster.local_path / f"{namespace}_data_{pv_name}"
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["hostPath"] == {"path": str(directory), "type": "DirectoryOrCreate"}
    assert pv["spec"]["capacity"] == {"storage": "64Mi"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["storageClassName"] == "local-path"
    assert pv["spec"]["claimRef"]["uid"] == uid
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [cluster.node_name]}]}]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
    assert (directory / "greeting").read_text() == "hello\n"  # written by the container, through the mount
    assert not await asyncio.to_thread(os.path.exists, "/srv/tmn-data")  # the host's / never had it

    await delete_pod(client, namespace, "writer", eventually)
    await client.create(PODS, pod("reader", "data", LOOP, read_only=True), namespace=namespace)
    reader = await running(client, namespace, "reader", eventually)
    code, out, _ = await cluster.sh(reader, "cat /srv/tmn-data/greeting")
    assert (code, out) == (0, "hello\n")
    code, _, err = await cluster.sh(reader, "echo no > /srv/tmn-data/other")
    assert code != 0 and "Read-only" in err  # the claim's readOnly holds in the container
    await delete_pod(client, namespace, "reader", eventually)

    await client.delete(PVCS, "data", namespace=namespace)
    await gone(client, PVS, pv_name, eventually)  # Delete: the provisioner removed the directory, then the PV
    assert not directory.exists()


async def reasons_include(client, namespace, name, reason):
    return any(r == reason for r, _ in await reasons(client, namespace, name))


async def test_retain_keeps_the_released_volume_and_its_directory(client, namespace, cluster, eventually):
    await client.create(STORAGE_CLASSES, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "keep"},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer"})
    await client.create(PVCS, claim("kept", "32Mi", storageClassName="keep"), namespace=namespace)
    await client.create(PODS, pod("w", "kept", f"echo kept > /srv/tmn-data/f; {LOOP}"), namespace=namespace)
    await running(client, namespace, "w", eventually)
    pv_name = (await client.get(PVCS, "kept", namespace=namespace))["spec"]["volumeName"]
    directory = cluster.local_path / f"{namespace}_kept_{pv_name}"
    await eventually(lambda: (directory / "f").exists(), timeout=30, what="the file written")
    await delete_pod(client, namespace, "w", eventually)

    await client.delete(PVCS, "kept", namespace=namespace)
    await gone(client, PVCS, "kept", eventually, namespace)

    async def released():
        return (await client.get(PVS, pv_name))["status"]["phase"] == "Released"

    await eventually(released, timeout=30, what="the volume Released")
    await asyncio.sleep(1.0)  # give a wrong deletion the time it would need to show
    assert (await client.get(PVS, pv_name))["status"]["phase"] == "Released"
    assert (directory / "f").read_text() == "kept\n"


async def test_pod_waits_while_its_claim_is_unbound_and_starts_once_bound(client, namespace, cluster, eventually):
    """An Immediate claim with nothing to bind keeps its pod unschedulable, in upstream's words; a volume made
    for it later lets the PV controller bind it, and the pod is scheduled and starts."""
    await client.create(STORAGE_CLASSES, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "static"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"})
    await client.create(PVCS, claim("late", "10Mi", storageClassName="static"), namespace=namespace)
    await client.create(PODS, pod("p", "late", f"echo ok > /srv/tmn-data/f; {LOOP}"), namespace=namespace)

    expected = ("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
                "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")

    async def unschedulable():
        # (A first attempt may find no claim at all: the scheduler's cache can lag the claim's create.)
        current = await client.get(PODS, "p", namespace=namespace)
        conditions = (current.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "PodScheduled" and c.get("message") == expected), None)

    condition = await eventually(unschedulable, timeout=30, what="PodScheduled False: unbound immediate claims")
    assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")

    directory = cluster.root_dir.parent / "static-pv"
    directory.mkdir()
    await client.create(PVS, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"static-{namespace}"},
        "spec": {"capacity": {"storage": "20Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "static",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(directory)}}})
    await running(client, namespace, "p", eventually)
    assert (directory / "f").read_text() == "ok\n"
    assert (await client.get(PVCS, "late", namespace=namespace))["spec"]["volumeName"] == f"static-{namespace}"


async def test_scheduler_binds_a_waiting_claim_to_a_local_volume_on_its_node(client, namespace, cluster, eventually):
    """WaitForFirstConsumer without a provisioner: the scheduler picks the static volume on the node (its
    claimRef), the PV controller completes the binding, and only then is the pod bound to the node."""
    await client.create(STORAGE_CLASSES, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-disks"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"})
    disks = {}
    for name, node, size in (("elsewhere", "some-other-node", "1Gi"), ("here-big", cluster.node_name, "2Gi"),
                             ("here", cluster.node_name, "1Gi")):
        disks[name] = cluster.root_dir.parent / f"disk-{name}"
        disks[name].mkdir()
        await client.create(PVS, {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{namespace}-{name}"},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "local-disks", "persistentVolumeReclaimPolicy": "Retain",
                     "local": {"path": str(disks[name])},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
    await client.create(PVCS, claim("disk", "512Mi", storageClassName="local-disks"), namespace=namespace)
    await eventually(lambda: reasons_include(client, namespace, "disk", "WaitForFirstConsumer"), timeout=30,
                     what="the WaitForFirstConsumer event")
    assert (await client.get(PVS, f"{namespace}-here"))["status"]["phase"] == "Available"

    await client.create(PODS, pod("user", "disk", f"echo local > /srv/tmn-data/f; {LOOP}"), namespace=namespace)
    await running(client, namespace, "user", eventually)
    bound = await client.get(PVCS, "disk", namespace=namespace)
    assert bound["spec"]["volumeName"] == f"{namespace}-here"  # on this node, and the smaller of the two
    assert "volume.kubernetes.io/selected-node" not in bound["metadata"]["annotations"]  # nothing to provision
    here = await client.get(PVS, f"{namespace}-here")
    assert here["status"]["phase"] == "Bound"
    assert here["spec"]["claimRef"]["uid"] == bound["metadata"]["uid"]
    assert here["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert (disks["here"] / "f").read_text() == "local\n"
    assert (await client.get(PVS, f"{namespace}-elsewhere"))["status"]["phase"] == "Available"
