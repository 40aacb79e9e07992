"""Defaulting of pod specs and what they contain, after upstream `pkg/apis/core/v1/defaults.go`.

Upstream's generated defaulters call `SetDefaults_PodSpec`, `_Container`,
`_Probe`, `_Volume` and friends on every pod spec wherever it appears (Pod,
PodTemplate and each workload's template); `SetDefaults_Pod` (requests from
limits, `enableServiceLinks`) runs for bare Pods only. Functions here work
in place on plain JSON dicts and never overwrite a value the user set.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "default_pod",
    "default_pod_spec",
    "default_pod_template",
    "default_pv_sources",
    "default_pvc_spec",
    "image_tag",
]

_MODE_0644 = 0o644


def _dict(parent: dict, key: str) -> dict:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _items(parent: Any, key: str) -> list[dict]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def image_tag(image: str) -> str:
    """The tag of an image reference; "latest" when neither tag nor digest is given, as docker parses it."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def default_pod_template(template: Any) -> None:
    if isinstance(template, dict):
        default_pod_spec(_dict(template, "spec"))


def default_pod(pod: dict) -> None:
    """A bare Pod: the pod spec defaults plus what only Pods get (and what admission adds upstream)."""
    spec = _dict(pod, "spec")
    default_pod_spec(spec)
    for ctr in _items(spec, "containers") + _items(spec, "initContainers"):
        resources = ctr.get("resources")
        limits = resources.get("limits") if isinstance(resources, dict) else None
        if isinstance(limits, dict) and limits:
            requests = _dict(resources, "requests")
            for name, value in limits.items():
                requests.setdefault(name, value)
    spec.setdefault("enableServiceLinks", True)
    # Upstream these come from admission plugins (ServiceAccount, Priority, DefaultTolerationSeconds).
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    if "priorityClassName" not in spec:
        spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    _default_tolerations(spec)
    status = _dict(pod, "status")
    status.setdefault("phase", "Pending")


def _default_tolerations(spec: dict) -> None:
    tolerations = spec.get("tolerations") if isinstance(spec.get("tolerations"), list) else []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        # As DefaultTolerationSeconds: any toleration for this key (or every key) with NoExecute (or every effect).
        if not any(
            isinstance(t, dict) and t.get("key") in (key, None, "") and t.get("effect") in ("NoExecute", None, "")
            for t in tolerations
        ):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    spec["tolerations"] = tolerations


def default_pod_spec(spec: dict) -> None:
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("hostNetwork"):
        for ctr in _items(spec, "containers") + _items(spec, "initContainers"):
            for port in _items(ctr, "ports"):
                if not port.get("hostPort"):
                    port["hostPort"] = port.get("containerPort")
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for ctr in _items(spec, field):
            _default_container(ctr)
    for volume in _items(spec, "volumes"):
        _default_volume(volume)


def _default_container(ctr: dict) -> None:
    # Not a default upstream but Go's encoding: `resources` is a value struct, which `omitempty` never
    # omits, so every container read back carries `resources: {}`.
    if not isinstance(ctr.get("resources"), dict):
        ctr["resources"] = {}
    if not ctr.get("imagePullPolicy"):
        ctr["imagePullPolicy"] = "Always" if image_tag(str(ctr.get("image") or "")) == "latest" else "IfNotPresent"
    if not ctr.get("terminationMessagePath"):
        ctr["terminationMessagePath"] = "/dev/termination-log"
    if not ctr.get("terminationMessagePolicy"):
        ctr["terminationMessagePolicy"] = "File"
    for port in _items(ctr, "ports"):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(ctr.get(probe), dict):
            _default_probe(ctr[probe])
    lifecycle = ctr.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _default_http_get(lifecycle[hook])
    for var in _items(ctr, "env"):
        source = var.get("valueFrom")
        if isinstance(source, dict) and isinstance(source.get("fieldRef"), dict):
            if not source["fieldRef"].get("apiVersion"):
                source["fieldRef"]["apiVersion"] = "v1"


def _default_http_get(handler: dict) -> None:
    action = handler.get("httpGet")
    if isinstance(action, dict):
        if not action.get("path"):
            action["path"] = "/"
        if not action.get("scheme"):
            action["scheme"] = "HTTP"


def _default_probe(probe: dict) -> None:
    for field, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        if not probe.get(field):
            probe[field] = value
    _default_http_get(probe)


_VOLUME_SOURCES_WITH_MODE = ("secret", "configMap", "downwardAPI", "projected")


def _default_volume(volume: dict) -> None:
    if not any(k != "name" and v is not None for k, v in volume.items()):
        volume["emptyDir"] = {}
    for kind in _VOLUME_SOURCES_WITH_MODE:
        source = volume.get(kind)
        if isinstance(source, dict) and source.get("defaultMode") is None:
            source["defaultMode"] = _MODE_0644
    for item in _items(volume.get("downwardAPI"), "items"):
        _default_field_ref(item)
    for source in _items(volume.get("projected"), "sources"):
        token = source.get("serviceAccountToken")
        if isinstance(token, dict) and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
        for item in _items(source.get("downwardAPI"), "items"):
            _default_field_ref(item)
    _default_source_fields(volume)
    ephemeral = volume.get("ephemeral")
    if isinstance(ephemeral, dict) and isinstance(ephemeral.get("volumeClaimTemplate"), dict):
        default_pvc_spec(_dict(ephemeral["volumeClaimTemplate"], "spec"))


def _default_field_ref(item: dict) -> None:
    ref = item.get("fieldRef")
    if isinstance(ref, dict) and not ref.get("apiVersion"):
        ref["apiVersion"] = "v1"


# Per-source defaults shared by pod volumes and PersistentVolumes.
_SOURCE_DEFAULTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "hostPath": (("type", ""),),
    "iscsi": (("iscsiInterface", "default"),),
    "rbd": (("pool", "rbd"), ("user", "admin"), ("keyring", "/etc/ceph/keyring")),
    "azureDisk": (("cachingMode", "ReadWrite"), ("kind", "Shared"), ("fsType", "ext4"), ("readOnly", False)),
    "scaleIO": (("storageMode", "ThinProvisioned"), ("fsType", "xfs")),
}


def _default_source_fields(holder: dict) -> None:
    for kind, defaults in _SOURCE_DEFAULTS.items():
        source = holder.get(kind)
        if isinstance(source, dict):
            for field, value in defaults:
                if source.get(field) is None or (source.get(field) == "" and value != ""):
                    source[field] = value


def default_pv_sources(spec: dict) -> None:
    _default_source_fields(spec)


def default_pvc_spec(spec: dict) -> None:
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"

