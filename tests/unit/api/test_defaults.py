"""Defaulting of built-in kinds, compared with what upstream v1.32 stores for the same input.

Expected objects are written out in full, as `kubectl get -o json` shows
them after creating the input against a real cluster (and as upstream's
defaults_test.go asserts), so a change in any default shows up here.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timoner.api.defaults import apply_defaults, generate_job_selector
from timoner.api.registry import BUILTIN
from timoner.api.validation import validate

_INFO = {(r.group, r.version, r.kind): r for r in BUILTIN}

CONTAINER_DEFAULTS = {
    "imagePullPolicy": "IfNotPresent",
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "resources": {},  # Go's encoding of the value struct, which upstream always returns
}
POD_SPEC_DEFAULTS = {
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "terminationGracePeriodSeconds": 30,
    "securityContext": {},
}


def template(**spec):
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}], **spec}}


def defaulted_template(**spec):
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27", **CONTAINER_DEFAULTS}], **POD_SPEC_DEFAULTS, **spec},
    }


CASES = [
    pytest.param(
        ("apps", "v1", "Deployment"),
        {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}},
        {"metadata": {"name": "d"}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": defaulted_template(),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}},
        id="deployment",
    ),
    pytest.param(
        ("apps", "v1", "Deployment"),
        {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 0}},
        {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 0,
                  "progressDeadlineSeconds": 600}},
        id="deployment-recreate-keeps-zeroes",
    ),
    pytest.param(
        ("apps", "v1", "ReplicaSet"), {"spec": {}}, {"spec": {"replicas": 1}}, id="replicaset",
    ),
    pytest.param(
        ("apps", "v1", "StatefulSet"),
        {"spec": {"template": template(), "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}},
        {"spec": {
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "replicas": 1, "revisionHistoryLimit": 10, "template": defaulted_template(),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"volumeMode": "Filesystem"},
                                      "status": {"phase": "Pending"}}]}},
        id="statefulset",
    ),
    pytest.param(
        ("apps", "v1", "StatefulSet"),
        {"spec": {"updateStrategy": {"type": "OnDelete"}}},
        {"spec": {"podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "OnDelete"},
                  "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                  "replicas": 1, "revisionHistoryLimit": 10}},
        id="statefulset-ondelete",
    ),
    pytest.param(
        ("apps", "v1", "DaemonSet"), {"spec": {}},
        {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                  "revisionHistoryLimit": 10}},
        id="daemonset",
    ),
    pytest.param(
        ("batch", "v1", "Job"),
        {"metadata": {"name": "j"}, "spec": {"template": template(restartPolicy="Never")}},
        {"metadata": {"name": "j", "labels": {"app": "web"}}, "spec": {
            "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "suspend": False, "podReplacementPolicy": "TerminatingOrFailed",
            "template": defaulted_template(restartPolicy="Never")}},
        id="job",
    ),
    pytest.param(
        ("batch", "v1", "Job"),
        {"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "completionMode": "Indexed",
                  "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}},
        {"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "backoffLimit": 2**31 - 1, "completionMode": "Indexed",
                  "suspend": False, "podReplacementPolicy": "Failed",
                  "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [
                      {"type": "DisruptionTarget", "status": "True"}]}]}}},
        id="job-parallel-only",
    ),
    pytest.param(
        ("batch", "v1", "CronJob"),
        {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template(restartPolicy="OnFailure")}}}},
        {"spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow", "suspend": False,
                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                  "jobTemplate": {"spec": {"template": defaulted_template(restartPolicy="OnFailure")}}}},
        id="cronjob-jobtemplate-not-job-defaulted",
    ),
    pytest.param(
        ("", "v1", "ReplicationController"),
        {"spec": {"template": template()}},
        {"metadata": {"labels": {"app": "web"}},
         "spec": {"selector": {"app": "web"}, "replicas": 1, "template": defaulted_template()}},
        id="replicationcontroller",
    ),
    pytest.param(
        ("", "v1", "Service"),
        {"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}},
        {"spec": {"selector": {"app": "web"}, "type": "ClusterIP", "sessionAffinity": "None",
                  "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                            {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
                  "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}},
        id="service-clusterip",
    ),
    pytest.param(
        ("", "v1", "Service"),
        {"spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}},
        {"spec": {"type": "LoadBalancer", "sessionAffinity": "None",
                  "ports": [{"port": 443, "protocol": "TCP", "targetPort": 443}],
                  "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                  "allocateLoadBalancerNodePorts": True, "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}},
        id="service-loadbalancer",
    ),
    pytest.param(
        ("", "v1", "Service"),
        {"spec": {"type": "ExternalName", "externalName": "example.com"}},
        {"spec": {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}},
        id="service-externalname-no-ip-fields",
    ),
    pytest.param(
        ("", "v1", "Service"),
        {"spec": {"clusterIP": "None"}},
        {"spec": {"clusterIP": "None", "type": "ClusterIP", "sessionAffinity": "None",
                  "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"]}},
        id="service-headless-selectorless",
    ),
    pytest.param(
        ("", "v1", "Namespace"), {"metadata": {"name": "team-a"}},
        {"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
        id="namespace",
    ),
    pytest.param(
        ("", "v1", "Secret"), {"stringData": {"user": "admin"}, "data": {"a": "Yg=="}},
        {"type": "Opaque", "data": {"a": "Yg==", "user": "YWRtaW4="}},
        id="secret-stringdata-folded",
    ),
    pytest.param(
        ("", "v1", "PersistentVolume"), {"spec": {"hostPath": {"path": "/data"}}},
        {"spec": {"hostPath": {"path": "/data", "type": ""}, "persistentVolumeReclaimPolicy": "Retain",
                  "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}},
        id="persistentvolume",
    ),
    pytest.param(
        ("", "v1", "PersistentVolumeClaim"), {"spec": {}},
        {"spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}, id="persistentvolumeclaim",
    ),
    pytest.param(
        ("", "v1", "Node"), {"status": {"capacity": {"cpu": "4"}}},
        {"status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}}}, id="node-allocatable",
    ),
    pytest.param(
        ("", "v1", "Endpoints"), {"subsets": [{"ports": [{"port": 80}]}]},
        {"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}, id="endpoints",
    ),
    pytest.param(
        ("discovery.k8s.io", "v1", "EndpointSlice"), {"ports": [{"port": 80}]},
        {"ports": [{"port": 80, "name": "", "protocol": "TCP"}]}, id="endpointslice",
    ),
    pytest.param(
        ("", "v1", "LimitRange"),
        {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}},
                             {"type": "Pod", "max": {"cpu": "4"}}]}},
        {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"},
                              "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "1Mi"}},
                             {"type": "Pod", "max": {"cpu": "4"}}]}},
        id="limitrange",
    ),
    pytest.param(
        ("networking.k8s.io", "v1", "NetworkPolicy"),
        {"spec": {"egress": [{"ports": [{"port": 53}]}]}},
        {"spec": {"egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}], "policyTypes": ["Ingress", "Egress"]}},
        id="networkpolicy",
    ),
    pytest.param(
        ("autoscaling", "v2", "HorizontalPodAutoscaler"),
        {"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}},
        {"spec": {"maxReplicas": 3, "minReplicas": 1,
                  "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                      "type": "Utilization", "averageUtilization": 80}}}],
                  "behavior": {
                      "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                          {"type": "Pods", "value": 4, "periodSeconds": 15},
                          {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                      "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                          {"type": "Percent", "value": 100, "periodSeconds": 15}]}}}},
        id="hpa-v2-behavior",
    ),
    pytest.param(
        ("autoscaling", "v1", "HorizontalPodAutoscaler"), {"spec": {"maxReplicas": 3}},
        {"spec": {"maxReplicas": 3, "minReplicas": 1}}, id="hpa-v1",
    ),
    pytest.param(
        ("storage.k8s.io", "v1", "StorageClass"), {"provisioner": "x.io/p"},
        {"provisioner": "x.io/p", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}, id="storageclass",
    ),
    pytest.param(
        ("scheduling.k8s.io", "v1", "PriorityClass"), {"value": 5},
        {"value": 5, "preemptionPolicy": "PreemptLowerPriority"}, id="priorityclass",
    ),
    pytest.param(
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        {"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
            {"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"},
            {"kind": "ServiceAccount", "name": "s", "namespace": "n"}]},
        {"roleRef": {"kind": "Role", "name": "r", "apiGroup": "rbac.authorization.k8s.io"}, "subjects": [
            {"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "g", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "ServiceAccount", "name": "s", "namespace": "n"}]},
        id="rolebinding-subjects",
    ),
    pytest.param(("", "v1", "ConfigMap"), {"data": {"a": "b"}}, {"data": {"a": "b"}}, id="configmap-none"),
]


@pytest.mark.parametrize(("gvk", "given", "expected"), CASES)
def test_defaults_match_upstream(gvk, given, expected):
    obj = copy.deepcopy(given)
    apply_defaults(*gvk, obj)
    assert obj == expected


def test_bare_pod_gets_pod_only_and_admission_defaults():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi"}},
         "ports": [{"containerPort": 80}],
         "livenessProbe": {"httpGet": {"port": 80}},
         "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
        "volumes": [{"name": "v"}, {"name": "cm", "configMap": {"name": "x"}}, {"name": "s", "secret": {"secretName": "y"}}]}}
    apply_defaults("", "v1", "Pod", pod)
    spec = pod["spec"]
    ctr = spec["containers"][0]
    assert ctr["imagePullPolicy"] == "Always"  # no tag means :latest
    assert ctr["resources"] == {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi", "cpu": "1"}}
    assert ctr["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert ctr["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                    "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert ctr["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["volumes"] == [{"name": "v", "emptyDir": {}}, {"name": "cm", "configMap": {"name": "x", "defaultMode": 420}},
                               {"name": "s", "secret": {"secretName": "y", "defaultMode": 420}}]
    assert spec["enableServiceLinks"] is True
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("default", "default")
    assert (spec["priority"], spec["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert [t["key"] for t in spec["tolerations"]] == ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    assert pod["status"] == {"phase": "Pending"}


def test_templates_do_not_get_pod_only_defaults():
    deploy = {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]}}}}
    apply_defaults("apps", "v1", "Deployment", deploy)
    tspec = deploy["spec"]["template"]["spec"]
    assert "requests" not in tspec["containers"][0]["resources"]
    assert "enableServiceLinks" not in tspec and "serviceAccountName" not in tspec


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"), ("nginx:latest@sha256:" + "a" * 64, "Always"),
])
def test_image_pull_policy_follows_tag(image, policy):
    pod = {"spec": {"containers": [{"name": "c", "image": image}]}}
    apply_defaults("", "v1", "Pod", pod)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_user_values_are_kept():
    pod = {"spec": {"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0,
                    "serviceAccountName": "robot", "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}
    apply_defaults("", "v1", "Pod", pod)
    spec = pod["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) == ("Never", "Default", 0)
    assert (spec["serviceAccountName"], spec["containers"][0]["imagePullPolicy"]) == ("robot", "Never")


def test_generate_job_selector_makes_a_valid_job():
    job = {"metadata": {"name": "j", "namespace": "default", "uid": "1234"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}
    apply_defaults("batch", "v1", "Job", job)
    generate_job_selector(job)
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert job["spec"]["template"]["metadata"]["labels"]["job-name"] == "j"
    assert validate(_INFO[("batch", "v1", "Job")], job) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "Always", "None", "25%"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["spec", "template", "containers", "ports", "type", "replicas", "selector", "metadata",
                         "labels", "strategy", "rollingUpdate", "volumes", "name", "image", "jobTemplate"]),
        inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(gvk=st.sampled_from(sorted({(r.group, r.version, r.kind) for r in BUILTIN})), obj=st.dictionaries(
    st.sampled_from(["spec", "metadata", "status", "data", "subsets", "ports", "roleRef", "subjects"]), _json, max_size=4))
def test_defaulting_is_idempotent_and_total(gvk, obj):
    """Defaulting any shape of input never raises, and a second pass changes nothing."""
    once = copy.deepcopy(obj)
    apply_defaults(*gvk, once)
    twice = copy.deepcopy(once)
    apply_defaults(*gvk, twice)
    assert twice == once


def test_every_container_reads_back_with_resources_as_go_encodes_them():
    pod = {"spec": {"initContainers": [{"name": "i", "image": "busybox:1.36"}],
                    "containers": [{"name": "c", "image": "nginx:1.27", "resources": {"limits": {"cpu": "1"}}}],
                    "ephemeralContainers": [{"name": "e", "image": "busybox:1.36"}]}}
    apply_defaults("", "v1", "Pod", pod)
    assert pod["spec"]["initContainers"][0]["resources"] == {}
    assert pod["spec"]["ephemeralContainers"][0]["resources"] == {}
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}


def test_ingress_class_defaulting_tolerates_a_spec_that_is_not_an_object():
    obj = {"spec": True}
    apply_defaults("networking.k8s.io", "v1", "IngressClass", obj)
    assert obj == {"spec": True}
    obj = {"spec": {"controller": "x", "parameters": {"kind": "K", "name": "n"}}}
    apply_defaults("networking.k8s.io", "v1", "IngressClass", obj)
    assert obj["spec"]["parameters"]["scope"] == "Cluster"
