"""The PersistentVolume controller: binds claims to volumes, tracks their phases, reclaims released volumes.

Upstream's `persistentvolume-controller` (the binder), one reconciler for
both kinds: a `Request` with a namespace is a claim (`sync_claim`), one
without is a volume (`sync_volume`). A single worker runs them, so two
claims never race for one volume; what this controller wrote is kept
(`_written`) and preferred over an older cached copy, so the next sync sees
it before the informer does (upstream's assume cache).

A claim without `pv.kubernetes.io/bind-completed`:

- without a class (`storageClassName` absent) while a default StorageClass
  exists: it is given that class (retroactive default assignment);
- with `spec.volumeName` empty: the best matching volume (smallest that
  fits; see `timoner.api.persistentvolume`) is bound to it. None matching:
  a WaitForFirstConsumer claim waits for the scheduler to pick a node
  (`volume.kubernetes.io/selected-node`), Normal `WaitForFirstConsumer`;
  a claim whose class names a provisioner is annotated
  `volume.kubernetes.io/storage-provisioner` for that (external)
  provisioner, Normal `ExternalProvisioning`; otherwise it stays Pending,
  Normal `FailedBinding`;
- with `spec.volumeName` set by the user: bound to that volume if it is
  free and fits (else Warning `VolumeMismatch` / Normal `FailedBinding`).

An unbound claim is synced again every 15 s (upstream resyncs every claim
that often; only an unbound one can change by itself) and whenever a
volume of its class becomes free.

Binding writes the volume's `claimRef` (with `pv.kubernetes.io/bound-by-
controller` when the controller chose it) and phase Bound, then the claim's
`volumeName`, `pv.kubernetes.io/bind-completed` (and bound-by-controller)
and status (Bound, the volume's capacity and access modes). A bound claim
whose volume is gone, or bound elsewhere, becomes Lost (Warning
`ClaimLost`, `ClaimMisbound`).

A volume without `claimRef` (or pre-bound, `claimRef` without uid) is
Available; one whose claim is bound to it is Bound. One whose claim is
gone (checked against the API server before believing the cache) is
Released and reclaimed by its policy: `Retain` keeps it Released; `Delete`
of a dynamically provisioned volume (`pv.kubernetes.io/provisioned-by`)
is the provisioner's to do, as with upstream's external provisioners;
`Delete` without a provisioner and `Recycle` fail (phase Failed, Warning
`VolumeFailedDelete` / `VolumeFailedRecycle`), as upstream has no plugin
for them either.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from timoner.api.errors import Conflict, NotFound
from timoner.api.persistentvolume import (
    ANN_BETA_STORAGE_CLASS,
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    NO_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
    default_class,
    find_best_volume,
    is_volume_bound_to_claim,
    volume_claim_mismatch,
    volume_class,
)
from timoner.client import Client, Clock, EventRecorder, Informer, Resource, resource_for

from ._framework import Change, Controller, Request, Result, SharedInformers
from ._pods import now_rfc3339

__all__ = ["PERSISTENT_VOLUMES", "PERSISTENT_VOLUME_CLAIMS", "STORAGE_CLASSES", "PersistentVolumeReconciler",
           "new_persistentvolume_controller"]

log = logging.getLogger("timoner.controllers.persistentvolume")

Obj = dict[str, Any]

PERSISTENT_VOLUMES = resource_for("v1", "PersistentVolume")
PERSISTENT_VOLUME_CLAIMS = resource_for("v1", "PersistentVolumeClaim")
STORAGE_CLASSES = resource_for("storage.k8s.io/v1", "StorageClass")
COMPONENT = "persistentvolume-controller"
RESYNC_PERIOD = 15.0  # upstream's pvClaimBinderSyncPeriod


def _rv(obj: Obj | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _annotations(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _phase(obj: Obj) -> str:
    return (obj.get("status") or {}).get("phase") or ""


class PersistentVolumeReconciler:
    """Binds claims and volumes, keeps their phases and reclaims released volumes; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.volumes: Informer = informers.get(PERSISTENT_VOLUMES)
        self.claims: Informer = informers.get(PERSISTENT_VOLUME_CLAIMS)
        self.classes: Informer = informers.get(STORAGE_CLASSES)
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        # Our own writes, newer than the cache until the informer catches up: (namespace, name) -> object.
        self._written: dict[tuple[str, str], Obj] = {}

    # -- informer changes to requests ------------------------------------------------------

    def on_volume(self, change: Change) -> list[Request]:
        requests = [Request.of(change.obj)]
        for obj in (change.obj, change.old):
            ref = ((obj or {}).get("spec") or {}).get("claimRef")
            if ref and ref.get("namespace") and ref.get("name"):
                request = Request(ref["namespace"], ref["name"])
                if request not in requests:
                    requests.append(request)
        if change.type == "delete":
            self._written.pop(("", change.obj["metadata"]["name"]), None)
        elif not (change.obj.get("spec") or {}).get("claimRef"):
            # A free volume may be what an unbound claim of its class waits for.
            wanted = volume_class(change.obj)
            requests += [Request.of(claim) for claim in self.claims.lister.list()
                         if not (claim.get("spec") or {}).get("volumeName") and claim_class(claim) == wanted]
        return requests

    def on_claim(self, change: Change) -> list[Request]:
        requests = [Request.of(change.obj)]
        if change.type == "delete":
            meta = change.obj["metadata"]
            self._written.pop((meta.get("namespace", ""), meta["name"]), None)
            # Its volume is released now: every volume that names it looks again.
            for volume in self.volumes.lister.list():
                ref = (volume.get("spec") or {}).get("claimRef") or {}
                if ref.get("namespace") == meta.get("namespace") and ref.get("name") == meta["name"]:
                    requests.append(Request.of(volume))
        volume_name = (change.obj.get("spec") or {}).get("volumeName")
        if volume_name:
            requests.append(Request("", volume_name))
        return requests

    def on_class(self, change: Change) -> list[Request]:
        """A class appearing or changing may unblock the unbound claims of that class, or without one."""
        if change.type == "delete":
            return []
        name = change.obj["metadata"]["name"]
        return [Request.of(claim) for claim in self.claims.lister.list()
                if not (claim.get("spec") or {}).get("volumeName")
                and (claim_class(claim) == name or (claim.get("spec") or {}).get("storageClassName") is None)]

    # -- reads: the cache, or our newer write -----------------------------------------------

    def _newest(self, namespace: str, name: str, cached: Obj | None) -> Obj | None:
        written = self._written.get((namespace, name))
        if written is None:
            return cached
        if cached is None or _rv(cached) >= _rv(written):
            # The informer caught up (or the object is gone): forget our copy.
            self._written.pop((namespace, name), None)
            return cached
        return written

    def _volume(self, name: str) -> Obj | None:
        return self._newest("", name, self.volumes.lister.get(None, name))

    def _claim(self, namespace: str, name: str) -> Obj | None:
        return self._newest(namespace, name, self.claims.lister.get(namespace, name))

    def _all_volumes(self) -> list[Obj]:
        return [v for v in (self._volume(c["metadata"]["name"]) for c in self.volumes.lister.list()) if v is not None]

    def _class(self, name: str) -> Obj | None:
        return self.classes.lister.get(None, name) if name else None

    def _remember(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        self._written[(meta.get("namespace") or "", meta["name"])] = obj
        return obj

    # -- one sync ---------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        if request.namespace:
            claim = self._claim(request.namespace, request.name)
            if claim is not None:
                await self.sync_claim(claim)
                if ANN_BIND_COMPLETED not in _annotations(self._claim(request.namespace, request.name) or {}):
                    # Upstream resyncs every claim each 15 s; an unbound one is all that can change by itself.
                    return Result(requeue_after=RESYNC_PERIOD)
        else:
            volume = self._volume(request.name)
            if volume is not None:
                await self.sync_volume(volume)
        return Result()

    # -- claims -----------------------------------------------------------------------------

    async def sync_claim(self, claim: Obj) -> None:
        if ANN_BIND_COMPLETED not in _annotations(claim):
            await self._sync_unbound_claim(claim)
        else:
            await self._sync_bound_claim(claim)

    def _delayed(self, claim: Obj) -> bool:
        storage_class = self._class(claim_class(claim))
        return bool(storage_class) and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER

    async def _sync_unbound_claim(self, claim: Obj) -> None:
        spec = claim.get("spec") or {}
        volume_name = spec.get("volumeName") or ""
        if not volume_name:
            if spec.get("storageClassName") is None and ANN_BETA_STORAGE_CLASS not in _annotations(claim):
                chosen = default_class(self.classes.lister.list())
                if chosen is not None:
                    updated = copy.deepcopy(claim)
                    updated["spec"]["storageClassName"] = chosen["metadata"]["name"]
                    await self._write(PERSISTENT_VOLUME_CLAIMS, updated)
                    return  # its own update brings it back
            delayed = self._delayed(claim)
            volume = find_best_volume(claim, self._all_volumes(), delay_binding=delayed)
            if volume is not None:
                await self._bind(volume, claim)
                return
            await self._no_volume(claim, delayed)
            await self._claim_phase(claim, "Pending")
            return
        volume = self._volume(volume_name)
        if volume is None:
            await self._event(claim, "Normal", "FailedBinding", f'volume "{volume_name}" not found')
            await self._claim_phase(claim, "Pending")
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref:
            mismatch = volume_claim_mismatch(volume, claim)
            if mismatch is not None:
                await self._event(claim, "Warning", "VolumeMismatch",
                                  f'Cannot bind to requested volume "{volume_name}": {mismatch}')
                await self._claim_phase(claim, "Pending")
                return
            await self._bind(volume, claim)
        elif is_volume_bound_to_claim(volume, claim):
            await self._bind(volume, claim)
        else:
            await self._event(claim, "Normal", "FailedBinding",
                              f'volume "{volume_name}" already bound to a different claim.')
            await self._claim_phase(claim, "Pending")

    async def _no_volume(self, claim: Obj, delayed: bool) -> None:
        """Why an unbound claim found no volume, and what happens next (provisioning, or waiting)."""
        class_name = claim_class(claim)
        if delayed and ANN_SELECTED_NODE not in _annotations(claim):
            await self._event(claim, "Normal", "WaitForFirstConsumer",
                              "waiting for first consumer to be created before binding")
            return
        if not class_name:
            await self._event(claim, "Normal", "FailedBinding",
                              "no persistent volumes available for this claim and no storage class is set")
            return
        storage_class = self._class(class_name)
        if storage_class is None:
            await self._event(claim, "Warning", "ProvisioningFailed",
                              f'storageclass.storage.k8s.io "{class_name}" not found')
            return
        provisioner = storage_class.get("provisioner") or ""
        if provisioner == NO_PROVISIONER:
            await self._event(claim, "Normal", "FailedBinding",
                              f'no persistent volumes available for this claim and storage class "{class_name}" '
                              "has no provisioner")
            return
        annotations = _annotations(claim)
        if annotations.get(ANN_STORAGE_PROVISIONER) != provisioner:
            updated = copy.deepcopy(claim)
            updated["metadata"].setdefault("annotations", {}).update(
                {ANN_STORAGE_PROVISIONER: provisioner, ANN_BETA_STORAGE_PROVISIONER: provisioner})
            claim = await self._write(PERSISTENT_VOLUME_CLAIMS, updated)
        await self._event(claim, "Normal", "ExternalProvisioning",
                          f"Waiting for a volume to be created either by the external provisioner '{provisioner}' "
                          "or manually by the system administrator. If volume creation is delayed, please verify "
                          "that the provisioner is running and correctly registered.")

    async def _sync_bound_claim(self, claim: Obj) -> None:
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        if not volume_name:
            await self._lost(claim, "ClaimLost", "Bound claim has lost reference to PersistentVolume. "
                             "Data on the volume is lost!")
            return
        volume = self._volume(volume_name)
        if volume is None:
            await self._lost(claim, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or is_volume_bound_to_claim(volume, claim):
            await self._bind(volume, claim)  # finishes what a crash interrupted; writes nothing if all is done
            return
        await self._lost(claim, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly")

    async def _lost(self, claim: Obj, reason: str, message: str) -> None:
        if _phase(claim) != "Lost":
            await self._event(claim, "Warning", reason, message)
        await self._claim_phase(claim, "Lost")

    # -- binding ------------------------------------------------------------------------------

    async def _bind(self, volume: Obj, claim: Obj) -> None:
        """Upstream's `bind`: the volume's claimRef and phase, then the claim's volumeName, annotations and
        status; each write only when something changes."""
        meta = claim["metadata"]
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (meta["name"], meta["namespace"], meta["uid"]):
            updated = copy.deepcopy(volume)
            updated["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                           "name": meta["name"], "uid": meta["uid"], "apiVersion": "v1",
                                           "resourceVersion": meta.get("resourceVersion", "")}
            if not ref:
                updated["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
            volume = await self._write(PERSISTENT_VOLUMES, updated)
            log.info("volume %s bound to claim %s/%s", volume["metadata"]["name"], meta["namespace"], meta["name"])
        volume = await self._volume_phase(volume, "Bound")
        volume_name = volume["metadata"]["name"]
        annotations = _annotations(claim)
        if (claim.get("spec") or {}).get("volumeName") != volume_name or ANN_BIND_COMPLETED not in annotations:
            updated = copy.deepcopy(claim)
            added = updated["metadata"].setdefault("annotations", {})
            if updated["spec"].get("volumeName") != volume_name:
                updated["spec"]["volumeName"] = volume_name
                added[ANN_BOUND_BY_CONTROLLER] = "yes"
            added[ANN_BIND_COMPLETED] = "yes"
            claim = await self._write(PERSISTENT_VOLUME_CLAIMS, updated)
        await self._claim_phase(claim, "Bound", volume)

    # -- volumes -------------------------------------------------------------------------------

    async def sync_volume(self, volume: Obj) -> None:
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or not ref.get("uid"):
            # Free, or pre-bound by the user and waiting for its claim's sync.
            await self._volume_phase(volume, "Available")
            return
        claim = self._claim(ref.get("namespace", ""), ref.get("name", ""))
        if claim is None or claim["metadata"].get("uid") != ref.get("uid"):
            # The cache may be behind: only the API server may say the claim is gone.
            try:
                claim = await self.client.get(PERSISTENT_VOLUME_CLAIMS, ref.get("name", ""),
                                              namespace=ref.get("namespace", ""))
            except NotFound:
                claim = None
        if claim is not None and claim["metadata"].get("uid") == ref.get("uid"):
            claim_volume = (claim.get("spec") or {}).get("volumeName") or ""
            if not claim_volume:
                return  # the claim's sync binds it
            if claim_volume == volume["metadata"]["name"]:
                await self._volume_phase(volume, "Bound")
            elif _annotations(volume).get(ANN_BOUND_BY_CONTROLLER):
                # We bound it to a claim that went elsewhere (a race upstream documents): free it again.
                updated = copy.deepcopy(volume)
                updated["spec"].pop("claimRef", None)
                updated["metadata"]["annotations"].pop(ANN_BOUND_BY_CONTROLLER, None)
                volume = await self._write(PERSISTENT_VOLUMES, updated)
                await self._volume_phase(volume, "Available")
            return
        await self._released(volume)

    async def _released(self, volume: Obj) -> None:
        if _phase(volume) not in ("Released", "Failed"):
            volume = await self._volume_phase(volume, "Released")
        if _phase(volume) == "Failed":
            return
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            return
        if policy == "Delete":
            if _annotations(volume).get(ANN_PROVISIONED_BY):
                return  # its provisioner deletes the storage, then the volume
            message = (f'error getting deleter volume plugin for volume "{volume["metadata"]["name"]}": '
                       "no deletable volume plugin matched")
            await self._event(volume, "Warning", "VolumeFailedDelete", message)
            await self._volume_phase(volume, "Failed", message)
            return
        message = "No recycler plugin found for the volume!"
        await self._event(volume, "Warning", "VolumeFailedRecycle", message)
        await self._volume_phase(volume, "Failed", message)

    # -- status writes -----------------------------------------------------------------------

    async def _volume_phase(self, volume: Obj, phase: str, message: str = "") -> Obj:
        status = volume.get("status") or {}
        if status.get("phase") == phase and (status.get("message") or "") == message:
            return volume
        new_status: Obj = {"phase": phase, "lastPhaseTransitionTime": now_rfc3339()}
        if message:
            new_status["message"] = message
        updated = {**volume, "status": new_status}
        return await self._write(PERSISTENT_VOLUMES, updated, subresource="status")

    async def _claim_phase(self, claim: Obj, phase: str, volume: Obj | None = None) -> Obj:
        status = dict(claim.get("status") or {})
        wanted = dict(status, phase=phase)
        if volume is not None and phase == "Bound":
            wanted["capacity"] = dict((volume.get("spec") or {}).get("capacity") or {})
            wanted["accessModes"] = list((volume.get("spec") or {}).get("accessModes") or [])
        elif phase == "Pending":
            wanted.pop("capacity", None)
            wanted.pop("accessModes", None)
        if wanted == status:
            return claim
        return await self._write(PERSISTENT_VOLUME_CLAIMS, {**claim, "status": wanted}, subresource="status")

    async def _write(self, resource: Resource, obj: Obj, *, subresource: str | None = None) -> Obj:
        """PUT `obj` (conditional on its resourceVersion) and remember the answer as the newest copy."""
        kind = "PersistentVolume" if resource is PERSISTENT_VOLUMES else "PersistentVolumeClaim"
        meta = obj["metadata"]
        try:
            written = await self.client.update(resource, {**obj, "apiVersion": "v1", "kind": kind},
                                               subresource=subresource)
        except Conflict:
            # Someone else wrote it: the informer brings the object back, and the sync starts over.
            self._written.pop((meta.get("namespace") or "", meta["name"]), None)
            raise
        return self._remember(written)

    async def _event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        kind = "PersistentVolumeClaim" if (obj.get("metadata") or {}).get("namespace") else "PersistentVolume"
        await self.recorder.event(obj, event_type, reason, message, kind=kind, api_version="v1")


def new_persistentvolume_controller(client: Client, informers: SharedInformers, *, clock: Clock | None = None,
                                    recorder: EventRecorder | None = None) -> Controller:
    """The PV controller: one worker, so claims never race for a volume (upstream's binder is one loop too)."""
    reconciler = PersistentVolumeReconciler(client, informers, recorder=recorder)
    controller = Controller(COMPONENT, reconciler, workers=1, clock=clock)
    controller.watches(reconciler.volumes, reconciler.on_volume)
    controller.watches(reconciler.claims, reconciler.on_claim)
    controller.watches(reconciler.classes, reconciler.on_class)
    return controller
