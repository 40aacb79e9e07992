"""The storage vocabulary: key-values, events, list pages, errors and the Backend protocol.

Storage is a kine-style append-only log. Every write (create, update, delete)
appends one entry and takes the next value of one global revision counter; the
first write is revision 1 and an empty store is at revision 0. A key's
``mod_revision`` is the revision of its last write and becomes the object's
``resourceVersion`` upstairs. Compare-and-swap on ``mod_revision`` is the only
way to change an existing key.

Compaction forgets history: after ``compact(C)`` reads and watches at a
revision below ``C`` answer :class:`Compacted`; the state as of ``C`` itself
stays readable (like etcd and kine), which is what lets a watch resume from
``C`` and still see the previous value of each event.

Keys are ``str`` and compare by code point, which is also the byte order of
their UTF-8 encoding, so every driver sorts them the same way. Values are
opaque ``bytes``. Nothing here knows about Kubernetes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Backend",
    "Compacted",
    "Event",
    "EventType",
    "FutureRevision",
    "KeyExists",
    "KeyNotFound",
    "KeyValue",
    "ListResult",
    "RevisionConflict",
    "StorageError",
]

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

_log = logging.getLogger("timoner.storage")


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of one key."""

    key: str
    value: bytes
    create_revision: int  # revision of the write that created this incarnation of the key
    mod_revision: int  # revision of the last write to this key: the resourceVersion


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the log as a watcher sees it.

    For DELETED, ``kv`` is the last value with ``mod_revision`` set to the
    delete's revision, so every event's revision is ``kv.mod_revision``.
    """

    type: EventType
    kv: KeyValue
    prev: KeyValue | None  # the value this write replaced (MODIFIED, DELETED); None for ADDED

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class ListResult:
    """One page of a prefix listing, read at one revision.

    To fetch the next page, call ``list`` again with ``continue_from =
    items[-1].key`` and ``revision = revision`` so every page shows the same
    snapshot.
    """

    items: list[KeyValue]  # sorted by key
    revision: int  # the revision the list was read at
    more: bool  # True if `limit` cut the result short


class StorageError(Exception):
    """Base of every error a storage backend raises on purpose."""


class KeyNotFound(StorageError):
    """The key does not exist (at the requested revision)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class KeyExists(StorageError):
    """``create`` found a live key under the same name."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class RevisionConflict(StorageError):
    """The compare-and-swap failed: the key changed since the caller read it.

    ``current`` is the value now stored (None if the key is gone), so the
    caller can retry without another read.
    """

    def __init__(self, key: str, *, expected: int, current: KeyValue | None) -> None:
        now = current.mod_revision if current is not None else "deleted"
        super().__init__(f"revision conflict on {key}: expected {expected}, current {now}")
        self.key = key
        self.expected = expected
        self.current = current


class Compacted(StorageError):
    """The requested revision is older than the compaction point (HTTP 410 upstairs)."""

    def __init__(self, *, requested: int, compact_revision: int, current_revision: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (compact revision {compact_revision}, "
            f"current revision {current_revision})"
        )
        self.requested = requested
        self.compact_revision = compact_revision
        self.current_revision = current_revision


class FutureRevision(StorageError):
    """The requested revision has not been written yet."""

    def __init__(self, *, requested: int, current_revision: int) -> None:
        super().__init__(f"revision {requested} is newer than the current revision {current_revision}")
        self.requested = requested
        self.current_revision = current_revision


@runtime_checkable
class Backend(Protocol):
    """A revisioned key-value log: the only thing the API server stores into.

    Writes are linearisable and each takes the next revision. ``watch`` yields
    every event with a revision above ``from_revision`` under a prefix, in
    revision order, with no gaps and no duplicates: first the retained history,
    then live events. It raises :class:`Compacted` on its first iteration if
    that history is gone, and ends when the consumer closes it or the backend
    closes.
    """

    async def get(self, key: str, *, revision: int = 0) -> KeyValue: ...

    async def list(
        self, prefix: str, *, limit: int = 0, continue_from: str | None = None, revision: int = 0
    ) -> ListResult: ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KeyValue: ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue: ...

    async def delete(self, key: str, *, expected_revision: int) -> KeyValue: ...

    def watch(self, prefix: str, *, from_revision: int) -> AsyncIterator[Event]: ...

    async def compact(self, revision: int) -> None: ...

    async def current_revision(self) -> int: ...

    async def compact_revision(self) -> int: ...

    async def close(self) -> None: ...


def trace(op: str, key: str, *, size: int, revision: int) -> None:
    """Log one storage operation at DEBUG; costs one method call when DEBUG is off."""
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s key=%s size=%d revision=%d", op, key, size, revision)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    None means "no upper bound" (empty prefix, or a prefix made only of the
    largest code point).
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    nxt = ord(stripped[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000  # surrogates cannot be encoded to UTF-8, and no key contains one
    return stripped[:-1] + chr(nxt)
