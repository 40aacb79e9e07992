"""Mutating admission: what the API server adds to an object a client creates, after decoding, before validation.

Upstream runs a chain of admission plugins; Timoner has the ones it needs,
as plain functions over the watch cache (never over storage: admission
reads the same world a GET would):

- **DefaultStorageClass**: a PersistentVolumeClaim created without a class
  (`spec.storageClassName` absent, not `""`, and no beta class annotation)
  gets the default StorageClass's name, the newest default when several
  are marked (`storageclass.kubernetes.io/is-default-class: "true"`).
  Without a default it is left alone; the PV controller assigns one later
  if a default appears (retroactive default StorageClass assignment).

The bootstrap `local-path` class (see `DEFAULT_STORAGE_CLASS`) is what a
fresh cluster's claims get; it is created by `APIServer` at start.
"""

from __future__ import annotations

from typing import Any

from timoner.api.persistentvolume import ANN_BETA_STORAGE_CLASS, default_class
from timoner.api.registry import ResourceInfo

from ..store import Store

__all__ = ["DEFAULT_STORAGE_CLASS", "LOCAL_PATH_PROVISIONER", "STORAGE_CLASSES_PREFIX", "admit_create"]

STORAGE_CLASSES_PREFIX = "/registry/storage.k8s.io/storageclasses/"
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"

# k3s's default class, under k3s's name and provisioner name, so manifests written for k3s work unchanged.
DEFAULT_STORAGE_CLASS: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "local-path",
                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": LOCAL_PATH_PROVISIONER,
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer",
}


async def admit_create(store: Store, info: ResourceInfo, obj: dict) -> None:
    """Mutate `obj`, about to be created as `info`'s kind, as the admission chain would."""
    if not info.group and info.kind == "PersistentVolumeClaim":
        await _default_storage_class(store, obj)


async def _default_storage_class(store: Store, claim: dict) -> None:
    spec = claim.setdefault("spec", {})
    if spec.get("storageClassName") is not None:
        return
    if ANN_BETA_STORAGE_CLASS in ((claim.get("metadata") or {}).get("annotations") or {}):
        return
    await store.sync()  # a class this server just created counts
    chosen = default_class(cached.obj for cached in store.cache.list(STORAGE_CLASSES_PREFIX))
    if chosen is not None:
        spec["storageClassName"] = chosen["metadata"]["name"]
