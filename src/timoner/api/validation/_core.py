"""Validation of the core/v1 kinds other than Service and the storage kinds.

Pod, PodTemplate, ReplicationController, ConfigMap, Secret, Namespace,
Node, Event, LimitRange and ResourceQuota, after upstream
`pkg/apis/core/validation`. Each function takes the (defaulted) object and,
on update, the stored one, and returns the causes; `ObjectMeta` is checked
by the caller.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from timoner.api.errors import Cause
from timoner.api.validation._containers import validate_resource_list
from timoner.api.validation._field import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
)
from timoner.api.validation._meta import nonnegative, selector_matches
from timoner.api.validation._names import (
    inclusive_range_error,
    is_cidr,
    is_config_map_key,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
)
from timoner.api.validation._pod import validate_pod_spec, validate_pod_template

__all__ = [
    "immutable_data",
    "validate_config_map",
    "validate_event",
    "validate_limit_range",
    "validate_namespace",
    "validate_node",
    "validate_pod",
    "validate_pod_template_object",
    "validate_replication_controller",
    "validate_resource_quota",
    "validate_secret",
    "validate_service_account",
    "diff_summary",
]

MAX_SECRET_SIZE = 1 * 1024 * 1024
_MAX_INT32 = 2**31 - 1
_POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def diff_summary(old: dict, new: dict) -> str:
    """A short account of which top-level fields differ, standing in for upstream's `cmp.Diff`."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    lines = []
    for key in keys:
        if key in old:
            lines.append(f"-  {key}: {json.dumps(old[key], sort_keys=True)}")
        if key in new:
            lines.append(f"+  {key}: {json.dumps(new[key], sort_keys=True)}")
    return "\n".join(lines)


def validate_pod(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes = validate_pod_spec(spec, Path("spec"))
    if old is None:
        if spec.get("ephemeralContainers"):
            causes.append(forbidden(Path("spec").child("ephemeralContainers"), "cannot be set on create"))
        return causes
    return causes + _pod_update(spec, old.get("spec") or {})


def _pod_update(spec: dict, old_spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    path = Path("spec")
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if deadline is not None:
        if not 0 <= deadline <= _MAX_INT32:
            return [invalid(path.child("activeDeadlineSeconds"), deadline, inclusive_range_error(0, _MAX_INT32))]
        if old_deadline is not None and old_deadline < deadline:
            return [invalid(path.child("activeDeadlineSeconds"), deadline, "must be less than or equal to previous value")]
    elif old_deadline is not None:
        causes.append(invalid(path.child("activeDeadlineSeconds"), None, "must not update from a positive integer to nil value"))
    causes.extend(_only_added_tolerations(spec.get("tolerations") or [], old_spec.get("tolerations") or []))
    munged = dict(spec)
    for field in ("containers", "initContainers"):
        if field not in spec:
            continue
        new_list, old_list = spec.get(field) or [], old_spec.get(field) or []
        if len(new_list) == len(old_list):
            munged[field] = [
                {**ctr, "image": old_ctr.get("image")} if ctr.get("image") else ctr
                for ctr, old_ctr in zip(new_list, old_list, strict=True)
            ]
    for field in ("activeDeadlineSeconds", "tolerations"):
        _copy(munged, old_spec, field)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and spec.get("terminationGracePeriodSeconds") == 1:
        _copy(munged, old_spec, "terminationGracePeriodSeconds")
    if munged != old_spec:
        causes.append(forbidden(path, _POD_UPDATE_MESSAGE + "\n" + diff_summary(old_spec, munged)))
    return causes


def _copy(target: dict, source: dict, field: str) -> None:
    if field in source:
        target[field] = source[field]
    else:
        target.pop(field, None)


def _only_added_tolerations(new: list, old: list) -> list[Cause]:
    for tol in old:
        base = {k: v for k, v in (tol or {}).items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in (n or {}).items() if k != "tolerationSeconds"} == base for n in new):
            return [forbidden(Path("spec").child("tolerations"), "existing toleration can not be modified except its tolerationSeconds")]
    return []


def validate_pod_template_object(obj: dict, old: dict | None) -> list[Cause]:
    return validate_pod_template(obj.get("template"), Path("template"))


def validate_replication_controller(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes = nonnegative(spec.get("minReadySeconds", 0), path.child("minReadySeconds"))
    selector = spec.get("selector") or {}
    if not selector:
        causes.append(required(path.child("selector")))
    causes.extend(nonnegative(spec.get("replicas", 0), path.child("replicas")))
    template = spec.get("template")
    if not isinstance(template, dict):
        return [*causes, required(path.child("template"))]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not selector_matches({"matchLabels": selector}, labels):
        causes.append(invalid(path.child("template", "metadata", "labels"), labels, "`selector` does not match template `labels`"))
    causes.extend(validate_pod_template(template, path.child("template")))
    tspec = template.get("spec") or {}
    if tspec.get("restartPolicy") != "Always":
        causes.append(not_supported(path.child("template", "spec", "restartPolicy"), tspec.get("restartPolicy") or "", ("Always",)))
    if tspec.get("activeDeadlineSeconds") is not None:
        causes.append(forbidden(path.child("template", "spec", "activeDeadlineSeconds"),
                                "activeDeadlineSeconds in ReplicationController is not Supported"))
    return causes


def immutable_data(obj: dict, old: dict | None, fields: tuple[str, ...]) -> list[Cause]:
    """ConfigMap/Secret: once `immutable: true` is stored, neither it nor the data may change."""
    if old is None or old.get("immutable") is not True:
        return []
    causes = []
    if obj.get("immutable") is not True:
        causes.append(forbidden(Path("immutable"), "field is immutable when `immutable` is set"))
    for field in fields:
        if (obj.get(field) or {}) != (old.get(field) or {}):
            causes.append(forbidden(Path(field), "field is immutable when `immutable` is set"))
    return causes


def _decoded_size(value: Any, path: Path) -> tuple[int, list[Cause]]:
    try:
        return len(base64.b64decode(str(value), validate=True)), []
    except (binascii.Error, ValueError) as exc:
        return 0, [invalid(path, "<value omitted>", f"illegal base64 data: {exc}")]


def validate_config_map(obj: dict, old: dict | None) -> list[Cause]:
    causes = immutable_data(obj, old, ("data", "binaryData"))
    data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    binary = obj.get("binaryData") if isinstance(obj.get("binaryData"), dict) else {}
    total = 0
    for key, value in data.items():
        causes.extend(invalid(Path("data").key(key), key, m) for m in is_config_map_key(key))
        if key in binary:
            causes.append(invalid(Path("data").key(key), key, "duplicate of key present in binaryData"))
        total += len(str(value).encode())
    for key, value in binary.items():
        causes.extend(invalid(Path("binaryData").key(key), key, m) for m in is_config_map_key(key))
        size, errs = _decoded_size(value, Path("binaryData").key(key))
        causes.extend(errs)
        total += size
    if total > MAX_SECRET_SIZE:
        causes.append(too_long(Path(""), MAX_SECRET_SIZE))
    return causes


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    if old is not None:
        if (obj.get("type") or "") != (old.get("type") or ""):
            causes.append(invalid(Path("type"), obj.get("type") or "", "field is immutable"))
        causes.extend(immutable_data(obj, old, ("data",)))
    data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    total = 0
    for key, value in data.items():
        causes.extend(invalid(Path("data").key(key), key, m) for m in is_config_map_key(key))
        size, errs = _decoded_size(value, Path("data").key(key))
        causes.extend(errs)
        total += size
    if total > MAX_SECRET_SIZE:
        causes.append(too_long(Path("data"), MAX_SECRET_SIZE))
    secret_type = obj.get("type") or ""
    if secret_type == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(required(Path("metadata").child("annotations").key("kubernetes.io/service-account.name")))
    elif secret_type == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            causes.append(required(Path("data").key("username")))
            causes.append(required(Path("data").key("password")))
    elif secret_type in _SECRET_REQUIRED_KEYS:
        for key in _SECRET_REQUIRED_KEYS[secret_type]:
            if not data.get(key):
                causes.append(required(Path("data").key(key)))
        if secret_type in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
            key = _SECRET_REQUIRED_KEYS[secret_type][0]
            causes.extend(_json_content(data.get(key), Path("data").key(key)))
    return causes


def _json_content(value: Any, path: Path) -> list[Cause]:
    if not value:
        return []
    try:
        json.loads(base64.b64decode(str(value)))
    except (binascii.Error, ValueError) as exc:
        return [invalid(path, "<secret contents redacted>", str(exc))]
    return []


def validate_namespace(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    path = Path("spec").child("finalizers")
    for name in (obj.get("spec") or {}).get("finalizers") or []:
        errs = [invalid(path, name, m) for m in is_qualified_name(name)]
        if not errs and "/" not in name and name != "kubernetes":
            errs.append(invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified"))
        causes.extend(errs)
    return causes


_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_node(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(spec.get("taints") or []):
        p, taint = path.child("taints").index(i), taint if isinstance(taint, dict) else {}
        key = taint.get("key") or ""
        causes.extend(invalid(p.child("key"), key, m) for m in is_qualified_name(key))
        value = taint.get("value") or ""
        errs = is_valid_label_value(value)
        if errs:
            causes.append(invalid(p.child("value"), value, ";".join(errs)))
        effect = taint.get("effect") or ""
        if not effect:
            causes.append(required(p.child("effect")))
        elif effect not in _TAINT_EFFECTS:
            causes.append(not_supported(p.child("effect"), effect, _TAINT_EFFECTS))
        if (key, effect) in seen:
            causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {json.dumps(taint, sort_keys=True)}: "
                                "taints must be unique by key and effect pair", str(p)))
        seen.add((key, effect))
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for i, cidr in enumerate(cidrs):
        causes.extend(invalid(path.child("podCIDRs").index(i), cidr, m) for m in is_cidr(cidr))
    if len(cidrs) > 2:
        causes.append(invalid(path.child("podCIDRs"), cidrs, "may specify no more than one CIDR for each IP family"))
    if old is not None:
        old_spec = old.get("spec") or {}
        old_cidrs = old_spec.get("podCIDRs") or ([old_spec["podCIDR"]] if old_spec.get("podCIDR") else [])
        if old_cidrs and cidrs != old_cidrs:
            causes.append(forbidden(path.child("podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
        if old_spec.get("providerID") and spec.get("providerID") != old_spec["providerID"]:
            causes.append(forbidden(path.child("providerID"), "node updates may not change providerID except from \"\" to valid"))
    return causes


def validate_event(obj: dict, old: dict | None) -> list[Cause]:
    """core/v1 Event: the lenient legacy rules (namespace agreement), as upstream keeps for this API."""
    causes: list[Cause] = []
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    involved = obj.get("involvedObject") or {}
    involved_ns = involved.get("namespace") or ""
    p = Path("involvedObject").child("namespace")
    if not obj.get("eventTime"):
        if (not involved_ns and namespace not in ("", "default")) or (involved_ns and involved_ns != namespace):
            causes.append(invalid(p, involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            causes.append(invalid(p, involved_ns, "does not match event.namespace"))
        causes.extend(validate_event_reporting(obj, controller_field="reportingComponent", message_field="message"))
    return causes


def validate_event_reporting(obj: dict, *, controller_field: str, message_field: str) -> list[Cause]:
    """The reporting fields new-style events must carry, in either API version's field names."""
    causes: list[Cause] = []
    controller = obj.get(controller_field) or ""
    if not controller:
        causes.append(required(Path(controller_field)))
    causes.extend(invalid(Path(controller_field), controller, m) for m in is_qualified_name(controller))
    for field in ("reportingInstance", "action", "reason"):
        value = obj.get(field) or ""
        if not value:
            causes.append(required(Path(field)))
        if len(value) > 128:
            causes.append(invalid(Path(field), "", "can have at most 128 characters"))
    if len(obj.get(message_field) or "") > 1024:
        causes.append(invalid(Path("message"), "", "can have at most 1024 characters"))
    return causes


_LIMIT_TYPES = ("Container", "PersistentVolumeClaim", "Pod")


def validate_limit_range(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, item in enumerate((obj.get("spec") or {}).get("limits") or []):
        p, item = Path("spec").child("limits").index(i), item if isinstance(item, dict) else {}
        limit_type = item.get("type") or ""
        if limit_type in seen:
            causes.append(duplicate(p.child("type"), limit_type))
        seen.add(limit_type)
        if limit_type not in _LIMIT_TYPES:
            causes.append(not_supported(p.child("type"), limit_type, _LIMIT_TYPES))
        values = {}
        for field in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            parsed, errs = validate_resource_list(item.get(field), p.child(field))
            causes.extend(errs)
            values[field] = parsed
        if limit_type == "Pod":
            for field in ("default", "defaultRequest"):
                if item.get(field):
                    causes.append(forbidden(p.child(field), "may not be specified when `type` is 'Pod'"))
        causes.extend(_limit_order(item, values, p))
    return causes


def _limit_order(item: dict, values: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    raw = {f: item.get(f) or {} for f in values}
    for name, low in values["min"].items():
        if name in values["max"] and low > values["max"][name]:
            causes.append(invalid(path.child("min").key(name), raw["min"][name],
                                  f"min value {raw['min'][name]} is greater than max value {raw['max'][name]}"))
    for field, label in (("default", "default value"), ("defaultRequest", "default request value")):
        for name, value in values[field].items():
            if name in values["min"] and values["min"][name] > value:
                causes.append(invalid(path.child(field).key(name), raw[field][name],
                                      f"min value {raw['min'][name]} is greater than {label} {raw[field][name]}"))
            if name in values["max"] and value > values["max"][name]:
                causes.append(invalid(path.child(field).key(name), raw[field][name],
                                      f"{label} {raw[field][name]} is greater than max value {raw['max'][name]}"))
    for name, value in values["defaultRequest"].items():
        if name in values["default"] and value > values["default"][name]:
            causes.append(invalid(path.child("defaultRequest").key(name), raw["defaultRequest"][name],
                                  f"default request value {raw['defaultRequest'][name]} is greater than default limit value {raw['default'][name]}"))
    for name, ratio in values["maxLimitRequestRatio"].items():
        if ratio < 1:
            causes.append(invalid(path.child("maxLimitRequestRatio").key(name), raw["maxLimitRequestRatio"][name],
                                  f"ratio {raw['maxLimitRequestRatio'][name]} is less than 1"))
    return causes


_QUOTA_SCOPES = ("BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass", "Terminating")


def validate_resource_quota(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    for name in spec.get("hard") or {}:
        causes.extend(invalid(Path("spec").child("hard").key(name), name, m) for m in is_qualified_name(name))
    _, errs = validate_resource_list(spec.get("hard"), Path("spec").child("hard"))
    causes.extend(errs)
    scopes = spec.get("scopes") or []
    if any(s not in _QUOTA_SCOPES for s in scopes):
        causes.append(invalid(Path("spec").child("scopes"), scopes, "unsupported scope"))
    for i, expr in enumerate((spec.get("scopeSelector") or {}).get("matchExpressions") or []):
        scope = (expr or {}).get("scopeName") or ""
        if scope not in _QUOTA_SCOPES:
            causes.append(invalid(Path("spec").child("scopeSelector", "matchExpressions").index(i).child("scopeName"),
                                  scope, "unsupported scope"))
    return causes


def validate_service_account(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    for i, secret in enumerate(obj.get("imagePullSecrets") or []):
        name = (secret or {}).get("name") or ""
        causes.extend(invalid(Path("imagePullSecrets").index(i).child("name"), name, m) for m in is_dns1123_subdomain(name))
    return causes
