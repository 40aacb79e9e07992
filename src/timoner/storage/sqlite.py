"""The SQLite storage driver: one file, WAL, durable writes, group commit.

Layout of the work:

- Writes go through :class:`~timoner.storage._sqlite_writer.Writer`: a single
  thread applies queued operations in batches, one transaction and one fsync
  per batch (``synchronous=FULL``), so a write is acknowledged only once it
  is on disk.
- After each commit the loop publishes the batch's events to an in-process
  :class:`~timoner.storage._watch.WatchHub` and then resolves the callers'
  futures. One process owns the file (an ``flock`` on ``<file>.lock``
  enforces it), so in-process fan-out sees every write.
- ``get`` runs inline on the event loop on its own read-only connection: it
  is one index seek, and measured 80k gets/s inline against 11k/s through a
  thread hop (32 concurrent callers, 2 cores). Lists, counts and watch replay
  can touch many rows, so they run on a small pool of threads, each with its
  own read-only connection. In WAL mode readers never block the writer nor
  each other.
- On open the current and compact revisions are recovered from the file and
  the revision counter continues from there.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from ._sqlite_sql import Reader, connect, init_schema
from ._sqlite_writer import Compact, Create, Delete, Outcome, Update, Writer
from ._types import Event, KeyValue, ListResult, StorageError, trace
from ._watch import ReplayPage, WatchHub, watch_events

__all__ = ["SQLiteBackend"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _OpenFiles:
    """What opening the file produced, handed to the constructor in one piece."""

    path: str
    lock_fd: int
    writer_conn: sqlite3.Connection
    inline_reader: Reader


class SQLiteBackend:
    """A :class:`~timoner.storage.Backend` stored in one SQLite file."""

    def __init__(self, files: _OpenFiles, loop: asyncio.AbstractEventLoop, *, read_threads: int) -> None:
        # Use `await SQLiteBackend.open(path)`; this only wires what it opened.
        self._path = files.path
        self._lock_fd = files.lock_fd
        self._inline = files.inline_reader
        self._pool = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="timoner-sqlite-read")
        self._local = threading.local()
        self._pool_readers: list[Reader] = []
        self._pool_readers_lock = threading.Lock()
        self._writer = Writer(files.writer_conn, loop, deliver=self._deliver)
        self._hub = WatchHub(self._writer.committed_revision)
        self._closed = False

    @classmethod
    async def open(cls, raw: str | os.PathLike[str], *, read_threads: int = 2) -> SQLiteBackend:
        """Open (creating if needed) the database file at path ``raw``."""
        loop = asyncio.get_running_loop()

        def _open() -> SQLiteBackend:
            path = os.path.abspath(os.fspath(raw))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lock_fd = _lock(path + ".lock")
            try:
                writer_conn = connect(path, readonly=False)
                try:
                    init_schema(writer_conn)
                    inline = Reader(connect(path, readonly=True))
                except BaseException:
                    writer_conn.close()
                    raise
            except BaseException:
                os.close(lock_fd)
                raise
            files = _OpenFiles(path=path, lock_fd=lock_fd, writer_conn=writer_conn, inline_reader=inline)
            return cls(files, loop, read_threads=read_threads)

        return await asyncio.to_thread(_open)

    @property
    def path(self) -> str:
        return self._path

    # -- reads -----------------------------------------------------------

    async def get(self, key: str, *, revision: int = 0) -> KeyValue:
        self._check_open()
        try:
            kv = self._inline.get_latest(key) if revision <= 0 else self._inline.get_at(key, revision)
        except sqlite3.Error as e:
            raise StorageError(f"sqlite read failed: {e}") from e
        trace("get", key, size=len(kv.value), revision=kv.mod_revision)
        return kv

    async def list(
        self, prefix: str, *, limit: int = 0, continue_from: str | None = None, revision: int = 0
    ) -> ListResult:
        self._check_open()
        call = functools.partial(Reader.list, limit=limit, continue_from=continue_from, revision=revision)
        result = await self._read(call, prefix)
        trace("list", prefix, size=len(result.items), revision=result.revision)
        return result

    async def count(self, prefix: str) -> int:
        self._check_open()
        n = await self._read(Reader.count, prefix)
        trace("count", prefix, size=n, revision=self._writer.committed_revision)
        return n

    async def _read(self, call: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(self._in_thread, call, *args)
        )

    def _in_thread(self, call: Callable[..., _T], *args: object) -> _T:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = Reader(connect(self._path, readonly=True))
            with self._pool_readers_lock:
                self._pool_readers.append(reader)
            self._local.reader = reader
        try:
            return call(reader, *args)
        except sqlite3.Error as e:
            raise StorageError(f"sqlite read failed: {e}") from e

    # -- writes ----------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_open()
        kv = await self._writer.submit(Create(key, bytes(value)))
        trace("create", key, size=len(value), revision=kv.mod_revision)
        return kv

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        self._check_open()
        kv = await self._writer.submit(Update(key, bytes(value), expected_revision))
        trace("update", key, size=len(value), revision=kv.mod_revision)
        return kv

    async def delete(self, key: str, *, expected_revision: int) -> KeyValue:
        self._check_open()
        kv = await self._writer.submit(Delete(key, expected_revision))
        trace("delete", key, size=len(kv.value), revision=kv.mod_revision)
        return kv

    async def compact(self, revision: int) -> None:
        self._check_open()
        await self._writer.submit(Compact(revision))
        trace("compact", "", size=0, revision=revision)

    def _deliver(self, outcomes: Sequence[Outcome], revision: int) -> None:
        """On the loop, after a commit: watchers first, so a caller's own write is already visible."""
        self._hub.publish([o.event for o in outcomes if o.event is not None])
        self._hub.advance(revision)
        for o in outcomes:
            if o.future.done():  # the caller was cancelled; the write stands regardless
                continue
            if o.error is not None:
                o.future.set_exception(o.error)
            else:
                o.future.set_result(o.result)

    # -- watch -----------------------------------------------------------

    def watch(self, prefix: str, *, from_revision: int) -> AsyncIterator[Event]:
        self._check_open()
        trace("watch", prefix, size=0, revision=from_revision)
        return watch_events(self._hub, self._replay, prefix, from_revision=from_revision)

    async def _replay(self, prefix: str, after: int, upto: int) -> ReplayPage:
        return await self._read(Reader.replay, prefix, after, upto)

    # -- revisions and lifecycle -------------------------------------------

    async def current_revision(self) -> int:
        return self._writer.committed_revision

    async def compact_revision(self) -> int:
        return self._writer.compact_revision

    async def close(self) -> None:
        """Finish queued writes, stop watchers and threads, release the file."""
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        await asyncio.to_thread(self._writer.stop().join)
        # The writer's last deliveries were scheduled before its thread ended, so by
        # now they have run and no writer is left waiting.
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        self._inline.close()
        for reader in self._pool_readers:
            reader.close()
        os.close(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("storage backend is closed")


def _lock(path: str) -> int:
    """Hold an exclusive lock for the life of the backend: watch fan-out needs one owner."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(f"{path} is held by another open backend") from None
    return fd
