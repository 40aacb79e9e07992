"""Container validation: names, images, ports, env, mounts, resources, probes.

Follows `validateContainerCommon` and friends in upstream
`pkg/apis/core/validation/validation.go`. Regular, init and ephemeral
containers share these checks; what differs between them (probes on plain
init containers, `restartPolicy` on regular ones) is decided by the caller
through `kind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from timoner.api.errors import Cause
from timoner.api.quantity import canonicalize_quantity, parse_quantity
from timoner.api.validation._field import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    required,
)
from timoner.api.validation._meta import nonnegative
from timoner.api.validation._names import (
    is_config_map_key,
    is_dns1123_label,
    is_env_var_name,
    is_http_header_name,
    is_qualified_name,
    is_valid_port_name,
    is_valid_port_num,
)

__all__ = ["ContainerContext", "port_num_or_name", "quantity", "validate_container", "validate_resource_list"]

PROTOCOLS = ("SCTP", "TCP", "UDP")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_FIELD_REF_PATHS = (
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
    "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
    "status.podIPs",
)
_RESOURCE_FIELD_REFS = (
    "limits.cpu", "limits.ephemeral-storage", "limits.memory",
    "requests.cpu", "requests.ephemeral-storage", "requests.memory",
)
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True, slots=True)
class ContainerContext:
    """What a container check needs to know about the pod around it."""

    volumes: frozenset[str]
    kind: str = "container"  # "container", "init", "sidecar" (restartable init) or "ephemeral"
    grace_period: int | None = None


def quantity(value: Any, path: Path) -> tuple[Decimal | None, list[Cause]]:
    """The value of a quantity field, or the cause why it does not parse."""
    try:
        return parse_quantity(value), []
    except (ValueError, TypeError) as exc:
        return None, [invalid(path, value if isinstance(value, str) else str(value), str(exc))]


def port_num_or_name(port: Any, path: Path) -> list[Cause]:
    """`ValidatePortNumOrName` for an IntOrString port."""
    if isinstance(port, int) and not isinstance(port, bool):
        return [invalid(path, port, m) for m in is_valid_port_num(port)]
    if isinstance(port, str):
        return [invalid(path, port, m) for m in is_valid_port_name(port)]
    return [invalid(path, port, "must be an integer or a string")]


def validate_container(ctr: dict, path: Path, ctx: ContainerContext) -> list[Cause]:
    """Checks shared by every container kind (upstream `validateContainerCommon` plus probes)."""
    causes: list[Cause] = []
    name = ctr.get("name") or ""
    if not name:
        causes.append(required(path.child("name")))
    else:
        causes.extend(invalid(path.child("name"), name, m) for m in is_dns1123_label(name))
    if not ctr.get("image"):
        causes.append(required(path.child("image")))
    policy = ctr.get("terminationMessagePolicy") or ""
    if not policy:
        causes.append(required(path.child("terminationMessagePolicy")))
    elif policy not in _MESSAGE_POLICIES:
        causes.append(not_supported(path.child("terminationMessagePolicy"), policy, _MESSAGE_POLICIES))
    causes.extend(_ports(ctr.get("ports") or [], path.child("ports")))
    causes.extend(_env(ctr.get("env") or [], path.child("env")))
    causes.extend(_env_from(ctr.get("envFrom") or [], path.child("envFrom")))
    causes.extend(_volume_mounts(ctr.get("volumeMounts") or [], ctx.volumes, path.child("volumeMounts")))
    pull = ctr.get("imagePullPolicy") or ""
    if not pull:
        causes.append(required(path.child("imagePullPolicy")))
    elif pull not in _PULL_POLICIES:
        causes.append(not_supported(path.child("imagePullPolicy"), pull, _PULL_POLICIES))
    causes.extend(_resources(ctr.get("resources") or {}, path.child("resources")))
    causes.extend(_per_kind(ctr, path, ctx))
    return causes


def _per_kind(ctr: dict, path: Path, ctx: ContainerContext) -> list[Cause]:
    causes: list[Cause] = []
    probes = ("livenessProbe", "readinessProbe", "startupProbe")
    if ctx.kind in ("container", "sidecar"):
        if ctr.get("lifecycle"):
            causes.extend(_lifecycle(ctr["lifecycle"], path.child("lifecycle")))
        for probe in probes:
            if ctr.get(probe) is not None:
                causes.extend(_probe(ctr[probe], path.child(probe), single_success=probe != "readinessProbe"))
    else:
        why = {
            "init": "may not be set for init containers without restartPolicy=Always",
            "ephemeral": "cannot be set for an Ephemeral Container",
        }[ctx.kind]
        for attr in ("lifecycle", *probes):
            if ctr.get(attr):
                causes.append(forbidden(path.child(attr), why))
    if ctx.kind == "container" and ctr.get("restartPolicy") is not None:
        causes.append(forbidden(path.child("restartPolicy"), "may not be set for non-init containers"))
    return causes


def _ports(ports: list, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = path.index(i)
        port = port if isinstance(port, dict) else {}
        name = port.get("name") or ""
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                causes.extend(invalid(p.child("name"), name, m) for m in msgs)
            elif name in names:
                causes.append(duplicate(p.child("name"), name))
            else:
                names.add(name)
        number = port.get("containerPort") or 0
        if not number:
            causes.append(required(p.child("containerPort")))
        else:
            causes.extend(invalid(p.child("containerPort"), number, m) for m in is_valid_port_num(number))
        host_port = port.get("hostPort") or 0
        if host_port:
            causes.extend(invalid(p.child("hostPort"), host_port, m) for m in is_valid_port_num(host_port))
        protocol = port.get("protocol") or ""
        if not protocol:
            causes.append(required(p.child("protocol")))
        elif protocol not in PROTOCOLS:
            causes.append(not_supported(p.child("protocol"), protocol, PROTOCOLS))
    return causes


def _env(env: list, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for i, var in enumerate(env):
        p = path.index(i)
        var = var if isinstance(var, dict) else {}
        name = var.get("name") or ""
        if not name:
            causes.append(required(p.child("name")))
        else:
            causes.extend(invalid(p.child("name"), name, m) for m in is_env_var_name(name))
        if var.get("valueFrom") is not None:
            causes.extend(_value_from(var, p.child("valueFrom")))
    return causes


def _value_from(var: dict, path: Path) -> list[Cause]:
    source = var["valueFrom"] if isinstance(var["valueFrom"], dict) else {}
    causes: list[Cause] = []
    kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if source.get(k) is not None]
    if "fieldRef" in kinds:
        causes.extend(_field_ref(source["fieldRef"], path.child("fieldRef")))
    if "resourceFieldRef" in kinds:
        ref = source["resourceFieldRef"]
        resource = ref.get("resource") or ""
        if not resource:
            causes.append(required(path.child("resourceFieldRef", "resource")))
        elif resource not in _RESOURCE_FIELD_REFS and not resource.startswith(("limits.hugepages-", "requests.hugepages-")):
            causes.append(not_supported(path.child("resourceFieldRef", "resource"), resource, _RESOURCE_FIELD_REFS))
    for ref_kind in ("configMapKeyRef", "secretKeyRef"):
        if ref_kind in kinds:
            ref, p = source[ref_kind], path.child(ref_kind)
            if not ref.get("name"):
                causes.append(required(p.child("name")))
            key = ref.get("key") or ""
            if not key:
                causes.append(required(p.child("key")))
            else:
                causes.extend(invalid(p.child("key"), key, m) for m in is_config_map_key(key))
    if not kinds:
        causes.append(invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
    elif len(kinds) > 1:
        causes.append(invalid(path, "", "may not have more than one field specified at a time"))
    if var.get("value"):
        causes.append(invalid(path, "", "may not be specified when `value` is not empty"))
    return causes


def _field_ref(ref: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not ref.get("apiVersion"):
        causes.append(required(path.child("apiVersion")))
    field_path = ref.get("fieldPath") or ""
    if not field_path:
        return [*causes, required(path.child("fieldPath"))]
    base, bracket, rest = field_path.partition("[")
    if bracket and base in ("metadata.labels", "metadata.annotations"):
        key = rest.removesuffix("]").strip("'")
        if not rest.endswith("']") or not rest.startswith("'"):
            causes.append(invalid(path.child("fieldPath"), field_path, "error converting fieldPath"))
        else:
            causes.extend(invalid(path.child("fieldPath"), key, m) for m in is_qualified_name(key.lower()))
    elif field_path not in _FIELD_REF_PATHS or field_path in ("metadata.labels", "metadata.annotations"):
        supported = [p for p in _FIELD_REF_PATHS if p not in ("metadata.labels", "metadata.annotations")]
        causes.append(not_supported(path.child("fieldPath"), field_path, supported))
    return causes


def _env_from(sources: list, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for i, source in enumerate(sources):
        p = path.index(i)
        source = source if isinstance(source, dict) else {}
        prefix = source.get("prefix") or ""
        if prefix:
            causes.extend(invalid(p.child("prefix"), prefix, m) for m in is_env_var_name(prefix))
        refs = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        for ref in refs:
            if not (source[ref] or {}).get("name"):
                causes.append(required(p.child(ref, "name")))
        if not refs:
            causes.append(invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(refs) > 1:
            causes.append(invalid(p, "", "may not have more than one field specified at a time"))
    return causes


def _volume_mounts(mounts: list, volumes: frozenset[str], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, mount in enumerate(mounts):
        p = path.index(i)
        mount = mount if isinstance(mount, dict) else {}
        name = mount.get("name") or ""
        if not name:
            causes.append(required(p.child("name")))
        if name not in volumes:
            causes.append(not_found(p.child("name"), name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            causes.append(required(p.child("mountPath")))
        if mount_path in seen:
            causes.append(invalid(p.child("mountPath"), mount_path, "must be unique"))
        seen.add(mount_path)
        sub_path = mount.get("subPath") or ""
        if sub_path:
            causes.extend(local_descending_path(sub_path, path.child("subPath")))
        propagation = mount.get("mountPropagation")
        if propagation is not None and propagation not in ("None", "HostToContainer", "Bidirectional"):
            causes.append(not_supported(p.child("mountPropagation"), propagation, ("Bidirectional", "HostToContainer", "None")))
    return causes


def local_descending_path(target: str, path: Path) -> list[Cause]:
    """`validateLocalDescendingPath`: relative, and never climbing out with `..`."""
    causes: list[Cause] = []
    if target.startswith("/"):
        causes.append(invalid(path, target, "must be a relative path"))
    if ".." in target.replace("\\", "/").split("/"):
        causes.append(invalid(path, target, "must not contain '..'"))
    return causes


def validate_resource_list(resources: Any, path: Path) -> tuple[dict[str, Decimal], list[Cause]]:
    """Parse a `ResourceList`, checking each quantity is well-formed and non-negative."""
    values: dict[str, Decimal] = {}
    causes: list[Cause] = []
    for name, raw in (resources if isinstance(resources, dict) else {}).items():
        value, errs = quantity(raw, path.key(name))
        causes.extend(errs)
        if value is None:
            continue
        if value < 0:
            causes.append(invalid(path.key(name), canonicalize_quantity(raw), "must be greater than or equal to 0"))
        values[name] = value
    return values, causes


def _container_resource_name(name: str, path: Path) -> list[Cause]:
    causes = [invalid(path, name, m) for m in is_qualified_name(name)]
    if causes:
        return causes
    if "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
        return [invalid(path, name, "must be a standard resource for containers")]
    return []


def _is_overcommit_allowed(name: str) -> bool:
    # Native resources (no domain, or a kubernetes.io domain) except hugepages may be overcommitted.
    native = "/" not in name or name.split("/")[0].endswith("kubernetes.io")
    return native and not name.startswith("hugepages-")


def _resources(resources: dict, path: Path) -> list[Cause]:
    lim_path, req_path = path.child("limits"), path.child("requests")
    raw_limits = resources.get("limits") if isinstance(resources.get("limits"), dict) else {}
    raw_requests = resources.get("requests") if isinstance(resources.get("requests"), dict) else {}
    causes: list[Cause] = []
    for name in raw_limits:
        causes.extend(_container_resource_name(name, lim_path.key(name)))
    limits, errs = validate_resource_list(raw_limits, lim_path)
    causes.extend(errs)
    for name in raw_requests:
        causes.extend(_container_resource_name(name, req_path.key(name)))
    requests, errs = validate_resource_list(raw_requests, req_path)
    causes.extend(errs)
    for name, request in requests.items():
        shown = canonicalize_quantity(raw_requests[name])
        if name in limits:
            limit = canonicalize_quantity(raw_limits[name])
            if request != limits[name] and not _is_overcommit_allowed(name):
                causes.append(invalid(req_path, shown, f"must be equal to {name} limit of {limit}"))
            elif request > limits[name]:
                causes.append(invalid(req_path, shown, f"must be less than or equal to {name} limit of {limit}"))
        elif not _is_overcommit_allowed(name):
            causes.append(required(lim_path, "Limit must be set for non overcommitable resources"))
    return causes


def _handler(handler: dict, path: Path, kinds: tuple[str, ...]) -> list[Cause]:
    causes: list[Cause] = []
    count = 0
    for kind in kinds:
        if handler.get(kind) is None:
            continue
        if count:
            causes.append(forbidden(path.child(kind), "may not specify more than 1 handler type"))
            continue
        count += 1
        action, p = handler[kind] if isinstance(handler[kind], dict) else {}, path.child(kind)
        if kind == "exec" and not action.get("command"):
            causes.append(required(p.child("command")))
        elif kind == "httpGet":
            if not action.get("path"):
                causes.append(required(p.child("path")))
            causes.extend(port_num_or_name(action.get("port"), p.child("port")))
            scheme = action.get("scheme") or ""
            if scheme not in ("HTTP", "HTTPS"):
                causes.append(not_supported(p.child("scheme"), scheme, ("HTTP", "HTTPS")))
            for header in action.get("httpHeaders") or []:
                header_name = (header or {}).get("name") or ""
                causes.extend(invalid(p.child("httpHeaders"), header_name, m) for m in is_http_header_name(header_name))
        elif kind == "tcpSocket":
            causes.extend(port_num_or_name(action.get("port"), p.child("port")))
        elif kind == "grpc":
            port = action.get("port")
            causes.extend(invalid(p.child("port"), port, m) for m in is_valid_port_num(port if isinstance(port, int) else 0))
        elif kind == "sleep":
            seconds = action.get("seconds", 0)
            if not isinstance(seconds, int) or seconds <= 0:
                causes.append(invalid(p.child("seconds"), seconds, "must be greater than 0"))
    if not count:
        causes.append(required(path, "must specify a handler type"))
    return causes


def _lifecycle(lifecycle: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            causes.extend(_handler(lifecycle[hook] or {}, path.child(hook), ("exec", "httpGet", "tcpSocket", "sleep")))
    return causes


def _probe(probe: dict, path: Path, *, single_success: bool) -> list[Cause]:
    probe = probe if isinstance(probe, dict) else {}
    causes = _handler(probe, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for attr in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        causes.extend(nonnegative(probe.get(attr, 0), path.child(attr)))
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None and grace <= 0:
        causes.append(invalid(path.child("terminationGracePeriodSeconds"), grace, "must be greater than 0"))
    if single_success and probe.get("successThreshold", 1) != 1:
        causes.append(invalid(path.child("successThreshold"), probe["successThreshold"], "must be 1"))
    return causes
