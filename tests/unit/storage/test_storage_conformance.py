"""Storage conformance: reads, writes, CAS, listing, history and compaction, on every driver."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from timoner.storage import (
    Backend,
    Compacted,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
)

# -- single-key semantics ---------------------------------------------------


async def test_empty_store_is_at_revision_zero(backend: Backend) -> None:
    assert await backend.current_revision() == 0
    assert await backend.compact_revision() == 0
    page = await backend.list("/")
    assert (page.items, page.revision, page.more) == ([], 0, False)
    assert await backend.count("/") == 0


async def test_create_get_update_delete_lifecycle(backend: Backend) -> None:
    created = await backend.create("/r/a", b"v1")
    assert created == KeyValue("/r/a", b"v1", create_revision=1, mod_revision=1)
    assert await backend.get("/r/a") == created
    assert await backend.current_revision() == 1

    updated = await backend.update("/r/a", b"v2", expected_revision=1)
    assert updated == KeyValue("/r/a", b"v2", create_revision=1, mod_revision=2)
    assert await backend.get("/r/a") == updated

    deleted = await backend.delete("/r/a", expected_revision=2)
    # The deleted value is the last one, stamped with the delete's revision.
    assert deleted == KeyValue("/r/a", b"v2", create_revision=1, mod_revision=3)
    assert await backend.current_revision() == 3
    with pytest.raises(KeyNotFound):
        await backend.get("/r/a")

    again = await backend.create("/r/a", b"v3")
    assert again == KeyValue("/r/a", b"v3", create_revision=4, mod_revision=4)


async def test_every_write_takes_the_next_revision_across_keys(backend: Backend) -> None:
    revisions = []
    for i in range(5):
        revisions.append((await backend.create(f"/k/{i}", b"x")).mod_revision)
    revisions.append((await backend.update("/k/0", b"y", expected_revision=1)).mod_revision)
    revisions.append((await backend.delete("/k/1", expected_revision=2)).mod_revision)
    assert revisions == list(range(1, 8))
    assert await backend.current_revision() == 7


@pytest.mark.parametrize(
    ("op", "error"),
    [
        ("create-existing", KeyExists),
        ("get-missing", KeyNotFound),
        ("update-missing", KeyNotFound),
        ("delete-missing", KeyNotFound),
        ("update-deleted", KeyNotFound),
        ("delete-deleted", KeyNotFound),
        ("update-stale", RevisionConflict),
        ("delete-stale", RevisionConflict),
        ("update-future", RevisionConflict),
    ],
)
async def test_write_errors(backend: Backend, op: str, error: type[Exception]) -> None:
    live = await backend.create("/e/live", b"1")
    live = await backend.update("/e/live", b"2", expected_revision=live.mod_revision)
    gone = await backend.create("/e/gone", b"1")
    await backend.delete("/e/gone", expected_revision=gone.mod_revision)
    before = await backend.current_revision()
    calls = {
        "create-existing": lambda: backend.create("/e/live", b"x"),
        "get-missing": lambda: backend.get("/e/nope"),
        "update-missing": lambda: backend.update("/e/nope", b"x", expected_revision=1),
        "delete-missing": lambda: backend.delete("/e/nope", expected_revision=1),
        "update-deleted": lambda: backend.update("/e/gone", b"x", expected_revision=gone.mod_revision),
        "delete-deleted": lambda: backend.delete("/e/gone", expected_revision=gone.mod_revision),
        "update-stale": lambda: backend.update("/e/live", b"x", expected_revision=1),
        "delete-stale": lambda: backend.delete("/e/live", expected_revision=1),
        "update-future": lambda: backend.update("/e/live", b"x", expected_revision=99),
    }
    with pytest.raises(error) as info:
        await calls[op]()
    if isinstance(info.value, RevisionConflict):
        assert info.value.current == live  # the caller can retry without another read
    # A failed write consumes no revision and changes nothing.
    assert await backend.current_revision() == before
    assert await backend.get("/e/live") == live


async def test_values_are_opaque_bytes(backend: Backend) -> None:
    blob = bytes(range(256)) * 40
    kv = await backend.create("/b/blob", blob)
    assert (await backend.get("/b/blob")).value == blob
    await backend.update("/b/blob", b"", expected_revision=kv.mod_revision)
    assert (await backend.get("/b/blob")).value == b""


async def test_concurrent_cas_writers_lose_no_update(backend: Backend) -> None:
    await backend.create("/counter", b"0")

    async def increment_many(times: int) -> int:
        conflicts = 0
        for _ in range(times):
            while True:
                kv = await backend.get("/counter")
                await asyncio.sleep(0)  # let the other writers interleave between read and write
                try:
                    await backend.update(
                        "/counter", str(int(kv.value) + 1).encode(), expected_revision=kv.mod_revision
                    )
                    break
                except RevisionConflict as e:
                    assert e.current is not None and e.current.mod_revision > kv.mod_revision
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(*(increment_many(25) for _ in range(20)))
    final = await backend.get("/counter")
    assert int(final.value) == 500
    assert final.mod_revision == 501
    assert sum(conflicts) > 0  # the writers really did race


async def test_concurrent_cas_on_one_revision_has_exactly_one_winner(backend: Backend) -> None:
    kv = await backend.create("/race", b"0")
    others = [backend.create(f"/other/{i}", b"x") for i in range(10)]
    racers = [backend.update("/race", str(i).encode(), expected_revision=kv.mod_revision) for i in range(10)]
    results = await asyncio.gather(*racers, *others, return_exceptions=True)
    race, rest = results[:10], results[10:]
    winners = [r for r in race if isinstance(r, KeyValue)]
    assert len(winners) == 1
    assert all(
        isinstance(r, RevisionConflict) and r.current == winners[0] for r in race if r is not winners[0]
    )
    assert all(isinstance(r, KeyValue) for r in rest)  # one CAS failing does not fail its neighbours
    assert await backend.get("/race") == winners[0]


# -- listing ------------------------------------------------------------------


async def test_list_is_sorted_and_prefix_isolated(backend: Backend) -> None:
    keys = ["/a/3", "/a/1", "/ab/1", "/a/2", "/a", "/b/1", "/a/1/sub", "/aa/x", "/a/\u00e9", "/a/z"]
    random.Random(7).shuffle(keys)
    for key in keys:
        await backend.create(key, key.encode())
    page = await backend.list("/a/")
    assert [kv.key for kv in page.items] == ["/a/1", "/a/1/sub", "/a/2", "/a/3", "/a/z", "/a/\u00e9"]
    assert all(kv.value == kv.key.encode() for kv in page.items)
    assert page.revision == len(keys) and not page.more
    assert await backend.count("/a/") == 6
    assert [kv.key for kv in (await backend.list("/ab/")).items] == ["/ab/1"]
    assert [kv.key for kv in (await backend.list("")).items] == sorted(keys)
    assert await backend.count("") == len(keys)


async def test_list_skips_deleted_keys(backend: Backend) -> None:
    for i in range(5):
        await backend.create(f"/d/{i}", b"x")
    await backend.delete("/d/1", expected_revision=2)
    await backend.delete("/d/3", expected_revision=4)
    assert [kv.key for kv in (await backend.list("/d/")).items] == ["/d/0", "/d/2", "/d/4"]
    assert await backend.count("/d/") == 3
    page = await backend.list("/d/", limit=2)
    assert [kv.key for kv in page.items] == ["/d/0", "/d/2"] and page.more
    page = await backend.list("/d/", limit=2, continue_from="/d/2")
    assert [kv.key for kv in page.items] == ["/d/4"] and not page.more


@pytest.mark.parametrize("limit", [1, 3, 7, 10, 11])
async def test_paging_at_fixed_revision_while_writes_continue(backend: Backend, limit: int) -> None:
    for i in range(10):
        await backend.create(f"/p/{i:02d}", f"v{i}".encode())
    await backend.create("/q/outside", b"x")
    snapshot = (await backend.list("/p/")).items

    first = await backend.list("/p/", limit=limit)
    pages = [first]
    step = 0
    while pages[-1].more:
        # Churn between pages: update, delete and create keys on both sides of the cursor.
        step += 1
        cursor = pages[-1].items[-1].key
        kv = await backend.get("/p/00")
        await backend.update("/p/00", f"churn{step}".encode(), expected_revision=kv.mod_revision)
        for victim in (await backend.list("/p/", continue_from=cursor, limit=1)).items:
            await backend.delete(victim.key, expected_revision=victim.mod_revision)
        await backend.create(f"/p/{step:02d}x", b"new")
        pages.append(await backend.list("/p/", limit=limit, continue_from=cursor, revision=first.revision))

    assert all(p.revision == first.revision for p in pages)
    assert all(len(p.items) <= limit for p in pages)
    assert [kv for p in pages for kv in p.items] == snapshot
    assert len(pages) == -(-10 // limit)  # ceil: the last page says there is no more


async def test_list_and_get_at_every_past_revision(backend: Backend) -> None:
    rng = random.Random(11)
    states: dict[int, dict[str, KeyValue]] = {0: {}}
    live: dict[str, KeyValue] = {}
    for _ in range(60):
        key = f"/h/{rng.randrange(6)}"
        if key not in live:
            live[key] = await backend.create(key, f"{rng.random()}".encode())
        elif rng.random() < 0.3:
            await backend.delete(key, expected_revision=live.pop(key).mod_revision)
        else:
            live[key] = await backend.update(
                key, f"{rng.random()}".encode(), expected_revision=live[key].mod_revision
            )
        states[await backend.current_revision()] = dict(live)

    for revision, state in states.items():
        if revision == 0:
            continue
        page = await backend.list("/h/", revision=revision)
        assert page.revision == revision
        assert page.items == [state[k] for k in sorted(state)]
        for i in range(6):
            key = f"/h/{i}"
            if key in state:
                assert await backend.get(key, revision=revision) == state[key]
            else:
                with pytest.raises(KeyNotFound):
                    await backend.get(key, revision=revision)


async def test_reads_from_the_future_are_refused(backend: Backend) -> None:
    await backend.create("/f/a", b"x")
    with pytest.raises(FutureRevision) as info:
        await backend.list("/f/", revision=2)
    assert (info.value.requested, info.value.current_revision) == (2, 1)
    with pytest.raises(FutureRevision):
        await backend.get("/f/a", revision=5)
    with pytest.raises(FutureRevision):
        await backend.compact(2)
    assert (await backend.list("/f/", revision=1)).revision == 1


# -- compaction ----------------------------------------------------------------


async def test_compaction_forgets_history_and_keeps_latest_values(backend: Backend) -> None:
    a = await backend.create("/c/a", b"a1")  # 1
    b = await backend.create("/c/b", b"b1")  # 2
    a = await backend.update("/c/a", b"a2", expected_revision=a.mod_revision)  # 3
    gone = await backend.create("/c/gone", b"g")  # 4
    await backend.delete("/c/gone", expected_revision=gone.mod_revision)  # 5
    a_at_5 = a
    a = await backend.update("/c/a", b"a3", expected_revision=a.mod_revision)  # 6

    await backend.compact(5)
    assert await backend.compact_revision() == 5
    assert await backend.current_revision() == 6

    for read in (
        lambda: backend.list("/c/", revision=4),
        lambda: backend.get("/c/a", revision=3),
        lambda: backend.list("/c/", limit=1, continue_from="/c/a", revision=1),
    ):
        with pytest.raises(Compacted) as info:
            await read()
        assert (info.value.compact_revision, info.value.current_revision) == (5, 6)

    # The compaction point itself stays readable, and so does everything after it.
    assert (await backend.list("/c/", revision=5)).items == [a_at_5, b]
    assert (await backend.list("/c/")).items == [a, b]
    assert await backend.get("/c/b", revision=5) == b
    with pytest.raises(KeyNotFound):
        await backend.get("/c/gone", revision=5)
    assert await backend.count("/c/") == 2

    # Compacting backwards is a no-op; writes continue from the same counter.
    await backend.compact(2)
    assert await backend.compact_revision() == 5
    assert (await backend.create("/c/new", b"n")).mod_revision == 7


async def test_compaction_of_everything_keeps_the_revision_counter(backend: Backend) -> None:
    kv = await backend.create("/z/a", b"1")
    await backend.delete("/z/a", expected_revision=kv.mod_revision)
    await backend.compact(2)
    assert await backend.current_revision() == 2
    page = await backend.list("/z/")
    assert (page.items, page.revision) == ([], 2)
    assert (await backend.create("/z/a", b"2")).mod_revision == 3


# -- tracing --------------------------------------------------------------------


async def test_each_operation_logs_one_trace_line(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="timoner.storage"):
        kv = await backend.create("/t/a", b"12345")
        await backend.get("/t/a")
        await backend.update("/t/a", b"123", expected_revision=kv.mod_revision)
        await backend.list("/t/")
    lines = [r.getMessage() for r in caplog.records if r.name == "timoner.storage"]
    assert lines == [
        "create key=/t/a size=5 revision=1",
        "get key=/t/a size=5 revision=1",
        "update key=/t/a size=3 revision=2",
        "list key=/t/ size=1 revision=2",
    ]
