"""Validation of storage, RBAC, networking, policy, autoscaling, scheduling, node and event kinds."""

from __future__ import annotations

import copy

import pytest

from timoner.api.defaults import apply_defaults
from timoner.api.registry import BUILTIN
from timoner.api.validation import validate

INFO = {(r.group, r.version, r.kind): r for r in BUILTIN}
R, INV, NS, D, F, TM = (
    "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", "FieldValueDuplicate",
    "FieldValueForbidden", "FieldValueTooMany",
)
RBAC = "rbac.authorization.k8s.io"
NET = "networking.k8s.io"


def run(gvk: tuple[str, str, str], obj: dict, old: dict | None = None) -> set[tuple[str, str]]:
    info = INFO[gvk]
    obj = copy.deepcopy(obj)
    apply_defaults(*gvk, obj)
    if old is not None:
        old = copy.deepcopy(old)
        apply_defaults(*gvk, old)
    return {(c.reason, c.field) for c in validate(info, obj, old=old)}


def m(name: str = "x", namespace: str | None = "default") -> dict:
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


PVC_SPEC = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
BACKEND = {"service": {"name": "web", "port": {"number": 80}}}


def ingress_path(**kw) -> dict:
    return {"metadata": m(), "spec": {"rules": [{"host": "example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": BACKEND, **kw}]}}]}}


CASES = [
    # PersistentVolume / PersistentVolumeClaim / StorageClass
    (("", "v1", "PersistentVolumeClaim"), {"metadata": m(), "spec": PVC_SPEC}, set()),
    (("", "v1", "PersistentVolumeClaim"), {"metadata": m(), "spec": {}},
     {(R, "spec.accessModes"), (R, "spec.resources[storage]")}),
    (("", "v1", "PersistentVolumeClaim"), {"metadata": m(), "spec": {**PVC_SPEC, "accessModes": ["ReadWriteSometimes"]}},
     {(NS, "spec.accessModes")}),
    (("", "v1", "PersistentVolumeClaim"), {"metadata": m(), "spec": {**PVC_SPEC, "resources": {"requests": {"storage": "0"}}}},
     {(INV, "spec.resources[storage]")}),
    (("", "v1", "PersistentVolume"), {"metadata": m("pv", None), "spec": {
        "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}}, set()),
    (("", "v1", "PersistentVolume"), {"metadata": m("pv", None), "spec": {"accessModes": ["ReadWriteOnce"]}},
     {(R, "spec.capacity"), (NS, "spec.capacity"), (R, "spec")}),
    (("", "v1", "PersistentVolume"), {"metadata": m("pv", None), "spec": {
        "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"},
        "nfs": {"server": "s", "path": "/p"}}}, {(F, "spec.nfs")}),
    (("storage.k8s.io", "v1", "StorageClass"), {"metadata": m("fast", None), "provisioner": "example.com/csi"}, set()),
    (("storage.k8s.io", "v1", "StorageClass"), {"metadata": m("fast", None)}, {(R, "provisioner")}),
    (("storage.k8s.io", "v1", "StorageClass"), {"metadata": m("fast", None), "provisioner": "p", "reclaimPolicy": "Recycle",
                                                "volumeBindingMode": "Later"},
     {(NS, "reclaimPolicy"), (NS, "volumeBindingMode")}),
    # RBAC
    ((RBAC, "v1", "Role"), {"metadata": m("pod-reader"), "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}, set()),
    ((RBAC, "v1", "Role"), {"metadata": m("system:reader"), "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]},
     {(R, "rules[0].verbs")}),
    ((RBAC, "v1", "Role"), {"metadata": m("a/b"), "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]},
     {(INV, "metadata.name"), (INV, "rules[0].nonResourceURLs")}),
    ((RBAC, "v1", "ClusterRole"), {"metadata": m("r", None), "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}, set()),
    ((RBAC, "v1", "ClusterRole"), {"metadata": m("r", None), "rules": [{"verbs": ["get"]}]},
     {(R, "rules[0].apiGroups"), (R, "rules[0].resources")}),
    ((RBAC, "v1", "RoleBinding"), {"metadata": m("b"), "roleRef": {"kind": "Role", "name": "r"},
                                    "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "default"}]}, set()),
    ((RBAC, "v1", "RoleBinding"), {"metadata": m("b"), "roleRef": {"kind": "Thing", "name": ""},
                                    "subjects": [{"kind": "Robot", "name": "r2"}]},
     {(NS, "roleRef.kind"), (R, "roleRef.name"), (NS, "subjects[0].kind")}),
    ((RBAC, "v1", "ClusterRoleBinding"), {"metadata": m("b", None), "roleRef": {"kind": "Role", "name": "r"},
                                           "subjects": [{"kind": "ServiceAccount", "name": "sa"}]},
     {(NS, "roleRef.kind"), (R, "subjects[0].namespace")}),
    # Networking
    ((NET, "v1", "Ingress"), ingress_path(), set()),
    ((NET, "v1", "Ingress"), {"metadata": m(), "spec": {}}, {(INV, "spec")}),
    ((NET, "v1", "Ingress"), {"metadata": m(), "spec": {"rules": [{"host": "example.com", "http": {"paths": [
        {"path": "/", "backend": BACKEND}]}}]}}, {(R, "spec.rules[0].http.paths[0].pathType")}),
    ((NET, "v1", "Ingress"), ingress_path(pathType="Regex"), {(NS, "spec.rules[0].http.paths[0].pathType")}),
    ((NET, "v1", "Ingress"), ingress_path(path="api"), {(INV, "spec.rules[0].http.paths[0].path")}),
    ((NET, "v1", "Ingress"), ingress_path(backend={"service": {"name": "web", "port": {}}}),
     {(R, "spec.rules[0].http.paths[0].backend")}),
    ((NET, "v1", "Ingress"), {"metadata": m(), "spec": {"rules": [{"host": "10.0.0.1"}]}}, {(INV, "spec.rules[0].host")}),
    ((NET, "v1", "IngressClass"), {"metadata": m("nginx", None), "spec": {"controller": "k8s.io/ingress-nginx"}}, set()),
    ((NET, "v1", "IngressClass"), {"metadata": m("nginx", None), "spec": {}}, {(R, "spec.controller")}),
    ((NET, "v1", "NetworkPolicy"), {"metadata": m(), "spec": {"podSelector": {}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 80}]}]}}, set()),
    ((NET, "v1", "NetworkPolicy"), {"metadata": m(), "spec": {"podSelector": {}, "ingress": [
        {"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}], "ports": [{"port": 70000}]}]}},
     {(R, "spec.ingress[0].from[0]"), (INV, "spec.ingress[0].from[1].ipBlock.except[0]"), (INV, "spec.ingress[0].ports[0].port")}),
    ((NET, "v1", "NetworkPolicy"), {"metadata": m(), "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}},
     {(NS, "spec.policyTypes[0]")}),
    # Discovery, coordination, events
    (("discovery.k8s.io", "v1", "EndpointSlice"), {"metadata": m(), "addressType": "IPv4",
                                                    "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}, set()),
    (("discovery.k8s.io", "v1", "EndpointSlice"), {"metadata": m(), "addressType": "IPv5",
                                                    "endpoints": [{"addresses": []}]},
     {(NS, "addressType"), (R, "endpoints[0].addresses")}),
    (("discovery.k8s.io", "v1", "EndpointSlice"), {"metadata": m(), "addressType": "IPv4",
                                                    "endpoints": [{"addresses": ["::1"]}]}, {(INV, "endpoints[0].addresses[0]")}),
    (("coordination.k8s.io", "v1", "Lease"), {"metadata": m(), "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}, set()),
    (("coordination.k8s.io", "v1", "Lease"), {"metadata": m(), "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}},
     {(INV, "spec.leaseDurationSeconds"), (INV, "spec.leaseTransitions")}),
    (("events.k8s.io", "v1", "Event"), {"metadata": m("e.1"), "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal",
                                        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1", "action": "Sync",
                                        "reason": "Synced", "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}}, set()),
    (("events.k8s.io", "v1", "Event"), {"metadata": m("e.1"), "type": "Odd"},
     {(R, "eventTime"), (INV, "type"), (R, "reportingController"), (INV, "reportingController"), (R, "reportingInstance"),
      (R, "action"), (R, "reason")}),
    # Policy, autoscaling
    (("policy", "v1", "PodDisruptionBudget"), {"metadata": m(), "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"a": "b"}}}}, set()),
    (("policy", "v1", "PodDisruptionBudget"), {"metadata": m(), "spec": {"minAvailable": 1, "maxUnavailable": "150%"}},
     {(INV, "spec"), (INV, "spec.maxUnavailable")}),
    (("autoscaling", "v2", "HorizontalPodAutoscaler"), {"metadata": m(), "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}}, set()),
    (("autoscaling", "v2", "HorizontalPodAutoscaler"), {"metadata": m(), "spec": {"scaleTargetRef": {}, "minReplicas": 3, "maxReplicas": 2}},
     {(INV, "spec.maxReplicas"), (R, "spec.scaleTargetRef.kind"), (R, "spec.scaleTargetRef.name")}),
    (("autoscaling", "v1", "HorizontalPodAutoscaler"), {"metadata": m(), "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 0, "targetCPUUtilizationPercentage": 0}},
     {(INV, "spec.maxReplicas"), (INV, "spec.targetCPUUtilizationPercentage")}),
    # Scheduling, node
    (("scheduling.k8s.io", "v1", "PriorityClass"), {"metadata": m("high", None), "value": 1000}, set()),
    (("scheduling.k8s.io", "v1", "PriorityClass"), {"metadata": m("high", None), "value": 2_000_000_000}, {(F, "value")}),
    (("scheduling.k8s.io", "v1", "PriorityClass"), {"metadata": m("system-mine", None), "value": 1}, {(F, "metadata.name")}),
    (("node.k8s.io", "v1", "RuntimeClass"), {"metadata": m("gvisor", None), "handler": "runsc"}, set()),
    (("node.k8s.io", "v1", "RuntimeClass"), {"metadata": m("gvisor", None), "handler": "Run_SC"}, {(INV, "handler")}),
]


@pytest.mark.parametrize(("gvk", "obj", "expected"), [
    pytest.param(g, o, e, id=f"{g[2]}-{i}") for i, (g, o, e) in enumerate(CASES)
])
def test_kinds(gvk, obj, expected):
    assert run(gvk, obj) == expected


def test_pvc_spec_is_immutable_except_storage_growth():
    old = {"metadata": m(), "spec": PVC_SPEC}
    grown = {"metadata": m(), "spec": {**PVC_SPEC, "resources": {"requests": {"storage": "2Gi"}}}}
    shrunk = {"metadata": m(), "spec": {**PVC_SPEC, "resources": {"requests": {"storage": "500Mi"}}}}
    changed = {"metadata": m(), "spec": {**PVC_SPEC, "accessModes": ["ReadWriteMany"]}}
    gvk = ("", "v1", "PersistentVolumeClaim")
    assert run(gvk, grown, old) == set()
    assert run(gvk, shrunk, old) == {(F, "spec.resources.requests.storage")}
    assert run(gvk, changed, old) == {(F, "spec")}


def test_pvc_without_class_may_be_given_one_once():
    """Retroactive default StorageClass assignment: nil -> a class is allowed; a class never changes again."""
    gvk = ("", "v1", "PersistentVolumeClaim")
    bare = {"metadata": m(), "spec": {k: v for k, v in PVC_SPEC.items() if k != "storageClassName"}}
    given = {"metadata": m(), "spec": {**bare["spec"], "storageClassName": "local-path"}}
    other = {"metadata": m(), "spec": {**bare["spec"], "storageClassName": "fast"}}
    empty = {"metadata": m(), "spec": {**bare["spec"], "storageClassName": ""}}
    assert run(gvk, given, bare) == set()
    assert run(gvk, other, given) == {(F, "spec")}
    assert run(gvk, given, empty) == {(F, "spec")}


def test_rolebinding_roleref_is_immutable():
    gvk = (RBAC, "v1", "RoleBinding")
    old = {"metadata": m("b"), "roleRef": {"kind": "Role", "name": "r"}}
    new = {"metadata": m("b"), "roleRef": {"kind": "Role", "name": "other"}}
    assert run(gvk, new, old) == {(INV, "roleRef")}
    assert run(gvk, copy.deepcopy(old), old) == set()


def test_storage_class_parameters_are_immutable():
    gvk = ("storage.k8s.io", "v1", "StorageClass")
    old = {"metadata": m("fast", None), "provisioner": "p.io/x", "parameters": {"type": "ssd"}}
    new = {"metadata": m("fast", None), "provisioner": "p.io/y", "parameters": {"type": "hdd"}}
    assert run(gvk, new, old) == {(F, "parameters"), (F, "provisioner")}


def test_unknown_kind_gets_metadata_checks_only():
    from timoner.api.registry import ResourceInfo
    info = ResourceInfo("example.com", "v1", "Widget", "widgets", "widget", True)
    assert validate(info, {"metadata": {"name": "ok", "namespace": "default"}, "spec": {"anything": 1}}) == []
    assert {c.field for c in validate(info, {"metadata": {"name": "Not OK", "namespace": "default"}})} == {"metadata.name"}
