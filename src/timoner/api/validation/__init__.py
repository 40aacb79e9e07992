"""Validation of the built-in kinds: `validate(info, obj, old=old)` returns upstream-worded causes.

The API server calls `validate` after defaulting and turns a non-empty
result into `errors.Invalid` (422) with one `details.causes` entry per
cause. Each kind has a name rule (most names are DNS-1123 subdomains;
Namespaces are labels, Services RFC 1035 labels, RBAC objects URL path
segments) and a spec check in one of the private modules, keyed by
(group, kind) so that both versions of a kind share one rule set. With
`old` given the call is an update and the spec check also enforces what
upstream keeps immutable. `ObjectMeta` update rules (name, namespace, uid,
creationTimestamp) are the server's; everything else is here.

Kinds without an entry (custom resources, review objects) get only the
`ObjectMeta` checks, with DNS-1123 subdomain names, when they have a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from timoner.api.errors import Cause
from timoner.api.registry import ResourceInfo
from timoner.api.validation import (
    _admissionregistration,
    _apps,
    _batch,
    _core,
    _other,
    _rbac,
    _service,
    _storage,
)
from timoner.api.validation._field import Path
from timoner.api.validation._meta import validate_object_meta
from timoner.api.validation._names import (
    NameFunc,
    name_is_dns1035_label,
    name_is_dns1123_label,
    name_is_dns1123_subdomain,
    name_is_path_segment,
)

__all__ = ["KindRules", "rules_for", "validate"]

Check = Callable[[dict, "dict | None"], list[Cause]]


@dataclass(frozen=True, slots=True)
class KindRules:
    """How one kind is validated: its name rule and its spec check (None: metadata only)."""

    name: NameFunc = name_is_dns1123_subdomain
    check: Check | None = None


_SUBDOMAIN = name_is_dns1123_subdomain
_RBAC = "rbac.authorization.k8s.io"

_RULES: dict[tuple[str, str], KindRules] = {
    ("", "Pod"): KindRules(_SUBDOMAIN, _core.validate_pod),
    ("", "PodTemplate"): KindRules(_SUBDOMAIN, _core.validate_pod_template_object),
    ("", "ReplicationController"): KindRules(_SUBDOMAIN, _core.validate_replication_controller),
    ("", "Service"): KindRules(name_is_dns1035_label, _service.validate_service),
    ("", "Endpoints"): KindRules(_SUBDOMAIN, _service.validate_endpoints),
    ("", "ConfigMap"): KindRules(_SUBDOMAIN, _core.validate_config_map),
    ("", "Secret"): KindRules(_SUBDOMAIN, _core.validate_secret),
    ("", "ServiceAccount"): KindRules(_SUBDOMAIN, _core.validate_service_account),
    ("", "Namespace"): KindRules(name_is_dns1123_label, _core.validate_namespace),
    ("", "Node"): KindRules(_SUBDOMAIN, _core.validate_node),
    ("", "Event"): KindRules(_SUBDOMAIN, _core.validate_event),
    ("", "LimitRange"): KindRules(_SUBDOMAIN, _core.validate_limit_range),
    ("", "ResourceQuota"): KindRules(_SUBDOMAIN, _core.validate_resource_quota),
    ("", "PersistentVolume"): KindRules(_SUBDOMAIN, _storage.validate_pv),
    ("", "PersistentVolumeClaim"): KindRules(_SUBDOMAIN, _storage.validate_pvc),
    ("apps", "Deployment"): KindRules(_SUBDOMAIN, _apps.validate_deployment),
    ("apps", "ReplicaSet"): KindRules(_SUBDOMAIN, _apps.validate_replica_set),
    ("apps", "StatefulSet"): KindRules(_SUBDOMAIN, _apps.validate_stateful_set),
    ("apps", "DaemonSet"): KindRules(_SUBDOMAIN, _apps.validate_daemon_set),
    ("apps", "ControllerRevision"): KindRules(_SUBDOMAIN, _apps.validate_controller_revision),
    ("batch", "Job"): KindRules(_SUBDOMAIN, _batch.validate_job),
    ("batch", "CronJob"): KindRules(_SUBDOMAIN, _batch.validate_cron_job),
    ("coordination.k8s.io", "Lease"): KindRules(_SUBDOMAIN, _other.validate_lease),
    ("discovery.k8s.io", "EndpointSlice"): KindRules(_SUBDOMAIN, _other.validate_endpoint_slice),
    ("events.k8s.io", "Event"): KindRules(_SUBDOMAIN, _other.validate_events_event),
    ("policy", "PodDisruptionBudget"): KindRules(_SUBDOMAIN, _other.validate_pdb),
    ("autoscaling", "HorizontalPodAutoscaler"): KindRules(_SUBDOMAIN, _other.validate_hpa),
    ("networking.k8s.io", "Ingress"): KindRules(_SUBDOMAIN, _other.validate_ingress),
    ("networking.k8s.io", "IngressClass"): KindRules(_SUBDOMAIN, _other.validate_ingress_class),
    ("networking.k8s.io", "NetworkPolicy"): KindRules(_SUBDOMAIN, _other.validate_network_policy),
    ("storage.k8s.io", "StorageClass"): KindRules(_SUBDOMAIN, _storage.validate_storage_class),
    ("scheduling.k8s.io", "PriorityClass"): KindRules(_SUBDOMAIN, _other.validate_priority_class),
    ("node.k8s.io", "RuntimeClass"): KindRules(_SUBDOMAIN, _other.validate_runtime_class),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): KindRules(_SUBDOMAIN, _other.validate_crd),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        KindRules(_SUBDOMAIN, _admissionregistration.validate_mutating_webhook_configuration),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        KindRules(_SUBDOMAIN, _admissionregistration.validate_validating_webhook_configuration),
    (_RBAC, "Role"): KindRules(name_is_path_segment, _rbac.validate_role),
    (_RBAC, "ClusterRole"): KindRules(name_is_path_segment, _rbac.validate_cluster_role),
    (_RBAC, "RoleBinding"): KindRules(name_is_path_segment, _rbac.validate_role_binding),
    (_RBAC, "ClusterRoleBinding"): KindRules(name_is_path_segment, _rbac.validate_cluster_role_binding),
}

# Review objects are never stored and carry no meaningful metadata.
_NO_META = {"SelfSubjectAccessReview", "SelfSubjectRulesReview", "SelfSubjectReview"}


def rules_for(group: str, kind: str) -> KindRules:
    """The rules for a kind; unknown kinds get metadata-only rules."""
    return _RULES.get((group, kind), KindRules())


def validate(info: ResourceInfo, obj: dict, *, old: dict | None = None) -> list[Cause]:
    """Every problem with a (defaulted) object, in upstream's order and wording; [] when valid."""
    if info.kind in _NO_META and info.group.endswith(".k8s.io"):
        return []
    rules = rules_for(info.group, info.kind)
    causes = validate_object_meta(obj.get("metadata"), info.namespaced, rules.name, path=Path("metadata"))
    if rules.check is not None:
        causes.extend(rules.check(obj, old))
    return _unique(causes)


def _unique(causes: list[Cause]) -> list[Cause]:
    # Upstream's ToAggregate drops exact duplicates (same field, same message).
    seen: set[Cause] = set()
    out = []
    for cause in causes:
        if cause not in seen:
            seen.add(cause)
            out.append(cause)
    return out
