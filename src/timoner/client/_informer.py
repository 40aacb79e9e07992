"""Informers: a local, always-catching-up copy of one resource, with change handlers and a lister.

An `Informer` is client-go's Reflector, store and shared-informer handler
fan-out in one `Runnable`:

1. **List** (paged, `limit` per page, following `continue` at the list's
   resourceVersion; an expired continue token falls back to one unpaged
   list), then **replace** the store: objects gone since the last list are
   delivered as deletes, new ones as adds, ones whose resourceVersion
   changed as updates (unchanged objects produce no event).
2. **Watch** from the list's resourceVersion, with bookmarks, applying each
   event to the store and the handlers. A stream the server ends normally
   (`timeoutSeconds`) is resumed from the last resourceVersion seen, events
   and bookmarks alike, without relisting.
3. On `Expired` (the server no longer has that history) or any other
   failure, including a dropped connection, go back to 1, after a jittered
   backoff that grows only while attempts keep failing.

The store is a plain dict, not thread-safe, owned by the informer's event
loop. Objects in it are shared with handlers and lister callers: treat them
as read-only (copy before changing), as with client-go's caches.

Handlers are synchronous and should be quick (typically: enqueue a key in
a `WorkQueue`); they run in registration order, and one handler raising is
logged without stopping the others. A handler added after the store is
populated first gets an add for every object already known, so late
registrations see the same world as early ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import Expired, Gone
from timoner.api.selectors import LabelSelector

from ._resource import Resource
from ._rest import Client

__all__ = ["EventHandler", "Informer", "Lister", "object_key"]

log = logging.getLogger("timoner.client.informer")

Obj = dict[str, Any]


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else meta["name"]


@dataclass(frozen=True, slots=True)
class EventHandler:
    """What to call on add (new), update (old, new) and delete (last known state)."""

    on_add: Callable[[Obj], Any] | None = None
    on_update: Callable[[Obj, Obj], Any] | None = None
    on_delete: Callable[[Obj], Any] | None = None


class Lister:
    """A read-only view of an informer's store: `get(namespace, name)` and `list(namespace, selector)`."""

    def __init__(self, store: dict[str, Obj]) -> None:
        self._store = store

    def get(self, namespace: str | None, name: str) -> Obj | None:
        """The cached object, or None; pass `namespace=None` (or "") for cluster-scoped kinds."""
        return self._store.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None, selector: LabelSelector | None = None) -> list[Obj]:
        """Cached objects in `namespace` (None: all) whose labels match `selector` (None: any), by key."""
        out = []
        for key in sorted(self._store):
            obj = self._store[key]
            meta = obj.get("metadata", {})
            if namespace is not None and meta.get("namespace", "") != namespace:
                continue
            if selector is not None and not selector.matches(meta.get("labels")):
                continue
            out.append(obj)
        return out

    def __len__(self) -> int:
        return len(self._store)


class Informer:
    """List + watch one resource into a local store; see the module docstring.

    `watch_timeout` is the `timeoutSeconds` asked of the server; the actual
    value is jittered up to twice that so many informers do not reconnect in
    step (client-go picks between 5 and 10 minutes).
    """

    def __init__(self, client: Client, resource: Resource, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 page_size: int = 500, watch_timeout: float = 300.0, max_backoff: float = 30.0) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.has_synced = asyncio.Event()
        self._store: dict[str, Obj] = {}
        self._handlers: list[EventHandler] = []
        self.lister = Lister(self._store)
        self.last_resource_version = ""
        self.relists = 0  # lists after the first; for metrics and tests

    def add_handler(self, on_add: Callable[[Obj], Any] | None = None,
                    on_update: Callable[[Obj, Obj], Any] | None = None,
                    on_delete: Callable[[Obj], Any] | None = None) -> EventHandler:
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for key in sorted(self._store):
                _call(on_add, self._store[key])
        return handler

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch, forever; returns only by cancellation."""
        failures = 0
        listed_once = False
        while True:
            try:
                if listed_once:
                    self.relists += 1
                rv = await self._list_and_replace()
                listed_once = True
                failures = 0
                self.has_synced.set()
                while True:
                    rv = await self._watch(rv)
            except (Expired, Gone) as exc:
                # The history is gone: relist at once, this is the normal recovery, not a failure.
                log.info("%s: watch expired (%s); relisting", self._name, exc)
            except Exception as exc:  # any failure means: start over with a list
                failures += 1
                delay = min(self.max_backoff, 0.1 * 2 ** (failures - 1)) * (0.5 + random.random() / 2)
                log.warning("%s: list/watch failed (%s: %s); relisting in %.2fs",
                            self._name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    @property
    def _name(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"informer {self.resource.plural}.{self.resource.group or 'core'}{where}"

    async def _list_and_replace(self) -> str:
        items, rv = await self._list_all()
        self._replace(items)
        self.last_resource_version = rv
        return rv

    async def _list_all(self) -> tuple[list[Obj], str]:
        items: list[Obj] = []
        token: str | None = None
        try:
            while True:
                page = await self.client.list(
                    self.resource, namespace=self.namespace, label_selector=self.label_selector,
                    field_selector=self.field_selector, limit=self.page_size, continue_=token)
                items.extend(page.get("items") or ())
                rv = page.get("metadata", {}).get("resourceVersion", "")
                token = page.get("metadata", {}).get("continue")
                if not token:
                    return items, rv
        except (Expired, Gone):
            if token is None:
                raise
            # The continue token outlived the server's history: one consistent unpaged list instead.
            page = await self.client.list(self.resource, namespace=self.namespace,
                                          label_selector=self.label_selector, field_selector=self.field_selector)
            return list(page.get("items") or ()), page.get("metadata", {}).get("resourceVersion", "")

    async def _watch(self, rv: str) -> str:
        """Apply one watch stream's events; return the resourceVersion to resume from."""
        timeout = int(self.watch_timeout * (1 + random.random()))
        stream = self.client.watch(self.resource, namespace=self.namespace, resource_version=rv,
                                   label_selector=self.label_selector, field_selector=self.field_selector,
                                   timeout_seconds=max(1, timeout), allow_bookmarks=True)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if event.type == "BOOKMARK":
                    pass
                elif event.type in ("ADDED", "MODIFIED"):
                    self._upsert(event.object)
                elif event.type == "DELETED":
                    self._remove(event.object)
                else:
                    log.warning("%s: ignoring watch event of type %r", self._name, event.type)
                    continue
                if event.resource_version:
                    rv = event.resource_version
                    self.last_resource_version = rv
        return rv

    # -- store and fan-out ---------------------------------------------------------------

    def _replace(self, items: Iterable[Obj]) -> None:
        fresh = {object_key(obj): obj for obj in items}
        for key in [k for k in self._store if k not in fresh]:
            old = self._store.pop(key)
            self._dispatch("delete", old)
        for key, obj in fresh.items():
            old = self._store.get(key)
            self._store[key] = obj
            if old is None:
                self._dispatch("add", obj)
            elif _rv(old) != _rv(obj):
                self._dispatch("update", obj, old)

    def _upsert(self, obj: Obj) -> None:
        key = object_key(obj)
        old = self._store.get(key)
        self._store[key] = obj
        if old is None:
            self._dispatch("add", obj)
        else:
            self._dispatch("update", obj, old)

    def _remove(self, obj: Obj) -> None:
        self._store.pop(object_key(obj), None)
        self._dispatch("delete", obj)

    def _dispatch(self, what: str, obj: Obj, old: Obj | None = None) -> None:
        for handler in self._handlers:
            if what == "add" and handler.on_add is not None:
                _call(handler.on_add, obj)
            elif what == "update" and handler.on_update is not None:
                _call(handler.on_update, old, obj)
            elif what == "delete" and handler.on_delete is not None:
                _call(handler.on_delete, obj)


def _rv(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("informer event handler %r failed", fn)
