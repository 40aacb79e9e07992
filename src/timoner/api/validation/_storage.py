"""PersistentVolume, PersistentVolumeClaim and StorageClass validation.

Claims are immutable after creation except for growing the storage request
(and the binder setting `volumeName` once, and a class given to a claim
that had none); volumes keep their source
forever; a StorageClass keeps its provisioner, parameters, reclaim policy
and binding mode. Messages follow upstream `ValidatePersistentVolume*` and
`pkg/apis/storage/validation`.
"""

from __future__ import annotations

from typing import Any

from timoner.api.errors import Cause
from timoner.api.quantity import canonicalize_quantity
from timoner.api.validation._containers import quantity
from timoner.api.validation._core import diff_summary
from timoner.api.validation._field import (
    Path,
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
)
from timoner.api.validation._meta import immutable, validate_label_selector
from timoner.api.validation._names import is_dns1123_subdomain, is_qualified_name

__all__ = ["validate_pv", "validate_pvc", "validate_pvc_spec", "validate_storage_class"]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_RECLAIM = ("Delete", "Recycle", "Retain")
_VOLUME_MODES = ("Block", "Filesystem")
_PV_SOURCES = (
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs", "photonPersistentDisk",
    "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
)


def _access_modes(modes: list, path: Path, *, detail: str) -> list[Cause]:
    causes: list[Cause] = []
    if not modes:
        causes.append(required(path, detail))
    for mode in modes:
        if mode not in ACCESS_MODES:
            causes.append(not_supported(path, mode, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        causes.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return causes


def _positive(raw: Any, path: Path) -> list[Cause]:
    value, causes = quantity(raw, path)
    if value is not None and value <= 0:
        causes.append(invalid(path, canonicalize_quantity(raw), "must be greater than zero"))
    return causes


def validate_pvc_spec(spec: dict, path: Path) -> list[Cause]:
    """`ValidatePersistentVolumeClaimSpec`, shared with StatefulSet claim templates and ephemeral volumes."""
    causes = _access_modes(spec.get("accessModes") or [], path.child("accessModes"), detail="at least 1 access mode is required")
    if spec.get("selector") is not None:
        causes.extend(validate_label_selector(spec["selector"], path.child("selector")))
    requests = ((spec.get("resources") or {}).get("requests")) or {}
    storage_path = path.child("resources").key("storage")
    if "storage" not in requests:
        causes.append(required(storage_path))
    else:
        causes.extend(_positive(requests["storage"], storage_path))
    class_name = spec.get("storageClassName")
    if class_name:
        causes.extend(invalid(path.child("storageClassName"), class_name, m) for m in is_dns1123_subdomain(class_name))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in _VOLUME_MODES:
        causes.append(not_supported(path.child("volumeMode"), mode, _VOLUME_MODES))
    return causes


def validate_pvc(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    causes = validate_pvc_spec(spec, Path("spec"))
    if old is None:
        return causes
    old_spec = old.get("spec") or {}
    new_cmp, old_cmp = _without_storage(spec), _without_storage(old_spec)
    if not old_spec.get("volumeName"):
        # The binder sets volumeName once.
        new_cmp.pop("volumeName", None)
        old_cmp.pop("volumeName", None)
    if old_spec.get("storageClassName") is None:
        # Retroactive default StorageClass assignment: a claim without a class may be given one, once.
        new_cmp.pop("storageClassName", None)
        old_cmp.pop("storageClassName", None)
    if new_cmp != old_cmp:
        causes.append(forbidden(Path("spec"), "spec is immutable after creation except resources.requests and "
                                "volumeAttributesClassName for bound claims\n" + diff_summary(old_cmp, new_cmp)))
    new_size = _storage(spec)
    old_size = _storage(old_spec)
    if new_size is not None and old_size is not None and new_size < old_size:
        causes.append(forbidden(Path("spec").child("resources", "requests", "storage"), "field can not be less than previous value"))
    return causes


def _storage(spec: dict) -> Any:
    raw = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    value, _ = quantity(raw, Path()) if raw is not None else (None, [])
    return value


def _without_storage(spec: dict) -> dict:
    out = dict(spec)
    resources = dict(out.get("resources") or {})
    requests = {k: v for k, v in (resources.get("requests") or {}).items() if k != "storage"}
    if requests:
        resources["requests"] = requests
    else:
        resources.pop("requests", None)
    if resources:
        out["resources"] = resources
    else:
        out.pop("resources", None)
    out.pop("volumeAttributesClassName", None)
    return out


def validate_pv(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = Path("spec")
    causes = _access_modes(spec.get("accessModes") or [], path.child("accessModes"), detail="")
    capacity = spec.get("capacity") or {}
    if not capacity:
        causes.append(required(path.child("capacity")))
    if "storage" not in capacity or len(capacity) > 1:
        causes.append(not_supported(path.child("capacity"), capacity, ("storage",)))
    for name, raw in capacity.items():
        causes.extend(_positive(raw, path.child("capacity").key(name)))
    reclaim = spec.get("persistentVolumeReclaimPolicy") or ""
    if reclaim and reclaim not in _RECLAIM:
        causes.append(not_supported(path.child("persistentVolumeReclaimPolicy"), reclaim, _RECLAIM))
    class_name = spec.get("storageClassName") or ""
    if class_name:
        causes.extend(invalid(path.child("storageClassName"), class_name, m) for m in is_dns1123_subdomain(class_name))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in _VOLUME_MODES:
        causes.append(not_supported(path.child("volumeMode"), mode, _VOLUME_MODES))
    present = [k for k in _PV_SOURCES if spec.get(k) is not None]
    if not present:
        causes.append(required(path, "must specify a volume type"))
    for extra in present[1:]:
        causes.append(forbidden(path.child(extra), "may not specify more than 1 volume type"))
    if "hostPath" in present and not (spec["hostPath"] or {}).get("path"):
        causes.append(required(path.child("hostPath", "path")))
    if "local" in present and not (spec["local"] or {}).get("path"):
        causes.append(required(path.child("local", "path")))
    if "local" in present and not spec.get("nodeAffinity"):
        causes.append(required(path.child("nodeAffinity"), "Local volume requires node affinity"))
    if old is not None:
        old_spec = old.get("spec") or {}
        if {k: spec.get(k) for k in _PV_SOURCES} != {k: old_spec.get(k) for k in _PV_SOURCES}:
            causes.append(forbidden(path.child("persistentvolumesource"), "spec.persistentvolumesource is immutable after creation"))
        causes.extend(immutable(spec.get("volumeMode"), old_spec.get("volumeMode"), path.child("volumeMode")))
    return causes


_BINDING_MODES = ("Immediate", "WaitForFirstConsumer")


def validate_storage_class(obj: dict, old: dict | None) -> list[Cause]:
    causes: list[Cause] = []
    provisioner = obj.get("provisioner") or ""
    if not provisioner:
        causes.append(required(Path("provisioner")))
    else:
        causes.extend(invalid(Path("provisioner"), provisioner.lower(), m) for m in is_qualified_name(provisioner.lower()))
    params = obj.get("parameters") or {}
    if len(params) > 512:
        causes.append(too_long(Path("parameters"), 512))
    size = sum(len(k) + len(str(v)) for k, v in params.items())
    if size > 256 * 1024:
        causes.append(too_long(Path("parameters"), 256 * 1024))
    reclaim = obj.get("reclaimPolicy") or ""
    if reclaim and reclaim not in ("Delete", "Retain"):
        causes.append(not_supported(Path("reclaimPolicy"), reclaim, ("Delete", "Retain")))
    mode = obj.get("volumeBindingMode")
    if mode is None:
        causes.append(required(Path("volumeBindingMode")))
    elif mode not in _BINDING_MODES:
        causes.append(not_supported(Path("volumeBindingMode"), mode, _BINDING_MODES))
    if old is not None:
        if (old.get("parameters") or {}) != params:
            causes.append(forbidden(Path("parameters"), "updates to parameters are forbidden."))
        if old.get("provisioner") != obj.get("provisioner"):
            causes.append(forbidden(Path("provisioner"), "updates to provisioner are forbidden."))
        if old.get("reclaimPolicy") != obj.get("reclaimPolicy"):
            causes.append(forbidden(Path("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
        causes.extend(immutable(mode, old.get("volumeBindingMode"), Path("volumeBindingMode")))
    return causes
