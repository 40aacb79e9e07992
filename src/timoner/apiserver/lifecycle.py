"""Object lifecycle inside the API server: garbage collection, namespaces, default ServiceAccounts, root CA.

Upstream runs these as controllers in kube-controller-manager. Timoner runs
them inside the API server process, fed synchronously by the watch cache and
writing through the `Store`, so that a bare `timoner server` already behaves
as users expect: `kubectl delete` cascades (background, foreground, orphan),
a deleted namespace takes its contents with it, and every namespace has a
`default` ServiceAccount and, given the cluster CA, the `kube-root-ca.crt`
ConfigMap (upstream's root-ca-cert-publisher: `ca.crt` is the CA, made
again when deleted, put back when changed). (docs/ARCHITECTURE.md records
this difference.)

The watch-cache listener only records *what* to look at; one worker task
does the looking, from the cache, and retries after a short delay on error.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from timoner.api import errors
from timoner.api.registry import ResourceInfo

from .store import Store
from .watchcache import CacheEvent

__all__ = ["Lifecycle", "PROTECTED_NAMESPACES"]

log = logging.getLogger("timoner.apiserver.lifecycle")

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NS_PREFIX = "/registry/core/namespaces/"
_SA_PREFIX = "/registry/core/serviceaccounts/"
_CM_PREFIX = "/registry/core/configmaps/"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_ROOT_CA_DESCRIPTION_KEY = "kubernetes.io/description"
_ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters.")


class Lifecycle:
    """Garbage collector, namespace finalizer, ServiceAccount creator and root CA publisher in one small worker."""

    def __init__(self, store: Store, resources_by_prefix: Callable[[], dict[str, ResourceInfo]], *,
                 root_ca: str | None = None) -> None:
        self.store = store
        self.root_ca = root_ca  # PEM of the cluster CA, published as kube-root-ca.crt in every namespace
        self.cache = store.cache
        self._resources = resources_by_prefix
        self._uid_to_key: dict[str, str] = {}
        self._dependents: dict[str, set[str]] = collections.defaultdict(set)
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._pending: set[tuple[str, str]] = set()
        self._task: asyncio.Task | None = None

    # -- feeding -------------------------------------------------------------------------

    def start(self) -> None:
        for cached in self.cache.all_objects():
            self._index(cached.key, cached.obj, None)
        for cached in list(self.cache.all_objects()):
            self._consider(cached.key, cached.obj, "ADDED")
        self.cache.add_listener(self._on_event)
        self._task = asyncio.create_task(self._work(), name="lifecycle")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def _enqueue(self, what: str, key: str) -> None:
        item = (what, key)
        if item not in self._pending:
            self._pending.add(item)
            self._queue.put_nowait(item)

    def _index(self, key: str, obj: dict, prev: dict | None) -> None:
        meta = obj.get("metadata") or {}
        if prev is not None:
            for ref in (prev.get("metadata") or {}).get("ownerReferences") or []:
                self._dependents.get(ref.get("uid", ""), set()).discard(key)
        uid = meta.get("uid")
        if uid:
            self._uid_to_key[uid] = key
        for ref in meta.get("ownerReferences") or []:
            if ref.get("uid"):
                self._dependents[ref["uid"]].add(key)

    def _on_event(self, event: CacheEvent) -> None:
        key = event.object.key
        obj = event.object.obj
        if event.type == "DELETED":
            uid = (obj.get("metadata") or {}).get("uid")
            if uid and self._uid_to_key.get(uid) == key:
                del self._uid_to_key[uid]
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                self._dependents.get(ref.get("uid", ""), set()).discard(key)
                # A dependent that went away may unblock a foreground-deleting owner.
                owner_key = self._uid_to_key.get(ref.get("uid", ""))
                if owner_key:
                    self._enqueue("owner", owner_key)
            for dep in list(self._dependents.get(uid or "", ())):
                self._enqueue("dependent", dep)
            self._dependents.pop(uid or "", None)
            if self.root_ca is not None and key.startswith(_CM_PREFIX) and key.endswith("/" + ROOT_CA_CONFIGMAP):
                self._enqueue("rootca", _NS_PREFIX + key.split("/")[4])
            if key.startswith("/registry/") and key.count("/") == 5:
                ns = key.split("/")[4]
                self._enqueue("namespace", _NS_PREFIX + ns)
            return
        self._index(key, obj, event.prev.obj if event.prev else None)
        self._consider(key, obj, event.type)

    def _consider(self, key: str, obj: dict, event_type: str) -> None:
        meta = obj.get("metadata") or {}
        if key.startswith(_NS_PREFIX):
            if meta.get("deletionTimestamp"):
                self._enqueue("namespace", key)
            else:
                if event_type == "ADDED":
                    self._enqueue("serviceaccount", key)
                if self.root_ca is not None:
                    self._enqueue("rootca", key)
            return
        if self.root_ca is not None and key.startswith(_CM_PREFIX) and key.endswith("/" + ROOT_CA_CONFIGMAP):
            self._enqueue("rootca", _NS_PREFIX + key.split("/")[4])
        if meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if "orphan" in finalizers or "foregroundDeletion" in finalizers:
                self._enqueue("owner", key)
        if meta.get("ownerReferences"):
            self._enqueue("dependent", key)
        # A dependent that goes away may unblock a foreground-deleting owner.
        for ref in meta.get("ownerReferences") or []:
            owner_key = self._uid_to_key.get(ref.get("uid", ""))
            if owner_key:
                owner = self.cache.get(owner_key)
                if owner and "foregroundDeletion" in (owner.obj["metadata"].get("finalizers") or []):
                    self._enqueue("owner", owner_key)

    # -- working -------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            self._pending.discard(item)
            what, key = item
            try:
                await self.store.sync()
                if what == "dependent":
                    await self._check_dependent(key)
                elif what == "owner":
                    await self._check_owner(key)
                elif what == "namespace":
                    await self._check_namespace(key)
                elif what == "serviceaccount":
                    await self._ensure_default_sa(key)
                elif what == "rootca":
                    await self._publish_root_ca(key)
            except asyncio.CancelledError:
                raise
            except errors.NotFound:
                pass
            except errors.Conflict:
                # Another writer got there first (a controller's status write): look again with its version.
                log.debug("lifecycle %s %s conflicted; retrying", what, key)
                asyncio.get_running_loop().call_later(0.05, self._enqueue, what, key)
            except Exception:
                log.exception("lifecycle %s %s failed; retrying", what, key)
                asyncio.get_running_loop().call_later(0.5, self._enqueue, what, key)

    def _info_for(self, key: str) -> tuple[ResourceInfo, str | None, str] | None:
        parts = key.split("/")
        prefix = "/".join(parts[:4]) + "/"
        info = self._resources().get(prefix)
        if info is None:
            return None
        if info.namespaced:
            return info, parts[4], parts[5]
        return info, None, parts[4]

    def _owner_state(self, uid: str) -> str:
        """absent, foreground (being deleted, waiting for dependents) or present."""
        key = self._uid_to_key.get(uid)
        cached = self.cache.get(key) if key else None
        if cached is None or cached.obj["metadata"].get("uid") != uid:
            return "absent"
        meta = cached.obj["metadata"]
        if meta.get("deletionTimestamp") and "foregroundDeletion" in (meta.get("finalizers") or []):
            return "foreground"
        return "present"

    async def _check_dependent(self, key: str) -> None:
        cached = self.cache.get(key)
        if cached is None:
            return
        refs = cached.obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        states = [self._owner_state(r.get("uid", "")) for r in refs]
        located = self._info_for(key)
        if located is None:
            return
        info, ns, name = located
        if all(s != "present" for s in states):
            if cached.obj["metadata"].get("deletionTimestamp"):
                return
            policy = "Foreground" if "foreground" in states else "Background"
            uid = cached.obj["metadata"].get("uid")
            try:
                await self.store.delete(info, ns, name, options={
                    "propagationPolicy": policy, "preconditions": {"uid": uid}})
            except errors.Conflict:
                pass
            return
        if "absent" in states:
            # Some owners are gone, others are alive: drop the dangling references, as upstream does.
            absent = {r.get("uid") for r, s in zip(refs, states, strict=True) if s == "absent"}

            def drop(obj: dict) -> dict:
                obj["metadata"]["ownerReferences"] = [
                    r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") not in absent]
                return obj

            await self.store.update(info, ns, name, drop)

    async def _check_owner(self, key: str) -> None:
        cached = self.cache.get(key)
        if cached is None:
            return
        meta = cached.obj["metadata"]
        finalizers = meta.get("finalizers") or []
        located = self._info_for(key)
        if located is None or not meta.get("deletionTimestamp"):
            return
        info, ns, name = located
        uid = meta.get("uid", "")
        dependents = [self.cache.get(k) for k in list(self._dependents.get(uid, ()))]
        dependents = [d for d in dependents if d is not None]
        if "orphan" in finalizers:
            for dep in dependents:
                dep_loc = self._info_for(dep.key)
                if dep_loc is None:
                    continue

                def strip(obj: dict, uid: str = uid) -> dict:
                    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                    if refs:
                        obj["metadata"]["ownerReferences"] = refs
                    else:
                        obj["metadata"].pop("ownerReferences", None)
                    return obj

                try:
                    await self.store.update(dep_loc[0], dep_loc[1], dep_loc[2], strip)
                except errors.NotFound:
                    pass
            await self._remove_finalizer(info, ns, name, "orphan")
            return
        if "foregroundDeletion" in finalizers:
            blocking = []
            for dep in dependents:
                dep_loc = self._info_for(dep.key)
                if dep_loc is None:
                    continue
                if not dep.obj["metadata"].get("deletionTimestamp"):
                    try:
                        await self.store.delete(dep_loc[0], dep_loc[1], dep_loc[2],
                                                options={"propagationPolicy": "Foreground"})
                    except errors.NotFound:
                        continue
                if any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                       for r in dep.obj["metadata"].get("ownerReferences") or []):
                    blocking.append(dep.key)
            if not blocking:
                await self._remove_finalizer(info, ns, name, "foregroundDeletion")

    async def _remove_finalizer(self, info: ResourceInfo, ns: str | None, name: str, finalizer: str) -> None:
        def remove(obj: dict) -> dict:
            obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
            return obj

        await self.store.update(info, ns, name, remove)

    async def _check_namespace(self, key: str) -> None:
        cached = self.cache.get(key)
        if cached is None or not cached.obj["metadata"].get("deletionTimestamp"):
            return
        name = cached.obj["metadata"]["name"]
        ns_info = self._resources()["/registry/core/namespaces/"]
        remaining = 0
        for prefix, info in self._resources().items():
            if not info.namespaced:
                continue
            for obj in self.cache.list(f"{prefix}{name}/"):
                remaining += 1
                if obj.obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.store.delete(info, name, obj.obj["metadata"]["name"],
                                            options={"propagationPolicy": "Background"})
                except errors.NotFound:
                    pass
        if remaining:
            return  # the DELETED events of the contents bring us back here

        def finalize(obj: dict) -> dict:
            spec = obj.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
            if not spec["finalizers"]:
                del spec["finalizers"]
            return obj

        if (cached.obj.get("spec") or {}).get("finalizers"):
            await self.store.update(ns_info, None, name, finalize, subresource="finalize")
        elif not cached.obj["metadata"].get("finalizers"):
            await self.store.delete(ns_info, None, name)

    async def _ensure_default_sa(self, key: str) -> None:
        ns_obj = self.cache.get(key)
        if ns_obj is None or ns_obj.obj["metadata"].get("deletionTimestamp"):
            return
        ns = ns_obj.obj["metadata"]["name"]
        if self.cache.get(f"{_SA_PREFIX}{ns}/default") is not None:
            return
        sa_info = self._resources()[_SA_PREFIX]
        try:
            await self.store.create(sa_info, ns, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                  "metadata": {"name": "default"}})
        except (errors.AlreadyExists, errors.NotFound):
            pass
        except errors.APIError as exc:
            if exc.code != 403:
                raise

    async def _publish_root_ca(self, key: str) -> None:
        """Make `kube-root-ca.crt` in the namespace, or put its data and description back (upstream's syncNamespace)."""
        ns_obj = self.cache.get(key)
        if self.root_ca is None or ns_obj is None or ns_obj.obj["metadata"].get("deletionTimestamp"):
            return
        ns = ns_obj.obj["metadata"]["name"]
        data = {"ca.crt": self.root_ca}
        cm_info = self._resources()[_CM_PREFIX]
        current = self.cache.get(f"{_CM_PREFIX}{ns}/{ROOT_CA_CONFIGMAP}")
        if current is None:
            try:
                await self.store.create(cm_info, ns, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP,
                                 "annotations": {_ROOT_CA_DESCRIPTION_KEY: _ROOT_CA_DESCRIPTION}},
                    "data": data})
            except (errors.AlreadyExists, errors.NotFound):
                pass
            except errors.APIError as exc:
                if exc.code != 403:  # a terminating namespace takes no new content: nothing to retry
                    raise
            return
        meta = current.obj["metadata"]
        if current.obj.get("data") == data and (meta.get("annotations") or {}).get(_ROOT_CA_DESCRIPTION_KEY):
            return

        def restore(obj: dict) -> dict:
            obj["data"] = dict(data)
            obj["metadata"].setdefault("annotations", {})[_ROOT_CA_DESCRIPTION_KEY] = _ROOT_CA_DESCRIPTION
            return obj

        await self.store.update(cm_info, ns, ROOT_CA_CONFIGMAP, restore)
