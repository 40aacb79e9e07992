"""Static PersistentVolumes bound by the PV controller: capacity, selector, class, pre-binding, phases, reclaim.

Only the controller manager runs here (no scheduler, no node): Immediate
claims are the controller's alone to bind.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from timoner.api.errors import NotFound
from timoner.client import EVENTS, resource_for
from timoner.controllers import new_manager

PVCS = resource_for("v1", "PersistentVolumeClaim")
PVS = resource_for("v1", "PersistentVolume")
STORAGE_CLASSES = resource_for("storage.k8s.io/v1", "StorageClass")


@pytest.fixture
async def manager(client):
    task = asyncio.create_task(new_manager(client, leader_election=False).run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def volume(name, size, *, cls="manual", labels=None, modes=("ReadWriteOnce",), policy="Retain", **spec):
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                     "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": f"/tmp/tmn-pv-{name}"}, **spec}}


def claim(name, size, *, cls="manual", modes=("ReadWriteOnce",), **spec):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
                     "storageClassName": cls, **spec}}


async def bound_volume(client, namespace, name, eventually):
    async def check():
        current = await client.get(PVCS, name, namespace=namespace)
        return current if (current.get("status") or {}).get("phase") == "Bound" else None

    return await eventually(check, timeout=30, what=f"claim {name} Bound")


async def events(client, namespace, name):
    items = (await client.list(EVENTS, namespace=namespace, field_selector=f"involvedObject.name={name}"))["items"]
    return {(e["type"], e["reason"], e["message"]) for e in items}


async def test_claims_take_the_smallest_matching_volume(client, namespace, manager, eventually):
    ns = namespace
    for pv in (volume(f"{ns}-small", "1Gi"), volume(f"{ns}-gold", "2Gi", labels={"tier": "gold"}),
               volume(f"{ns}-big", "5Gi"), volume(f"{ns}-rwx", "1Gi", modes=("ReadWriteOnce", "ReadWriteMany")),
               volume(f"{ns}-other", "1Gi", cls="other")):
        await client.create(PVS, pv)

    await client.create(PVCS, claim("a", "500Mi"), namespace=ns)
    a = await bound_volume(client, ns, "a", eventually)
    # 1Gi twice: the volume with fewer access modes goes first, as upstream's index orders them.
    assert a["spec"]["volumeName"] == f"{ns}-small"
    assert a["status"]["capacity"] == {"storage": "1Gi"}
    assert a["status"]["accessModes"] == ["ReadWriteOnce"]
    assert a["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert a["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    small = await client.get(PVS, f"{ns}-small")
    assert small["status"]["phase"] == "Bound"
    assert small["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert {k: small["spec"]["claimRef"][k] for k in ("kind", "namespace", "name", "uid")} == {
        "kind": "PersistentVolumeClaim", "namespace": ns, "name": "a", "uid": a["metadata"]["uid"]}

    await client.create(PVCS, claim("b", "1Gi", selector={"matchLabels": {"tier": "gold"}}), namespace=ns)
    await client.create(PVCS, claim("c", "3Gi"), namespace=ns)
    await client.create(PVCS, claim("shared", "1Gi", modes=("ReadWriteMany",)), namespace=ns)
    assert (await bound_volume(client, ns, "b", eventually))["spec"]["volumeName"] == f"{ns}-gold"
    assert (await bound_volume(client, ns, "c", eventually))["spec"]["volumeName"] == f"{ns}-big"
    assert (await bound_volume(client, ns, "shared", eventually))["spec"]["volumeName"] == f"{ns}-rwx"

    # Nothing left that fits: the claim waits; its class names no StorageClass, so nothing can provision it.
    await client.create(PVCS, claim("d", "1Gi"), namespace=ns)
    await eventually(lambda: events_has(client, ns, "d", "ProvisioningFailed"), timeout=30, what="ProvisioningFailed")
    assert ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "manual" not found') in await events(
        client, ns, "d")
    assert (await client.get(PVCS, "d", namespace=ns))["status"]["phase"] == "Pending"
    assert (await client.get(PVS, f"{ns}-other"))["status"]["phase"] == "Available"

    # A volume that appears later is found without any change to the claim.
    await client.create(PVS, volume(f"{ns}-late", "1Gi"))
    assert (await bound_volume(client, ns, "d", eventually))["spec"]["volumeName"] == f"{ns}-late"


async def events_has(client, namespace, name, reason):
    return any(r == reason for _, r, _ in await events(client, namespace, name))


async def test_prebound_claim_and_volume(client, namespace, manager, eventually):
    ns = namespace
    await client.create(PVS, volume(f"{ns}-small", "1Gi"))
    await client.create(PVS, volume(f"{ns}-chosen", "4Gi"))
    # The claim names its volume: it gets that one though a smaller one fits.
    await client.create(PVCS, claim("named", "1Gi", volumeName=f"{ns}-chosen"), namespace=ns)
    named = await bound_volume(client, ns, "named", eventually)
    assert named["spec"]["volumeName"] == f"{ns}-chosen"
    assert "pv.kubernetes.io/bound-by-controller" not in named["metadata"]["annotations"]  # the user chose
    chosen = await client.get(PVS, f"{ns}-chosen")
    assert chosen["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"

    # A volume reserved for a claim by name (claimRef without uid) is not given to another claim.
    await client.create(PVS, volume(f"{ns}-reserved", "1Gi",
                                    claimRef={"namespace": ns, "name": "later"}))
    await client.create(PVCS, claim("greedy", "1Gi"), namespace=ns)
    assert (await bound_volume(client, ns, "greedy", eventually))["spec"]["volumeName"] == f"{ns}-small"
    await client.create(PVCS, claim("later", "1Gi"), namespace=ns)
    later = await bound_volume(client, ns, "later", eventually)
    assert later["spec"]["volumeName"] == f"{ns}-reserved"
    reserved = await client.get(PVS, f"{ns}-reserved")
    assert reserved["spec"]["claimRef"]["uid"] == later["metadata"]["uid"]
    assert "pv.kubernetes.io/bound-by-controller" not in (reserved["metadata"].get("annotations") or {})

    # A claim naming a volume that is too small is told so, and waits.
    await client.create(PVS, volume(f"{ns}-tiny", "1Mi"))
    await client.create(PVCS, claim("misfit", "1Gi", volumeName=f"{ns}-tiny"), namespace=ns)
    await eventually(lambda: events_has(client, ns, "misfit", "VolumeMismatch"), timeout=30, what="VolumeMismatch")
    assert ("Warning", "VolumeMismatch", f'Cannot bind to requested volume "{ns}-tiny": requested PV is too small'
            ) in await events(client, ns, "misfit")
    assert (await client.get(PVS, f"{ns}-tiny"))["status"]["phase"] == "Available"


async def test_released_volumes_follow_their_reclaim_policy(client, namespace, manager, eventually):
    ns = namespace
    await client.create(PVS, volume(f"{ns}-keep", "1Gi", cls="keep"))
    await client.create(PVS, volume(f"{ns}-drop", "1Gi", cls="drop", policy="Delete"))
    await client.create(PVCS, claim("keep", "1Gi", cls="keep"), namespace=ns)
    await client.create(PVCS, claim("drop", "1Gi", cls="drop"), namespace=ns)
    await bound_volume(client, ns, "keep", eventually)
    await bound_volume(client, ns, "drop", eventually)
    await client.delete(PVCS, "keep", namespace=ns)
    await client.delete(PVCS, "drop", namespace=ns)

    async def phase(name):
        try:
            return (await client.get(PVS, name)).get("status", {}).get("phase")
        except NotFound:
            return None

    await eventually(lambda: phase_is(phase, f"{ns}-keep", "Released"), timeout=30, what="keep Released")
    # Delete without a provisioner: nothing can delete it, as upstream has no plugin for a static hostPath either.
    await eventually(lambda: phase_is(phase, f"{ns}-drop", "Failed"), timeout=30, what="drop Failed")
    dropped = await client.get(PVS, f"{ns}-drop")
    assert dropped["status"]["message"] == (f'error getting deleter volume plugin for volume "{ns}-drop": '
                                            "no deletable volume plugin matched")

    # The admin frees a Released volume by removing its claimRef: Available again, and bindable.
    kept = await client.get(PVS, f"{ns}-keep")
    del kept["spec"]["claimRef"]
    await client.update(PVS, kept)
    await eventually(lambda: phase_is(phase, f"{ns}-keep", "Available"), timeout=30, what="keep Available")
    await client.create(PVCS, claim("again", "1Gi", cls="keep"), namespace=ns)
    assert (await bound_volume(client, ns, "again", eventually))["spec"]["volumeName"] == f"{ns}-keep"


async def phase_is(phase, name, wanted):
    return await phase(name) == wanted


async def test_claim_without_class_gets_the_default_then_or_later(client, namespace, manager, eventually):
    ns = namespace
    # The bootstrap class is the default: admission names it at create.
    created = await client.create(PVCS, {**claim("x", "1Gi"), "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, namespace=ns)
    assert created["spec"]["storageClassName"] == "local-path"
    # An explicit "" means "no class", and stays so.
    empty = await client.create(PVCS, claim("none", "1Gi", cls=""), namespace=ns)
    assert empty["spec"]["storageClassName"] == ""

    # With no default at all, a claim keeps no class ...
    local_path = await client.get(STORAGE_CLASSES, "local-path")
    local_path["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] = "false"
    await client.update(STORAGE_CLASSES, local_path)
    bare = await client.create(PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "y"},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}, namespace=ns)
    assert "storageClassName" not in bare["spec"]
    # ... until a default appears: the PV controller gives it that class (retroactive assignment).
    await client.create(STORAGE_CLASSES, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/fast", "volumeBindingMode": "Immediate"})

    async def assigned():
        return (await client.get(PVCS, "y", namespace=ns))["spec"].get("storageClassName") == "fast"

    await eventually(assigned, timeout=30, what="the default class assigned")
    await eventually(lambda: events_has(client, ns, "y", "ExternalProvisioning"), timeout=30,
                     what="ExternalProvisioning")
    annotations = (await client.get(PVCS, "y", namespace=ns))["metadata"]["annotations"]
    assert annotations["volume.kubernetes.io/storage-provisioner"] == "example.com/fast"
    assert (await client.get(PVCS, "none", namespace=ns))["spec"]["storageClassName"] == ""
