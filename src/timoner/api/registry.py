"""The group/version/kind registry: which resources exist and how they are named.

A `ResourceInfo` says everything the API server, discovery, OpenAPI and the
tables need to know about one REST resource: its group, version, kind,
plural and singular names, scope, short names, categories, verbs and
subresources. `BUILTIN` lists the built-in kinds Timoner serves; custom
resources (a later issue) add `ResourceInfo`s of their own at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL_VERBS",
    "BUILTIN",
    "CREATE_ONLY_VERBS",
    "ResourceInfo",
    "Subresource",
    "builtin_index",
]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY_VERBS = ("create",)


@dataclass(frozen=True, slots=True)
class Subresource:
    """A subresource such as `status` or `scale`, with the kind it answers in."""

    name: str
    verbs: tuple[str, ...]
    group: str | None = None  # None: same group/version/kind as the parent
    version: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One REST resource served at `/api[s]/<group>/<version>/[namespaces/<ns>/]<plural>`."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    # Name of the OpenAPI definition (e.g. io.k8s.api.apps.v1.Deployment); empty for custom resources.
    definition: str = ""
    # Where the resource lives in storage when it differs from the default
    # (events.k8s.io/v1 events share core/v1 events' storage, as upstream).
    storage_group: str | None = None
    storage_resource: str | None = None
    # Custom resources: the CRD's listKind, and what the CRD version adds (`api.customresources.CustomKind`).
    list_kind_name: str = ""
    custom: Any = None

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, or `pods`: how upstream messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.list_kind_name or f"{self.kind}List"

    @property
    def storage_prefix(self) -> str:
        """`/registry/<group>/<resource>/`; the core group is stored without a group segment."""
        group = self.group if self.storage_group is None else self.storage_group
        resource = self.storage_resource or self.plural
        return f"/registry/{group}/{resource}/" if group else f"/registry/core/{resource}/"

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    @property
    def has_status(self) -> bool:
        return self.subresource("status") is not None


_STATUS = Subresource("status", ("get", "patch", "update"))
_SCALE = Subresource("scale", ("get", "patch", "update"), "autoscaling", "v1", "Scale")


def _r(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    subs: tuple[Subresource, ...] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
    definition: str | None = None,
    pkg: str | None = None,
    storage_group: str | None = None,
    storage_resource: str | None = None,
) -> ResourceInfo:
    if definition is None:
        package = pkg or (group.split(".")[0] if group else "core")
        if group in ("rbac.authorization.k8s.io",):
            package = "rbac"
        definition = f"io.k8s.api.{package}.{version}.{kind}"
    return ResourceInfo(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        categories=cats,
        verbs=verbs,
        subresources=subs,
        definition=definition,
        storage_group=storage_group,
        storage_resource=storage_resource,
    )


_ALL = ("all",)

BUILTIN: tuple[ResourceInfo, ...] = (
    # core/v1
    _r("", "v1", "Namespace", "namespaces", namespaced=False, short=("ns",),
       subs=(_STATUS, Subresource("finalize", ("update",)))),
    _r("", "v1", "Pod", "pods", short=("po",), cats=_ALL,
       subs=(_STATUS,
             Subresource("binding", ("create",), "", "v1", "Binding"),
             Subresource("eviction", ("create",), "policy", "v1", "Eviction"),
             Subresource("ephemeralcontainers", ("get", "patch", "update")),
             Subresource("log", ("get",), "", "v1", "Pod"),
             Subresource("exec", ("create", "get"), "", "v1", "PodExecOptions"),
             Subresource("attach", ("create", "get"), "", "v1", "PodAttachOptions"),
             Subresource("portforward", ("create", "get"), "", "v1", "PodPortForwardOptions"),
             Subresource("proxy", ("create", "delete", "get", "patch", "update"), "", "v1", "PodProxyOptions"))),
    _r("", "v1", "Service", "services", short=("svc",), cats=_ALL,
       subs=(_STATUS, Subresource("proxy", ("create", "delete", "get", "patch", "update"), "", "v1",
                                  "ServiceProxyOptions"))),
    _r("", "v1", "Endpoints", "endpoints", short=("ep",)),
    _r("", "v1", "ConfigMap", "configmaps", short=("cm",)),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",),
       subs=(Subresource("token", ("create",), "authentication.k8s.io", "v1", "TokenRequest"),)),
    _r("", "v1", "Event", "events", short=("ev",)),
    _r("", "v1", "Node", "nodes", namespaced=False, short=("no",),
       subs=(_STATUS, Subresource("proxy", ("create", "delete", "get", "patch", "update"), "", "v1",
                                  "NodeProxyOptions"))),
    _r("", "v1", "LimitRange", "limitranges", short=("limits",)),
    _r("", "v1", "ResourceQuota", "resourcequotas", short=("quota",), subs=(_STATUS,)),
    _r("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short=("pv",), subs=(_STATUS,)),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short=("pvc",), subs=(_STATUS,)),
    _r("", "v1", "ReplicationController", "replicationcontrollers", short=("rc",), cats=_ALL,
       subs=(_STATUS, _SCALE)),
    _r("", "v1", "PodTemplate", "podtemplates"),
    # apps/v1
    _r("apps", "v1", "Deployment", "deployments", short=("deploy",), cats=_ALL, subs=(_STATUS, _SCALE)),
    _r("apps", "v1", "ReplicaSet", "replicasets", short=("rs",), cats=_ALL, subs=(_STATUS, _SCALE)),
    _r("apps", "v1", "StatefulSet", "statefulsets", short=("sts",), cats=_ALL, subs=(_STATUS, _SCALE)),
    _r("apps", "v1", "DaemonSet", "daemonsets", short=("ds",), cats=_ALL, subs=(_STATUS,)),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    # batch/v1
    _r("batch", "v1", "Job", "jobs", cats=_ALL, subs=(_STATUS,)),
    _r("batch", "v1", "CronJob", "cronjobs", short=("cj",), cats=_ALL, subs=(_STATUS,)),
    # coordination, discovery, events, policy
    _r("coordination.k8s.io", "v1", "Lease", "leases", pkg="coordination"),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", pkg="discovery"),
    _r("events.k8s.io", "v1", "Event", "events", short=("ev",), pkg="events",
       storage_group="", storage_resource="events"),
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=("pdb",), subs=(_STATUS,)),
    # autoscaling
    _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short=("hpa",),
       cats=_ALL, subs=(_STATUS,)),
    _r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short=("hpa",),
       cats=_ALL, subs=(_STATUS,)),
    # networking
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short=("ing",), subs=(_STATUS,), pkg="networking"),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False, pkg="networking"),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=("netpol",), pkg="networking"),
    # storage, scheduling, node
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short=("sc",),
       pkg="storage"),
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False, short=("pc",),
       pkg="scheduling"),
    _r("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", namespaced=False, pkg="node"),
    # apiextensions
    _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False,
       short=("crd", "crds"), cats=("api-extensions",), subs=(_STATUS,),
       definition="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
    # rbac
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    # admission
    _r("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations",
       namespaced=False, cats=("api-extensions",), pkg="admissionregistration"),
    _r("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
       namespaced=False, cats=("api-extensions",), pkg="admissionregistration"),
    _r("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
       namespaced=False, cats=("api-extensions",), subs=(_STATUS,), pkg="admissionregistration"),
    _r("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
       "validatingadmissionpolicybindings", namespaced=False, cats=("api-extensions",),
       pkg="admissionregistration"),
    # reviews: create-only, never stored
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       namespaced=False, verbs=CREATE_ONLY_VERBS, pkg="authorization"),
    _r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
       namespaced=False, verbs=CREATE_ONLY_VERBS, pkg="authorization"),
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
       namespaced=False, verbs=CREATE_ONLY_VERBS, pkg="authentication"),
)


def builtin_index() -> dict[tuple[str, str, str], ResourceInfo]:
    """`(group, version, plural) -> ResourceInfo` for the built-in resources."""
    return {(r.group, r.version, r.plural): r for r in BUILTIN}
