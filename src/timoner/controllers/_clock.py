"""`WallClock`: a `timoner.client.Clock` that reads the time of day, for controllers that act on dates.

The work queue only needs a monotonic clock, but the Job, CronJob and
TTL-after-finished controllers compare `now` with timestamps the API server
wrote (startTime, lastScheduleTime, completionTime) and compute schedule
times from it, so they need epoch seconds. Giving them one `Clock` for both
the queue's delays and their own `now` lets a test swap in a fake clock
that moves the schedule and the requeues together.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["WallClock"]


class WallClock:
    """`now()` is `time.time()`; `sleep` is the event loop's."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
