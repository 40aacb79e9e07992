"""`LocalPathProvisioner`: dynamic PersistentVolumes in a directory of this node (k3s's local-path, per node).

Rancher's local-path-provisioner runs as one Deployment and makes each
directory through a helper pod on the chosen node. Here every node agent
runs its own provisioner, which only serves the claims placed on its node
(sig-storage's external provisioner in "node deployment" mode): the
directory is made by the process that lives on that node.

For a claim that
- has no `spec.volumeName`,
- is annotated `volume.kubernetes.io/storage-provisioner` (or the beta
  key) with this provisioner's name (`rancher.io/local-path`) by the PV
  controller,
- and names this node in `volume.kubernetes.io/selected-node` (set by the
  scheduler for a WaitForFirstConsumer class),

it makes `<root_dir>/local-path/<namespace>_<claim>_<pv>` (mode 0777, as
rancher's helper does) and creates the PersistentVolume `pvc-<claim uid>`:
a `hostPath` (type DirectoryOrCreate) source, required node affinity on
this node's `kubernetes.io/hostname` label, the claim's request as
capacity, its access modes, the class's reclaim policy and mount options,
`pv.kubernetes.io/provisioned-by` and a `claimRef` to the claim; the PV
controller then binds the two. As rancher's, it refuses access modes
other than ReadWriteOnce and ReadWriteOncePod, and Block volumes. Events
on the claim: Normal `Provisioning`, `ProvisioningSucceeded`, Warning
`ProvisioningFailed` (retried with backoff).

A volume it made on this node that is Released with reclaim policy
`Delete` has its directory removed, then is deleted. `Retain` leaves both.
Claims of an `Immediate` class are never provisioned: without a
selected node there is no node to make the directory on (rancher's says
"no node was specified").
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from timoner.api.errors import AlreadyExists, APIError, NotFound
from timoner.api.persistentvolume import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    claim_class,
)
from timoner.client import (
    Client,
    EventRecorder,
    ExponentialRateLimiter,
    Informer,
    ShutDown,
    WorkQueue,
    resource_for,
)

__all__ = ["LOCAL_PATH", "LocalPathProvisioner"]

log = logging.getLogger("timoner.node.provisioner")

Obj = dict[str, Any]

LOCAL_PATH = "rancher.io/local-path"
ANN_NODE = "local.path.provisioner/selected-node"  # rancher's: which node holds the directory
HOSTNAME_LABEL = "kubernetes.io/hostname"
_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod")

PERSISTENT_VOLUMES = resource_for("v1", "PersistentVolume")
PERSISTENT_VOLUME_CLAIMS = resource_for("v1", "PersistentVolumeClaim")
STORAGE_CLASSES = resource_for("storage.k8s.io/v1", "StorageClass")


class ProvisioningError(Exception):
    """A claim could not be provisioned; the message follows `failed to provision volume with StorageClass`."""


class LocalPathProvisioner:
    """Provisions and deletes local-path volumes of one node; `await run()` until cancelled."""

    def __init__(self, client: Client, *, node_name: str, hostname: str, root_dir: Path,
                 name: str = LOCAL_PATH) -> None:
        self.client = client
        self.node_name = node_name
        self.hostname = hostname
        self.base = Path(root_dir).absolute() / "local-path"
        self.name = name
        self.claims = Informer(client, PERSISTENT_VOLUME_CLAIMS)
        self.volumes = Informer(client, PERSISTENT_VOLUMES)
        self.classes = Informer(client, STORAGE_CLASSES)
        self.queue: WorkQueue[tuple[str, str, str]] = WorkQueue(
            rate_limiter=ExponentialRateLimiter(base=0.5, max_delay=60.0))
        self.recorder = EventRecorder(client, component=name, host=node_name)
        self.claims.add_handler(self._queue_claim, lambda old, new: self._queue_claim(new))
        self.volumes.add_handler(self._queue_volume, lambda old, new: self._queue_volume(new))
        # A class arriving late may be what a waiting claim needs.
        self.classes.add_handler(lambda obj: self._queue_all_claims(),
                                 lambda old, new: self._queue_all_claims())

    # -- what is ours -------------------------------------------------------------------------------

    def _wants(self, claim: Obj) -> bool:
        meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
        annotations = meta.get("annotations") or {}
        provisioner = annotations.get(ANN_STORAGE_PROVISIONER) or annotations.get(ANN_BETA_STORAGE_PROVISIONER)
        return (not spec.get("volumeName") and provisioner == self.name
                and annotations.get(ANN_SELECTED_NODE) == self.node_name and not meta.get("deletionTimestamp"))

    def _owns(self, volume: Obj) -> bool:
        annotations = (volume.get("metadata") or {}).get("annotations") or {}
        return annotations.get(ANN_PROVISIONED_BY) == self.name and annotations.get(ANN_NODE) == self.node_name

    def _queue_claim(self, claim: Obj) -> None:
        if self._wants(claim):
            meta = claim["metadata"]
            self.queue.add(("claim", meta["namespace"], meta["name"]))

    def _queue_volume(self, volume: Obj) -> None:
        if self._owns(volume) and (volume.get("status") or {}).get("phase") == "Released":
            self.queue.add(("volume", "", volume["metadata"]["name"]))

    def _queue_all_claims(self) -> None:
        for claim in self.claims.lister.list():
            self._queue_claim(claim)

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        informers = [asyncio.create_task(i.run(), name=f"local-path-{i.resource.plural}")
                     for i in (self.claims, self.volumes, self.classes)]
        try:
            await asyncio.gather(*(i.has_synced.wait() for i in (self.claims, self.volumes, self.classes)))
            while True:
                try:
                    key = await self.queue.get()
                except ShutDown:
                    return
                try:
                    if key[0] == "claim":
                        await self._sync_claim(key[1], key[2])
                    else:
                        await self._sync_volume(key[2])
                    self.queue.forget(key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("local-path on %s: %s %s/%s: %s; retrying", self.node_name, *key, exc)
                    self.queue.add_rate_limited(key)
                finally:
                    self.queue.done(key)
        finally:
            self.queue.shutdown()
            for task in informers:
                task.cancel()
            await asyncio.gather(*informers, return_exceptions=True)

    # -- provisioning -----------------------------------------------------------------------------------

    def directory(self, claim: Obj, volume_name: str) -> Path:
        meta = claim["metadata"]
        return self.base / f"{meta['namespace']}_{meta['name']}_{volume_name}"

    async def _sync_claim(self, namespace: str, name: str) -> None:
        claim = self.claims.lister.get(namespace, name)
        if claim is None or not self._wants(claim):
            return
        volume_name = f"pvc-{claim['metadata']['uid']}"
        if self.volumes.lister.get(None, volume_name) is not None:
            return  # made already; the PV controller binds it
        class_name = claim_class(claim)
        storage_class = self.classes.lister.get(None, class_name)
        await self._event(claim, "Normal", "Provisioning",
                          f'External provisioner is provisioning volume for claim "{namespace}/{name}"')
        try:
            if storage_class is None:
                raise ProvisioningError(f'storageclass.storage.k8s.io "{class_name}" not found')
            volume = self._volume(claim, volume_name, storage_class)
            path = Path(volume["spec"]["hostPath"]["path"])
            await asyncio.to_thread(_make_directory, path)
            try:
                await self.client.create(PERSISTENT_VOLUMES, volume)
            except AlreadyExists:
                return
        except (ProvisioningError, OSError, APIError) as exc:
            await self._event(claim, "Warning", "ProvisioningFailed",
                              f'failed to provision volume with StorageClass "{class_name}": {exc}')
            raise
        log.info("local-path on %s: provisioned %s for %s/%s at %s", self.node_name, volume_name, namespace, name, path)
        await self._event(claim, "Normal", "ProvisioningSucceeded", f'Successfully provisioned volume {volume_name}')

    def _volume(self, claim: Obj, volume_name: str, storage_class: Obj) -> Obj:
        meta, spec = claim["metadata"], claim.get("spec") or {}
        modes = list(spec.get("accessModes") or [])
        if any(mode not in _ACCESS_MODES for mode in modes):
            raise ProvisioningError("NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes")
        if (spec.get("volumeMode") or "Filesystem") != "Filesystem":
            raise ProvisioningError("local-path volumes only support volumeMode Filesystem")
        if spec.get("selector"):
            raise ProvisioningError("claim.Spec.Selector is not supported")
        request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if request is None:
            raise ProvisioningError("claim has no storage request")
        pv_spec: Obj = {
            "capacity": {"storage": request},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": "Filesystem",
            "hostPath": {"path": str(self.directory(claim, volume_name)), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [self.hostname]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"], "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")},
        }
        if storage_class.get("mountOptions"):
            pv_spec["mountOptions"] = list(storage_class["mountOptions"])
        return {"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume_name,
                             "annotations": {ANN_PROVISIONED_BY: self.name, ANN_NODE: self.node_name}},
                "spec": pv_spec}

    # -- deleting ---------------------------------------------------------------------------------------

    async def _sync_volume(self, name: str) -> None:
        volume = self.volumes.lister.get(None, name)
        if volume is None or not self._owns(volume) or (volume.get("status") or {}).get("phase") != "Released":
            return
        if (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = Path(((volume.get("spec") or {}).get("hostPath") or {}).get("path", ""))
        if path.parent != self.base:
            log.warning("local-path on %s: volume %s points outside %s (%s); not deleting its directory",
                        self.node_name, name, self.base, path)
        else:
            await asyncio.to_thread(_remove_directory, path)
        try:
            await self.client.delete(PERSISTENT_VOLUMES, name)
        except NotFound:
            pass
        log.info("local-path on %s: deleted volume %s and %s", self.node_name, name, path)

    async def _event(self, claim: Obj, event_type: str, reason: str, message: str) -> None:
        await self.recorder.event(claim, event_type, reason, message, kind="PersistentVolumeClaim", api_version="v1")


def _make_directory(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)  # any container user may write, as rancher's helper pod makes it


def _remove_directory(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
