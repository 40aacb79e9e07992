"""A checker for CronJob schedules, as strict as the `robfig/cron` parser upstream uses.

`cron_errors("*/5 * * * *")` returns `None` for a valid schedule, else the
error text `cron.ParseStandard` gives (`expected exactly 5 fields, found 3:
[* * *]`, `end of range (60) above maximum (59): 0-60`). Standard schedules
have five fields (minute, hour, day of month, month, day of week); month and
weekday accept three-letter names; `*` and `?` mean the whole range; `a-b`,
`a/n` and `a-b/n` work as in crontab; descriptors `@yearly`, `@annually`,
`@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <dur>`
are accepted. Only validation lives here; computing run times is the
CronJob controller's business.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass

__all__ = ["cron_errors"]


@dataclass(frozen=True, slots=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (_Bounds(0, 59), _Bounds(0, 23), _Bounds(1, 31), _Bounds(1, 12, _MONTHS), _Bounds(0, 6, _DAYS))
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_GO_DURATION = re.compile(r"[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+|0")
_GO_INT = re.compile(r"[+-]?[0-9]+")


class _CronError(ValueError):
    pass


def _atoi(expr: str) -> int:
    if not _GO_INT.fullmatch(expr):
        raise _CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    number = int(expr)
    if number < 0:
        raise _CronError(f"negative number ({number}) not allowed: {expr}")
    return number


def _int_or_name(expr: str, bounds: _Bounds) -> int:
    if bounds.names and expr.lower() in bounds.names:
        return bounds.names[expr.lower()]
    return _atoi(expr)


def _check_range(expr: str, bounds: _Bounds) -> None:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    if low_high[0] in ("*", "?"):
        start, end = bounds.low, bounds.high
    else:
        start = _int_or_name(low_high[0], bounds)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], bounds)
        else:
            raise _CronError(f"too many hyphens: {expr}")
    step = 1
    if len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
    elif len(range_and_step) > 2:
        raise _CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise _CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise _CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise _CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise _CronError(f"step of range should be a positive number: {expr}")


def _parse(spec: str) -> None:
    if not spec:
        raise _CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = head.split("=", 1)[1]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise _CronError(f"provided bad location {zone}: unknown time zone {zone}") from exc
        spec = spec.strip()
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            return
        if spec.startswith("@every "):
            duration = spec[len("@every "):]
            if not _GO_DURATION.fullmatch(duration):
                raise _CronError(f'failed to parse duration {spec}: time: invalid duration "{duration}"')
            return
        raise _CronError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise _CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    for expr, bounds in zip(fields, _FIELDS, strict=True):
        for part in expr.split(","):
            _check_range(part, bounds)


def cron_errors(schedule: str) -> str | None:
    """The parse error of a standard cron schedule, or None when it is valid."""
    try:
        _parse(schedule)
    except _CronError as exc:
        return str(exc)
    return None
