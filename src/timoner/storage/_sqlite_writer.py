"""Group commit for the SQLite driver: one writer thread, one fsync per batch.

Callers on the event loop enqueue a write operation with an asyncio future.
The writer thread blocks for the first queued operation, drains whatever else
is queued (up to ``MAX_BATCH``), and applies the batch inside ONE transaction.
Each operation is still its own compare-and-swap, evaluated against the latest
state including the earlier operations of the same batch (the writer's
connection sees its own uncommitted rows); an operation that fails its check
writes nothing and fails alone. One COMMIT then fsyncs the whole batch, and
one ``call_soon_threadsafe`` hands every outcome back to the loop, which
publishes the events to watchers and resolves the futures, in that order.

The writer keeps the revisions of every live key in memory (`_live`), so a
create needs no read to know the key is free and an update or delete reads
only the previous row by its primary key. A batch that fails as a whole puts
the index back as it was.

While one batch is being fsynced the next one queues up, so the batch size
adapts to the load without any timer. If the transaction itself fails (disk
full, I/O error), every operation of the batch fails with that error and the
revision counter rolls back with it.

A caller cancelled while waiting does not cancel its write: like a request to
etcd, it may or may not have been applied.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._sqlite_sql import read_head
from ._types import Event, FutureRevision, KeyExists, KeyNotFound, KeyValue, RevisionConflict, StorageError

__all__ = ["Compact", "Create", "Delete", "Outcome", "Update", "Writer"]

MAX_BATCH = 1024

_INSERT_SQL = (
    "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Forget rows superseded by a write in (old, new] and tombstones in (old, new]:
# what stays at or below `new` is exactly the latest live version of each key.
_COMPACT_SQL = """
DELETE FROM log WHERE id IN (
    SELECT prev_revision FROM log WHERE id > :old AND id <= :new AND prev_revision != 0
    UNION ALL
    SELECT id FROM log WHERE id > :old AND id <= :new AND deleted != 0
)
"""
_SET_COMPACT_SQL = "UPDATE meta SET value = ? WHERE key = 'compact_revision'"
# The newest row of every key (SQLite returns the other columns of the MAX(id) row).
_LIVE_SQL = "SELECT name, MAX(id), deleted, create_revision FROM log GROUP BY name"
_VALUE_SQL = "SELECT value FROM log WHERE id = ?"


@dataclass(frozen=True, slots=True)
class Create:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Update:
    key: str
    value: bytes
    expected_revision: int


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    expected_revision: int


@dataclass(frozen=True, slots=True)
class Compact:
    revision: int


Op = Create | Update | Delete | Compact


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one queued operation came to, handed back to the loop."""

    future: asyncio.Future
    result: KeyValue | None = None
    error: BaseException | None = None
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class _Queued:
    op: Op
    future: asyncio.Future


_STOP = object()


class Writer:
    """Owns the write connection and the thread that applies batches to it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        deliver: Callable[[Sequence[Outcome], int], None],
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._deliver = deliver
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        head = read_head(conn)
        # The thread's working copies, ahead of the committed ones while a batch is open.
        self._revision = head.current
        self._compact_revision = head.compact
        # key -> (mod_revision, create_revision) of every live key; the writer's alone.
        self._live: dict[str, tuple[int, int]] = {
            name: (rev, created) for name, rev, deleted, created in conn.execute(_LIVE_SQL) if not deleted
        }
        self._undo: list[tuple[str, tuple[int, int] | None]] = []
        # Published after each commit, read from the loop.
        self.committed_revision = head.current
        self.compact_revision = head.compact
        self._thread = threading.Thread(target=self._run, name="timoner-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, op: Op) -> asyncio.Future:
        future = self._loop.create_future()
        self._queue.put(_Queued(op, future))
        return future

    def stop(self) -> threading.Thread:
        """Ask the thread to finish the queued work and exit; join the returned thread."""
        self._queue.put(_STOP)
        return self._thread

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._apply(batch)  # type: ignore[arg-type]
        finally:
            self._conn.close()

    def _apply(self, batch: list[_Queued]) -> None:
        base_revision = self._revision
        base_compact = self._compact_revision
        outcomes: list[Outcome] = []
        conn = self._conn
        self._undo.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for item in batch:
                    try:
                        event = self._apply_one(item.op)
                    except StorageError as e:
                        outcomes.append(Outcome(item.future, error=e))
                    else:
                        result = event.kv if event is not None else None
                        outcomes.append(Outcome(item.future, result=result, event=event))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as e:  # the transaction failed as a whole: so does every operation in it
            self._revision = base_revision
            self._compact_revision = base_compact
            for key, entry in reversed(self._undo):
                if entry is None:
                    self._live.pop(key, None)
                else:
                    self._live[key] = entry
            error = StorageError(f"sqlite write failed: {e}")
            error.__cause__ = e
            outcomes = [Outcome(item.future, error=error) for item in batch]
        self.committed_revision = self._revision
        self.compact_revision = self._compact_revision
        try:
            self._loop.call_soon_threadsafe(self._deliver, outcomes, self._revision)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _current(self, key: str, entry: tuple[int, int]) -> KeyValue:
        (value,) = self._conn.execute(_VALUE_SQL, (entry[0],)).fetchone()
        return KeyValue(key=key, value=value, create_revision=entry[1], mod_revision=entry[0])

    def _expect(self, key: str, expected_revision: int) -> KeyValue:
        entry = self._live.get(key)
        if entry is None:
            raise KeyNotFound(key)
        if entry[0] != expected_revision:
            raise RevisionConflict(key, expected=expected_revision, current=self._current(key, entry))
        return self._current(key, entry)

    def _set_live(self, key: str, entry: tuple[int, int] | None) -> None:
        self._undo.append((key, self._live.get(key)))
        if entry is None:
            del self._live[key]
        else:
            self._live[key] = entry

    def _apply_one(self, op: Op) -> Event | None:
        """Apply one operation inside the open transaction; its result is the event's kv."""
        conn = self._conn
        if isinstance(op, Compact):
            self._compact(op.revision)
            return None
        rev = self._revision + 1
        if isinstance(op, Create):
            if op.key in self._live:
                raise KeyExists(op.key)
            kv = KeyValue(key=op.key, value=op.value, create_revision=rev, mod_revision=rev)
            conn.execute(_INSERT_SQL, (rev, op.key, 1, 0, rev, 0, op.value))
            self._set_live(op.key, (rev, rev))
            event = Event("ADDED", kv, None)
        elif isinstance(op, Update):
            prev = self._expect(op.key, op.expected_revision)
            kv = KeyValue(key=op.key, value=op.value, create_revision=prev.create_revision, mod_revision=rev)
            conn.execute(_INSERT_SQL, (rev, op.key, 0, 0, prev.create_revision, prev.mod_revision, op.value))
            self._set_live(op.key, (rev, prev.create_revision))
            event = Event("MODIFIED", kv, prev)
        else:
            prev = self._expect(op.key, op.expected_revision)
            kv = KeyValue(
                key=op.key, value=prev.value, create_revision=prev.create_revision, mod_revision=rev
            )
            conn.execute(
                _INSERT_SQL, (rev, op.key, 0, 1, prev.create_revision, prev.mod_revision, prev.value)
            )
            self._set_live(op.key, None)
            event = Event("DELETED", kv, prev)
        self._revision = rev
        return event

    def _compact(self, revision: int) -> None:
        if revision > self._revision:
            raise FutureRevision(requested=revision, current_revision=self._revision)
        if revision <= self._compact_revision:
            return
        self._conn.execute(_COMPACT_SQL, {"old": self._compact_revision, "new": revision})
        self._conn.execute(_SET_COMPACT_SQL, (revision,))
        self._compact_revision = revision
