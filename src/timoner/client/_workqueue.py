"""A rate-limited work queue of keys, with client-go's workqueue semantics.

The rules that make controllers correct:

- **Dedup**: a key already waiting is not queued twice; many events for one
  object become one reconcile.
- **No concurrent processing of one key**: a key handed out by `get()` is
  "processing" until `done(key)`. Adding it meanwhile marks it dirty, and
  `done` puts it back, so the newest state is always reconciled, once,
  after the current attempt.
- **Delays**: `add_after(key, delay)` holds a key back (the earliest of
  several pending delays wins); `add_rate_limited(key)` delays it by the
  larger of a per-key exponential backoff (5 ms doubling up to 1000 s,
  reset by `forget(key)`) and an overall token bucket (10 qps, burst 100),
  client-go's `DefaultControllerRateLimiter`.
- **Shutdown**: `shutdown()` makes `add` a no-op and wakes every `get()`,
  which raises `ShutDown` once nothing is queued.

Time comes from a `Clock` (monotonic seconds and a sleep), so tests drive
the queue with a fake clock instead of waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

__all__ = [
    "BucketRateLimiter",
    "Clock",
    "ExponentialRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "RealClock",
    "ShutDown",
    "WorkQueue",
    "default_controller_rate_limiter",
]

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down and is empty: the worker should return."""


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait for it to pass."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The event loop's clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RateLimiter(Protocol[T]):
    """How long a key must wait before its next attempt."""

    def when(self, key: T) -> float: ...

    def forget(self, key: T) -> None: ...

    def num_requeues(self, key: T) -> int: ...


class ExponentialRateLimiter(Generic[T]):
    """Per-key backoff: `base * 2**failures`, capped at `max_delay`; `forget` resets a key."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[T, int] = {}

    def when(self, key: T) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Cap the exponent too: 2**huge would overflow a float long after the delay is capped.
        return min(self.max_delay, self.base * 2 ** min(failures, 62))

    def forget(self, key: T) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: T) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter(Generic[T]):
    """An overall token bucket (golang.org/x/time/rate): `qps` tokens a second, at most `burst` saved.

    Each `when` reserves a token, possibly in the future, and answers how
    long until it is due; reservations are never given back.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock | None = None) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, key: T) -> float:
        now = self._clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: T) -> None:
        pass

    def num_requeues(self, key: T) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """The longest delay any of several limiters asks for (each one is charged)."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        self.limiters = limiters

    def when(self, key: T) -> float:
        return max(limiter.when(key) for limiter in self.limiters)

    def forget(self, key: T) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: T) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)


def default_controller_rate_limiter(*, clock: Clock | None = None) -> MaxOfRateLimiter:
    """client-go's default: 5 ms doubling to 1000 s per key, and 10 qps with a burst of 100 overall."""
    return MaxOfRateLimiter(ExponentialRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100, clock=clock))


class WorkQueue(Generic[T]):
    """Keys to reconcile, each handed to one worker at a time; see the module docstring."""

    def __init__(self, *, rate_limiter: RateLimiter[T] | None = None, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or RealClock()
        self._limiter: RateLimiter[T] = rate_limiter or default_controller_rate_limiter(clock=self._clock)
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiting: list[tuple[float, int, T]] = []  # heap of (ready_at, seq, key)
        self._ready_at: dict[T, float] = {}
        self._seq = itertools.count()
        self._waiters: set[asyncio.Future[None]] = set()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys ready to be handed out now (delays that ran out count; keys in processing do not)."""
        # Delayed keys are promoted lazily, so bring the ready queue up to date first.
        self._promote_due()
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: T) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() requeues it
        self._queue.append(key)
        self._wake()

    def add_after(self, key: T, delay: float) -> None:
        """Add `key` once `delay` seconds have passed; an earlier pending delay for it wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self._clock.now() + delay
        current = self._ready_at.get(key)
        if current is not None and current <= ready_at:
            return
        self._ready_at[key] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._seq), key))
        self._wake()  # a sleeping get() may now have an earlier deadline

    def add_rate_limited(self, key: T) -> None:
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: T) -> None:
        """Stop tracking `key`'s failures (call after a successful reconcile)."""
        self._limiter.forget(key)

    def num_requeues(self, key: T) -> int:
        return self._limiter.num_requeues(key)

    def done(self, key: T) -> None:
        """Mark `key` processed; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        self._shutting_down = True
        self._waiting.clear()
        self._ready_at.clear()
        self._wake()

    async def get(self) -> T:
        """The next key to process; raises `ShutDown` when shut down and drained."""
        while True:
            self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
                return key
            if self._shutting_down:
                raise ShutDown()
            timeout = self._waiting[0][0] - self._clock.now() if self._waiting else None
            await self._wait(timeout)

    def _promote_due(self) -> None:
        now = self._clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, key = heapq.heappop(self._waiting)
            if self._ready_at.get(key) != ready_at:
                continue  # superseded by an earlier add_after for the same key
            del self._ready_at[key]
            self.add(key)

    async def _wait(self, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        sleeper = asyncio.ensure_future(self._clock.sleep(timeout)) if timeout is not None else None
        try:
            if sleeper is None:
                await waiter
            else:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(waiter)
            if sleeper is not None:
                sleeper.cancel()

    def _wake(self) -> None:
        # Wake every waiting get(); each re-checks the queue, so none can miss a key.
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
