"""Pod spec and pod template validation (upstream `ValidatePodSpec`, `ValidatePodTemplateSpec`).

Every workload embeds a pod template, so this module is the heart of
workload validation. It checks the pod-level fields and the volumes, and
hands each container to `_containers`. Names must be unique across regular
and init containers; volume mounts must name a declared volume (a
StatefulSet adds the names of its `volumeClaimTemplates`).
"""

from __future__ import annotations

import functools
from typing import Any

from timoner.api.errors import Cause
from timoner.api.schema import definitions
from timoner.api.validation._containers import ContainerContext, local_descending_path, validate_container
from timoner.api.validation._field import Path, duplicate, forbidden, invalid, not_supported, required
from timoner.api.validation._meta import validate_annotations, validate_labels
from timoner.api.validation._names import (
    inclusive_range_error,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    is_qualified_name,
)

__all__ = ["validate_pod_spec", "validate_pod_template", "volume_sources"]

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket")
_MAX_INT32 = 2**31 - 1


@functools.cache
def volume_sources() -> tuple[str, ...]:
    """The volume source fields of `core/v1 Volume`, from the official schema."""
    props = definitions()["io.k8s.api.core.v1.Volume"]["properties"]
    return tuple(k for k in props if k != "name")


def validate_pod_template(template: Any, path: Path, *, extra_volumes: frozenset[str] = frozenset()) -> list[Cause]:
    """`ValidatePodTemplateSpec`: template labels and annotations, then the pod spec."""
    if not isinstance(template, dict):
        return [required(path)]
    meta = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
    causes = validate_labels(meta.get("labels"), path.child("labels"))
    causes.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    spec = template.get("spec") if isinstance(template.get("spec"), dict) else {}
    causes.extend(validate_pod_spec(spec, path.child("spec"), extra_volumes=extra_volumes))
    if spec.get("ephemeralContainers"):
        causes.append(forbidden(path.child("spec", "ephemeralContainers"), "ephemeral containers not allowed in pod template"))
    return causes


def validate_pod_spec(spec: dict, path: Path, *, extra_volumes: frozenset[str] = frozenset()) -> list[Cause]:
    names, causes = _volumes(spec.get("volumes") or [], path.child("volumes"))
    volumes = frozenset(names) | extra_volumes
    grace = spec.get("terminationGracePeriodSeconds")
    causes.extend(_containers(spec, volumes, grace, path))
    causes.extend(_policies(spec, path))
    causes.extend(validate_labels(spec.get("nodeSelector"), path.child("nodeSelector")))
    for i, secret in enumerate(spec.get("imagePullSecrets") or []):
        if not (secret or {}).get("name"):
            causes.append(required(path.child("imagePullSecrets").index(i).child("name")))
    for attr, check in (("serviceAccountName", is_dns1123_subdomain), ("nodeName", is_dns1123_subdomain),
                        ("priorityClassName", is_dns1123_subdomain)):
        value = spec.get(attr) or ""
        if value:
            causes.extend(invalid(path.child(attr), value, m) for m in check(value))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= _MAX_INT32:
        causes.append(invalid(path.child("activeDeadlineSeconds"), deadline, inclusive_range_error(1, _MAX_INT32)))
    for attr in ("hostname", "subdomain"):
        value = spec.get(attr) or ""
        if value:
            causes.extend(invalid(path.child(attr), value, m) for m in is_dns1123_label(value))
    causes.extend(_tolerations(spec.get("tolerations") or [], path.child("tolerations")))
    for i, alias in enumerate(spec.get("hostAliases") or []):
        ip = (alias or {}).get("ip") or ""
        causes.extend(invalid(path.child("hostAliases").index(i).child("ip"), ip, m) for m in is_ip(ip))
    preemption = spec.get("preemptionPolicy")
    if preemption is not None and preemption not in ("Never", "PreemptLowerPriority"):
        causes.append(not_supported(path.child("preemptionPolicy"), preemption, ("Never", "PreemptLowerPriority")))
    runtime_class = spec.get("runtimeClassName")
    if runtime_class is not None:
        causes.extend(invalid(path.child("runtimeClassName"), runtime_class, m) for m in is_dns1123_subdomain(runtime_class))
    return causes


def _containers(spec: dict, volumes: frozenset[str], grace: int | None, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    seen: set[str] = set()
    if not containers:
        causes.append(required(path.child("containers")))
    for i, ctr in enumerate(containers):
        ctr, p = ctr if isinstance(ctr, dict) else {}, path.child("containers").index(i)
        causes.extend(validate_container(ctr, p, ContainerContext(volumes, "container", grace)))
        name = ctr.get("name") or ""
        if name in seen:
            causes.append(duplicate(p.child("name"), name))
        seen.add(name)
    for i, ctr in enumerate(spec.get("initContainers") or []):
        ctr, p = ctr if isinstance(ctr, dict) else {}, path.child("initContainers").index(i)
        restart = ctr.get("restartPolicy")
        kind = "sidecar" if restart == "Always" else "init"
        if restart is not None and restart != "Always":
            causes.append(not_supported(p.child("restartPolicy"), restart, ("Always",)))
        causes.extend(validate_container(ctr, p, ContainerContext(volumes, kind, grace)))
        name = ctr.get("name") or ""
        if name in seen:
            causes.append(duplicate(p.child("name"), name))
        seen.add(name)
    for i, ctr in enumerate(spec.get("ephemeralContainers") or []):
        ctr, p = ctr if isinstance(ctr, dict) else {}, path.child("ephemeralContainers").index(i)
        causes.extend(validate_container(ctr, p, ContainerContext(volumes, "ephemeral", grace)))
        name = ctr.get("name") or ""
        if name in seen:
            causes.append(duplicate(p.child("name"), name))
        seen.add(name)
    causes.extend(_unique_host_ports(spec, path))
    return causes


def _unique_host_ports(spec: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    used: set[str] = set()
    for field in ("containers", "initContainers"):
        for i, ctr in enumerate(spec.get(field) or []):
            for j, port in enumerate((ctr or {}).get("ports") or []):
                host_port = (port or {}).get("hostPort") or 0
                if not host_port:
                    continue
                key = f"{port.get('hostIP', '')}/{port.get('protocol', '')}/{host_port}"
                if key in used:
                    causes.append(duplicate(path.child(field).index(i).child("ports").index(j).child("hostPort"), key))
                used.add(key)
    return causes


def _policies(spec: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    restart = spec.get("restartPolicy") or ""
    if not restart:
        causes.append(required(path.child("restartPolicy")))
    elif restart not in _RESTART_POLICIES:
        causes.append(not_supported(path.child("restartPolicy"), restart, _RESTART_POLICIES))
    dns = spec.get("dnsPolicy") or ""
    if not dns:
        causes.append(required(path.child("dnsPolicy")))
    elif dns not in _DNS_POLICIES:
        causes.append(not_supported(path.child("dnsPolicy"), dns, _DNS_POLICIES))
    elif dns == "None" and not spec.get("dnsConfig"):
        causes.append(required(path.child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
    config = spec.get("dnsConfig") or {}
    for i, server in enumerate(config.get("nameservers") or []):
        causes.extend(invalid(path.child("dnsConfig", "nameservers").index(i), server, m) for m in is_ip(server))
    return causes


def _tolerations(tolerations: list, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for i, tol in enumerate(tolerations):
        p, tol = path.index(i), tol if isinstance(tol, dict) else {}
        key = tol.get("key") or ""
        if key:
            causes.extend(invalid(p.child("key"), key, m) for m in is_qualified_name(key))
        operator = tol.get("operator") or "Equal"
        if not key and operator != "Exists":
            causes.append(invalid(p.child("operator"), operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            causes.append(invalid(p.child("effect"), tol.get("effect") or "", "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator == "Exists" and tol.get("value"):
            causes.append(invalid(p.child("operator"), tol["value"], "value must be empty when `operator` is 'Exists'"))
        elif operator not in ("Equal", "Exists"):
            causes.append(not_supported(p.child("operator"), operator, ("Equal", "Exists")))
        effect = tol.get("effect") or ""
        if effect and effect not in ("NoExecute", "NoSchedule", "PreferNoSchedule"):
            causes.append(not_supported(p.child("effect"), effect, ("NoExecute", "NoSchedule", "PreferNoSchedule")))
    return causes


def _volumes(volumes: list, path: Path) -> tuple[set[str], list[Cause]]:
    names: set[str] = set()
    causes: list[Cause] = []
    for i, volume in enumerate(volumes):
        p, volume = path.index(i), volume if isinstance(volume, dict) else {}
        name = volume.get("name") or ""
        if not name:
            causes.append(required(p.child("name")))
        else:
            causes.extend(invalid(p.child("name"), name, m) for m in is_dns1123_label(name))
        if name in names:
            causes.append(duplicate(p.child("name"), name))
        elif name:
            names.add(name)
        present = [k for k in volume_sources() if volume.get(k) is not None]
        if not present:
            causes.append(required(p, "must specify a volume type"))
        for extra in present[1:]:
            causes.append(forbidden(p.child(extra), "may not specify more than 1 volume type"))
        if present:
            causes.extend(_volume_source(present[0], volume[present[0]] or {}, p.child(present[0])))
    return names, causes


def _mode(mode: Any, path: Path) -> list[Cause]:
    if mode is not None and not (isinstance(mode, int) and 0 <= mode <= 0o777):
        return [invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _key_to_paths(items: list, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for i, item in enumerate(items):
        p, item = path.index(i), item if isinstance(item, dict) else {}
        if not item.get("key"):
            causes.append(required(p.child("key")))
        target = item.get("path") or ""
        if not target:
            causes.append(required(p.child("path")))
        else:
            causes.extend(local_descending_path(target, p.child("path")))
        causes.extend(_mode(item.get("mode"), p.child("mode")))
    return causes


def _volume_source(kind: str, source: dict, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if kind == "hostPath":
        if not source.get("path"):
            causes.append(required(path.child("path")))
        host_type = source.get("type")
        if host_type is not None and host_type not in _HOST_PATH_TYPES:
            causes.append(not_supported(path.child("type"), host_type, _HOST_PATH_TYPES))
    elif kind == "emptyDir":
        medium = source.get("medium") or ""
        if medium not in ("", "Memory", "HugePages") and not medium.startswith("HugePages-"):
            causes.append(not_supported(path.child("medium"), medium, ("", "HugePages", "Memory")))
    elif kind in ("configMap", "secret"):
        name_field = "name" if kind == "configMap" else "secretName"
        if not source.get(name_field):
            causes.append(required(path.child(name_field)))
        causes.extend(_mode(source.get("defaultMode"), path.child("defaultMode")))
        causes.extend(_key_to_paths(source.get("items") or [], path.child("items")))
    elif kind == "persistentVolumeClaim":
        if not source.get("claimName"):
            causes.append(required(path.child("claimName")))
    elif kind == "nfs":
        for attr in ("server", "path"):
            if not source.get(attr):
                causes.append(required(path.child(attr)))
        if source.get("path") and not source["path"].startswith("/"):
            causes.append(invalid(path.child("path"), source["path"], "must be an absolute path"))
    elif kind == "csi":
        if not source.get("driver"):
            causes.append(required(path.child("driver")))
    elif kind == "ephemeral":
        if not source.get("volumeClaimTemplate"):
            causes.append(required(path.child("volumeClaimTemplate")))
    elif kind == "downwardAPI":
        causes.extend(_mode(source.get("defaultMode"), path.child("defaultMode")))
    elif kind == "projected":
        causes.extend(_mode(source.get("defaultMode"), path.child("defaultMode")))
        causes.extend(_projections(source.get("sources") or [], path.child("sources")))
    elif kind == "image":
        if not source.get("reference"):
            causes.append(required(path.child("reference")))
    return causes


def _projections(sources: list, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    kinds = ("secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle")
    for i, source in enumerate(sources):
        p, source = path.index(i), source if isinstance(source, dict) else {}
        present = [k for k in kinds if source.get(k) is not None]
        if len(present) > 1:
            causes.append(forbidden(p, "may not specify more than 1 volume type per source"))
        if "serviceAccountToken" in present:
            token = source["serviceAccountToken"] or {}
            if not token.get("path"):
                causes.append(required(p.child("serviceAccountToken", "path")))
            seconds = token.get("expirationSeconds", 3600)
            if seconds < 600:
                causes.append(invalid(p.child("serviceAccountToken", "expirationSeconds"), seconds, "may not specify a duration less than 10 minutes"))
        for kind in ("secret", "configMap"):
            if kind in present:
                for j, item in enumerate((source[kind] or {}).get("items") or []):
                    key = (item or {}).get("key") or ""
                    ip = p.child(kind, "items").index(j).child("key")
                    if not key:
                        causes.append(required(ip))
                    else:
                        causes.extend(invalid(ip, key, m) for m in is_config_map_key(key))
    return causes

