"""Pure CronJob arithmetic, as upstream's `cronjob/utils.go` states it: which scheduled time is due, and when to look again.

Times are epoch seconds; `next_time` is a schedule's "next activation after
t" (None when there is none), so the arithmetic does not care about zones.

- `most_recent_schedule_time`: from the later of the creation time and
  `lastScheduleTime` (and, when asked, `now - startingDeadlineSeconds`),
  the latest scheduled time not after `now`, and whether more than 100
  were missed (upstream warns "too many missed start times" then, and
  still runs the latest). Missed times are estimated from the gap between
  the first two, as upstream does, so a CronJob that was down for years
  costs a few schedule steps, not millions.
- `requeue_delay`: how long until the next scheduled time after the one
  just handled, plus upstream's 100 ms margin.
- `job_name`: `<cronjob>-<scheduled time in minutes since the epoch>`, the
  name that keeps one scheduled time from making two Jobs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["InvalidSchedule", "Missed", "ScheduleTimes", "job_name", "most_recent_schedule_time", "requeue_delay"]

NextTime = Callable[[float], float | None]
_MARGIN = 0.1  # upstream's nextScheduleDelta
_MANY_MISSED = 100


class InvalidSchedule(ValueError):
    """A schedule that parses but never fires twice (`59 23 31 2 *`)."""


class Missed(enum.Enum):
    NONE = 0
    FEW = 1
    MANY = 2


@dataclass(frozen=True, slots=True)
class ScheduleTimes:
    """What `most_recent_schedule_time` found."""

    earliest: float
    most_recent: float | None
    missed: Missed


def most_recent_schedule_time(next_time: NextTime, *, created: float, last_scheduled: float | None,
                              starting_deadline: int | None, now: float) -> ScheduleTimes:
    """The latest scheduled time in (earliest, now]; see the module docstring. Raises `InvalidSchedule`."""
    earliest = last_scheduled if last_scheduled is not None else created
    if starting_deadline is not None:
        earliest = max(earliest, now - starting_deadline)
    t1 = next_time(earliest)
    t2 = next_time(t1) if t1 is not None else None
    if t1 is not None and now < t1:
        return ScheduleTimes(earliest, None, Missed.NONE)
    if t1 is not None and t2 is not None and now < t2:
        return ScheduleTimes(earliest, t1, Missed.NONE)
    between = round(t2 - t1) if t1 is not None and t2 is not None else 0
    if t1 is None or between < 1:
        raise InvalidSchedule("time difference between two schedules is less than 1 second")
    missed_count = int(now - t1) // between + 1
    most_recent: float | None = None
    # Start two intervals early and let the schedule step: irregular schedules (`30 6-16/4 * * 1-5`)
    # do not fit a fixed interval.
    t: float | None = next_time(t1 + (missed_count - 2) * between)
    while t is not None and t <= now:
        most_recent = t
        t = next_time(t)
    missed = Missed.MANY if missed_count > _MANY_MISSED else Missed.FEW if missed_count > 0 else Missed.NONE
    return ScheduleTimes(earliest, most_recent, missed)


def requeue_delay(next_time: NextTime, *, created: float, last_scheduled: float | None, now: float) -> float | None:
    """Seconds until the controller should look at the CronJob again (upstream's nextScheduleTimeDuration)."""
    try:
        times = most_recent_schedule_time(next_time, created=created, last_scheduled=last_scheduled,
                                          starting_deadline=None, now=now)
        base = times.most_recent
        if base is None:
            base = times.earliest if times.missed is Missed.NONE else now
    except InvalidSchedule:
        base = now
    following = next_time(base)
    if following is None:
        return None
    return following + _MARGIN - now


def job_name(cronjob_name: str, scheduled: float) -> str:
    """`<name>-<minutes since the epoch>` (upstream's getJobName)."""
    return f"{cronjob_name}-{int(scheduled) // 60}"
