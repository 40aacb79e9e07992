"""SQLite schema, connection setup and the synchronous read queries.

One table holds the whole log, kine style: row ``id`` is the revision, and a
key's current value is its row with the highest id (a ``deleted`` row is a
tombstone that still carries the last value). ``prev_revision`` links each
update and delete to the row it replaced; compaction follows those links.

The ``(name, id)`` index serves both "rows of one key" and "latest row of one
key at or below revision R" (one seek); a separate index on ``name`` alone
would be a prefix of it, costing a B-tree update per write for nothing.

:class:`Reader` runs every read on its own connection. Multi-statement reads
(anything that must agree with the current or compact revision) run inside one
deferred transaction, which in WAL mode is a consistent snapshot.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import lru_cache

from ._types import (
    Compacted,
    Event,
    EventType,
    FutureRevision,
    KeyNotFound,
    KeyValue,
    ListResult,
    prefix_end,
)
from ._watch import REPLAY_PAGE, ReplayPage

__all__ = ["Head", "Reader", "connect", "init_schema"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,          -- the revision of this write
    name TEXT NOT NULL,              -- the key
    created INTEGER NOT NULL,        -- 1 if this write created the key
    deleted INTEGER NOT NULL,        -- 1 if this write deleted the key (value = last value)
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,  -- id of the row this write replaced, 0 for a create
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('compact_revision', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);
"""

HEAD_SQL = "SELECT (SELECT MAX(id) FROM log), (SELECT value FROM meta WHERE key = 'compact_revision')"
LATEST_SQL = "SELECT id, deleted, create_revision, value FROM log WHERE name = ? ORDER BY id DESC LIMIT 1"
AT_SQL = (
    "SELECT id, deleted, create_revision, value FROM log WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1"
)
# Keep a row only if it is its key's newest row (at or below :rev) and not a tombstone.
_LIVE_AT = (
    " AND kv.id <= :rev AND kv.deleted = 0"
    " AND kv.id = (SELECT MAX(m.id) FROM log AS m WHERE m.name = kv.name AND m.id <= :rev)"
)
_LIVE = " AND kv.deleted = 0 AND kv.id = (SELECT MAX(m.id) FROM log AS m WHERE m.name = kv.name)"


def connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode; transactions are always explicit."""
    if readonly:
        uri = "file:" + path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    # FULL: in WAL mode every commit fsyncs the WAL, so an acknowledged write survives power loss.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA cache_size = -32000")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch the database to WAL mode (got {mode})")
    conn.executescript(_SCHEMA)


@dataclass(frozen=True, slots=True)
class Head:
    """The revisions one read snapshot sees."""

    current: int
    compact: int


def read_head(conn: sqlite3.Connection) -> Head:
    top, compact = conn.execute(HEAD_SQL).fetchone()
    # Compaction may forget the newest row (a tombstone), never the revision it consumed.
    return Head(current=max(top or 0, compact or 0), compact=compact or 0)


@lru_cache(maxsize=16)
def _range_sql(select: str, *, after: bool, bounded: bool, tail: str, join: str = "") -> str:
    """A query over the rows whose name is in [start, end) (or (start, end)); None end = unbounded."""
    where = ["kv.name > :start" if after else "kv.name >= :start"]
    if bounded:
        where.append("kv.name < :end")
    return f"{select} FROM log AS kv{join} WHERE {' AND '.join(where)}{tail}"


class Reader:
    """Synchronous reads on one connection; not safe for two threads at once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def get_latest(self, key: str) -> KeyValue:
        row = self.conn.execute(LATEST_SQL, (key,)).fetchone()
        if row is None or row[1]:
            raise KeyNotFound(key)
        return KeyValue(key=key, value=row[3], create_revision=row[2], mod_revision=row[0])

    def get_at(self, key: str, revision: int) -> KeyValue:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            _check_revision(read_head(conn), revision)
            row = conn.execute(AT_SQL, (key, revision)).fetchone()
        finally:
            conn.execute("COMMIT")
        if row is None or row[1]:
            raise KeyNotFound(key)
        return KeyValue(key=key, value=row[3], create_revision=row[2], mod_revision=row[0])

    def list(self, prefix: str, *, limit: int, continue_from: str | None, revision: int) -> ListResult:
        after = continue_from is not None and continue_from >= prefix
        end = prefix_end(prefix)
        sql = _range_sql(
            "SELECT kv.name, kv.value, kv.create_revision, kv.id",
            after=after,
            bounded=end is not None,
            tail=_LIVE_AT + " ORDER BY kv.name LIMIT :n",
        )
        conn = self.conn
        conn.execute("BEGIN")
        try:
            head = read_head(conn)
            at = head.current if revision <= 0 else _check_revision(head, revision)
            params = {
                "start": continue_from if after else prefix,
                "end": end,
                "rev": at,
                "n": limit + 1 if limit > 0 else -1,
            }
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.execute("COMMIT")
        more = limit > 0 and len(rows) > limit
        if more:
            del rows[limit:]
        items = [KeyValue(key=r[0], value=r[1], create_revision=r[2], mod_revision=r[3]) for r in rows]
        return ListResult(items=items, revision=at, more=more)

    def count(self, prefix: str) -> int:
        end = prefix_end(prefix)
        sql = _range_sql("SELECT COUNT(*)", after=False, bounded=end is not None, tail=_LIVE)
        return self.conn.execute(sql, {"start": prefix, "end": end}).fetchone()[0]

    def replay(self, prefix: str, after: int, upto: int) -> ReplayPage:
        end = prefix_end(prefix)
        sql = _range_sql(
            "SELECT kv.id, kv.name, kv.created, kv.deleted, kv.create_revision, kv.value,"
            " p.id, p.create_revision, p.value",
            after=False,
            bounded=end is not None,
            tail=" AND kv.id > :after AND kv.id <= :upto ORDER BY kv.id LIMIT :n",
            join=" LEFT JOIN log AS p ON p.id = kv.prev_revision",
        )
        conn = self.conn
        conn.execute("BEGIN")
        try:
            head = read_head(conn)
            if after < head.compact:
                raise Compacted(requested=after, compact_revision=head.compact, current_revision=head.current)
            params = {"start": prefix, "end": end, "after": after, "upto": upto, "n": REPLAY_PAGE}
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.execute("COMMIT")
        events = [_event(r) for r in rows]
        through = events[-1].revision if len(events) == REPLAY_PAGE else upto
        return ReplayPage(events=events, through=through)


def _event(row: tuple) -> Event:
    rev, name, created, deleted, create_rev, value, prev_id, prev_create, prev_value = row
    kv = KeyValue(key=name, value=value, create_revision=create_rev, mod_revision=rev)
    prev = None
    if prev_id is not None:
        prev = KeyValue(key=name, value=prev_value, create_revision=prev_create, mod_revision=prev_id)
    kind: EventType = "DELETED" if deleted else "ADDED" if created else "MODIFIED"
    return Event(kind, kv, prev)


def _check_revision(head: Head, revision: int) -> int:
    if revision < head.compact:
        raise Compacted(requested=revision, compact_revision=head.compact, current_revision=head.current)
    if revision > head.current:
        raise FutureRevision(requested=revision, current_revision=head.current)
    return revision
