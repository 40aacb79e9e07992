"""Printers for networking, storage, scheduling, node and RBAC kinds, after upstream printers.go (v1.32).

Ingresses, IngressClasses, NetworkPolicies, StorageClasses,
PriorityClasses, RuntimeClasses, RoleBindings and ClusterRoleBindings.
Roles, ClusterRoles and LimitRanges have no printer upstream: they use the
default `Name` / `Created At` table, as does every kind not listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from timoner.api._tables_base import (
    AGE,
    NAME,
    NONE,
    Column,
    Printer,
    age,
    format_label_selector,
    mapping,
    name_of,
    seq,
    text,
)

__all__ = [
    "CLUSTER_ROLE_BINDING",
    "MUTATING_WEBHOOK_CONFIGURATION",
    "VALIDATING_ADMISSION_POLICY",
    "VALIDATING_ADMISSION_POLICY_BINDING",
    "VALIDATING_WEBHOOK_CONFIGURATION",
    "INGRESS",
    "INGRESS_CLASS",
    "NETWORK_POLICY",
    "PRIORITY_CLASS",
    "ROLE_BINDING",
    "RUNTIME_CLASS",
    "STORAGE_CLASS",
]

# --- Ingress, IngressClass, NetworkPolicy -------------------------------------------------------------


def ingress_hosts(rules: Any) -> str:
    """`formatHosts`: the first three non-empty hosts, `*` when none, then `+ N more...` (counting rules)."""
    rules = [mapping(r) for r in seq(rules)]
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and text(rule.get("host")):
            hosts.append(text(rule.get("host")))
    if not hosts:
        return "*"
    joined = ",".join(hosts)
    return f"{joined} + {len(rules) - 3} more..." if more else joined


def _ingress_address(status: Mapping[str, Any]) -> str:
    points = set()
    for point in seq(mapping(status.get("loadBalancer")).get("ingress")):
        point = mapping(point)
        if text(point.get("ip")):
            points.add(text(point.get("ip")))
        elif text(point.get("hostname")):
            points.add(text(point.get("hostname")))
    return ",".join(sorted(points))


def _ingress_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = mapping(obj.get("spec"))
    class_name = spec.get("ingressClassName")
    return [
        name_of(obj),
        class_name if isinstance(class_name, str) else NONE,
        ingress_hosts(spec.get("rules")),
        _ingress_address(mapping(obj.get("status"))),
        "80, 443" if seq(spec.get("tls")) else "80",
        age(obj, now),
    ]


INGRESS = Printer(
    columns=(
        NAME,
        Column("Class", description="The name of the IngressClass resource that should be used for "
               "additional configuration"),
        Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
        Column("Address", description="Address is a list containing ingress points for the load-balancer"),
        Column("Ports", description="Ports of TLS configurations that open"),
        AGE,
    ),
    cells=_ingress_cells,
)


def _ingress_class_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = mapping(obj.get("spec"))
    parameters = NONE
    if isinstance(spec.get("parameters"), Mapping):
        ref = spec["parameters"]
        parameters = text(ref.get("kind"))
        if isinstance(ref.get("apiGroup"), str):
            parameters += "." + ref["apiGroup"]
        parameters += "/" + text(ref.get("name"))
    return [name_of(obj), text(spec.get("controller")), parameters, age(obj, now)]


INGRESS_CLASS = Printer(
    columns=(
        NAME,
        Column("Controller", description="Controller that is responsible for handling this class"),
        Column("Parameters", description="A reference to a resource with additional parameters"),
        AGE,
    ),
    cells=_ingress_class_cells,
)

NETWORK_POLICY = Printer(
    columns=(
        NAME,
        Column("Pod-Selector", description=("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector")),
        AGE,
    ),
    cells=lambda obj, now: [
        name_of(obj),
        format_label_selector(mapping(obj.get("spec")).get("podSelector")),
        age(obj, now),
    ],
)


# --- StorageClass, PriorityClass, RuntimeClass ----------------------------------------------------------

_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def _storage_class_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    annotations = mapping(mapping(obj.get("metadata")).get("annotations"))
    name = name_of(obj)
    if any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    reclaim = obj.get("reclaimPolicy")
    binding = obj.get("volumeBindingMode")
    return [
        name,
        text(obj.get("provisioner")),
        reclaim if isinstance(reclaim, str) else "Delete",
        binding if isinstance(binding, str) else "Immediate",
        obj.get("allowVolumeExpansion") is True,
        age(obj, now),
    ]


_SC = "io.k8s.api.storage.v1.StorageClass"
STORAGE_CLASS = Printer(
    columns=(
        NAME,
        Column("Provisioner", description=(_SC, "provisioner")),
        Column("ReclaimPolicy", description=(_SC, "reclaimPolicy")),
        Column("VolumeBindingMode", description=(_SC, "volumeBindingMode")),
        Column("AllowVolumeExpansion", description=(_SC, "allowVolumeExpansion")),
        AGE,
    ),
    cells=_storage_class_cells,
)


def _priority_class_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    value = obj.get("value")
    policy = obj.get("preemptionPolicy")
    return [
        name_of(obj),
        value if isinstance(value, int) and not isinstance(value, bool) else 0,
        obj.get("globalDefault") is True,
        age(obj, now),
        policy if isinstance(policy, str) else "",
    ]


_PC = "io.k8s.api.scheduling.v1.PriorityClass"
PRIORITY_CLASS = Printer(
    columns=(
        NAME,
        Column("Value", "integer", (_PC, "value")),
        Column("Global-Default", "boolean", (_PC, "globalDefault")),
        AGE,
        # Upstream lists this column without priority, yet fills it only in wide output.
        Column("PreemptionPolicy", description=(_PC, "preemptionPolicy")),
    ),
    cells=_priority_class_cells,
)

RUNTIME_CLASS = Printer(
    # Upstream looks the Handler description up in ObjectMeta's docs, which have none: it is empty.
    columns=(NAME, Column("Handler"), AGE),
    cells=lambda obj, now: [name_of(obj), text(obj.get("handler")), age(obj, now)],
)


# --- RoleBinding, ClusterRoleBinding --------------------------------------------------------------------


def _subjects(subjects: Any) -> tuple[str, str, str]:
    """`rbac.SubjectsStrings`: users, groups and `namespace/name` service accounts, each joined by ", "."""
    users, groups, accounts = [], [], []
    for subject in seq(subjects):
        subject = mapping(subject)
        kind, name = subject.get("kind"), text(subject.get("name"))
        if kind == "ServiceAccount":
            accounts.append(f"{text(subject.get('namespace'))}/{name}")
        elif kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
    return ", ".join(users), ", ".join(groups), ", ".join(accounts)


def _binding_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    ref = mapping(obj.get("roleRef"))
    return [
        name_of(obj),
        f"{text(ref.get('kind'))}/{text(ref.get('name'))}",
        age(obj, now),
        *_subjects(obj.get("subjects")),
    ]


def _binding_columns(kind: str, word: str) -> tuple[Column, ...]:
    return (
        NAME,
        Column("Role", description=(f"io.k8s.api.rbac.v1.{kind}", "roleRef")),
        AGE,
        Column("Users", description=f"Users in the {word}", priority=1),
        Column("Groups", description=f"Groups in the {word}", priority=1),
        Column("ServiceAccounts", description=f"ServiceAccounts in the {word}", priority=1),
    )


ROLE_BINDING = Printer(columns=_binding_columns("RoleBinding", "roleBinding"), cells=_binding_cells)
CLUSTER_ROLE_BINDING = Printer(
    columns=_binding_columns("ClusterRoleBinding", "clusterRoleBinding"), cells=_binding_cells
)


# --- admission registration -----------------------------------------------------------------------------


def _webhook_configuration() -> Printer:
    return Printer(
        columns=(NAME, Column("Webhooks", "integer",
                              "Webhooks indicates the number of webhooks registered in this configuration"), AGE),
        cells=lambda obj, now: [name_of(obj), len(seq(obj.get("webhooks"))), age(obj, now)],
    )


MUTATING_WEBHOOK_CONFIGURATION = _webhook_configuration()
VALIDATING_WEBHOOK_CONFIGURATION = _webhook_configuration()


def _param_kind(obj: Mapping[str, Any]) -> str:
    kind = mapping(mapping(obj.get("spec")).get("paramKind"))
    if not kind:
        return "<unset>"
    return f"{text(kind.get('apiVersion'))}/{text(kind.get('kind'))}"


def _param_ref(obj: Mapping[str, Any]) -> str:
    ref = mapping(mapping(obj.get("spec")).get("paramRef"))
    if not ref:
        return "<unset>"
    name = text(ref.get("name"))
    if name:
        namespace = text(ref.get("namespace"))
        return f"{namespace}/{name}" if namespace else f"*/{name}"
    if "selector" in ref:
        return format_label_selector(ref.get("selector"))
    return "<unset>"


VALIDATING_ADMISSION_POLICY = Printer(
    columns=(NAME,
             Column("Validations", "integer",
                    "Validations indicates the number of validation rules defined in this configuration"),
             Column("ParamKind", description="ParamKind specifies the kind of resources used to parameterize "
                    "this policy"),
             AGE),
    cells=lambda obj, now: [name_of(obj), len(seq(mapping(obj.get("spec")).get("validations"))),
                            _param_kind(obj), age(obj, now)],
)

VALIDATING_ADMISSION_POLICY_BINDING = Printer(
    columns=(NAME,
             Column("PolicyName", description="PolicyName indicates the policy definition which the policy "
                    "binding binded to"),
             Column("ParamRef", description="ParamRef indicates the param resource which sets the configration "
                    "param"),
             AGE),
    cells=lambda obj, now: [name_of(obj), text(mapping(obj.get("spec")).get("policyName")), _param_ref(obj),
                            age(obj, now)],
)
