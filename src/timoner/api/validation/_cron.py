"""A checker for CronJob schedules: the parse error `timoner.api.cron` (robfig/cron's grammar) gives, or None.

`cron_errors("*/5 * * * *")` is None; `cron_errors("* * *")` is `expected
exactly 5 fields, found 3: [* * *]`, the text upstream's 422 carries. The
CronJob controller computes run times with the same parser, so what
validation accepts is exactly what the controller can run.
"""

from __future__ import annotations

from timoner.api.cron import CronError, parse_schedule

__all__ = ["cron_errors"]


def cron_errors(schedule: str) -> str | None:
    """The parse error of a standard cron schedule, or None when it is valid."""
    try:
        parse_schedule(schedule)
    except CronError as exc:
        return str(exc)
    return None
