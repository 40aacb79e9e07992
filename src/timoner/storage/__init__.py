"""timoner.storage: a revisioned key-value log with watch, and its drivers.

Storage is kine-shaped: an append-only log of writes, one global revision
counter, compare-and-swap on a key's ``mod_revision`` as the only way to
change it, and watches that replay history then follow live writes. It knows
keys, bytes and revisions only; the API server maps them to Kubernetes
objects and ``resourceVersion``.

Drivers: :class:`MemoryBackend` (tests, ``memory://``) and
:class:`SQLiteBackend` (the embedded default, ``sqlite:///abs/path.db``).
:func:`open_backend` picks one from a URL.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ._types import (
    Backend,
    Compacted,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionConflict,
    StorageError,
)
from .memory import MemoryBackend
from .sqlite import SQLiteBackend

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
    "MemoryBackend",
    "RevisionConflict",
    "SQLiteBackend",
    "StorageError",
    "open_backend",
]


async def open_backend(url: str) -> Backend:
    """Open the backend a URL names.

    ``memory://`` is a fresh in-memory store; ``sqlite:///abs/path/state.db``
    (or a plain filesystem path) is a SQLite file, created if missing.
    """
    if "://" not in url:
        return await SQLiteBackend.open(url)
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryBackend()
    if parts.scheme == "sqlite":
        # sqlite:///abs/path -> /abs/path; sqlite://rel/path -> rel/path (relative to the cwd).
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError(f"storage URL {url!r} names no file")
        return await SQLiteBackend.open(path)
    raise ValueError(f"unsupported storage URL {url!r}: use memory:// or sqlite:///path")
