"""Printers for the workload controllers and their helpers, after upstream printers.go (v1.32).

ReplicationControllers, ReplicaSets, Deployments, StatefulSets, DaemonSets,
Jobs, CronJobs, ControllerRevisions, HorizontalPodAutoscalers and
PodDisruptionBudgets. The API server always renders the wide columns
(upstream calls its printers with `Wide: true`); kubectl hides
`priority > 0` columns itself unless asked for `-o wide`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from timoner.api._tables_base import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    NONE,
    Column,
    Printer,
    age,
    bool_ptr,
    container_cells,
    elapsed,
    format_label_selector,
    format_labels,
    integer,
    label_selector_string,
    mapping,
    name_of,
    parse_time,
    seq,
    since,
    text,
)

__all__ = [
    "CONTROLLER_REVISION",
    "CRON_JOB",
    "DAEMON_SET",
    "DEPLOYMENT",
    "HORIZONTAL_POD_AUTOSCALER",
    "JOB",
    "POD_DISRUPTION_BUDGET",
    "REPLICATION_CONTROLLER",
    "REPLICA_SET",
    "STATEFUL_SET",
]

_APPS = "io.k8s.api.apps.v1."
_BATCH = "io.k8s.api.batch.v1."
_CORE = "io.k8s.api.core.v1."
_HPA = "io.k8s.api.autoscaling.v2."


def _template_containers(template: Any) -> tuple[str, str]:
    return container_cells(mapping(mapping(template).get("spec")).get("containers"))


# --- ReplicationController, ReplicaSet --------------------------------------------------------------


def _replica_cells(format_selector: Callable[[Any], str]) -> Callable[[Mapping[str, Any], datetime], list[Any]]:
    """Cells of ReplicationControllers and ReplicaSets, which differ only in their selector's form."""

    def cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
        spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
        names, images = _template_containers(spec.get("template"))
        return [
            name_of(obj),
            integer(spec.get("replicas")),
            integer(status.get("replicas")),
            integer(status.get("readyReplicas")),
            age(obj, now),
            names,
            images,
            format_selector(spec.get("selector")),
        ]

    return cells


_rc_cells = _replica_cells(format_labels)


def _replica_columns(spec: str, status: str) -> tuple[Column, ...]:
    return (
        NAME,
        Column("Desired", "integer", (spec, "replicas")),
        Column("Current", "integer", (status, "replicas")),
        Column("Ready", "integer", (status, "readyReplicas")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", description=(spec, "selector"), priority=1),
    )


REPLICATION_CONTROLLER = Printer(
    columns=_replica_columns(_CORE + "ReplicationControllerSpec", _CORE + "ReplicationControllerStatus"),
    cells=_rc_cells,
)


_rs_cells = _replica_cells(format_label_selector)


REPLICA_SET = Printer(
    columns=_replica_columns(_APPS + "ReplicaSetSpec", _APPS + "ReplicaSetStatus"),
    cells=_rs_cells,
)


# --- Deployment, StatefulSet, DaemonSet ---------------------------------------------------------------


def _deployment_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    try:
        # Unlike the other printers, an empty selector prints as "" here, not <none>.
        selector = label_selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    names, images = _template_containers(spec.get("template"))
    return [
        name_of(obj),
        f"{integer(status.get('readyReplicas'))}/{integer(spec.get('replicas'))}",
        integer(status.get("updatedReplicas")),
        integer(status.get("availableReplicas")),
        age(obj, now),
        names,
        images,
        selector,
    ]


DEPLOYMENT = Printer(
    columns=(
        NAME,
        Column("Ready", description="Number of the pod with ready state"),
        Column("Up-to-date", description=(_APPS + "DeploymentStatus", "updatedReplicas")),
        Column("Available", description=(_APPS + "DeploymentStatus", "availableReplicas")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", description=(_APPS + "DeploymentSpec", "selector"), priority=1),
    ),
    cells=_deployment_cells,
)


def _statefulset_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    names, images = _template_containers(spec.get("template"))
    ready = f"{integer(status.get('readyReplicas'))}/{integer(spec.get('replicas'))}"
    return [name_of(obj), ready, age(obj, now), names, images]


STATEFUL_SET = Printer(
    columns=(NAME, Column("Ready", description="Number of the pod with ready state"), AGE, CONTAINERS, IMAGES),
    cells=_statefulset_cells,
)


def _daemonset_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    template_spec = mapping(mapping(spec.get("template")).get("spec"))
    names, images = container_cells(template_spec.get("containers"))
    return [
        name_of(obj),
        integer(status.get("desiredNumberScheduled")),
        integer(status.get("currentNumberScheduled")),
        integer(status.get("numberReady")),
        integer(status.get("updatedNumberScheduled")),
        integer(status.get("numberAvailable")),
        format_labels(template_spec.get("nodeSelector")),
        age(obj, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


_DS_STATUS = _APPS + "DaemonSetStatus"
DAEMON_SET = Printer(
    columns=(
        NAME,
        Column("Desired", "integer", (_DS_STATUS, "desiredNumberScheduled")),
        Column("Current", "integer", (_DS_STATUS, "currentNumberScheduled")),
        Column("Ready", "integer", (_DS_STATUS, "numberReady")),
        Column("Up-to-date", "integer", (_DS_STATUS, "updatedNumberScheduled")),
        Column("Available", "integer", (_DS_STATUS, "numberAvailable")),
        Column("Node Selector", description=(_CORE + "PodSpec", "nodeSelector")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", description=(_APPS + "DaemonSetSpec", "selector"), priority=1),
    ),
    cells=_daemonset_cells,
)


# --- Job, CronJob -------------------------------------------------------------------------------------


def _job_condition(conditions: list[Mapping[str, Any]], kind: str) -> bool:
    for condition in conditions:
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _job_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    metadata, spec, status = mapping(obj.get("metadata")), mapping(obj.get("spec")), mapping(obj.get("status"))
    succeeded = integer(status.get("succeeded"))
    if isinstance(spec.get("completions"), int):
        completions = f"{succeeded}/{integer(spec.get('completions'))}"
    elif integer(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {integer(spec.get('parallelism'))}"
    else:
        completions = f"{succeeded}/1"

    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else elapsed(start, end or now)

    conditions = [mapping(c) for c in seq(status.get("conditions"))]
    if _job_condition(conditions, "Complete"):
        state = "Complete"
    elif _job_condition(conditions, "Failed"):
        state = "Failed"
    elif metadata.get("deletionTimestamp") is not None:
        state = "Terminating"
    elif _job_condition(conditions, "Suspended"):
        state = "Suspended"
    elif _job_condition(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"

    names, images = _template_containers(spec.get("template"))
    return [
        name_of(obj),
        state,
        completions,
        duration,
        age(obj, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


JOB = Printer(
    columns=(
        NAME,
        Column("Status", description="Status of the job."),
        Column("Completions", description=(_BATCH + "JobStatus", "succeeded")),
        Column("Duration", description="Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", description=(_BATCH + "JobSpec", "selector"), priority=1),
    ),
    cells=_job_cells,
)


def _cronjob_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    last_schedule = NONE
    if status.get("lastScheduleTime") is not None:
        last_schedule = since(status.get("lastScheduleTime"), now)
    time_zone = spec.get("timeZone")
    job_spec = mapping(mapping(spec.get("jobTemplate")).get("spec"))
    names, images = _template_containers(job_spec.get("template"))
    return [
        name_of(obj),
        text(spec.get("schedule")),
        time_zone if isinstance(time_zone, str) else NONE,
        bool_ptr(spec.get("suspend")),
        len(seq(status.get("active"))),
        last_schedule,
        age(obj, now),
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    ]


CRON_JOB = Printer(
    columns=(
        NAME,
        Column("Schedule", description=(_BATCH + "CronJobSpec", "schedule")),
        Column("Timezone", description=(_BATCH + "CronJobSpec", "timeZone")),
        Column("Suspend", "boolean", (_BATCH + "CronJobSpec", "suspend")),
        Column("Active", "integer", (_BATCH + "CronJobStatus", "active")),
        Column("Last Schedule", description=(_BATCH + "CronJobStatus", "lastScheduleTime")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", description=(_BATCH + "JobSpec", "selector"), priority=1),
    ),
    cells=_cronjob_cells,
)


# --- ControllerRevision ---------------------------------------------------------------------------------


def _controller_revision_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    controller = NONE
    for ref in seq(mapping(obj.get("metadata")).get("ownerReferences")):
        ref = mapping(ref)
        if ref.get("controller") is True:
            api_version, kind = text(ref.get("apiVersion")), text(ref.get("kind"))
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            group_kind = f"{kind}.{group}" if group else kind
            # GroupKind.Empty(): no group and no kind leaves the bare name.
            controller = f"{group_kind.lower()}/{text(ref.get('name'))}" if group_kind else text(ref.get("name"))
            break
    return [name_of(obj), controller, integer(obj.get("revision")), age(obj, now)]


CONTROLLER_REVISION = Printer(
    columns=(
        NAME,
        Column("Controller", description="Controller of the object"),
        Column("Revision", description=(_APPS + "ControllerRevision", "revision")),
        AGE,
    ),
    cells=_controller_revision_cells,
)


# --- HorizontalPodAutoscaler ----------------------------------------------------------------------------


def _quantity(value: Any) -> str:
    """A stored quantity as printed; Go prints a nil *Quantity as `<nil>`."""
    if value is None:
        return "<nil>"
    return str(value)


def _v1_metrics(spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """autoscaling/v1's CPU target in the v2 shape, as upstream's conversion produces it."""
    target = spec.get("targetCPUUtilizationPercentage")
    if not isinstance(target, int):
        return [], []
    specs = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": target}}}]
    current = status.get("currentCPUUtilizationPercentage")
    statuses = []
    if isinstance(current, int):
        statuses = [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]
    return specs, statuses


def _hpa_metric(spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> str:
    kind = spec.get("type")
    field = {"External": "external", "Pods": "pods", "Object": "object", "Resource": "resource",
             "ContainerResource": "containerResource"}.get(text(kind))
    if field is None:
        return "<unknown type>"
    source = mapping(spec.get(field))
    target = mapping(source.get("target"))
    current_source = mapping(status.get(field)) if status is not None else None
    has_current = status is not None and isinstance(status.get(field), Mapping)
    current = mapping(mapping(current_source).get("current"))
    if kind == "Pods":
        now_value = _quantity(current.get("averageValue")) if has_current else "<unknown>"
        return f"{now_value}/{_quantity(target.get('averageValue'))}"
    if kind in ("External", "Object"):
        if target.get("averageValue") is not None:
            shown = "<unknown>"
            if has_current and current.get("averageValue") is not None:
                shown = _quantity(current.get("averageValue"))
            return f"{shown}/{_quantity(target.get('averageValue'))} (avg)"
        shown = _quantity(current.get("value")) if has_current else "<unknown>"
        return f"{shown}/{_quantity(target.get('value'))}"
    resource = text(source.get("name"))
    if target.get("averageValue") is not None:
        shown = _quantity(current.get("averageValue")) if has_current else "<unknown>"
        return f"{resource}: {shown}/{_quantity(target.get('averageValue'))}"
    shown = "<unknown>"
    if has_current and isinstance(current.get("averageUtilization"), int):
        shown = f"{current['averageUtilization']}%"
    wanted = "<auto>"
    if isinstance(target.get("averageUtilization"), int):
        wanted = f"{target['averageUtilization']}%"
    return f"{resource}: {shown}/{wanted}"


def format_hpa_metrics(specs: list[Any], statuses: list[Any]) -> str:
    """`formatHPAMetrics`: each target as `current/target`, at most two, then `+ N more...`."""
    if not specs:
        return NONE
    items = []
    for index, spec in enumerate(specs):
        status = mapping(statuses[index]) if index < len(statuses) else None
        items.append(_hpa_metric(mapping(spec), status))
    if len(items) > 2:
        return f"{', '.join(items[:2])} + {len(items) - 2} more..."
    return ", ".join(items)


def _hpa_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    target = mapping(spec.get("scaleTargetRef"))
    specs, statuses = list(seq(spec.get("metrics"))), list(seq(status.get("currentMetrics")))
    if not specs and "targetCPUUtilizationPercentage" in spec:
        specs, statuses = _v1_metrics(spec, status)
    min_replicas = spec.get("minReplicas")
    return [
        name_of(obj),
        f"{text(target.get('kind'))}/{text(target.get('name'))}",
        format_hpa_metrics(specs, statuses),
        str(integer(min_replicas)) if isinstance(min_replicas, int) else "<unset>",
        integer(spec.get("maxReplicas")),
        integer(status.get("currentReplicas")),
        age(obj, now),
    ]


HORIZONTAL_POD_AUTOSCALER = Printer(
    columns=(
        NAME,
        Column("Reference", description=(_HPA + "HorizontalPodAutoscalerSpec", "scaleTargetRef")),
        Column("Targets", description=(_HPA + "HorizontalPodAutoscalerSpec", "metrics")),
        Column("MinPods", description=(_HPA + "HorizontalPodAutoscalerSpec", "minReplicas")),
        Column("MaxPods", description=(_HPA + "HorizontalPodAutoscalerSpec", "maxReplicas")),
        Column("Replicas", description=(_HPA + "HorizontalPodAutoscalerStatus", "currentReplicas")),
        AGE,
    ),
    cells=_hpa_cells,
)


# --- PodDisruptionBudget --------------------------------------------------------------------------------


def _int_or_string(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "N/A"
    return str(value)


def _pdb_cells(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = mapping(obj.get("spec")), mapping(obj.get("status"))
    return [
        name_of(obj),
        _int_or_string(spec.get("minAvailable")),
        _int_or_string(spec.get("maxUnavailable")),
        integer(status.get("disruptionsAllowed")),
        age(obj, now),
    ]


POD_DISRUPTION_BUDGET = Printer(
    columns=(
        NAME,
        Column("Min Available", description="The minimum number of pods that must be available."),
        Column("Max Unavailable", description="The maximum number of pods that may be unavailable."),
        Column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        AGE,
    ),
    cells=_pdb_cells,
)
