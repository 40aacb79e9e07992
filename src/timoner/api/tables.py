"""Server-side table output: `meta.k8s.io/v1 Table` for `kubectl get`.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and
prints the columns the server chooses; `-o wide` shows the `priority > 0`
columns too. A plain list would leave kubectl printing only NAME and AGE.

Each built-in kind with an upstream printer (`pkg/printers/internalversion/
printers.go`, v1.32) has a `Printer` here: the same column names, types,
formats, descriptions and priorities, and cells computed the same way,
including pod STATUS and RESTARTS. Like upstream's API server, rows always
carry the wide cells; the client drops them. Every other resource (Roles,
LimitRanges, future custom resources without printer columns) gets
upstream's default table convertor: `Name` and `Created At` (RFC 3339, UTC).

Printers live in private modules split by area (`_tables_pods`,
`_tables_workloads`, `_tables_core`, `_tables_cluster`) over shared helpers
in `_tables_base`; this module owns the lookup and the Table envelope. All
of it is pure: `now` is passed in, so ages are reproducible.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from timoner.api import _tables_cluster as cluster
from timoner.api import _tables_core as core
from timoner.api import _tables_pods as pods
from timoner.api import _tables_workloads as workloads
from timoner.api._tables_base import (
    META,
    NAME,
    Column,
    Printer,
    human_duration,
    mapping,
    name_of,
    parse_time,
    since,
)
from timoner.api.jsonpath import compile_path
from timoner.api.registry import ResourceInfo

__all__ = [
    "INCLUDE_OBJECT_VALUES",
    "column_definitions",
    "human_duration",
    "printer_for",
    "row_cells",
    "to_table",
]

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")

# Keyed by (group, kind): a printer serves every version of its kind, as upstream's
# printers run on the internal type every version converts to.
_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): pods.POD,
    ("", "PodTemplate"): pods.POD_TEMPLATE,
    ("", "ReplicationController"): workloads.REPLICATION_CONTROLLER,
    ("apps", "ReplicaSet"): workloads.REPLICA_SET,
    ("apps", "Deployment"): workloads.DEPLOYMENT,
    ("apps", "StatefulSet"): workloads.STATEFUL_SET,
    ("apps", "DaemonSet"): workloads.DAEMON_SET,
    ("apps", "ControllerRevision"): workloads.CONTROLLER_REVISION,
    ("batch", "Job"): workloads.JOB,
    ("batch", "CronJob"): workloads.CRON_JOB,
    ("autoscaling", "HorizontalPodAutoscaler"): workloads.HORIZONTAL_POD_AUTOSCALER,
    ("policy", "PodDisruptionBudget"): workloads.POD_DISRUPTION_BUDGET,
    ("", "Node"): core.NODE,
    ("", "Namespace"): core.NAMESPACE,
    ("", "Service"): core.SERVICE,
    ("", "Endpoints"): core.ENDPOINTS,
    ("discovery.k8s.io", "EndpointSlice"): core.ENDPOINT_SLICE,
    ("", "ConfigMap"): core.CONFIG_MAP,
    ("", "Secret"): core.SECRET,
    ("", "ServiceAccount"): core.SERVICE_ACCOUNT,
    ("", "Event"): core.EVENT,
    ("events.k8s.io", "Event"): core.EVENT_V1,
    ("coordination.k8s.io", "Lease"): core.LEASE,
    ("", "PersistentVolume"): core.PERSISTENT_VOLUME,
    ("", "PersistentVolumeClaim"): core.PERSISTENT_VOLUME_CLAIM,
    ("", "ResourceQuota"): core.RESOURCE_QUOTA,
    ("networking.k8s.io", "Ingress"): cluster.INGRESS,
    ("networking.k8s.io", "IngressClass"): cluster.INGRESS_CLASS,
    ("networking.k8s.io", "NetworkPolicy"): cluster.NETWORK_POLICY,
    ("storage.k8s.io", "StorageClass"): cluster.STORAGE_CLASS,
    ("scheduling.k8s.io", "PriorityClass"): cluster.PRIORITY_CLASS,
    ("node.k8s.io", "RuntimeClass"): cluster.RUNTIME_CLASS,
    ("rbac.authorization.k8s.io", "RoleBinding"): cluster.ROLE_BINDING,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): cluster.MUTATING_WEBHOOK_CONFIGURATION,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): cluster.VALIDATING_WEBHOOK_CONFIGURATION,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): cluster.VALIDATING_ADMISSION_POLICY,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"):
        cluster.VALIDATING_ADMISSION_POLICY_BINDING,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): cluster.CLUSTER_ROLE_BINDING,
}

# Go's zero time.Time formatted as RFC 3339: what the default convertor prints without a timestamp.
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _default_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    raw = mapping(obj.get("metadata")).get("creationTimestamp")
    created = parse_time(raw)
    if created is not None:
        stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        stamp = _ZERO_TIME if raw in (None, "") else str(raw)
    return [name_of(obj), stamp]


# Upstream's rest.DefaultTableConvertor.
DEFAULT = Printer(
    columns=(
        Column("Name", description=(META, "name"), format="name"),
        Column("Created At", "date", (META, "creationTimestamp")),
    ),
    cells=_default_cells,
)


def printer_for(info: ResourceInfo) -> Printer:
    """The printer for a resource: its kind's upstream printer, a CRD's columns, else the default convertor."""
    if info.custom is not None:
        return custom_printer(info.custom.columns)
    return _PRINTERS.get((info.group, info.kind), DEFAULT)


_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@functools.lru_cache(maxsize=256)
def _custom_printer(columns_json: str) -> Printer:
    declared = orjson.loads(columns_json)
    columns = declared or [_AGE_COLUMN]
    defs = [NAME]
    paths = []
    for column in columns:
        path = column.get("jsonPath", "")
        description = column.get("description") or (
            (META, "creationTimestamp") if not declared
            else f"Custom resource definition column (in JSONPath format): {path}")
        defs.append(Column(column.get("name", ""), column.get("type", "string"), description,
                           int(column.get("priority") or 0), column.get("format", "")))
        try:
            paths.append(compile_path(path))
        except ValueError:
            paths.append(None)
    types = [column.get("type", "string") for column in columns]

    def cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
        out: list[Any] = [name_of(obj)]
        for find, kind in zip(paths, types, strict=True):
            found = find(obj) if find is not None else []
            out.append(_cell(kind, found[0], now) if found and found[0] is not None else None)
        return out

    return Printer(columns=tuple(defs), cells=cells)


def custom_printer(columns: Sequence[dict]) -> Printer:
    """Upstream's CRD table convertor: Name, then the version's additionalPrinterColumns (else Age)."""
    return _custom_printer(orjson.dumps(list(columns)).decode())


def _cell(kind: str, value: Any, now: datetime) -> Any:
    """cellForJSONValue: the JSON value as the column's type; None (printed `<none>`) when it is not one."""
    if kind == "integer":
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "number":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        if not isinstance(value, str):
            return None
        return "<invalid>" if parse_time(value) is None else since(value, now)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)


def column_definitions(info: ResourceInfo) -> list[dict]:
    """The Table's `columnDefinitions` for a resource, wide columns included."""
    return [column.definition() for column in printer_for(info).columns]


def row_cells(info: ResourceInfo, obj: dict, *, now: datetime) -> list:
    """One object's cells, aligned with `column_definitions(info)`; ages are relative to `now`."""
    return printer_for(info).cells(obj, now)


def _row_object(obj: Mapping[str, Any], include_object: str) -> dict[str, Any] | None:
    if include_object == "Object":
        return dict(obj)
    if include_object == "Metadata":
        # kubectl reads namespace (for -A) and labels (for --show-labels) from here.
        return {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": dict(mapping(obj.get("metadata"))),
        }
    return None


def to_table(
    info: ResourceInfo,
    objects: Sequence[dict],
    *,
    now: datetime,
    include_object: str = "Metadata",
    resource_version: str = "",
    continue_token: str = "",
    remaining: int | None = None,
) -> dict:
    """A `meta.k8s.io/v1 Table` of `objects`, one row each in the order given.

    `include_object` is the request's `includeObject`: `None` leaves rows
    without an object, `Metadata` (kubectl's default) attaches a
    PartialObjectMetadata, `Object` the object itself. Empty list-metadata
    fields are omitted as upstream's `omitempty` does; `remaining` is kept
    even when 0, since upstream sends a set pointer.
    """
    if include_object not in INCLUDE_OBJECT_VALUES:
        raise ValueError(f"includeObject must be one of {', '.join(INCLUDE_OBJECT_VALUES)}, not {include_object!r}")
    printer = printer_for(info)
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, now)}
        if printer.conditions is not None and (conditions := printer.conditions(obj)):
            row["conditions"] = conditions
        if (attached := _row_object(obj, include_object)) is not None:
            row["object"] = attached
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [column.definition() for column in printer.columns],
        "rows": rows,
    }
