"""SQLite driver specifics: durability, reopen, group commit, file ownership; and open_backend."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from timoner.storage import (
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    MemoryBackend,
    SQLiteBackend,
    StorageError,
    open_backend,
)


async def test_reopen_keeps_state_history_and_revision_counter(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    a = await store.create("/r/a", b"a1")
    a = await store.update("/r/a", b"a2", expected_revision=a.mod_revision)
    b = await store.create("/r/b", b"b1")
    gone = await store.create("/r/gone", b"g")
    await store.delete("/r/gone", expected_revision=gone.mod_revision)
    await store.compact(2)
    before = await store.list("/r/")
    await store.close()

    store = await SQLiteBackend.open(path)
    try:
        assert await store.current_revision() == 5
        assert await store.compact_revision() == 2
        assert await store.list("/r/") == before
        assert await store.get("/r/a", revision=2) == a
        with pytest.raises(Compacted):
            await store.get("/r/a", revision=1)
        with pytest.raises(KeyNotFound):
            await store.get("/r/gone")
        c = await store.create("/r/c", b"c1")
        assert c.mod_revision == 6
        stream = store.watch("/r/", from_revision=2)
        events = [await anext(stream) for _ in range(4)]
        await stream.aclose()
        assert [(e.type, e.revision) for e in events] == [
            ("ADDED", 3),
            ("ADDED", 4),
            ("DELETED", 5),
            ("ADDED", 6),
        ]
        assert events[0] == Event("ADDED", b, None)
    finally:
        await store.close()


async def test_reopen_after_compacting_a_trailing_delete_keeps_the_counter(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    kv = await store.create("/t/a", b"x")
    await store.delete("/t/a", expected_revision=kv.mod_revision)
    await store.compact(2)  # no row at revision 2 survives
    await store.close()
    store = await SQLiteBackend.open(path)
    try:
        assert await store.current_revision() == 2
        assert (await store.create("/t/a", b"y")).mod_revision == 3
    finally:
        await store.close()


async def test_compaction_reclaims_superseded_rows_and_tombstones(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    try:
        a = await store.create("/c/a", b"1")  # 1
        a = await store.update("/c/a", b"2", expected_revision=a.mod_revision)  # 2
        b = await store.create("/c/b", b"1")  # 3
        await store.delete("/c/b", expected_revision=b.mod_revision)  # 4
        a = await store.update("/c/a", b"3", expected_revision=a.mod_revision)  # 5
        await store.update("/c/a", b"4", expected_revision=a.mod_revision)  # 6
        await store.compact(5)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as raw:
            ids = [r[0] for r in raw.execute("SELECT id FROM log ORDER BY id")]
            stored = raw.execute("SELECT value FROM meta WHERE key = 'compact_revision'").fetchone()[0]
        # Kept: /c/a as of 5 (the previous value of the event at 6) and the write at 6.
        assert ids == [5, 6]
        assert stored == 5
    finally:
        await store.close()


async def test_group_commit_stress_500_concurrent_creates_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    created = await asyncio.gather(*(store.create(f"/s/{i:04d}", f"v{i}".encode()) for i in range(500)))
    assert sorted(kv.mod_revision for kv in created) == list(range(1, 501))
    await store.close()

    store = await SQLiteBackend.open(path)
    try:
        page = await store.list("/s/")
        assert page.revision == 500
        assert [(kv.key, kv.value) for kv in page.items] == [
            (f"/s/{i:04d}", f"v{i}".encode()) for i in range(500)
        ]
        assert sorted(created, key=lambda kv: kv.key) == page.items
    finally:
        await store.close()


async def test_acknowledged_write_is_committed_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    try:
        kv = await store.create("/d/a", b"durable")
        # A separate connection, no help from the backend: the write is already committed.
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as other:
            row = other.execute("SELECT id, name, value FROM log WHERE name = ?", ("/d/a",)).fetchone()
        assert row == (kv.mod_revision, "/d/a", b"durable")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()


async def test_one_open_backend_per_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    with pytest.raises(StorageError, match="held by another"):
        await SQLiteBackend.open(path)
    await store.close()
    again = await SQLiteBackend.open(path)
    await again.close()


async def test_pending_writes_finish_before_close_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteBackend.open(path)
    writes = [asyncio.ensure_future(store.create(f"/p/{i}", b"x")) for i in range(50)]
    await asyncio.sleep(0)  # let every write reach the writer's queue
    await store.close()
    assert all(w.done() for w in writes)
    assert sorted(w.result().mod_revision for w in writes) == list(range(1, 51))
    with pytest.raises(StorageError, match="closed"):
        await store.create("/p/late", b"x")


async def test_large_prefix_listing_pages_through_everything(tmp_path: Path) -> None:
    store = await SQLiteBackend.open(tmp_path / "state.db")
    try:
        await asyncio.gather(*(store.create(f"/l/{i:05d}", b"x" * 100) for i in range(1200)))
        keys: list[str] = []
        page = await store.list("/l/", limit=500)
        keys += [kv.key for kv in page.items]
        while page.more:
            page = await store.list("/l/", limit=500, continue_from=keys[-1], revision=page.revision)
            keys += [kv.key for kv in page.items]
        assert keys == [f"/l/{i:05d}" for i in range(1200)]
        assert await store.count("/l/") == 1200
    finally:
        await store.close()


# -- open_backend ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "kind"),
    [("memory://", MemoryBackend), ("sqlite-url", SQLiteBackend), ("plain-path", SQLiteBackend)],
)
async def test_open_backend_picks_the_driver(tmp_path: Path, form: str, kind: type) -> None:
    path = tmp_path / "nested" / "state.db"
    url = {"memory://": "memory://", "sqlite-url": f"sqlite://{path}", "plain-path": str(path)}[form]
    store = await open_backend(url)
    try:
        assert isinstance(store, kind)
        await store.create("/o/a", b"x")
        if kind is SQLiteBackend:
            assert store.path == str(path)
            assert path.exists()
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["etcd://localhost:2379", "sqlite://", "mysql://db/x"])
async def test_open_backend_rejects_unknown_urls(url: str) -> None:
    with pytest.raises(ValueError):
        await open_backend(url)


class _FailingCommit:
    """Wraps the writer's connection so that the next COMMIT fails, as a full disk would."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self.armed = True

    def execute(self, sql, *args):
        if self.armed and sql == "COMMIT":
            self.armed = False
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


async def test_a_failed_batch_leaves_no_trace(tmp_path: Path) -> None:
    backend = await SQLiteBackend.open(str(tmp_path / "state.db"))
    try:
        a = await backend.create("/r/a", b"1")
        writer = backend._writer
        real = writer._conn
        writer._conn = _FailingCommit(real)
        with pytest.raises(StorageError):
            await backend.create("/r/b", b"2")
        writer._conn = real
        # Neither the revision counter nor the writer's index of live keys kept the failed write.
        assert await backend.current_revision() == a.mod_revision
        b = await backend.create("/r/b", b"2")
        assert b.mod_revision == a.mod_revision + 1
        updated = await backend.update("/r/a", b"3", expected_revision=a.mod_revision)
        assert updated.create_revision == a.create_revision
        with pytest.raises(KeyExists):
            await backend.create("/r/b", b"again")
    finally:
        await backend.close()
