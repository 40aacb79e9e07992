"""Defaulting of the built-in kinds: `apply_defaults(group, version, kind, obj)` fills in place.

Mirrors upstream's `SetDefaults_*` functions (pkg/apis/*/v1/defaults.go),
plus the few defaults upstream applies elsewhere that clients rely on
seeing: a Pod's `serviceAccountName` and default tolerations (admission),
`status.phase` of Pods and Namespaces, a Namespace's `kubernetes`
finalizer (the namespace strategy), a Service's IP family fields (the
service REST layer; the cluster is single-stack IPv4) and a Secret's
`stringData` folded into `data` (API conversion). Allocation (cluster IPs,
node ports) and selector generation for Jobs stay with the server;
`generate_job_selector` is the helper for the latter.

Defaulting is idempotent and never overwrites a value the user set.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from timoner.api._defaults_pod import (
    _dict,
    _items,
    default_pod,
    default_pod_spec,
    default_pod_template,
    default_pv_sources,
    default_pvc_spec,
)
from timoner.api.customresources import crd_defaults

__all__ = ["apply_defaults", "default_pod_spec", "generate_job_selector"]

_MAX_INT32 = 2**31 - 1
_RBAC = "rbac.authorization.k8s.io"


def _deployment(obj: dict) -> None:
    spec = _dict(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _dict(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_pod_template(spec.get("template"))


def _replica_set(obj: dict) -> None:
    spec = _dict(obj, "spec")
    spec.setdefault("replicas", 1)
    default_pod_template(spec.get("template"))


def _stateful_set(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    for field in ("whenDeleted", "whenScaled"):
        if not retention.get(field):
            retention[field] = "Retain"
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    default_pod_template(spec.get("template"))
    for claim in _items(spec, "volumeClaimTemplates"):
        default_pvc_spec(_dict(claim, "spec"))
        _dict(claim, "status").setdefault("phase", "Pending")


def _daemon_set(obj: dict) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    default_pod_template(spec.get("template"))


def _job_spec_pod(spec: dict) -> None:
    default_pod_template(spec.get("template"))


def _job(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = _MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if labels and not (obj.get("metadata") or {}).get("labels"):
        _dict(obj, "metadata")["labels"] = dict(labels)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    failure_policy = spec.get("podFailurePolicy")
    for rule in _items(failure_policy, "rules"):
        for pattern in _items(rule, "onPodConditions"):
            if not pattern.get("status"):
                pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if failure_policy is not None else "TerminatingOrFailed"
    _job_spec_pod(spec)


def _cron_job(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    # SetDefaults_Job takes a Job, so a job template's JobSpec keeps its gaps; only its pod spec is defaulted.
    template = spec.get("jobTemplate")
    if isinstance(template, dict):
        _job_spec_pod(_dict(template, "spec"))


def generate_job_selector(obj: dict) -> None:
    """What the Job strategy does on create: label the template with the Job's uid and select on it.

    Needs `metadata.uid`; does nothing with `spec.manualSelector: true`.
    """
    spec = _dict(obj, "spec")
    if spec.get("manualSelector") is True:
        return
    meta = obj.get("metadata") or {}
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    template = _dict(spec, "template")
    labels = _dict(_dict(template, "metadata"), "labels")
    for key, value in (("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name),
                       ("controller-uid", uid), ("job-name", name)):
        labels.setdefault(key, value)
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def _replication_controller(obj: dict) -> None:
    spec = _dict(obj, "spec")
    template = spec.get("template")
    template_meta = template.get("metadata") if isinstance(template, dict) else None
    labels = template_meta.get("labels") if isinstance(template_meta, dict) else None
    if labels and isinstance(labels, dict):
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    spec.setdefault("replicas", 1)
    default_pod_template(spec.get("template"))


def _service(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    svc_type = spec["type"]
    for port in _items(spec, "ports"):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    accessible = svc_type in ("NodePort", "LoadBalancer") or (svc_type == "ClusterIP" and spec.get("externalIPs"))
    if accessible and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and svc_type in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if svc_type != "ExternalName":
        _ip_families(spec)


def _ip_families(spec: dict) -> None:
    # A single-stack IPv4 cluster; selectorless headless services ask for every family, as upstream.
    headless = spec.get("clusterIP") == "None" or (spec.get("clusterIPs") or [None])[0] == "None"
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless and not spec.get("selector") else "SingleStack"
    if not spec.get("ipFamilies"):
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
        spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4" for ip in ips] or ["IPv4"]


def _namespace(obj: dict) -> None:
    meta = _dict(obj, "metadata")
    if meta.get("name"):
        _dict(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    spec = _dict(obj, "spec")
    if spec.get("finalizers") is None:
        spec["finalizers"] = ["kubernetes"]
    status = _dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Active"


def _secret(obj: dict) -> None:
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _dict(obj, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _persistent_volume(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    default_pv_sources(spec)
    status = _dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _persistent_volume_claim(obj: dict) -> None:
    default_pvc_spec(_dict(obj, "spec"))
    status = _dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _node(obj: dict) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _endpoints(obj: dict) -> None:
    for subset in _items(obj, "subsets"):
        for port in _items(subset, "ports"):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def _endpoint_slice(obj: dict) -> None:
    for port in _items(obj, "ports"):
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")


def _limit_range(obj: dict) -> None:
    for item in _items(_dict(obj, "spec"), "limits"):
        if item.get("type") != "Container":
            continue
        default = dict(item.get("default") or {})
        request = dict(item.get("defaultRequest") or {})
        for name, value in (item.get("max") or {}).items():
            default.setdefault(name, value)
        for name, value in default.items():
            request.setdefault(name, value)
        for name, value in (item.get("min") or {}).items():
            request.setdefault(name, value)
        if default:
            item["default"] = default
        if request:
            item["defaultRequest"] = request


def _network_policy(obj: dict) -> None:
    spec = _dict(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in _items(spec, direction):
            for port in _items(rule, "ports"):
                if port.get("protocol") is None:
                    port["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _ingress_class(obj: dict) -> None:
    spec = obj.get("spec")
    params = spec.get("parameters") if isinstance(spec, dict) else None
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


def _scaling_rules(rules: Any, default: dict) -> dict:
    out = {**default, "policies": [dict(p) for p in default["policies"]]}
    if isinstance(rules, dict):
        for field in ("selectPolicy", "stabilizationWindowSeconds", "policies"):
            if rules.get(field) is not None:
                out[field] = rules[field]
    return out


_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _hpa_v2(obj: dict) -> None:
    spec = _dict(obj, "spec")
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _scaling_rules(behavior.get("scaleUp"), _SCALE_UP)
        behavior["scaleDown"] = _scaling_rules(behavior.get("scaleDown"), _SCALE_DOWN)


def _hpa_v1(obj: dict) -> None:
    _dict(obj, "spec").setdefault("minReplicas", 1)


def _storage_class(obj: dict) -> None:
    if obj.get("reclaimPolicy") is None:
        obj["reclaimPolicy"] = "Delete"
    if obj.get("volumeBindingMode") is None:
        obj["volumeBindingMode"] = "Immediate"


def _priority_class(obj: dict) -> None:
    if obj.get("preemptionPolicy") is None:
        obj["preemptionPolicy"] = "PreemptLowerPriority"


def _binding(obj: dict) -> None:
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = _RBAC
    for subject in _items(obj, "subjects"):
        if not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = _RBAC


def _pod_template_object(obj: dict) -> None:
    default_pod_template(obj.get("template"))


def _webhooks(obj: dict, *, mutating: bool) -> None:
    """admissionregistration/v1 `SetDefaults_{Validating,Mutating}Webhook`, `_Rule`, `_ServiceReference`."""
    for hook in _items(obj, "webhooks"):
        for key, value in (("failurePolicy", "Fail"), ("matchPolicy", "Equivalent"), ("timeoutSeconds", 10)):
            if hook.get(key) is None:
                hook[key] = value
        for key in ("namespaceSelector", "objectSelector"):
            if hook.get(key) is None:
                hook[key] = {}
        if mutating and hook.get("reinvocationPolicy") is None:
            hook["reinvocationPolicy"] = "Never"
        for rule in _items(hook, "rules"):
            if rule.get("scope") is None:
                rule["scope"] = "*"
        service = (hook.get("clientConfig") or {}).get("service") if isinstance(hook.get("clientConfig"), dict) \
            else None
        if isinstance(service, dict) and service.get("port") is None:
            service["port"] = 443


_DEFAULTERS: dict[tuple[str, str, str], Callable[[dict], None]] = {
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration"):
        lambda obj: _webhooks(obj, mutating=True),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"):
        lambda obj: _webhooks(obj, mutating=False),
    ("", "v1", "Pod"): default_pod,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): crd_defaults,
    ("", "v1", "PodTemplate"): _pod_template_object,
    ("", "v1", "ReplicationController"): _replication_controller,
    ("", "v1", "Service"): _service,
    ("", "v1", "Namespace"): _namespace,
    ("", "v1", "Secret"): _secret,
    ("", "v1", "PersistentVolume"): _persistent_volume,
    ("", "v1", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "v1", "Node"): _node,
    ("", "v1", "Endpoints"): _endpoints,
    ("", "v1", "LimitRange"): _limit_range,
    ("apps", "v1", "Deployment"): _deployment,
    ("apps", "v1", "ReplicaSet"): _replica_set,
    ("apps", "v1", "StatefulSet"): _stateful_set,
    ("apps", "v1", "DaemonSet"): _daemon_set,
    ("batch", "v1", "Job"): _job,
    ("batch", "v1", "CronJob"): _cron_job,
    ("discovery.k8s.io", "v1", "EndpointSlice"): _endpoint_slice,
    ("networking.k8s.io", "v1", "NetworkPolicy"): _network_policy,
    ("networking.k8s.io", "v1", "IngressClass"): _ingress_class,
    ("autoscaling", "v2", "HorizontalPodAutoscaler"): _hpa_v2,
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): _hpa_v1,
    ("storage.k8s.io", "v1", "StorageClass"): _storage_class,
    ("scheduling.k8s.io", "v1", "PriorityClass"): _priority_class,
    (_RBAC, "v1", "RoleBinding"): _binding,
    (_RBAC, "v1", "ClusterRoleBinding"): _binding,
}


def apply_defaults(group: str, version: str, kind: str, obj: dict) -> None:
    """Fill upstream's defaults into `obj` in place; kinds without defaults are left alone."""
    defaulter = _DEFAULTERS.get((group, version, kind))
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)
