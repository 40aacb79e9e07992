"""DefaultStorageClass: the default class's name on a PersistentVolumeClaim created without one.

A PersistentVolumeClaim created without a class (`spec.storageClassName`
absent, not `""`, and no beta class annotation) gets the default
StorageClass's name, the newest default when several are marked
(`storageclass.kubernetes.io/is-default-class: "true"`). Without a default
it is left alone; the PV controller assigns one later if a default appears
(retroactive default StorageClass assignment). Classes are read from the
watch cache (never from storage: admission reads the same world a GET would).

The bootstrap `local-path` class (see `DEFAULT_STORAGE_CLASS`) is what a
fresh cluster's claims get; it is created by `APIServer` at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from timoner.api.persistentvolume import ANN_BETA_STORAGE_CLASS, default_class

from ._attributes import CREATE, Attributes

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["DEFAULT_STORAGE_CLASS", "LOCAL_PATH_PROVISIONER", "STORAGE_CLASSES_PREFIX", "DefaultStorageClass"]

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


class DefaultStorageClass:
    """The DefaultStorageClass admission plugin (mutating only); see the module docstring."""

    name = "DefaultStorageClass"

    def __init__(self, store: Store) -> None:
        self.store = store

    def handles(self, attrs: Attributes) -> bool:
        info = attrs.info
        return (attrs.operation == CREATE and not attrs.subresource and not info.group
                and info.kind == "PersistentVolumeClaim" and attrs.obj is not None)

    async def admit(self, attrs: Attributes) -> None:
        claim = attrs.obj
        assert claim is not None
        spec = claim.setdefault("spec", {})
        if spec.get("storageClassName") is not None:
            return
        if ANN_BETA_STORAGE_CLASS in ((claim.get("metadata") or {}).get("annotations") or {}):
            return
        await self.store.sync()  # a class this server just created counts
        chosen = default_class(cached.obj for cached in self.store.cache.list(STORAGE_CLASSES_PREFIX))
        if chosen is not None:
            spec["storageClassName"] = chosen["metadata"]["name"]

    async def validate(self, attrs: Attributes) -> None:
        return None
