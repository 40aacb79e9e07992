"""VolumeBinding: a pod's PersistentVolumeClaims decide which nodes it may use, and what binding it needs.

Upstream's plugin, small. PreFilter sorts the pod's claims
(`persistentVolumeClaim` volumes, and the `<pod>-<volume>` claims of
`ephemeral` volumes) from the snapshot:

- a missing claim, or one being deleted, rejects the pod
  (`persistentvolumeclaim "x" not found`, `... is being deleted`);
- a bound claim (`spec.volumeName` set) brings its volume's node affinity
  to the Filter;
- an unbound claim of a WaitForFirstConsumer class is bound in this
  cycle, on the node picked; one of any other class is the PV
  controller's to bind first: `pod has unbound immediate
  PersistentVolumeClaims`, unresolvable until it is bound.

Filter, per node: every bound volume's `nodeAffinity` must match the node
(`node(s) had volume node affinity conflict`); the unbound delayed claims,
smallest request first, each take the smallest Available volume that fits
and whose affinity matches the node, or else must be provisionable there
(a class with a provisioner other than `kubernetes.io/no-provisioner`,
whose `allowedTopologies` admit the node); otherwise `node(s) didn't find
available persistent volumes to bind`. The per-node plan (which volume
each claim takes, which claims to provision) is kept in the cycle state;
`VolumeBinding.plan(state, node)` hands the chosen node's plan to the
scheduler, which writes it before binding the pod (upstream's PreBind):
`claimRef`s for static volumes, `volume.kubernetes.io/selected-node` on
claims to provision, then it waits for the PV controller and the
provisioner to finish binding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timoner.api.persistentvolume import (
    NO_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
    claim_request,
    find_matching_volume,
    volume_class,
)
from timoner.api.scheduling import node_selector_term_matches

from .._framework import CycleState, Status
from .._snapshot import NodeInfo, StorageObjects

__all__ = ["VolumeBinding", "VolumePlan", "pod_claim_names"]

Obj = dict[str, Any]

UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NODE_CONFLICT = "node(s) had volume node affinity conflict"
BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"

_STATE_KEY = "VolumeBinding"


@dataclass(frozen=True, slots=True)
class VolumePlan:
    """What binding a pod needs on one node: (volume, claim) pairs to bind, and claims to provision there."""

    bindings: tuple[tuple[Obj, Obj], ...] = ()
    provisions: tuple[Obj, ...] = ()
    claims: tuple[Obj, ...] = ()  # every claim of the pod that was unbound when the cycle ran

    @property
    def empty(self) -> bool:
        return not self.bindings and not self.provisions


@dataclass(slots=True)
class _PodVolumes:
    bound: list[tuple[Obj, Obj | None]]  # (claim, its volume or None when missing)
    delayed: list[Obj]  # unbound WaitForFirstConsumer claims, smallest request first
    storage: StorageObjects
    plans: dict[str, VolumePlan]


def pod_claim_names(pod: Obj) -> list[tuple[str, bool]]:
    """The claims a pod uses, as (name, ephemeral): `persistentVolumeClaim` and `ephemeral` volumes."""
    name = (pod.get("metadata") or {}).get("name", "")
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        if volume.get("persistentVolumeClaim"):
            out.append((volume["persistentVolumeClaim"].get("claimName", ""), False))
        elif volume.get("ephemeral"):
            out.append((f"{name}-{volume.get('name', '')}", True))
    return out


def volume_matches_node(volume: Mapping[str, Any], node: Obj) -> bool:
    """Upstream's `CheckNodeAffinity`: the volume's required node selector terms (ORed) against the node."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    return any(node_selector_term_matches(term, node) for term in required.get("nodeSelectorTerms") or ())


def _topology_allows(storage_class: Obj, node: Obj) -> bool:
    """A class's `allowedTopologies` (terms ORed; within a term every key's values) against the node's labels."""
    terms = storage_class.get("allowedTopologies") or []
    if not terms:
        return True
    labels = node["metadata"].get("labels") or {}
    for term in terms:
        if all(labels.get(expr.get("key")) in (expr.get("values") or [])
               for expr in term.get("matchLabelExpressions") or ()):
            return True
    return False


class VolumeBinding:
    name = "VolumeBinding"

    def pre_filter(self, state: CycleState, pod: Obj) -> Status:
        names = pod_claim_names(pod)
        if not names:
            return Status.skip()
        storage: StorageObjects = getattr(state.snapshot, "storage", None) or StorageObjects()
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace", "")
        bound: list[tuple[Obj, Obj | None]] = []
        delayed: list[Obj] = []
        immediate = False
        for name, ephemeral in names:
            claim = storage.claims.get(f"{namespace}/{name}")
            if claim is None:
                if ephemeral:
                    return Status.unresolvable(f'waiting for ephemeral volume controller to create the '
                                               f'persistentvolumeclaim "{name}"')
                return Status.unresolvable(f'persistentvolumeclaim "{name}" not found')
            if claim["metadata"].get("deletionTimestamp"):
                return Status.unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            if ephemeral and not any(ref.get("uid") == meta.get("uid") and ref.get("controller")
                                     for ref in claim["metadata"].get("ownerReferences") or ()):
                return Status.unresolvable(f"PVC {namespace}/{name} was not created for pod "
                                           f"{namespace}/{meta.get('name', '')} (pod is not owner)")
            volume_name = (claim.get("spec") or {}).get("volumeName")
            if volume_name:
                bound.append((claim, storage.volumes.get(volume_name)))
                continue
            storage_class = storage.classes.get(claim_class(claim))
            if storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
                delayed.append(claim)
            else:
                immediate = True
        if immediate:
            return Status.unresolvable(UNBOUND_IMMEDIATE)
        delayed.sort(key=claim_request)
        state.write(_STATE_KEY, _PodVolumes(bound, delayed, storage, {}))
        return Status.success()

    def filter(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> Status:
        pod_volumes: _PodVolumes | None = state.read(_STATE_KEY)
        if pod_volumes is None:
            return Status.success()
        node = node_info.node
        for _claim, volume in pod_volumes.bound:
            if volume is None:
                return Status.unresolvable(PV_NOT_EXIST)
            if not volume_matches_node(volume, node):
                return Status.unresolvable(NODE_CONFLICT)
        if not pod_volumes.delayed:
            return Status.success()
        storage = pod_volumes.storage
        chosen: list[tuple[Obj, Obj]] = []
        provisions: list[Obj] = []
        for claim in pod_volumes.delayed:
            wanted = claim_class(claim)
            candidates = [v for v in storage.volumes.values() if volume_class(v) == wanted]
            volume = find_matching_volume(claim, candidates, node_matches=lambda v: volume_matches_node(v, node),
                                          excluded=[v["metadata"]["name"] for v, _ in chosen])
            if volume is not None:
                chosen.append((dict(volume), claim))
                continue
            storage_class = storage.classes.get(wanted) or {}
            provisioner = storage_class.get("provisioner") or ""
            if not provisioner or provisioner == NO_PROVISIONER or not _topology_allows(storage_class, node):
                return Status.unresolvable(BIND_CONFLICT)
            provisions.append(claim)
        pod_volumes.plans[node_info.name] = VolumePlan(tuple(chosen), tuple(provisions), tuple(pod_volumes.delayed))
        return Status.success()

    @staticmethod
    def plan(state: CycleState | None, node_name: str) -> VolumePlan:
        """The binding the pod needs on `node_name` (empty when its claims are all bound, or it has none)."""
        pod_volumes: _PodVolumes | None = state.read(_STATE_KEY) if state is not None else None
        if pod_volumes is None:
            return VolumePlan()
        return pod_volumes.plans.get(node_name, VolumePlan())
