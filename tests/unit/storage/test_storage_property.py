"""Property: any sequence of operations gives identical observable results on every driver.

The memory driver is the reference. Each generated operation is resolved to
concrete arguments from the reference's state (so CAS writes hit both the
fresh and the stale revision paths), then applied to both drivers; every
outcome, every listing at every retained revision, and the watch stream from
the compaction point must agree. A driver-independent invariant is checked
too: the watch stream replayed from the compaction point, applied to the
compacted state, rebuilds the latest state.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timoner.storage import Backend, Event, KeyValue, MemoryBackend, SQLiteBackend, StorageError

KEYS = ["/a/1", "/a/2", "/ab/1", "/b/1"]
PREFIXES = ["/a/", "/ab", "/", "/b/", ""]


@dataclass(frozen=True)
class Op:
    verb: str
    key: int = 0
    value: bytes = b""
    fresh: bool = True  # use the key's current revision (else a stale or bogus one)
    fraction: float = 1.0  # where between the compact and current revision to read or compact
    limit: int = 0


ops = st.one_of(
    st.builds(Op, verb=st.just("create"), key=st.integers(0, 3), value=st.binary(max_size=8)),
    st.builds(
        Op, verb=st.just("update"), key=st.integers(0, 3), value=st.binary(max_size=8), fresh=st.booleans()
    ),
    st.builds(Op, verb=st.just("delete"), key=st.integers(0, 3), fresh=st.booleans()),
    st.builds(Op, verb=st.just("compact"), fraction=st.floats(0, 1)),
    st.builds(Op, verb=st.just("get"), key=st.integers(0, 3), fraction=st.floats(0, 1.2)),
    st.builds(
        Op, verb=st.just("list"), key=st.integers(0, 4), fraction=st.floats(0, 1.2), limit=st.integers(0, 3)
    ),
)


async def _resolve(ref: MemoryBackend, op: Op) -> tuple:
    """Concrete call arguments, chosen from the reference's observable state."""
    current, compacted = await ref.current_revision(), await ref.compact_revision()
    revision = compacted + round(op.fraction * (current - compacted))
    if op.verb in ("update", "delete"):
        try:
            mod = (await ref.get(KEYS[op.key])).mod_revision
        except StorageError:
            mod = 1
        return (KEYS[op.key], mod if op.fresh else mod - 1)
    if op.verb == "compact":
        return (revision,)
    if op.verb == "get":
        return (KEYS[op.key], revision - 1 if op.fraction < 0.1 else revision)
    if op.verb == "list":
        return (PREFIXES[op.key], op.limit, revision)
    return (KEYS[op.key],)


async def _apply(store: Backend, op: Op, args: tuple) -> object:
    try:
        match op.verb:
            case "create":
                return await store.create(args[0], op.value)
            case "update":
                return await store.update(args[0], op.value, expected_revision=args[1])
            case "delete":
                return await store.delete(args[0], expected_revision=args[1])
            case "compact":
                return await store.compact(args[0])
            case "get":
                return await store.get(args[0], revision=args[1])
            case _:
                return await store.list(args[0], limit=args[1], revision=args[2])
    except StorageError as e:
        # Compare what a caller can see: the error type and the value a conflict carries.
        return (type(e).__name__, getattr(e, "current", None))


async def _observe(store: Backend) -> tuple:
    current, compacted = await store.current_revision(), await store.compact_revision()
    listings = [await store.list("", revision=r) for r in range(max(compacted, 1), current + 1)]
    events: list[Event] = []
    if current > compacted:
        stream = store.watch("", from_revision=compacted)
        while not events or events[-1].revision < current:
            # A short deadline: a missing event must fail fast, even while hypothesis shrinks.
            events.append(await asyncio.wait_for(anext(stream), 2))
        await stream.aclose()
    return current, compacted, listings, events, await store.count("/")


def _rebuild(base: list[KeyValue], events: list[Event]) -> list[KeyValue]:
    state = {kv.key: kv for kv in base}
    for e in events:
        if e.type == "DELETED":
            assert state.pop(e.kv.key) == e.prev
        else:
            assert state.get(e.kv.key) == e.prev
            state[e.kv.key] = e.kv
    return [state[k] for k in sorted(state)]


async def _run(sequence: list[Op], directory: str) -> None:
    ref = MemoryBackend()
    other = await SQLiteBackend.open(f"{directory}/state.db")
    try:
        for op in sequence:
            args = await _resolve(ref, op)
            expected = await _apply(ref, op, args)
            assert await _apply(other, op, args) == expected, (op, args)
        observed = await _observe(ref)
        assert await _observe(other) == observed
        current, compacted, listings, events, _ = observed
        if compacted and current > compacted:
            assert _rebuild(listings[0].items, events) == listings[-1].items
    finally:
        await ref.close()
        await other.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=40))
def test_drivers_agree_on_every_sequence(sequence: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run(sequence, directory))
