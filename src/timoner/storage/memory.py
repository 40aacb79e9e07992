"""The in-memory storage driver: the reference semantics, and the test backend.

Three structures, all touched only on the event loop (no threads, no locks):

- ``_log``: every retained event; ``_log[i]`` has revision ``_log_base + i``
  because every revision is exactly one write. Watch replay slices it.
- ``_history[key]``: the retained versions of one key, ascending by revision,
  a tombstone (None) marking a delete. Reads at an old revision bisect it.
- ``_keys``: every key with retained history, sorted, so a prefix listing is a
  bisect plus a walk. Deleted keys stay in it until compaction forgets them.

Compaction at C keeps, per key, the latest version at or below C (unless it
is a tombstone) and everything above C, the same rule as the SQLite driver.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ._types import (
    Compacted,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionConflict,
    StorageError,
    trace,
)
from ._watch import REPLAY_PAGE, ReplayPage, WatchHub, watch_events

__all__ = ["MemoryBackend"]


@dataclass(slots=True)
class _History:
    """Retained versions of one key; ``versions[i]`` was written at ``revisions[i]``."""

    revisions: list[int] = field(default_factory=list)
    versions: list[KeyValue | None] = field(default_factory=list)  # None: deleted at that revision

    def latest(self) -> KeyValue | None:
        return self.versions[-1] if self.versions else None

    def at(self, revision: int) -> KeyValue | None:
        i = bisect.bisect_right(self.revisions, revision) - 1
        return self.versions[i] if i >= 0 else None


class MemoryBackend:
    """A :class:`~timoner.storage.Backend` that keeps everything in process memory."""

    def __init__(self) -> None:
        self._log: list[Event] = []
        self._log_base = 1  # revision of _log[0]
        self._history: dict[str, _History] = {}
        self._keys: list[str] = []
        self._revision = 0
        self._compact_revision = 0
        self._hub = WatchHub(0)
        self._closed = False

    # -- reads -----------------------------------------------------------

    async def get(self, key: str, *, revision: int = 0) -> KeyValue:
        self._check_open()
        at = self._read_revision(revision)
        hist = self._history.get(key)
        kv = hist.at(at) if hist is not None else None
        if kv is None:
            raise KeyNotFound(key)
        trace("get", key, size=len(kv.value), revision=kv.mod_revision)
        return kv

    async def list(
        self, prefix: str, *, limit: int = 0, continue_from: str | None = None, revision: int = 0
    ) -> ListResult:
        self._check_open()
        at = self._read_revision(revision)
        if continue_from is not None and continue_from >= prefix:
            i = bisect.bisect_right(self._keys, continue_from)
        else:
            i = bisect.bisect_left(self._keys, prefix)
        items: list[KeyValue] = []
        more = False
        keys = self._keys
        while i < len(keys) and keys[i].startswith(prefix):
            kv = self._history[keys[i]].at(at)
            i += 1
            if kv is None:
                continue
            if limit and len(items) == limit:
                more = True
                break
            items.append(kv)
        trace("list", prefix, size=len(items), revision=at)
        return ListResult(items=items, revision=at, more=more)

    async def count(self, prefix: str) -> int:
        self._check_open()
        i = bisect.bisect_left(self._keys, prefix)
        n = 0
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            n += self._history[self._keys[i]].latest() is not None
            i += 1
        trace("count", prefix, size=n, revision=self._revision)
        return n

    # -- writes ----------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_open()
        hist = self._history.get(key)
        if hist is not None and hist.latest() is not None:
            raise KeyExists(key)
        rev = self._revision + 1
        kv = KeyValue(key=key, value=bytes(value), create_revision=rev, mod_revision=rev)
        self._append(Event("ADDED", kv, None), kv)
        trace("create", key, size=len(value), revision=rev)
        return kv

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        self._check_open()
        prev = self._expect(key, expected_revision)
        rev = self._revision + 1
        kv = KeyValue(key=key, value=bytes(value), create_revision=prev.create_revision, mod_revision=rev)
        self._append(Event("MODIFIED", kv, prev), kv)
        trace("update", key, size=len(value), revision=rev)
        return kv

    async def delete(self, key: str, *, expected_revision: int) -> KeyValue:
        self._check_open()
        prev = self._expect(key, expected_revision)
        rev = self._revision + 1
        kv = KeyValue(key=key, value=prev.value, create_revision=prev.create_revision, mod_revision=rev)
        self._append(Event("DELETED", kv, prev), None)
        trace("delete", key, size=len(prev.value), revision=rev)
        return kv

    def _expect(self, key: str, expected_revision: int) -> KeyValue:
        hist = self._history.get(key)
        current = hist.latest() if hist is not None else None
        if current is None:
            raise KeyNotFound(key)
        if current.mod_revision != expected_revision:
            raise RevisionConflict(key, expected=expected_revision, current=current)
        return current

    def _append(self, event: Event, stored: KeyValue | None) -> None:
        key = event.kv.key
        rev = event.revision
        hist = self._history.get(key)
        if hist is None:
            hist = self._history[key] = _History()
            bisect.insort(self._keys, key)
        hist.revisions.append(rev)
        hist.versions.append(stored)
        self._log.append(event)
        self._revision = rev
        self._hub.publish((event,))

    # -- watch -----------------------------------------------------------

    def watch(self, prefix: str, *, from_revision: int) -> AsyncIterator[Event]:
        self._check_open()
        trace("watch", prefix, size=0, revision=from_revision)
        return watch_events(self._hub, self._replay, prefix, from_revision=from_revision)

    async def _replay(self, prefix: str, after: int, upto: int) -> ReplayPage:
        if after < self._compact_revision:
            raise self._compacted(after)
        start = max(after + 1, self._log_base) - self._log_base
        stop = min(upto + 1, self._log_base + len(self._log)) - self._log_base
        events: list[Event] = []
        through = upto
        for i in range(start, stop):
            event = self._log[i]
            if event.kv.key.startswith(prefix):
                events.append(event)
                if len(events) == REPLAY_PAGE:
                    through = event.revision
                    break
        return ReplayPage(events=events, through=through)

    # -- revisions and compaction ----------------------------------------

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision > self._revision:
            raise FutureRevision(requested=revision, current_revision=self._revision)
        if revision <= self._compact_revision:
            return
        for key in list(self._history):
            hist = self._history[key]
            keep = bisect.bisect_right(hist.revisions, revision) - 1
            if keep >= 0 and hist.versions[keep] is None:
                keep += 1  # a tombstone at or below the compaction point is forgotten too
            if keep > 0:
                del hist.revisions[:keep]
                del hist.versions[:keep]
            if not hist.revisions:
                del self._history[key]
                del self._keys[bisect.bisect_left(self._keys, key)]
        drop = revision + 1 - self._log_base
        del self._log[:drop]
        self._log_base = revision + 1
        self._compact_revision = revision
        trace("compact", "", size=0, revision=revision)

    async def current_revision(self) -> int:
        return self._revision

    async def compact_revision(self) -> int:
        return self._compact_revision

    async def close(self) -> None:
        self._closed = True
        self._hub.close()

    def _read_revision(self, revision: int) -> int:
        if revision <= 0:
            return self._revision
        if revision < self._compact_revision:
            raise self._compacted(revision)
        if revision > self._revision:
            raise FutureRevision(requested=revision, current_revision=self._revision)
        return revision

    def _compacted(self, requested: int) -> Compacted:
        return Compacted(
            requested=requested, compact_revision=self._compact_revision, current_revision=self._revision
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("storage backend is closed")
