"""The watch cache: every object in memory, fed by one storage watch.

Upstream's cacher keeps one cache per resource; we keep one for the whole
store, fed by a single `watch("/registry/")`, so a thousand watchers cost one
storage read per change. It holds:

- the latest state of every object (decoded once, its JSON bytes rendered at
  most once per revision and shared by every GET, LIST and watcher);
- a ring of recent events, so a watch can resume from any revision still in
  the ring and gets 410 Expired otherwise;
- the registered watchers, grouped by resource so an event only visits the
  watchers of its own resource.

Reads wait until the cache has caught up with the latest revision the server
has written (`wait_for`), which makes them consistent with earlier writes.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from timoner.api.errors import Expired, Timeout
from timoner.storage import Backend, Compacted, Event

__all__ = ["CachedObject", "CacheEvent", "WatchCache", "Watcher", "resource_prefix_of"]

log = logging.getLogger("timoner.apiserver.watchcache")


def resource_prefix_of(key: str) -> str:
    """`/registry/<group>/<resource>/` for any key or key prefix under it (the prefix itself included)."""
    parts = key.split("/", 4)
    return f"/{parts[1]}/{parts[2]}/{parts[3]}/"


class CachedObject:
    """One object at one revision; `json` renders it once and shares the bytes."""

    __slots__ = ("key", "obj", "revision", "_json")

    def __init__(self, key: str, obj: dict, revision: int) -> None:
        self.key = key
        self.obj = obj
        self.revision = revision
        self._json: bytes | None = None

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self.obj)
        return self._json


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """A change as watchers see it: the object after, and before, the change."""

    type: str  # ADDED, MODIFIED, DELETED
    object: CachedObject
    prev: CachedObject | None
    revision: int


Filter = Callable[[dict], bool]


@dataclass(eq=False)
class Watcher:
    """A registered watch: which keys, which objects, and the queue it reads from."""

    prefix: str
    predicate: Filter | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    closed: bool = False
    max_pending: int = 50_000

    def offer(self, item: tuple[str, CachedObject] | None) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.max_pending:
            # A watcher that cannot keep up is cut off, as upstream does; the client resumes.
            self.closed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)

    def deliver(self, event: CacheEvent) -> None:
        """Queue what this watcher should see of `event`, with selector transitions."""
        if not event.object.key.startswith(self.prefix):
            return
        pred = self.predicate
        if pred is None:
            self.offer((event.type, event.object))
            return
        now = event.type != "DELETED" and pred(event.object.obj)
        before = event.prev is not None and pred(event.prev.obj)
        if event.type == "DELETED":
            before = pred(event.object.obj)
        if now and not before:
            self.offer(("ADDED", event.object))
        elif now and before:
            self.offer(("MODIFIED", event.object))
        elif before and not now:
            if event.type == "DELETED":
                self.offer(("DELETED", event.object))
            else:
                # The object left the selector: DELETED with its last matching state, at this revision.
                assert event.prev is not None
                gone = _with_revision(event.prev.obj, event.revision)
                self.offer(("DELETED", CachedObject(event.object.key, gone, event.revision)))


def _with_revision(obj: dict, revision: int) -> dict:
    copy = dict(obj)
    copy["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(revision)}
    return copy


class WatchCache:
    """All objects in memory plus a window of recent events; see the module docstring."""

    def __init__(self, backend: Backend, *, history: int = 20_000,
                 decode: Callable[[bytes, int], dict] | None = None) -> None:
        self._backend = backend
        self._decode = decode or _decode
        self._objects: dict[str, dict[str, CachedObject]] = collections.defaultdict(dict)
        self._sorted: dict[str, list[str]] = {}
        self._events: collections.deque[CacheEvent] = collections.deque(maxlen=history)
        self._watchers: dict[str, set[Watcher]] = collections.defaultdict(set)
        self._listeners: list[Callable[[CacheEvent], Any]] = []
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self.revision = 0
        # Oldest revision from which a watch can resume (the ring's start).
        self._oldest = 0
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Load every object, then follow the store from that revision on."""
        revision = await self._load()
        self._task = asyncio.create_task(self._follow(revision), name="watchcache")
        self.ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for watchers in self._watchers.values():
            for w in watchers:
                w.closed = True
                w.queue.put_nowait(None)

    async def _follow(self, revision: int) -> None:
        while True:
            try:
                async for event in self._backend.watch("/registry/", from_revision=revision):
                    self._apply(event)
                    revision = event.revision
            except asyncio.CancelledError:
                raise
            except Compacted:
                log.error("watch cache fell behind compaction at revision %d; reloading", revision)
                await self._reload()
                revision = self.revision
            except Exception:
                log.exception("watch cache stream failed at revision %d; resuming", revision)
                await asyncio.sleep(0.1)

    async def _load(self) -> int:
        """Replace the cached objects with a consistent list of the store; returns its revision."""
        self._objects.clear()
        self._sorted.clear()
        self._events.clear()
        revision = 0
        continue_from = None
        while True:
            page = await self._backend.list("/registry/", limit=5000, continue_from=continue_from,
                                            revision=revision)
            revision = page.revision
            for kv in page.items:
                obj = self._decode(kv.value, kv.mod_revision)
                self._objects[resource_prefix_of(kv.key)][kv.key] = CachedObject(kv.key, obj, kv.mod_revision)
            if not page.more or not page.items:
                break
            continue_from = page.items[-1].key
        self.revision = revision
        self._oldest = revision
        return revision

    async def _reload(self) -> None:
        await self._load()
        # Watchers cannot be told what they missed: end them, and clients resume or relist.
        for watchers in self._watchers.values():
            for w in watchers:
                w.closed = True
                w.queue.put_nowait(None)

    # -- applying storage events -------------------------------------------------------

    def _apply(self, event: Event) -> None:
        key = event.kv.key
        prefix = resource_prefix_of(key)
        bucket = self._objects[prefix]
        prev = bucket.get(key)
        obj = self._decode(event.kv.value, event.kv.mod_revision)
        cached = CachedObject(key, obj, event.kv.mod_revision)
        if event.type == "DELETED":
            bucket.pop(key, None)
            self._sorted.pop(prefix, None)
        else:
            if prev is None:
                self._sorted.pop(prefix, None)
            bucket[key] = cached
        ce = CacheEvent(event.type, cached, prev, event.revision)
        if len(self._events) == self._events.maxlen:
            self._oldest = self._events[0].revision
        self._events.append(ce)
        self.revision = event.revision
        for watcher in tuple(self._watchers.get(prefix, ())):
            watcher.deliver(ce)
        for listener in self._listeners:
            try:
                listener(ce)
            except Exception:
                log.exception("watch cache listener failed")
        if self._waiters:
            keep = []
            for rev, fut in self._waiters:
                if rev <= self.revision:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((rev, fut))
            self._waiters = keep

    # -- reads ------------------------------------------------------------------------

    async def wait_for(self, revision: int, *, timeout: float = 3.0) -> None:
        """Return once the cache has applied `revision` (504 if it takes longer than `timeout`)."""
        if self.revision >= revision:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Timeout(f"Too large resource version: {revision}, current: {self.revision}") from None

    def get(self, key: str) -> CachedObject | None:
        return self._objects.get(resource_prefix_of(key), {}).get(key)

    def list(self, prefix: str, *, after: str | None = None) -> list[CachedObject]:
        """Objects whose key starts with `prefix`, sorted by key, after `after` when given."""
        resource = resource_prefix_of(prefix)
        bucket = self._objects.get(resource)
        if not bucket:
            return []
        keys = self._sorted.get(resource)
        if keys is None:
            keys = sorted(bucket)
            self._sorted[resource] = keys
        start = bisect.bisect_left(keys, prefix)
        if after is not None and after >= prefix:
            start = bisect.bisect_right(keys, after)
        out = []
        for i in range(start, len(keys)):
            k = keys[i]
            if not k.startswith(prefix):
                break
            out.append(bucket[k])
        return out

    def all_objects(self):
        for bucket in self._objects.values():
            yield from bucket.values()

    # -- watches ------------------------------------------------------------------------

    def watch(self, prefix: str, *, from_revision: int | None, predicate: Filter | None) -> Watcher:
        """Register a watcher; replay events after `from_revision`, or every object as ADDED when None.

        Raises `Gone` (410 Expired) when `from_revision` is older than the event window.
        """
        watcher = Watcher(prefix, predicate)
        if from_revision is None:
            for cached in self.list(prefix):
                if predicate is None or predicate(cached.obj):
                    watcher.offer(("ADDED", cached))
        else:
            if from_revision < self._oldest:
                raise Expired(f"too old resource version: {from_revision} ({self._oldest + 1})")
            if from_revision < self.revision:
                for ev in self._events_after(from_revision):
                    watcher.deliver(ev)
        self._watchers[resource_prefix_of(prefix)].add(watcher)
        return watcher

    def _events_after(self, revision: int):
        events = self._events
        # Binary search by revision over the deque (revisions are increasing).
        lo, hi = 0, len(events)
        while lo < hi:
            mid = (lo + hi) // 2
            if events[mid].revision <= revision:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, len(events)):
            yield events[i]

    def unwatch(self, watcher: Watcher) -> None:
        watcher.closed = True
        for watchers in self._watchers.values():
            watchers.discard(watcher)

    def add_listener(self, listener: Callable[[CacheEvent], Any]) -> None:
        """Call `listener` synchronously for every event (internal controllers)."""
        self._listeners.append(listener)



def _decode(value: bytes, revision: int) -> dict:
    obj = orjson.loads(value)
    meta = obj.setdefault("metadata", {})
    meta["resourceVersion"] = str(revision)
    return obj
