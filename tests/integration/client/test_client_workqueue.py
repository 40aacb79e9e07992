"""WorkQueue semantics with a fake clock: dedup, one worker per key, delays, backoff, token bucket, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from timoner.client import (
    BucketRateLimiter,
    ExponentialRateLimiter,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)


class FakeClock:
    """A `Clock` that moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        for at, fut in list(self._sleepers):
            if at <= self.t and not fut.done():
                fut.set_result(None)
        await _settle()


async def _settle() -> None:
    # Let woken tasks run; this yields to the loop, it does not wait for time to pass.
    for _ in range(10):
        await asyncio.sleep(0)


def _queue(clock: FakeClock) -> WorkQueue[str]:
    return WorkQueue(rate_limiter=default_controller_rate_limiter(clock=clock), clock=clock)


async def test_dedup_and_fifo():
    q = _queue(FakeClock())
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]


async def test_key_in_processing_is_deferred_until_done():
    q = _queue(FakeClock())
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while the first holds it
    second = asyncio.create_task(q.get())
    await _settle()
    assert not second.done()
    q.done("a")
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    assert len(q) == 0  # the two re-adds were one


async def test_done_without_readd_does_not_requeue():
    q = _queue(FakeClock())
    q.add("a")
    await q.get()
    q.done("a")
    assert len(q) == 0


async def test_add_after_waits_for_the_clock_and_earliest_wins():
    clock = FakeClock()
    q = _queue(clock)
    q.add_after("a", 10)
    q.add_after("a", 3)
    q.add_after("a", 5)
    getter = asyncio.create_task(q.get())
    await clock.advance(2.9)
    assert not getter.done()
    await clock.advance(0.1)
    assert getter.done() and getter.result() == "a"
    q.done("a")
    await clock.advance(10)
    assert len(q) == 0  # the later delays for "a" were superseded, not queued again


async def test_add_after_zero_is_immediate_and_merges_with_queued():
    clock = FakeClock()
    q = _queue(clock)
    q.add("a")
    q.add_after("a", 0)
    q.add_after("b", 1)
    await clock.advance(1)
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_rate_limited_backoff_doubles_and_forget_resets():
    clock = FakeClock()
    q = _queue(clock)
    for expected in (0.005, 0.01, 0.02):
        q.add_rate_limited("k")
        getter = asyncio.create_task(q.get())
        await clock.advance(expected - 0.001)
        assert not getter.done(), expected
        await clock.advance(0.001)
        assert getter.result() == "k"
        q.done("k")
    assert q.num_requeues("k") == 3
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    await clock.advance(0.005)
    assert len(q) == 1


def test_exponential_limiter_caps_at_max():
    limiter = ExponentialRateLimiter(0.005, 1000.0)
    delays = [limiter.when("x") for _ in range(30)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0 and max(delays) == 1000.0
    assert limiter.when("y") == 0.005  # per key
    for _ in range(2000):
        limiter.when("z")  # no overflow however many failures
    assert limiter.when("z") == 1000.0


def test_token_bucket_burst_then_qps():
    clock = FakeClock()
    bucket = BucketRateLimiter(10.0, 100, clock=clock)
    assert all(bucket.when(i) == 0 for i in range(100))
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)
    clock.t += 1.0  # ten tokens refill; two were already promised
    assert [bucket.when(i) for i in range(8)] == [0] * 8
    assert bucket.when("z") == pytest.approx(0.1)


async def test_overall_bucket_limits_many_distinct_keys():
    clock = FakeClock()
    q = _queue(clock)
    for i in range(110):
        q.add_rate_limited(f"k{i}")
    await clock.advance(0.005)
    assert len(q) == 100  # the burst
    await clock.advance(0.5)
    assert len(q) == 105  # then 10 a second


async def test_shutdown_drains_then_raises_and_wakes_waiters():
    q = _queue(FakeClock())
    waiting = asyncio.create_task(_queue_get_or_shutdown(q))
    other = _queue(FakeClock())
    other.add("a")
    other.add_after("late", 5)
    other.shutdown()
    other.add("b")
    assert await other.get() == "a"  # queued work is still handed out
    with pytest.raises(ShutDown):
        await other.get()
    q.shutdown()
    assert await asyncio.wait_for(waiting, 1) == "shutdown"


async def _queue_get_or_shutdown(q):
    try:
        return await q.get()
    except ShutDown:
        return "shutdown"


async def test_many_workers_never_share_a_key():
    q: WorkQueue[int] = WorkQueue()
    in_flight: set[int] = set()
    handled: list[int] = []
    clash = []

    async def worker():
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in in_flight:
                clash.append(key)
            in_flight.add(key)
            await asyncio.sleep(0)
            if len(handled) < 200:
                q.add(key)  # re-add while processing: must wait for done()
            handled.append(key)
            in_flight.discard(key)
            q.done(key)

    for i in range(5):
        q.add(i)
    workers = [asyncio.create_task(worker()) for _ in range(8)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(handled) < 200 or len(q):
        assert loop.time() < deadline
        await asyncio.sleep(0.001)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert clash == [] and set(handled) == {0, 1, 2, 3, 4}
