"""Watch conformance: replay then live, in order, no gaps, no duplicates, on every driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from timoner.storage import Backend, Compacted, Event, KeyValue
from timoner.storage._watch import ReplayPage, WatchHub, watch_events

DEADLINE = 10.0


async def take(stream: AsyncIterator[Event], n: int) -> list[Event]:
    """The next n events, or fail after a deadline instead of hanging."""

    async def _take() -> list[Event]:
        return [await anext(stream) for _ in range(n)]

    return await asyncio.wait_for(_take(), DEADLINE)


async def take_until(stream: AsyncIterator[Event], revision: int) -> list[Event]:
    async def _take() -> list[Event]:
        out: list[Event] = []
        while not out or out[-1].revision < revision:
            out.append(await anext(stream))
        return out

    return await asyncio.wait_for(_take(), DEADLINE)


async def write_history(backend: Backend) -> list[Event]:
    """Seven writes of every kind over two prefixes, and the events they must produce."""
    a1 = await backend.create("/w/a", b"a1")
    x1 = await backend.create("/x/a", b"x1")
    a2 = await backend.update("/w/a", b"a2", expected_revision=a1.mod_revision)
    b1 = await backend.create("/w/b", b"b1")
    a_del = await backend.delete("/w/a", expected_revision=a2.mod_revision)
    x2 = await backend.update("/x/a", b"x2", expected_revision=x1.mod_revision)
    a3 = await backend.create("/w/a", b"a3")
    return [
        Event("ADDED", a1, None),
        Event("ADDED", x1, None),
        Event("MODIFIED", a2, a1),
        Event("ADDED", b1, None),
        Event("DELETED", a_del, a2),
        Event("MODIFIED", x2, x1),
        Event("ADDED", a3, None),
    ]


async def test_watch_replays_history_with_types_and_previous_values(backend: Backend) -> None:
    expected = await write_history(backend)
    stream = backend.watch("", from_revision=0)
    try:
        assert await take(stream, 7) == expected
    finally:
        await stream.aclose()
    deleted = expected[4]
    assert deleted.kv.value == b"a2" and deleted.revision == 5  # DELETED carries the last value


@pytest.mark.parametrize("from_revision", range(0, 8))
async def test_watch_resumes_from_any_retained_revision(backend: Backend, from_revision: int) -> None:
    expected = await write_history(backend)
    stream = backend.watch("", from_revision=from_revision)
    try:
        replayed = await take(stream, 7 - from_revision)
        live = await backend.create("/w/live", b"l")
        assert replayed == expected[from_revision:]
        assert await take(stream, 1) == [Event("ADDED", live, None)]
    finally:
        await stream.aclose()


@pytest.mark.parametrize(
    ("prefix", "revisions"),
    [("/w/", [1, 3, 4, 5, 7]), ("/x/", [2, 6]), ("/w/b", [4]), ("/", [1, 2, 3, 4, 5, 6, 7, 8])],
)
async def test_watch_filters_by_prefix(backend: Backend, prefix: str, revisions: list[int]) -> None:
    await write_history(backend)
    await backend.create("/wx/not-under-w", b"n")  # revision 8: "/w/" must not match "/wx/"
    last = await backend.create(prefix + "zz-live", b"l")
    stream = backend.watch(prefix, from_revision=0)
    try:
        events = await take(stream, len(revisions) + 1)
    finally:
        await stream.aclose()
    assert [e.revision for e in events] == [*revisions, last.mod_revision]
    assert all(e.kv.key.startswith(prefix) for e in events)


async def test_watch_is_gapless_while_writers_run(backend: Backend) -> None:
    for i in range(20):
        await backend.create(f"/g/pre{i}", b"x")
    stream = backend.watch("/g/", from_revision=5)

    async def writer(n: int) -> None:
        for i in range(30):
            kv = await backend.create(f"/g/w{n}-{i}", b"x")
            await backend.update(kv.key, b"y", expected_revision=kv.mod_revision)

    try:
        first = await take(stream, 3)  # the watch is now mid-replay when the writers start
        await asyncio.gather(*(writer(n) for n in range(4)))
        final = await backend.current_revision()
        rest = await take_until(stream, final)
    finally:
        await stream.aclose()
    revisions = [e.revision for e in first + rest]
    assert revisions == list(range(6, final + 1))  # strictly consecutive: no gap, no duplicate


async def test_watch_from_compacted_revision_raises_then_resumes_from_compaction_point(
    backend: Backend,
) -> None:
    expected = await write_history(backend)
    await backend.compact(4)
    stream = backend.watch("", from_revision=3)
    with pytest.raises(Compacted) as info:
        await anext(stream)
    assert (info.value.compact_revision, info.value.current_revision) == (4, 7)

    # From the compaction point itself, history is intact, previous values included.
    stream = backend.watch("", from_revision=4)
    try:
        assert await take(stream, 3) == expected[4:]
    finally:
        await stream.aclose()


async def test_watch_after_compaction_past_a_tombstone_replays_recreate_as_added(backend: Backend) -> None:
    expected = await write_history(backend)
    await backend.compact(5)  # forgets /w/a's tombstone at 5 and its value at 3
    stream = backend.watch("/w/", from_revision=5)
    try:
        assert await take(stream, 1) == [expected[6]]
    finally:
        await stream.aclose()


async def test_watch_ends_when_backend_closes(backend: Backend) -> None:
    await backend.create("/cl/a", b"x")
    stream = backend.watch("/cl/", from_revision=0)
    assert len(await take(stream, 1)) == 1
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await backend.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, DEADLINE)


async def test_closed_watch_stops_receiving(backend: Backend) -> None:
    stream = backend.watch("/s/", from_revision=0)
    pending = asyncio.ensure_future(anext(stream))
    kv = await backend.create("/s/a", b"x")
    assert (await asyncio.wait_for(pending, DEADLINE)).kv == kv
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    # Other watchers are unaffected, and new writes still flow.
    other = backend.watch("/s/", from_revision=kv.mod_revision)
    try:
        kv2 = await backend.update("/s/a", b"y", expected_revision=kv.mod_revision)
        assert [e.kv for e in await take(other, 1)] == [kv2]
    finally:
        await other.aclose()


# -- the hub's overflow path, driven directly with a tiny buffer ----------------


def _event(revision: int, key: str = "/k") -> Event:
    return Event("ADDED", KeyValue(key, b"", create_revision=revision, mod_revision=revision), None)


async def test_lagging_watcher_catches_up_from_the_log() -> None:
    log = [_event(r, f"/k/{r % 3}") for r in range(1, 101)]
    hub = WatchHub(0, max_buffer=4)
    replays: list[tuple[int, int]] = []

    async def replay(prefix: str, after: int, upto: int) -> ReplayPage:
        replays.append((after, upto))
        events = [e for e in log if after < e.revision <= upto and e.kv.key.startswith(prefix)][:5]
        through = events[-1].revision if len(events) == 5 else upto
        return ReplayPage(events=events, through=through)

    stream = watch_events(hub, replay, "/k/", from_revision=0)
    hub.publish(log[:10])
    got = [await anext(stream)]  # subscribed at revision 10, replays 1..10
    hub.publish(log[10:60])  # overflows the buffer of 4: the subscription is dropped
    hub.publish(log[60:100])
    got += await take(stream, 99)
    assert [e.revision for e in got] == list(range(1, 101))
    assert len(replays) > 3  # it went back to the log instead of buffering
    await stream.aclose()
    assert hub.subscriber_count == 0


async def test_hub_only_delivers_matching_prefixes() -> None:
    hub = WatchHub(0)

    async def no_history(prefix: str, after: int, upto: int) -> ReplayPage:
        return ReplayPage(events=[], through=upto)

    stream = watch_events(hub, no_history, "/a/", from_revision=0)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    hub.publish([_event(1, "/ab/x"), _event(2, "/a/x"), _event(3, "/b")])
    assert (await asyncio.wait_for(pending, DEADLINE)).revision == 2
    hub.close()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
