"""In-process watch fan-out shared by every driver.

A driver publishes each committed batch of events to a :class:`WatchHub`, on
the event loop, in revision order. A watch is an async generator that

1. subscribes to the hub, which records ``start``: the last revision the hub
   has published (every later event will reach the subscription);
2. replays the driver's retained log for ``(from_revision, start]`` in pages,
   so there is no gap between history and live events;
3. yields live events from its buffer, skipping anything at or below the last
   revision it yielded, so there are no duplicates.

A consumer that falls ``max_buffer`` events behind is not allowed to grow
memory without bound: its buffer is dropped and marked lagged, and the
generator resubscribes and catches up from the driver's log (step 2) from the
last revision it yielded. If compaction has overtaken it meanwhile, the replay
raises :class:`Compacted` and the consumer relists, exactly like a fresh watch
from a compacted revision.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from ._types import Event

__all__ = ["ReplayPage", "WatchHub", "watch_events"]

REPLAY_PAGE = 512


@dataclass(frozen=True, slots=True)
class ReplayPage:
    """Retained events after some revision, and how far the driver has looked.

    ``through`` is the highest revision this page covers; the next page starts
    after it. It may exceed the last event's revision when other prefixes'
    writes were skipped.
    """

    events: list[Event]
    through: int


# replay(prefix, after, upto) -> the page of events in (after, upto] under prefix;
# raises Compacted when `after` is below the compact revision.
Replay = Callable[[str, int, int], Awaitable[ReplayPage]]


class _Lagged(Exception):
    """The subscription overflowed; the watcher must catch up from the log."""


class _Subscription:
    __slots__ = ("prefix", "start", "buffer", "waiter", "lagged", "closed")

    def __init__(self, prefix: str, start: int) -> None:
        self.prefix = prefix
        self.start = start
        self.buffer: deque[Event] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.lagged = False
        self.closed = False

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> Event | None:
        """The next live event; None once the backend has closed."""
        while not self.buffer:
            if self.closed:
                return None
            if self.lagged:
                raise _Lagged
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.buffer.popleft()


class WatchHub:
    """Delivers published events to every subscription whose prefix matches."""

    def __init__(self, revision: int, *, max_buffer: int = 10_000) -> None:
        self.revision = revision  # the last revision published
        self._max_buffer = max_buffer
        self._subs: set[_Subscription] = set()
        self._closed = False

    def subscribe(self, prefix: str) -> _Subscription:
        sub = _Subscription(prefix, self.revision)
        sub.closed = self._closed
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, events: Sequence[Event]) -> None:
        """Fan out events already committed, in revision order; call on the loop."""
        if not events:
            return
        self.revision = events[-1].revision
        for sub in self._subs:
            if sub.lagged:
                continue
            added = False
            for event in events:
                if event.kv.key.startswith(sub.prefix):
                    sub.buffer.append(event)
                    added = True
            if not added:
                continue
            if len(sub.buffer) > self._max_buffer:
                sub.buffer.clear()
                sub.lagged = True
            sub.wake()

    def advance(self, revision: int) -> None:
        """Record that everything up to ``revision`` is published, without events."""
        self.revision = max(self.revision, revision)

    def close(self) -> None:
        self._closed = True
        for sub in self._subs:
            sub.closed = True
            sub.wake()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)


async def watch_events(
    hub: WatchHub, replay: Replay, prefix: str, *, from_revision: int
) -> AsyncIterator[Event]:
    """Replay retained history after ``from_revision``, then follow live events."""
    last = from_revision
    while True:
        sub = hub.subscribe(prefix)
        try:
            # Always replay at least once: the first page also checks compaction.
            first = True
            while first or last < sub.start:
                first = False
                if sub.closed:
                    return
                page = await replay(prefix, last, max(last, sub.start))
                for event in page.events:
                    yield event
                last = max(last, page.through)
            while True:
                event = await sub.next()
                if event is None:
                    return
                if event.revision <= last:
                    continue
                yield event
                last = event.revision
        except _Lagged:
            continue
        finally:
            hub.unsubscribe(sub)
