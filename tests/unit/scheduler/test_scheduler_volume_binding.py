"""VolumeBinding: claims decide nodes (bound volumes' affinity, WaitForFirstConsumer binding and provisioning)."""

from __future__ import annotations

import pytest
from scheduler_builders import make_node, make_pod

from timoner.scheduler import Code, Snapshot, StorageObjects, schedule
from timoner.scheduler.plugins import VolumeBinding, default_plugins

NS = "default"


def claim(name, size="1Gi", *, cls="local", volume="", annotations=None, deleting=False, owner_uid=""):
    meta = {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": "5",
            "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "pod", "uid": owner_uid,
                                    "controller": True}]
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": cls}
    if volume:
        spec["volumeName"] = volume
    return {"metadata": meta, "spec": spec, "status": {"phase": "Bound" if volume else "Pending"}}


def volume(name, size="1Gi", *, cls="local", node=None, claim_ref=None, phase="Available"):
    spec = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "local": {"path": f"/mnt/{name}"}}
    if node is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    if claim_ref is not None:
        spec["claimRef"] = {"namespace": NS, "name": claim_ref, "uid": f"uid-{claim_ref}"}
    return {"metadata": {"name": name, "resourceVersion": "3"}, "spec": spec, "status": {"phase": phase}}


def storage_class(name, *, provisioner="rancher.io/local-path", mode="WaitForFirstConsumer", topologies=None):
    sc = {"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode}
    if topologies:
        sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": k, "values": v} for k, v in topologies.items()]}]
    return sc


CLASSES = [storage_class("local"), storage_class("static", provisioner="kubernetes.io/no-provisioner"),
           storage_class("now", mode="Immediate"),
           storage_class("zoned", topologies={"zone": ["a"]})]
NODES = [make_node().name("n1").label("zone", "a").obj(), make_node().name("n2").label("zone", "b").obj()]


def run(pod, claims=(), volumes=()):
    snapshot = Snapshot.build(NODES, [], storage=StorageObjects.build(claims, volumes, CLASSES))
    return schedule(pod, snapshot, default_plugins())


@pytest.mark.parametrize(("claims", "volumes", "pod", "message"), [
    ([], [], make_pod().claim("missing").obj(),
     '0/2 nodes are available: persistentvolumeclaim "missing" not found. '
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([claim("gone", deleting=True)], [], make_pod().claim("gone").obj(),
     '0/2 nodes are available: persistentvolumeclaim "gone" is being deleted. '
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([claim("im", cls="now")], [], make_pod().claim("im").obj(),
     "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([claim("noclass", cls="")], [], make_pod().claim("noclass").obj(),
     "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([], [], make_pod().ephemeral("scratch").obj(),
     '0/2 nodes are available: waiting for ephemeral volume controller to create the persistentvolumeclaim '
     '"pod-scratch". preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.'),
    ([claim("pod-scratch")], [], make_pod().ephemeral("scratch").obj(),
     "0/2 nodes are available: PVC default/pod-scratch was not created for pod default/pod (pod is not owner). "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([claim("b", volume="pv-far")], [volume("pv-far", node="elsewhere", claim_ref="b", phase="Bound")],
     make_pod().claim("b").obj(),
     "0/2 nodes are available: 2 node(s) had volume node affinity conflict. "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([claim("b", volume="pv-lost")], [], make_pod().claim("b").obj(),
     "0/2 nodes are available: 2 node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s). "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ([claim("s", cls="static")], [volume("pv-small", "100Mi", cls="static", node="n1")], make_pod().claim("s").obj(),
     "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
], ids=["missing", "deleting", "immediate", "no-class", "ephemeral-missing", "ephemeral-not-owned",
        "affinity-conflict", "pv-missing", "no-static-fits"])
def test_unschedulable(claims, volumes, pod, message):
    result = run(pod, claims, volumes)
    assert result.node_name is None
    assert result.message == message
    assert all(s.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE for s in result.statuses.values())


def test_bound_volume_pins_the_pod_to_its_node():
    result = run(make_pod().claim("b").obj(), [claim("b", volume="pv-b")],
                 [volume("pv-b", node="n2", claim_ref="b", phase="Bound")])
    assert result.node_name == "n2"
    assert result.statuses["n1"].reasons == ("node(s) had volume node affinity conflict",)
    assert VolumeBinding.plan(result.state, "n2").empty


def test_pod_without_claims_is_not_looked_at():
    result = run(make_pod().obj())
    assert result.node_name == "n1"
    assert not VolumeBinding.plan(result.state, "n1").claims


def test_delayed_claim_takes_the_smallest_fitting_static_volume_on_the_node():
    claims = [claim("big", "2Gi", cls="static"), claim("small", "500Mi", cls="static")]
    volumes = [volume("pv-n1-3g", "3Gi", cls="static", node="n1"), volume("pv-n1-1g", "1Gi", cls="static", node="n1"),
               volume("pv-n1-600m", "600Mi", cls="static", node="n1"),
               volume("pv-n2-1g", "1Gi", cls="static", node="n2"),
               volume("pv-n1-taken", "1Gi", cls="static", node="n1", claim_ref="someone", phase="Bound")]
    result = run(make_pod().claim("big").claim("small").obj(), claims, volumes)
    # n2 has nothing for the 2Gi claim; on n1 the smaller claim goes first and takes the 600Mi volume.
    assert result.node_name == "n1"
    assert result.statuses["n2"].reasons == ("node(s) didn't find available persistent volumes to bind",)
    plan = VolumeBinding.plan(result.state, "n1")
    assert [(v["metadata"]["name"], c["metadata"]["name"]) for v, c in plan.bindings] == [
        ("pv-n1-600m", "small"), ("pv-n1-3g", "big")]
    assert plan.provisions == ()
    assert {c["metadata"]["name"] for c in plan.claims} == {"big", "small"}


def test_delayed_claim_without_a_volume_is_provisioned_where_the_class_allows():
    result = run(make_pod().claim("d").obj(), [claim("d")])
    assert result.node_name == "n1"
    plan = VolumeBinding.plan(result.state, "n1")
    assert plan.bindings == ()
    assert [c["metadata"]["name"] for c in plan.provisions] == ["d"]

    zoned = run(make_pod().node_selector(zone="b").claim("z").obj(), [claim("z", cls="zoned")])
    assert zoned.node_name is None  # n2 matches the pod, but the class only provisions in zone a


def test_volume_prebound_to_the_claim_is_used_even_when_larger():
    claims = [claim("p", "1Gi", cls="static")]
    volumes = [volume("pv-small", "1Gi", cls="static", node="n1"),
               volume("pv-reserved", "5Gi", cls="static", node="n2", claim_ref="p", phase="Available")]
    result = run(make_pod().claim("p").obj(), claims, volumes)
    assert result.node_name == "n2"
    assert [v["metadata"]["name"] for v, _ in VolumeBinding.plan(result.state, "n2").bindings] == ["pv-reserved"]
