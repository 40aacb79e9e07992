"""CustomResourceDefinitions inside the API server: serving their resources, their status, their deletion.

Upstream's apiextensions-apiserver runs a handful of controllers around
CRDs; Timoner runs their work in one `CustomResources` object:

- **serving** (crdHandler): a watch-cache listener turns the stored CRDs into
  `ResourceInfo`s (`api.customresources.resources_for_crd`) and hands the
  whole list to the app at once, so discovery, OpenAPI and the REST
  routes change together, before the write that created the CRD returns
  to its client (see `settle`);
- **names** (NamingConditionController): CRDs of a group are considered in
  creation order; one whose plural, singular, kind, list kind or short
  names another already holds is not served and says so in its
  `NamesAccepted` condition;
- **status** (Established, storedVersions): a worker writes
  `status.acceptedNames`, the NamesAccepted/Established conditions and
  the storage version into `status.storedVersions`;
- **deletion** (CRDFinalizer): deleting a CRD adds the
  `customresourcecleanup.apiextensions.k8s.io` finalizer and a Terminating
  condition; the worker deletes every custom resource of the CRD (their own
  finalizers are honoured: it waits for them) and then drops the finalizer,
  which deletes the CRD. While it terminates, creates are refused with 405.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable

import orjson

from timoner.api import errors
from timoner.api.customresources import CRD_FINALIZER, resources_for_crd, storage_version
from timoner.api.registry import ResourceInfo

from .store import Store, now_rfc3339
from .watchcache import CacheEvent

__all__ = ["CRD_PREFIX", "CustomResources"]

log = logging.getLogger("timoner.apiserver.crds")

CRD_PREFIX = "/registry/apiextensions.k8s.io/customresourcedefinitions/"
_NAME_FIELDS = ("plural", "singular", "kind", "listKind")


class CustomResources:
    """Keeps the app's resource list in step with the stored CRDs; see the module docstring."""

    def __init__(self, store: Store, builtin: list[ResourceInfo],
                 publish: Callable[[list[ResourceInfo]], None]) -> None:
        self.store = store
        self.cache = store.cache
        self.builtin = list(builtin)
        self._publish = publish
        # CRD name -> (what its serving depends on, its served versions)
        self._served: dict[str, tuple[bytes, list[ResourceInfo]]] = {}
        self._accepted: dict[str, bool] = {}  # CRD name -> names accepted
        self._conflicts: dict[str, str] = {}  # CRD name -> why its names are not accepted
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._task: asyncio.Task | None = None
        self._seen: dict[str, int] = {}  # CRD uid -> order in which this server first saw it

    # -- serving ----------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh()
        for cached in self.cache.list(CRD_PREFIX):
            self._enqueue(cached.obj["metadata"]["name"])
        self.cache.add_listener(self._on_event)
        self._task = asyncio.create_task(self._work(), name="crds")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def _on_event(self, event: CacheEvent) -> None:
        if not event.object.key.startswith(CRD_PREFIX):
            return
        self.refresh()
        if event.type != "DELETED":
            self._enqueue(event.object.obj["metadata"]["name"])

    def refresh(self) -> None:
        """Recompute what every stored CRD serves and publish the resource list when it changed."""
        objs = [c.obj for c in self.cache.list(CRD_PREFIX)]
        for obj in objs:
            self._seen.setdefault(obj["metadata"]["uid"], len(self._seen))
        # Names already accepted keep them; then the older CRD wins (first seen, within a second).
        crds = sorted(objs, key=lambda o: (
            0 if _names_accepted(o) else 1, o["metadata"].get("creationTimestamp", ""),
            self._seen[o["metadata"]["uid"]]))
        taken: dict[tuple[str, str, str], str] = {}  # (group, name field, value) -> CRD holding it
        builtin_names = {(r.group, r.plural) for r in self.builtin}
        served: dict[str, tuple[bytes, list[ResourceInfo]]] = {}
        self._conflicts = {}
        for crd in crds:
            name = crd["metadata"]["name"]
            spec = crd.get("spec") or {}
            group, names = spec.get("group", ""), spec.get("names") or {}
            wanted = [(f, names.get(f)) for f in _NAME_FIELDS if names.get(f)]
            wanted += [("shortNames", s) for s in names.get("shortNames") or ()]
            conflict: tuple[str, str] | None = None
            if (group, names.get("plural", "")) in builtin_names:
                conflict = ("plural", names.get("plural", ""))
            for field, value in wanted:
                if conflict is None and taken.get((group, field, value), name) != name:
                    conflict = (field, value)
            if conflict is not None:
                self._conflicts[name] = f'{conflict[0]}:"{conflict[1]}" is already in use'
                continue
            for field, value in wanted:
                taken[(group, field, value)] = name
            # A CRD whose serving content did not change (a status write, say) keeps its ResourceInfos,
            # and with them the app's cached documents.
            content = _serving_content(crd)
            previous = self._served.get(name)
            served[name] = previous if previous is not None and previous[0] == content else (
                content, resources_for_crd(crd))
        if served.keys() == self._served.keys() and all(served[n] is self._served[n] for n in served):
            return
        self._served = served
        custom = [info for _, infos in served.values() for info in infos]
        self._publish(self.builtin + custom)

    # -- status and deletion ----------------------------------------------------------------------

    def _enqueue(self, name: str) -> None:
        if name not in self._pending:
            self._pending.add(name)
            self._queue.put_nowait(name)

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            self._pending.discard(name)
            try:
                again = await self._reconcile(name)
            except errors.NotFound:
                continue
            except Exception:
                log.exception("reconciling CustomResourceDefinition %s failed", name)
                again = True
            if again:
                asyncio.get_running_loop().call_later(0.5, self._enqueue, name)

    async def _reconcile(self, name: str) -> bool:
        """Bring one CRD's status up to date; clean up after it when it is being deleted. True: retry later."""
        cached = self.cache.get(CRD_PREFIX + name)
        if cached is None:
            return False
        crd = cached.obj
        if crd["metadata"].get("deletionTimestamp"):
            return await self._finalize(crd)
        status = self.status_for(crd)
        if status != (crd.get("status") or {}):
            await self._write_status(name, status)
        return False

    def status_for(self, crd: dict, *, terminating: tuple[str, str] | None = None) -> dict:
        """The status the CRD should have now (conditions keep their transition times while unchanged)."""
        name = crd["metadata"]["name"]
        spec = crd.get("spec") or {}
        old = copy.deepcopy(crd.get("status") or {})
        conditions = {c.get("type"): c for c in old.get("conditions") or []}
        status: dict = {}
        conflict = self._conflicts.get(name)
        if conflict is None:
            accepted = copy.deepcopy(spec.get("names") or {})
            status["acceptedNames"] = accepted
            _set_condition(conditions, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
            _set_condition(conditions, "Established", "True", "InitialNamesAccepted",
                           "the initial names have been accepted")
        else:
            field, _, message = conflict.partition(":")
            status["acceptedNames"] = old.get("acceptedNames") or {"plural": "", "kind": ""}
            reason = {"plural": "PluralConflict", "singular": "SingularConflict", "kind": "KindConflict",
                      "listKind": "ListKindConflict", "shortNames": "ShortNamesConflict"}[field]
            _set_condition(conditions, "NamesAccepted", "False", reason, message)
            _set_condition(conditions, "Established", "False", "NotAccepted", "not all names are accepted")
        if terminating is not None:
            _set_condition(conditions, "Terminating", "True", *terminating)
        status["conditions"] = [conditions[t] for t in ("NamesAccepted", "Established", "Terminating")
                                if t in conditions]
        stored = list(old.get("storedVersions") or [])
        storage = storage_version(crd)
        if storage and storage not in stored:
            stored.append(storage)
        status["storedVersions"] = stored
        return status

    async def _write_status(self, name: str, status: dict) -> None:
        info = self._crd_info()

        def mutate(current: dict) -> dict:
            current["status"] = status
            return current

        await self.store.update(info, None, name, mutate, subresource="status")

    def _crd_info(self) -> ResourceInfo:
        return next(r for r in self.builtin
                    if r.group == "apiextensions.k8s.io" and r.plural == "customresourcedefinitions")

    async def mark_for_deletion(self, name: str, *, dry_run: bool) -> None:
        """What deleting a CRD does first, as upstream's CRD storage does: the cleanup finalizer."""
        if dry_run:
            return
        info = self._crd_info()

        def mutate(current: dict) -> dict:
            finalizers = current["metadata"].setdefault("finalizers", [])
            if CRD_FINALIZER not in finalizers:
                finalizers.append(CRD_FINALIZER)
            return current

        cached = self.cache.get(CRD_PREFIX + name)
        if cached is not None and cached.obj["metadata"].get("deletionTimestamp"):
            return
        await self.store.update(info, None, name, mutate)

    async def _finalize(self, crd: dict) -> bool:
        name = crd["metadata"]["name"]
        if CRD_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            return False
        status = self.status_for(crd, terminating=("InstanceDeletionInProgress",
                                                   "CustomResource deletion is in progress"))
        if status != (crd.get("status") or {}):
            await self._write_status(name, status)
        infos = resources_for_crd(crd)
        remaining = 0
        if infos:
            info = infos[0]
            for cached in self.cache.list(info.storage_prefix):
                remaining += 1
                meta = cached.obj["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                try:
                    await self.store.delete(info, meta.get("namespace"), meta["name"])
                except errors.NotFound:
                    pass
        if remaining:
            await self.store.sync()
            return any(True for _ in self.cache.list(infos[0].storage_prefix))
        info = self._crd_info()

        def drop(current: dict) -> dict:
            current["metadata"]["finalizers"] = [
                f for f in current["metadata"].get("finalizers") or [] if f != CRD_FINALIZER]
            return current

        await self.store.update(info, None, name, drop)
        return False


def _names_accepted(crd: dict) -> bool:
    for condition in (crd.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "NamesAccepted":
            return condition.get("status") == "True"
    return False


def _set_condition(conditions: dict[str, dict], kind: str, status: str, reason: str, message: str) -> None:
    old = conditions.get(kind)
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
        return
    since = old.get("lastTransitionTime") if old is not None and old.get("status") == status else None
    conditions[kind] = {"type": kind, "status": status, "lastTransitionTime": since or now_rfc3339(),
                        "reason": reason, "message": message}


def _serving_content(crd: dict) -> bytes:
    """What a CRD's served resources are made of: its uid, spec and whether it is being deleted."""
    meta = crd["metadata"]
    return orjson.dumps((meta.get("uid"), crd.get("spec"), bool(meta.get("deletionTimestamp"))),
                        option=orjson.OPT_SORT_KEYS)
