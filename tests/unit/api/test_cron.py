"""`timoner.api.cron`: robfig/cron's grammar and its Next, time zones and DST included."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timoner.api.cron import CronError, parse_schedule

UTC = dt.UTC
NY = zoneinfo.ZoneInfo("America/New_York")


def times(spec, start, n):
    schedule, out, t = parse_schedule(spec), [], start
    for _ in range(n):
        t = schedule.next(t)
        out.append(None if t is None else t.isoformat())
        if t is None:
            break
    return out


@pytest.mark.parametrize(("spec", "start", "expected"), [
    ("* * * * *", dt.datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC), ["2024-01-01T00:01:00+00:00", "2024-01-01T00:02:00+00:00"]),
    # Exactly on an activation: the next one is strictly later.
    ("*/15 * * * *", dt.datetime(2024, 1, 1, 0, 15, tzinfo=UTC), ["2024-01-01T00:30:00+00:00", "2024-01-01T00:45:00+00:00"]),
    ("*/15 9-17 * * mon-fri", dt.datetime(2024, 1, 5, 17, 40, tzinfo=UTC),
     ["2024-01-05T17:45:00+00:00", "2024-01-08T09:00:00+00:00"]),
    ("0 0 1 jan *", dt.datetime(2024, 6, 1, tzinfo=UTC), ["2025-01-01T00:00:00+00:00"]),
    ("5 4 * * sun", dt.datetime(2024, 1, 1, tzinfo=UTC), ["2024-01-07T04:05:00+00:00", "2024-01-14T04:05:00+00:00"]),
    ("0 12 29 2 *", dt.datetime(2024, 3, 1, tzinfo=UTC), ["2028-02-29T12:00:00+00:00"]),
    # Both day fields restricted: either matches (Jan 1 2024 is a Monday).
    ("0 0 1,15 * 1", dt.datetime(2024, 1, 1, tzinfo=UTC),
     ["2024-01-08T00:00:00+00:00", "2024-01-15T00:00:00+00:00", "2024-01-22T00:00:00+00:00"]),
    # `*/2` is not `*`: still either.
    ("0 0 */2 * 1", dt.datetime(2024, 1, 6, tzinfo=UTC), ["2024-01-07T00:00:00+00:00", "2024-01-08T00:00:00+00:00"]),
    # `*` in one day field: both must match.
    ("0 0 * * 1", dt.datetime(2024, 1, 2, tzinfo=UTC), ["2024-01-08T00:00:00+00:00"]),
    ("@hourly", dt.datetime(2024, 1, 1, 0, 30, tzinfo=UTC), ["2024-01-01T01:00:00+00:00"]),
    ("@weekly", dt.datetime(2024, 1, 1, tzinfo=UTC), ["2024-01-07T00:00:00+00:00"]),
    ("@every 90s", dt.datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
     ["2024-01-01T00:01:30+00:00", "2024-01-01T00:03:00+00:00"]),
    ("59 23 31 2 *", dt.datetime(2024, 1, 1, tzinfo=UTC), [None]),
])
def test_next(spec, start, expected):
    assert times(spec, start, len(expected)) == expected


def test_a_zone_in_the_schedule_wins_over_the_times_zone():
    assert times("TZ=Asia/Tokyo 0 9 * * *", dt.datetime(2024, 1, 1, tzinfo=UTC), 1) == ["2024-01-02T00:00:00+00:00"]
    assert times("CRON_TZ=Asia/Tokyo 0 9 * * *", dt.datetime(2024, 1, 1, tzinfo=NY), 1) == ["2024-01-01T19:00:00-05:00"]


def test_without_a_zone_the_schedule_reads_in_the_zone_of_the_time():
    assert times("0 9 * * *", dt.datetime(2024, 1, 1, 12, tzinfo=NY), 1) == ["2024-01-02T09:00:00-05:00"]


def test_spring_forward_skips_a_time_that_does_not_exist():
    # 2024-03-10 02:30 does not exist in New York; robfig (and so Kubernetes) skips that day.
    assert times("30 2 * * *", dt.datetime(2024, 3, 9, 12, tzinfo=NY), 2) == [
        "2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"]
    # An hourly schedule goes from 01:00 EST straight to 03:00 EDT, one hour later.
    assert times("0 * * * *", dt.datetime(2024, 3, 10, 0, 30, tzinfo=NY), 2) == [
        "2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00"]


def test_fall_back_runs_the_repeated_hour_twice():
    assert times("30 1 * * *", dt.datetime(2024, 11, 2, 12, tzinfo=NY), 3) == [
        "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00", "2024-11-04T01:30:00-05:00"]


def test_a_midnight_that_does_not_exist_is_skipped_like_any_gap():
    # Havana jumps from 00:00 to 01:00 on 2024-03-10: no midnight that day.
    havana = zoneinfo.ZoneInfo("America/Havana")
    assert times("0 0 * * *", dt.datetime(2024, 3, 8, 12, tzinfo=havana), 3) == [
        "2024-03-09T00:00:00-05:00", "2024-03-11T00:00:00-04:00", "2024-03-12T00:00:00-04:00"]


@pytest.mark.parametrize(("spec", "error"), [
    ("", "empty spec string"),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("* * * foo *", 'failed to parse int from foo: strconv.Atoi: parsing "foo": invalid syntax'),
    ("*/5/2 * * * *", "too many slashes: */5/2"),
    ("L * * * *", 'failed to parse int from L: strconv.Atoi: parsing "L": invalid syntax'),
    ("TZ=Mars/Olympus * * * * *", "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"),
    ("@every fortnight", 'failed to parse duration @every fortnight: time: invalid duration "fortnight"'),
])
def test_errors(spec, error):
    with pytest.raises(CronError) as exc:
        parse_schedule(spec)
    assert str(exc.value) == error


minutes = st.integers(0, 59)


@settings(max_examples=200, deadline=None)
@given(minute=minutes, step=st.integers(1, 30), start=st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(UTC)))
def test_next_is_later_matches_and_skips_nothing(minute, step, start):
    """The next time is after the start, on the schedule, and no activation lies between."""
    spec = f"{minute}/{step} * * * *"
    allowed = set(range(minute, 60, step))
    nxt = parse_schedule(spec).next(start)
    assert nxt is not None and nxt > start and nxt.second == 0 and nxt.minute in allowed
    probe = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while probe < nxt:
        assert probe.minute not in allowed
        probe += dt.timedelta(minutes=1)
