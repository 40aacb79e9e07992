"""`VolumeBinder`: the scheduler's I/O side of volume binding (upstream's VolumeBinding PreBind and its caches).

It owns the claim, volume and StorageClass informers the `VolumeBinding`
plugin reads through the snapshot, the volumes assumed bound by cycles
whose writes are still in flight (so a second pod does not take a volume
the first one was given), and `bind(plan, node)`: write the plan, then
wait until every claim of it is fully bound.

A claim is fully bound when it has `spec.volumeName` and
`pv.kubernetes.io/bind-completed`, and its volume's `claimRef` carries the
claim's uid. While waiting, a claim that disappears, or (for one to
provision) whose `volume.kubernetes.io/selected-node` no longer names the
node (a provisioner that gives up removes it, asking for another node),
fails the binding at once, as upstream's `checkBindings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable
from typing import Any

from timoner.api.persistentvolume import ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE
from timoner.client import Client, Informer, object_key, resource_for

from ._snapshot import StorageObjects
from .plugins import VolumePlan

__all__ = ["VolumeBinder"]

log = logging.getLogger("timoner.scheduler.volumes")

Obj = dict[str, Any]

PERSISTENT_VOLUMES = resource_for("v1", "PersistentVolume")
PERSISTENT_VOLUME_CLAIMS = resource_for("v1", "PersistentVolumeClaim")
STORAGE_CLASSES = resource_for("storage.k8s.io/v1", "StorageClass")


class BindingError(Exception):
    """Volume binding for a pod failed; the message says why, in upstream's words where it has them."""


def _rv(obj: Obj | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _claim_ref(claim: Obj) -> Obj:
    meta = claim["metadata"]
    return {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"], "name": meta["name"],
            "uid": meta["uid"], "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")}


def _refers_to(volume: Obj, claim: Obj) -> bool:
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    meta = claim["metadata"]
    return (ref.get("namespace"), ref.get("name"), ref.get("uid")) == (meta["namespace"], meta["name"], meta["uid"])


class VolumeBinder:
    """Storage informers, assumed volumes and the PreBind writes and wait; see the module docstring."""

    def __init__(self, client: Client, *, bind_timeout: float = 600.0,
                 on_change: Callable[[], None] | None = None) -> None:
        self.client = client
        self.bind_timeout = bind_timeout
        self.on_change = on_change
        self.claims = Informer(client, PERSISTENT_VOLUME_CLAIMS)
        self.volumes = Informer(client, PERSISTENT_VOLUMES)
        self.classes = Informer(client, STORAGE_CLASSES)
        for informer in self.informers:
            informer.add_handler(lambda obj: self._changed(True), lambda old, new: self._changed(True),
                                 lambda obj: self._changed(False))
        self._assumed: dict[str, Obj] = {}  # volume name -> the volume with the claimRef we are writing
        self._pulse = asyncio.Event()

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.claims, self.volumes, self.classes)

    def _changed(self, may_help: bool) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()
        if may_help and self.on_change is not None:
            self.on_change()

    # -- the snapshot's storage, with assumed volumes -----------------------------------------------

    def storage(self) -> StorageObjects:
        volumes = []
        for volume in self.volumes.lister.list():
            assumed = self._assumed.get(volume["metadata"]["name"])
            volumes.append(assumed if assumed is not None and _rv(assumed) >= _rv(volume) else volume)
        return StorageObjects.build(self.claims.lister.list(), volumes, self.classes.lister.list())

    def assume(self, plan: VolumePlan) -> None:
        """Count the plan's volumes as taken by its claims until `forget`."""
        for volume, claim in plan.bindings:
            if not _refers_to(volume, claim):
                assumed = copy.deepcopy(volume)
                assumed["spec"]["claimRef"] = _claim_ref(claim)
                self._assumed[volume["metadata"]["name"]] = assumed

    def forget(self, plan: VolumePlan) -> None:
        for volume, _ in plan.bindings:
            self._assumed.pop(volume["metadata"]["name"], None)

    # -- PreBind ----------------------------------------------------------------------------------------

    async def bind(self, plan: VolumePlan, node_name: str) -> None:
        """Write the plan, then wait until the PV controller (and provisioner) bound every claim of it."""
        for volume, claim in plan.bindings:
            if _refers_to(volume, claim):
                continue
            updated = copy.deepcopy(volume)
            updated.update(apiVersion="v1", kind="PersistentVolume")
            updated["spec"]["claimRef"] = _claim_ref(claim)
            updated["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
            try:
                written = await self.client.update(PERSISTENT_VOLUMES, updated)
            except Exception as exc:
                raise BindingError(f'binding volume "{volume["metadata"]["name"]}" to claim '
                                   f'"{object_key(claim)}": {exc}') from exc
            self._assumed[volume["metadata"]["name"]] = written
        selected: dict[str, int] = {}  # uid of each claim to provision -> the revision that names the node
        for claim in plan.provisions:
            meta = claim["metadata"]
            if (meta.get("annotations") or {}).get(ANN_SELECTED_NODE) == node_name:
                selected[meta["uid"]] = _rv(claim)
                continue
            try:
                written = await self.client.patch(PERSISTENT_VOLUME_CLAIMS, meta["name"],
                                                  {"metadata": {"annotations": {ANN_SELECTED_NODE: node_name}}},
                                                  namespace=meta["namespace"])
            except Exception as exc:
                raise BindingError(f'selecting node "{node_name}" for claim "{object_key(claim)}": {exc}') from exc
            selected[meta["uid"]] = _rv(written)
        await self._wait_bound(plan, node_name, selected)

    async def _wait_bound(self, plan: VolumePlan, node_name: str, selected: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bind_timeout
        while True:
            pulse = self._pulse
            if all(self._fully_bound(claim, node_name, selected.get(claim["metadata"]["uid"]))
                   for claim in plan.claims):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BindingError("binding volumes: timed out waiting for the condition")
            with contextlib.suppress(TimeoutError):
                # A change wakes us; the 1 s cap is a safety net against a missed one.
                await asyncio.wait_for(pulse.wait(), min(remaining, 1.0))

    def _fully_bound(self, claim: Obj, node_name: str, selected_at: int | None) -> bool:
        """Whether the claim is bound; raises when it never will be on this node."""
        meta = claim["metadata"]
        current = self.claims.lister.get(meta["namespace"], meta["name"])
        if current is None or current["metadata"].get("uid") != meta["uid"]:
            raise BindingError(f'persistentvolumeclaim "{meta["name"]}" not found')
        annotations = current["metadata"].get("annotations") or {}
        volume_name = (current.get("spec") or {}).get("volumeName")
        if volume_name and ANN_BIND_COMPLETED in annotations:
            volume = self.volumes.lister.get(None, volume_name)
            return volume is not None and _refers_to(volume, current)
        # Only a version at or after our own write can say the node was taken away again.
        if selected_at is not None and _rv(current) >= selected_at and annotations.get(ANN_SELECTED_NODE) != node_name:
            raise BindingError(f'selectedNode annotation reset for PVC "{meta["name"]}"')
        return False
