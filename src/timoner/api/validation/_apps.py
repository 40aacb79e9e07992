"""apps/v1 validation: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision.

Shared shape (upstream `pkg/apis/apps/validation`): a required, non-empty
selector that selects the pod template's labels, a valid pod template whose
`restartPolicy` is `Always`, non-negative counts, and rolling-update knobs
that are ints or percentages. On update the selector is immutable (apps/v1),
and a StatefulSet may change only replicas, template, updateStrategy,
minReadySeconds, ordinals and its PVC retention policy.
"""

from __future__ import annotations

import re
from typing import Any

from timoner.api.errors import Cause
from timoner.api.validation._field import Path, Raw, forbidden, invalid, not_supported, required
from timoner.api.validation._meta import (
    immutable,
    nonnegative,
    selector_is_empty,
    selector_matches,
    validate_label_selector,
    validate_object_meta,
)
from timoner.api.validation._names import is_valid_percent, name_is_dns1123_label, name_is_dns1123_subdomain
from timoner.api.validation._pod import validate_pod_template
from timoner.api.validation._storage import validate_pvc_spec

__all__ = [
    "int_or_percent",
    "not_over_100",
    "validate_controller_revision",
    "validate_daemon_set",
    "validate_deployment",
    "validate_replica_set",
    "validate_stateful_set",
]

_PERCENT = re.compile(r"[0-9]+%")


def _shown(value: Any) -> Any:
    # IntOrString is a fmt.Stringer: Go prints it bare, never quoted.
    return Raw(str(value)) if isinstance(value, str) else value


def int_or_percent(value: Any, path: Path) -> list[Cause]:
    """`ValidatePositiveIntOrPercent`."""
    if isinstance(value, str):
        return [invalid(path, _shown(value), m) for m in is_valid_percent(value)]
    return nonnegative(value, path)


def _value(value: Any) -> int:
    """`getIntOrPercentValue`: the number of a percentage, the int itself, 0 for nonsense."""
    if isinstance(value, str):
        return int(value[:-1]) if _PERCENT.fullmatch(value) else 0
    return value if isinstance(value, int) else 0


def not_over_100(value: Any, path: Path) -> list[Cause]:
    if isinstance(value, str) and _PERCENT.fullmatch(value) and int(value[:-1]) > 100:
        return [invalid(path, _shown(value), "must not be greater than 100%")]
    return []


def _selector_and_template(spec: dict, path: Path, kind: str, *, extra_volumes: frozenset[str] = frozenset(),
                           validate_spec: bool = True) -> list[Cause]:
    causes: list[Cause] = []
    selector = spec.get("selector")
    selector_errors: list[Cause] = []
    if selector is None:
        causes.append(required(path.child("selector")))
    else:
        selector_errors = validate_label_selector(selector, path.child("selector"))
        causes.extend(selector_errors)
        if selector_is_empty(selector):
            causes.append(invalid(path.child("selector"), selector, f"empty selector is invalid for {kind}"))
    template = spec.get("template")
    if not isinstance(template, dict):
        return [*causes, required(path.child("template"))]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector_errors:
        # Upstream cannot turn the selector into a matcher (LabelSelectorAsSelector fails) and says so instead.
        if kind != "daemonset":
            detail = "" if kind == "statefulset" else "invalid label selector"
            causes.append(invalid(path.child("selector"), selector, detail))
    elif selector is None or not selector_is_empty(selector):
        if not selector_matches(selector, labels):
            causes.append(invalid(path.child("template", "metadata", "labels"), labels,
                                  "`selector` does not match template `labels`"))
    if validate_spec:
        causes.extend(validate_pod_template(template, path.child("template"), extra_volumes=extra_volumes))
    tspec = template.get("spec") or {}
    if tspec.get("restartPolicy") != "Always":
        causes.append(not_supported(path.child("template", "spec", "restartPolicy"), tspec.get("restartPolicy") or "", ("Always",)))
    if tspec.get("activeDeadlineSeconds") is not None:
        causes.append(forbidden(path.child("template", "spec", "activeDeadlineSeconds"),
                                f"activeDeadlineSeconds in {kind_title(kind)} is not Supported"))
    return causes


def kind_title(kind: str) -> str:
    return {"deployment": "Deployment", "replicaset": "ReplicaSet", "statefulset": "StatefulSet",
            "daemonset": "DaemonSet"}[kind]


def _selector_update(obj: dict, old: dict | None) -> list[Cause]:
    if old is None:
        return []
    return immutable((obj.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector"),
                     Path("spec").child("selector"))


def validate_deployment(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes = nonnegative(spec.get("replicas", 0), path.child("replicas"))
    causes.extend(_selector_and_template(spec, path, "deployment"))
    strategy = spec.get("strategy") or {}
    strategy_type = strategy.get("type") or ""
    sp = path.child("strategy")
    if strategy_type == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            causes.append(forbidden(sp.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
    elif strategy_type == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            causes.append(required(sp.child("rollingUpdate"), "this should be defaulted and never be nil"))
        else:
            unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
            causes.extend(int_or_percent(unavailable, sp.child("rollingUpdate", "maxUnavailable")))
            causes.extend(int_or_percent(surge, sp.child("rollingUpdate", "maxSurge")))
            if _value(unavailable) == 0 and _value(surge) == 0:
                causes.append(invalid(sp.child("rollingUpdate", "maxUnavailable"), _shown(unavailable),
                                      "may not be 0 when `maxSurge` is 0"))
            causes.extend(not_over_100(unavailable, sp.child("rollingUpdate", "maxUnavailable")))
    else:
        causes.append(not_supported(sp.child("type") if strategy_type else sp, strategy_type or strategy,
                                    ("Recreate", "RollingUpdate")))
    min_ready = spec.get("minReadySeconds", 0)
    causes.extend(nonnegative(min_ready, path.child("minReadySeconds")))
    if spec.get("revisionHistoryLimit") is not None:
        causes.extend(nonnegative(spec["revisionHistoryLimit"], path.child("revisionHistoryLimit")))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        causes.extend(nonnegative(deadline, path.child("progressDeadlineSeconds")))
        if deadline <= min_ready:
            causes.append(invalid(path.child("progressDeadlineSeconds"), deadline, "must be greater than minReadySeconds"))
    return causes + _selector_update(obj, old)


def validate_replica_set(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes = nonnegative(spec.get("replicas", 0), path.child("replicas"))
    causes.extend(nonnegative(spec.get("minReadySeconds", 0), path.child("minReadySeconds")))
    # Upstream's ReplicaSet message says "deployment" too (copied code); users see that wording.
    causes.extend(_selector_and_template(spec, path, "replicaset"))
    causes = [_reword(c) for c in causes]
    return causes + _selector_update(obj, old)


def _reword(cause: Cause) -> Cause:
    if cause.message.endswith("empty selector is invalid for replicaset"):
        return Cause(cause.reason, cause.message.replace("for replicaset", "for deployment"), cause.field)
    return cause


def validate_daemon_set(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes = _selector_and_template(spec, path, "daemonset")
    causes.extend(nonnegative(spec.get("minReadySeconds", 0), path.child("minReadySeconds")))
    strategy = spec.get("updateStrategy") or {}
    sp = path.child("updateStrategy")
    if strategy.get("type") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            causes.append(required(sp.child("rollingUpdate")))
        else:
            rp = sp.child("rollingUpdate")
            unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
            causes.extend(int_or_percent(unavailable, rp.child("maxUnavailable")))
            causes.extend(int_or_percent(surge, rp.child("maxSurge")))
            causes.extend(not_over_100(unavailable, rp.child("maxUnavailable")))
            causes.extend(not_over_100(surge, rp.child("maxSurge")))
            if _value(unavailable) and _value(surge):
                causes.append(invalid(rp.child("maxSurge"), _shown(surge), "may not be set when maxUnavailable is non-zero"))
            elif not _value(unavailable) and not _value(surge):
                causes.append(required(rp.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
    elif strategy.get("type") != "OnDelete":
        causes.append(not_supported(sp, strategy, ("RollingUpdate", "OnDelete")))
    if spec.get("revisionHistoryLimit") is not None:
        causes.extend(nonnegative(spec["revisionHistoryLimit"], path.child("revisionHistoryLimit")))
    return causes + _selector_update(obj, old)


_STS_MUTABLE = ("replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
                "persistentVolumeClaimRetentionPolicy", "revisionHistoryLimit")
_RETENTION = ("Retain", "Delete")


def validate_stateful_set(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes: list[Cause] = []
    policy = spec.get("podManagementPolicy") or ""
    if not policy:
        causes.append(required(path.child("podManagementPolicy")))
    elif policy not in ("OrderedReady", "Parallel"):
        causes.append(invalid(path.child("podManagementPolicy"), policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    strategy_type = strategy.get("type") or ""
    sp = path.child("updateStrategy")
    if not strategy_type:
        causes.append(required(sp))
    elif strategy_type == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            causes.append(invalid(sp.child("rollingUpdate"), strategy["rollingUpdate"], "only allowed for updateStrategy 'RollingUpdate'"))
    elif strategy_type == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        causes.extend(nonnegative(rolling.get("partition", 0), sp.child("rollingUpdate", "partition")))
        if rolling.get("maxUnavailable") is not None:
            causes.extend(int_or_percent(rolling["maxUnavailable"], sp.child("rollingUpdate", "maxUnavailable")))
    else:
        causes.append(invalid(sp, strategy, "must be 'RollingUpdate' or 'OnDelete'"))
    if spec.get("revisionHistoryLimit") is not None:
        causes.extend(nonnegative(spec["revisionHistoryLimit"], path.child("revisionHistoryLimit")))
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for field in ("whenDeleted", "whenScaled"):
        value = retention.get(field)
        if value is not None and value not in _RETENTION:
            causes.append(not_supported(path.child("persistentVolumeClaimRetentionPolicy", field), value, _RETENTION))
    causes.extend(nonnegative(spec.get("replicas", 0), path.child("replicas")))
    causes.extend(nonnegative(spec.get("minReadySeconds", 0), path.child("minReadySeconds")))
    if spec.get("ordinals") is not None:
        causes.extend(nonnegative((spec["ordinals"] or {}).get("start", 0), path.child("ordinals", "start")))
    for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
        cp, claim = path.child("volumeClaimTemplates").index(i), claim if isinstance(claim, dict) else {}
        meta = claim.get("metadata") or {}
        causes.extend(validate_object_meta(meta, False, name_is_dns1123_subdomain, path=cp.child("metadata")))
        causes.extend(validate_pvc_spec(claim.get("spec") or {}, cp.child("spec")))
    claims = frozenset((c.get("metadata") or {}).get("name") or "" for c in spec.get("volumeClaimTemplates") or [] if isinstance(c, dict))
    causes.extend(_selector_and_template(spec, path, "statefulset", extra_volumes=claims))
    if spec.get("serviceName"):
        causes.extend(invalid(path.child("serviceName"), spec["serviceName"], m)
                      for m in name_is_dns1123_label(spec["serviceName"]))
    if old is not None:
        old_spec = old.get("spec") or {}
        if {k: v for k, v in spec.items() if k not in _STS_MUTABLE} != {k: v for k, v in old_spec.items() if k not in _STS_MUTABLE}:
            causes.append(forbidden(path, "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                    "'template', 'updateStrategy', 'revisionHistoryLimit', "
                                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return causes


def validate_controller_revision(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    if obj.get("data") is None:
        causes.append(required(Path("data"), "data is mandatory"))
    causes.extend(nonnegative(obj.get("revision", 0), Path("revision")))
    if old is not None:
        causes.extend(immutable(obj.get("data"), old.get("data"), Path("data")))
    return causes

