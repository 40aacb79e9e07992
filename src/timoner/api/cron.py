"""Cron schedules as upstream reads them: `robfig/cron/v3`'s `ParseStandard` and its `Next`.

`parse_schedule("*/5 * * * *")` returns a `Schedule` whose `next(t)` is the
first activation strictly after `t` (an aware datetime), or None when none
comes within five years (`59 23 31 2 *`). Malformed schedules raise
`CronError` with the parser's own words (`expected exactly 5 fields, found
3: [* * *]`), which the API server puts in its 422s.

What the grammar is: five fields (minute, hour, day of month, month, day of
week); month and weekday take three-letter names; `*` and `?` mean the
whole range; `a-b`, `a/n` (`a` to the end) and `a-b/n`; comma lists; the
descriptors `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/
`@midnight`, `@hourly` and `@every <Go duration>`; an optional `TZ=<zone> `
or `CRON_TZ=<zone> ` prefix. Weekdays are 0-6 (no 7), there are no seconds,
years, `L`, `W` or `#`: what the Go parser refuses, this one refuses.

Why not a library: croniter and cronsim each differ from robfig where users
notice. robfig matches day-of-month *or* day-of-week only when neither field
starts with `*` (and `*/2` does not count as `*`); it computes in the
schedule's zone by adding absolute hours, so a time in a spring-forward gap
is skipped and one in the repeated autumn hour fires twice. Kubernetes users
get exactly that, so Timoner does too. Without a zone the schedule is read
in the zone of the time passed to `next` (Go's `time.Local` rule).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

__all__ = ["CronError", "Schedule", "parse_schedule"]

_UTC = dt.UTC
_STAR = 1 << 63  # the field was `*` or `?` (robfig's starBit)


class CronError(ValueError):
    """A schedule the Go parser would refuse; the message is its error text."""


@dataclass(frozen=True, slots=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_MINUTE, _HOUR, _DOM = _Bounds(0, 59), _Bounds(0, 23), _Bounds(1, 31)
_MONTH, _DOW = _Bounds(1, 12, _MONTHS), _Bounds(0, 6, _DAYS)
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_INT = re.compile(r"[+-]?[0-9]+")


def _bits(low: int, high: int, step: int = 1) -> int:
    out = 0
    for i in range(low, high + 1, step):
        out |= 1 << i
    return out


def _all(bounds: _Bounds) -> int:
    return _bits(bounds.low, bounds.high) | _STAR


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: a bit set per field (robfig's SpecSchedule), or a constant delay for `@every`.

    `location` None means "the zone of the time given to `next`".
    """

    minute: int = 0
    hour: int = 0
    dom: int = 0
    month: int = 0
    dow: int = 0
    location: dt.tzinfo | None = None
    every: float = 0.0  # seconds, for `@every`

    def next(self, t: dt.datetime) -> dt.datetime | None:
        """The first activation after `t` (aware), in `t`'s zone; None if there is none within five years."""
        if t.tzinfo is None:
            raise ValueError("next needs an aware datetime")
        if self.every:
            return _add(t.replace(microsecond=0), self.every).astimezone(t.tzinfo)
        result = _next_spec(self, t.astimezone(self.location or t.tzinfo))
        return None if result is None else result.astimezone(t.tzinfo)


# -- time arithmetic as Go does it ------------------------------------------------------------


def _add(t: dt.datetime, seconds: float) -> dt.datetime:
    """Absolute addition (Go's t.Add); Python's aware `+` would add wall-clock time."""
    return (t.astimezone(_UTC) + dt.timedelta(seconds=seconds)).astimezone(t.tzinfo)


def _offset_at(unix: float, loc: dt.tzinfo) -> float:
    offset = dt.datetime.fromtimestamp(unix, _UTC).astimezone(loc).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _go_date(year: int, month: int, day: int, hour: int, minute: int, second: int, loc: dt.tzinfo) -> dt.datetime:
    """Go's time.Date: out-of-range months and days roll over; a wall time in a gap or overlap
    resolves as Go resolves it (look up the offset at the wall time read as UTC, then correct once).
    """
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    naive = dt.datetime(year, month, 1) + dt.timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second)
    unix = naive.replace(tzinfo=_UTC).timestamp()
    offset = _offset_at(unix, loc)
    if offset:
        corrected = _offset_at(unix - offset, loc)
        unix -= corrected
    return dt.datetime.fromtimestamp(unix, _UTC).astimezone(loc)


def _weekday(t: dt.datetime) -> int:
    return (t.weekday() + 1) % 7  # Go: Sunday is 0


def _day_matches(s: Schedule, t: dt.datetime) -> bool:
    dom_match = bool((1 << t.day) & s.dom)
    dow_match = bool((1 << _weekday(t)) & s.dow)
    if s.dom & _STAR or s.dow & _STAR:
        return dom_match and dow_match
    return dom_match or dow_match


def _next_spec(s: Schedule, t: dt.datetime) -> dt.datetime | None:  # noqa: C901 - robfig's loop, kept whole
    loc = t.tzinfo
    assert loc is not None
    # The earliest candidate is the next whole second.
    t = _add(t.replace(microsecond=0), 1)
    added = False
    year_limit = t.year + 5
    while True:  # WRAP
        if t.year > year_limit:
            return None
        wrapped = False
        while not (1 << t.month) & s.month:
            if not added:
                added = True
                t = _go_date(t.year, t.month, 1, 0, 0, 0, loc)
            t = _go_date(t.year, t.month + 1, t.day, t.hour, t.minute, t.second, loc)
            if t.month == 1:
                wrapped = True
                break
        if wrapped:
            continue
        while not _day_matches(s, t):
            if not added:
                added = True
                t = _go_date(t.year, t.month, t.day, 0, 0, 0, loc)
            t = _go_date(t.year, t.month, t.day + 1, t.hour, t.minute, t.second, loc)
            # Where DST moves midnight, land back on it.
            if t.hour != 0:
                t = _add(t, (24 - t.hour) * 3600) if t.hour > 12 else _add(t, -t.hour * 3600)
            if t.day == 1:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << t.hour) & s.hour:
            if not added:
                added = True
                t = _go_date(t.year, t.month, t.day, t.hour, 0, 0, loc)
            t = _add(t, 3600)
            if t.hour == 0:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << t.minute) & s.minute:
            if not added:
                added = True
                t = _add(t, -t.second)
            t = _add(t, 60)
            if t.minute == 0:
                wrapped = True
                break
        if wrapped:
            continue
        # A standard schedule's seconds field is 0: round up to the minute and check everything again.
        if t.second != 0:
            added = True
            t = _add(t, 60 - t.second)
            continue
        return t


# -- parsing ---------------------------------------------------------------------------------


def _atoi(expr: str) -> int:
    if not _GO_INT.fullmatch(expr):
        raise CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    number = int(expr)
    if number < 0:
        raise CronError(f"negative number ({number}) not allowed: {expr}")
    return number


def _int_or_name(expr: str, bounds: _Bounds) -> int:
    if bounds.names and expr.lower() in bounds.names:
        return bounds.names[expr.lower()]
    return _atoi(expr)


def _range(expr: str, bounds: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    extra = 0
    if low_high[0] in ("*", "?"):
        start, end, extra = bounds.low, bounds.high, _STAR
    else:
        start = _int_or_name(low_high[0], bounds)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], bounds)
        else:
            raise CronError(f"too many hyphens: {expr}")
    step = 1
    if len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
        if step > 1:
            extra = 0
    elif len(range_and_step) > 2:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _field(expr: str, bounds: _Bounds) -> int:
    bits = 0
    for part in expr.split(","):
        bits |= _range(part, bounds)
    return bits


def _go_duration(text: str) -> float:
    """Seconds in a Go duration (`1h30m`, `-5s`, `0`); raises CronError as time.ParseDuration fails."""
    body = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _GO_DURATION_PART.match(body, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise CronError(f'failed to parse duration @every {text}: time: invalid duration "{text}"')
    return sign * total


_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def parse_schedule(spec: str) -> Schedule:
    """Parse a standard cron schedule (see the module docstring); raises `CronError`."""
    if not spec:
        raise CronError("empty spec string")
    location: dt.tzinfo | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = head.split("=", 1)[1]
        try:
            location = zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(f"provided bad location {zone}: unknown time zone {zone}") from exc
        spec = spec.strip()
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            spec = _DESCRIPTORS[spec]
        elif spec.startswith("@every "):
            seconds = _go_duration(spec[len("@every "):])
            # robfig's Every: at least a second, whole seconds.
            return Schedule(location=location, every=float(max(1, int(seconds))))
        else:
            raise CronError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    return Schedule(minute=_field(fields[0], _MINUTE), hour=_field(fields[1], _HOUR), dom=_field(fields[2], _DOM),
                    month=_field(fields[3], _MONTH), dow=_field(fields[4], _DOW), location=location)
