"""Persistent volume facts shared by the PV controller, the scheduler and the node agent: pure, no I/O.

Upstream keeps these in `pkg/controller/volume/persistentvolume/util` and
`component-helpers/storage/volume`; three components need them here too
(the controller binds claims, the scheduler's VolumeBinding plugin binds
WaitForFirstConsumer claims on the node it picks, the node agent's
provisioner writes the annotations both read), and components may not
import each other, so they live in `timoner.api`.

`find_matching_volume` is upstream's `FindMatchingVolume`: among the
volumes that could hold the claim (capacity at least the request, same
volumeMode, not being deleted, `Available`, the claim's selector, the same
class, the node's affinity when a node is given), the smallest; a volume
pre-bound to the claim (`claimRef` naming it) wins at once. The
controller's path (`find_best_volume`) first groups volumes by their
access modes and tries the smallest sets that contain the claim's modes,
as upstream's `persistentVolumeOrderedIndex.findByClaim`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from timoner.api.errors import APIError
from timoner.api.quantity import parse_quantity
from timoner.api.selectors import label_selector_from_dict

__all__ = [
    "ANN_BETA_DEFAULT_CLASS",
    "ANN_BETA_STORAGE_CLASS",
    "ANN_BETA_STORAGE_PROVISIONER",
    "ANN_BIND_COMPLETED",
    "ANN_BOUND_BY_CONTROLLER",
    "ANN_DEFAULT_CLASS",
    "ANN_PROVISIONED_BY",
    "ANN_SELECTED_NODE",
    "ANN_STORAGE_PROVISIONER",
    "NO_PROVISIONER",
    "WAIT_FOR_FIRST_CONSUMER",
    "access_modes_contain",
    "claim_class",
    "claim_request",
    "default_class",
    "find_best_volume",
    "find_matching_volume",
    "is_default_class",
    "is_volume_bound_to_claim",
    "volume_capacity",
    "volume_class",
    "volume_claim_mismatch",
]

Obj = dict[str, Any]

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def claim_class(claim: Mapping[str, Any]) -> str:
    """The class a claim asks for ("" for none): the beta annotation wins over `storageClassName`, as upstream."""
    annotations = _meta(claim).get("annotations") or {}
    if ANN_BETA_STORAGE_CLASS in annotations:
        return str(annotations[ANN_BETA_STORAGE_CLASS])
    return str(_spec(claim).get("storageClassName") or "")


def volume_class(volume: Mapping[str, Any]) -> str:
    annotations = _meta(volume).get("annotations") or {}
    if ANN_BETA_STORAGE_CLASS in annotations:
        return str(annotations[ANN_BETA_STORAGE_CLASS])
    return str(_spec(volume).get("storageClassName") or "")


def is_default_class(storage_class: Mapping[str, Any]) -> bool:
    annotations = _meta(storage_class).get("annotations") or {}
    return annotations.get(ANN_DEFAULT_CLASS) == "true" or annotations.get(ANN_BETA_DEFAULT_CLASS) == "true"


def default_class(classes: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The default StorageClass: of several, the newest (then the first by name), as upstream since 1.26."""
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    defaults.sort(key=lambda c: _meta(c).get("name", ""))
    # RFC 3339 timestamps in UTC sort as strings; a stable sort keeps names ascending among equals.
    defaults.sort(key=lambda c: _meta(c).get("creationTimestamp", ""), reverse=True)
    return defaults[0]


def _quantity(raw: Any) -> Decimal | None:
    if raw is None:
        return None
    try:
        return parse_quantity(raw)
    except (ValueError, TypeError):
        return None


def claim_request(claim: Mapping[str, Any]) -> Decimal:
    """The storage a claim requests (0 when unset or malformed)."""
    return _quantity(((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage")) or Decimal(0)


def volume_capacity(volume: Mapping[str, Any]) -> Decimal:
    return _quantity((_spec(volume).get("capacity") or {}).get("storage")) or Decimal(0)


def is_volume_bound_to_claim(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """Whether the volume's `claimRef` names this claim (a ref without uid names any claim of that name)."""
    ref = _spec(volume).get("claimRef")
    if not ref:
        return False
    meta = _meta(claim)
    if ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def access_modes_contain(have: Iterable[str], want: Iterable[str]) -> bool:
    have = set(have)
    return all(mode in have for mode in want)


def _volume_mode(spec: Mapping[str, Any]) -> str:
    return str(spec.get("volumeMode") or "Filesystem")


def _selector_matches(claim: Mapping[str, Any], volume: Mapping[str, Any]) -> bool:
    raw = _spec(claim).get("selector")
    if raw is None:
        return True
    try:
        return label_selector_from_dict(raw).matches(_meta(volume).get("labels") or {})
    except APIError:
        return False


def find_matching_volume(claim: Mapping[str, Any], volumes: Iterable[Mapping[str, Any]], *,
                         node_matches: Callable[[Mapping[str, Any]], bool] | None = None,
                         excluded: Iterable[str] = (), delay_binding: bool = False) -> Mapping[str, Any] | None:
    """Upstream's `FindMatchingVolume`; see the module docstring. `node_matches` is the scheduler's node check
    (the volume's node affinity against the candidate node); with it, access modes are checked here too."""
    requested = claim_request(claim)
    wanted_class = claim_class(claim)
    wanted_modes = _spec(claim).get("accessModes") or []
    skip = set(excluded)
    smallest: Mapping[str, Any] | None = None
    smallest_size = Decimal(0)
    for volume in volumes:
        meta, spec = _meta(volume), _spec(volume)
        if meta.get("name") in skip:
            continue
        if spec.get("claimRef") and not is_volume_bound_to_claim(volume, claim):
            continue
        size = volume_capacity(volume)
        if size < requested:
            continue
        if _volume_mode(spec) != _volume_mode(_spec(claim)):
            continue
        if meta.get("deletionTimestamp"):
            continue
        node_ok = node_matches is None or node_matches(volume)
        if is_volume_bound_to_claim(volume, claim):
            return volume if node_ok else None
        if node_matches is None and delay_binding:
            continue  # the scheduler binds this claim, on the node it picks
        if (volume.get("status") or {}).get("phase") != "Available":
            continue
        if not _selector_matches(claim, volume):
            continue
        if volume_class(volume) != wanted_class:
            continue
        if not node_ok:
            continue
        if node_matches is not None and not access_modes_contain(spec.get("accessModes") or [], wanted_modes):
            continue
        if smallest is None or size < smallest_size:
            smallest, smallest_size = volume, size
    return smallest


def find_best_volume(claim: Mapping[str, Any], volumes: Iterable[Mapping[str, Any]], *,
                     delay_binding: bool = False) -> Mapping[str, Any] | None:
    """The PV controller's choice: volumes grouped by access modes, the smallest sets holding the claim's first."""
    wanted = _spec(claim).get("accessModes") or []
    groups: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for volume in volumes:
        groups.setdefault(frozenset(_spec(volume).get("accessModes") or ()), []).append(volume)
    for modes in sorted((m for m in groups if access_modes_contain(m, wanted)), key=lambda m: (len(m), sorted(m))):
        # Within a group, by name: the order upstream's index lists them in does not matter beyond size.
        found = find_matching_volume(claim, sorted(groups[modes], key=lambda v: _meta(v).get("name", "")),
                                     delay_binding=delay_binding)
        if found is not None:
            return found
    return None


def volume_claim_mismatch(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> str | None:
    """Why a volume cannot hold a claim that names it (`spec.volumeName`), or None (upstream's
    `checkVolumeSatisfyClaim`)."""
    requested, capacity = claim_request(claim), volume_capacity(volume)
    if capacity < requested:
        return "requested PV is too small"
    if volume_class(volume) != claim_class(claim):
        return "storageClassName does not match"
    if _volume_mode(_spec(volume)) != _volume_mode(_spec(claim)):
        return "incompatible volumeMode"
    if not access_modes_contain(_spec(volume).get("accessModes") or [], _spec(claim).get("accessModes") or []):
        return "incompatible accessMode"
    return None
