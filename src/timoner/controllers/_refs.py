"""Owner references: the controller reference a workload sets, and claiming (adopt / release) as upstream.

A controller owns the objects whose `ownerReferences` name it with
`controller: true`. Each sync it *claims* the candidates it listed
(upstream's `ControllerRefManager.ClaimObject`):

- owned by someone else: ignored;
- owned by us and matching our selector: ours;
- owned by us but no longer matching: released (our reference removed),
  unless we are being deleted;
- an orphan that matches, is not being deleted and is in our namespace:
  adopted (our controller reference added), unless we are being deleted.

Adoption first re-reads the owner from the API server, once per sync
(`RecheckDeletionTimestamp`): a cached owner may already be deleted, and
adopting for it would hand pods to the garbage collector. Both patches
carry the object's `uid` as a precondition, so a same-named replacement is
never touched.

The informer side, shared by the workload controllers: a changed object
wakes its controller (`resolve_controller_ref`: the cached owner of the
kind named, with the uid named) or, when it has none, every controller
whose selector matches its labels (`selecting_controllers`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from timoner.api.errors import APIError, NotFound
from timoner.api.selectors import LabelSelector, label_selector_from_dict
from timoner.client import Client, Lister, Resource

from ._framework import controller_ref

__all__ = ["ClaimManager", "OwnerGone", "new_controller_ref", "resolve_controller_ref", "selecting_controllers"]

Obj = dict[str, Any]


class OwnerGone(Exception):
    """The owner changed or is being deleted since it was cached: do not adopt for it."""


def new_controller_ref(owner: Obj) -> Obj:
    """A controller ownerReference to `owner` that blocks its foreground deletion (upstream's NewControllerRef)."""
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def resolve_controller_ref(lister: Lister, namespace: str | None, ref: Obj | None, *, kind: str,
                           group: str | None = None) -> Obj | None:
    """The cached controller `ref` names in `namespace` (upstream's resolveControllerRef).

    None when there is no reference, it names another kind (or, with
    `group`, another API group), or the cached object of that name has
    another uid (a same-named replacement).
    """
    if ref is None or ref.get("kind") != kind:
        return None
    if group is not None and not str(ref.get("apiVersion", "")).startswith(f"{group}/"):
        return None
    owner = lister.get(namespace, ref.get("name", ""))
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return None
    return owner


def _spec_selector(owner: Obj) -> LabelSelector:
    return label_selector_from_dict((owner.get("spec") or {}).get("selector"))


def selecting_controllers(lister: Lister, obj: Obj, *,
                          selector: Callable[[Obj], LabelSelector] = _spec_selector) -> list[Obj]:
    """The cached controllers in `obj`'s namespace whose selector matches its labels (upstream's getPodXs).

    An object without labels matches none; a controller whose selector is
    empty or does not parse selects nothing here.
    """
    labels = obj["metadata"].get("labels")
    if not labels:
        return []
    out = []
    for owner in lister.list(obj["metadata"].get("namespace", "")):
        try:
            owner_selector = selector(owner)
        except APIError:
            continue
        if not owner_selector.empty and owner_selector.matches(labels):
            out.append(owner)
    return out


class ClaimManager:
    """Claims objects of `resource` for `owner` by `selector`; see the module docstring.

    `fetch_owner` reads the owner fresh from the API server (used once,
    before the first adoption).
    """

    def __init__(self, client: Client, resource: Resource, owner: Obj, selector: LabelSelector, *,
                 fetch_owner: Callable[[], Awaitable[Obj]]) -> None:
        self.client = client
        self.resource = resource
        self.owner = owner
        self.selector = selector
        self._fetch_owner = fetch_owner
        self._adopt_checked = False
        meta = owner["metadata"]
        self._uid = meta["uid"]
        self._namespace = meta.get("namespace") or ""
        self._deleting = bool(meta.get("deletionTimestamp"))

    async def claim(self, objs: Iterable[Obj], *, extra: Callable[[Obj], bool] | None = None) -> list[Obj]:
        """The objects that are ours after adopting and releasing; an error stops early (requeue)."""
        claimed = []
        for obj in objs:
            if await self._claim_one(obj, extra):
                claimed.append(obj)
        return claimed

    def _matches(self, obj: Obj, extra: Callable[[Obj], bool] | None) -> bool:
        return self.selector.matches((obj.get("metadata") or {}).get("labels")) and (extra is None or extra(obj))

    async def _claim_one(self, obj: Obj, extra: Callable[[Obj], bool] | None) -> bool:
        meta = obj.get("metadata") or {}
        ref = controller_ref(obj)
        if ref is not None:
            if ref.get("uid") != self._uid:
                return False
            if self._matches(obj, extra):
                return True
            if self._deleting:
                return False
            try:
                await self._patch(obj, {"ownerReferences": [{"$patch": "delete", "uid": self._uid}]})
            except NotFound:
                pass
            return False
        if self._deleting or not self._matches(obj, extra) or meta.get("deletionTimestamp"):
            return False
        if self._namespace and self._namespace != meta.get("namespace", ""):
            return False
        await self._can_adopt()
        try:
            await self._patch(obj, {"ownerReferences": [new_controller_ref(self.owner)]})
        except NotFound:
            return False
        return True

    async def _can_adopt(self) -> None:
        if self._adopt_checked:
            return
        fresh = await self._fetch_owner()
        name = self.owner["metadata"]["name"]
        if fresh["metadata"].get("uid") != self._uid:
            raise OwnerGone(f"original {self.owner['kind']} {self._namespace}/{name} is gone: got uid "
                            f"{fresh['metadata'].get('uid')}, wanted {self._uid}")
        if fresh["metadata"].get("deletionTimestamp"):
            raise OwnerGone(f"{self.owner['kind']} {self._namespace}/{name} has just been deleted at "
                            f"{fresh['metadata']['deletionTimestamp']}")
        self._adopt_checked = True

    async def _patch(self, obj: Obj, metadata: Obj) -> None:
        meta = obj["metadata"]
        body = {"metadata": {**metadata, "uid": meta.get("uid")}}
        await self.client.patch(self.resource, meta["name"], body, namespace=meta.get("namespace"),
                                patch_type="strategic")
