"""Pure Job and CronJob arithmetic: indexes, failure backoff, pod failure policy, schedule times."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.cron import parse_schedule
from timoner.controllers._cronjob_util import (
    InvalidSchedule,
    Missed,
    job_name,
    most_recent_schedule_time,
    requeue_delay,
)
from timoner.controllers._job_util import (
    BackoffRecord,
    format_indexes,
    generate_name_with_index,
    is_pod_failed,
    match_pod_failure_policy,
    parse_indexes,
    remaining_backoff,
    set_condition,
)


def stamp(t):
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name="p", *, phase="Failed", exit_code=1, container="c", finished=1000, conditions=(), deleting=False):
    meta = {"name": name, "namespace": "ns", "creationTimestamp": stamp(0)}
    if deleting:
        meta["deletionTimestamp"] = stamp(finished)
    terminated = {"exitCode": exit_code, "finishedAt": stamp(finished)}
    return {"metadata": meta, "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": [
        {"name": container, "state": {"terminated": terminated}}]}}


# -- indexes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("indexes", "text"), [
    ([], ""), ([0], "0"), ([0, 1], "0-1"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3, 1, 2], "1-3"),
])
def test_format_indexes(indexes, text):
    assert format_indexes(indexes) == text


def test_parse_indexes_keeps_only_indexes_below_completions():
    assert parse_indexes("0-2,5,7-9", 8) == {0, 1, 2, 5, 7}
    assert parse_indexes("", 3) == set() and parse_indexes(None, 3) == set()
    assert parse_indexes("1,x,3", 5) == {1, 3}


@given(st.sets(st.integers(0, 200)))
def test_indexes_round_trip(indexes):
    assert parse_indexes(format_indexes(indexes), 201) == indexes


def test_generate_name_with_index_keeps_the_index_when_the_name_is_long():
    assert generate_name_with_index("job", 3) == "job-3-"
    long = generate_name_with_index("j" * 60, 12)
    assert len(long) == 58 and long.endswith("-12-")


# -- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "elapsed", "remaining"), [
    (0, 0, 0), (1, 0, 10), (1, 4, 6), (1, 11, 0), (2, 0, 20), (3, 5, 35), (6, 0, 320), (7, 0, 360), (30, 100, 260),
])
def test_remaining_backoff_doubles_from_10s_to_6min(failures, elapsed, remaining):
    assert remaining_backoff(failures, 1000.0, 1000.0 + elapsed) == remaining


def test_backoff_record_counts_failures_since_the_last_success():
    record = BackoffRecord().update([], [pod(finished=10), pod(finished=30)])
    assert record == BackoffRecord(2, 30.0)
    record = record.update([], [pod(finished=40)])
    assert record == BackoffRecord(3, 40.0)
    # A success resets, but failures that finished after it still count.
    record = record.update([pod(phase="Succeeded", exit_code=0, finished=50)], [pod(finished=45), pod(finished=60)])
    assert record == BackoffRecord(1, 60.0)
    assert record.update([pod(phase="Succeeded", exit_code=0, finished=70)], []) == BackoffRecord()
    assert record.update([], []) is record


def test_is_pod_failed_counts_deleted_pods_unless_only_failed_ones_are_replaced():
    running = {"metadata": {"deletionTimestamp": stamp(5)}, "status": {"phase": "Running"}}
    assert is_pod_failed(running, False) and not is_pod_failed(running, True)
    assert not is_pod_failed({"metadata": {"deletionTimestamp": stamp(5)}, "status": {"phase": "Succeeded"}}, False)
    assert is_pod_failed(pod(), True)


# -- pod failure policy -----------------------------------------------------------------------------

POLICY = {"rules": [
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}},
]}


@pytest.mark.parametrize(("failed", "expected"), [
    (pod(container="main", exit_code=42), ("FailJob", True, True)),
    (pod(container="side", exit_code=42), ("Count", True, False)),  # FailJob is for "main" only
    (pod(exit_code=1), (None, True, False)),  # no rule matches: counted
    (pod(exit_code=2), ("FailIndex", True, False)),
    (pod(exit_code=42, container="main", conditions=[{"type": "DisruptionTarget", "status": "True"}]),
     ("Ignore", False, False)),  # rules are tried in order
    (pod(exit_code=0, phase="Failed"), (None, True, False)),  # exit code 0 never matches onExitCodes
])
def test_match_pod_failure_policy(failed, expected):
    match = match_pod_failure_policy(POLICY, failed)
    assert (match.action, match.count_failed, match.message is not None) == expected


def test_fail_job_message_is_upstreams():
    match = match_pod_failure_policy(POLICY, pod("web-1", container="main", exit_code=42))
    assert match.message == "Container main for pod ns/web-1 failed with exit code 42 matching FailJob rule at index 1"
    on_condition = {"rules": [{"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue"}]}]}
    match = match_pod_failure_policy(on_condition, pod("x", conditions=[{"type": "ConfigIssue", "status": "True"}]))
    assert match.message == "Pod ns/x has condition ConfigIssue matching FailJob rule at index 0"


def test_no_policy_counts_every_failure():
    assert match_pod_failure_policy(None, pod()).count_failed


def test_set_condition_never_adds_false_and_rewrites_on_change():
    conditions = []
    assert not set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", 10)
    assert set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", 10)
    assert not set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", 20)
    assert set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", 30)
    assert conditions == [{"type": "Suspended", "status": "False", "reason": "JobResumed", "message": "Job resumed",
                           "lastProbeTime": stamp(30), "lastTransitionTime": stamp(30)}]


# -- CronJob schedule times --------------------------------------------------------------------------


def stepper(spec):
    schedule = parse_schedule(spec)

    def next_time(t):
        nxt = schedule.next(dt.datetime.fromtimestamp(t, dt.UTC))
        return None if nxt is None else nxt.timestamp()
    return next_time


T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()  # a Monday, 00:00


@pytest.mark.parametrize(("spec", "created", "last", "deadline", "now", "most_recent", "missed"), [
    # Nothing due yet.
    ("* * * * *", T0 + 10, None, None, T0 + 50, None, Missed.NONE),
    # The first time has come.
    ("* * * * *", T0 + 10, None, None, T0 + 61, T0 + 60, Missed.NONE),
    # Already handled (lastScheduleTime) and the next not yet due.
    ("* * * * *", T0, T0 + 60, None, T0 + 100, None, Missed.NONE),
    # Several missed: the latest wins.
    ("* * * * *", T0, None, None, T0 + 5 * 60 + 5, T0 + 300, Missed.FEW),
    # Over 100 missed.
    ("* * * * *", T0, None, None, T0 + 200 * 60 + 30, T0 + 200 * 60, Missed.MANY),
    # A deadline moves the earliest time: times older than it are never run.
    ("* * * * *", T0, None, 10, T0 + 200 * 60 + 30, None, Missed.NONE),
    ("* * * * *", T0, None, 10, T0 + 200 * 60 + 5, T0 + 200 * 60, Missed.NONE),
    # An irregular schedule (weekdays 6:30, 10:30, 14:30): the estimate from the first gap still finds the latest.
    ("30 6-16/4 * * 1-5", T0, None, None, T0 + 4 * 86400 + 15 * 3600, T0 + 4 * 86400 + 14.5 * 3600, Missed.FEW),
])
def test_most_recent_schedule_time(spec, created, last, deadline, now, most_recent, missed):
    times = most_recent_schedule_time(stepper(spec), created=created, last_scheduled=last,
                                      starting_deadline=deadline, now=now)
    assert (times.most_recent, times.missed) == (most_recent, missed)


def test_a_schedule_that_never_fires_is_invalid():
    with pytest.raises(InvalidSchedule):
        most_recent_schedule_time(stepper("59 23 31 2 *"), created=T0, last_scheduled=None, starting_deadline=None,
                                  now=T0 + 86400)


def test_requeue_delay_aims_just_after_the_next_time():
    assert requeue_delay(stepper("*/5 * * * *"), created=T0, last_scheduled=None, now=T0 + 60) == pytest.approx(240.1)
    # Once the due time is handled, the one after it.
    assert requeue_delay(stepper("*/5 * * * *"), created=T0, last_scheduled=T0 + 300,
                         now=T0 + 301) == pytest.approx(299.1)
    assert requeue_delay(stepper("59 23 31 2 *"), created=T0, last_scheduled=None, now=T0) is None


def test_job_name_is_minutes_since_the_epoch():
    assert job_name("nightly", T0 + 59) == f"nightly-{int(T0) // 60}"
