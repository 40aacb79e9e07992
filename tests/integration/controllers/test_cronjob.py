"""The CronJob controller against a real API server, on a fake clock; its Jobs run for real on a hollow node.

The fake clock starts at the real time (the server stamps creationTimestamp
with it) and moves only when a test says, so "the next minute" comes at
once. Both the controller's `now` and its work queue's delays follow it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from controller_helpers import events_for

from timoner.api.errors import Invalid
from timoner.client import resource_for
from timoner.controllers import Manager, new_cronjob_controller, new_job_controller
from timoner.testing import eventually

CRONJOBS = resource_for("batch/v1", "CronJob")
JOBS = resource_for("batch/v1", "Job")


class FakeClock:
    """Epoch seconds that move only when told to; sleepers wake when their time comes."""

    def __init__(self, t: float) -> None:
        self.t = t
        self._sleepers: list[tuple[float, asyncio.Future]] = []
        self.controller = None  # the CronJob controller running on this clock

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> asyncio.Future:
        # A plain function returning a future, not a coroutine: the wake-up time is taken when the
        # queue asks to sleep, not when the loop first runs the sleeper, which may be after a move.
        fut = asyncio.get_running_loop().create_future()
        self._sleepers = [(at, f) for at, f in self._sleepers if not f.done()]
        self._sleepers.append((self.t + seconds, fut))
        return fut

    async def advance_to(self, t: float) -> None:
        """Move to `t` once the CronJob controller is idle.

        A reconcile that read the clock before a move would queue its requeue
        relative to the time after it, and wait for a time that never comes.
        """
        queue = self.controller.queue
        # The queue has no public "busy": its private set of keys being processed says it.
        await eventually(lambda: not len(queue) and not queue._processing, 30, "the CronJob controller idle")
        self.t = t
        for at, fut in list(self._sleepers):
            if at <= t and not fut.done():
                fut.set_result(None)


def next_minute(t: float, plus: float = 1.0) -> float:
    return (int(t) // 60 + 1) * 60 + plus


@pytest.fixture
async def cron(bare):
    """A hollow node, the scheduler, a real Job controller and a CronJob controller on a fake clock (UTC)."""
    await bare.start_node()
    bare.start_scheduler()
    clock = FakeClock(time.time())
    manager = Manager(bare.client, leader_election=False)
    manager.add(new_job_controller(bare.client, manager.informers))
    clock.controller = manager.add(new_cronjob_controller(bare.client, manager.informers, clock=clock, zone=dt.UTC))
    bare.tasks["manager"] = asyncio.create_task(manager.run())
    await asyncio.wait_for(manager.leading.wait(), 30)
    return clock


async def create(cron, client, namespace, *bodies):
    """Create CronJobs and wait until the controller has looked at each once.

    Only then may the fake clock move: a reconcile that read the clock before
    a move would queue its requeue relative to the time after it.
    """
    before = cron.controller.reconciles
    for body in bodies:
        await client.create(CRONJOBS, body, namespace=namespace)

    def seen():
        return cron.controller.reconciles >= before + len(bodies) and len(cron.controller.queue) == 0
    await eventually(seen, 30, "the controller to see the new CronJobs")


def cronjob(name, schedule="* * * * *", *, exit_after="200ms", exit_code=0, **spec):
    pod = {"metadata": {"annotations": {"timoner.dev/hollow-exit-after": exit_after,
                                        "timoner.dev/hollow-exit-code": str(exit_code)}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1}}
    body = {"schedule": schedule, "jobTemplate": {"metadata": {"labels": {"from": name}},
                                                  "spec": {"template": pod, "backoffLimit": 0}}}
    body.update(spec)
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": body}


async def _jobs(client, namespace):
    return sorted((await client.list(JOBS, namespace=namespace))["items"], key=lambda j: j["metadata"]["name"])


def _done(job):
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


async def test_a_job_per_scheduled_minute_named_after_it(cron, client, namespace, eventually):
    await create(cron, client, namespace, cronjob("tick"))
    await asyncio.sleep(0.5)
    assert await _jobs(client, namespace) == []  # nothing is due before the next minute
    due = next_minute(cron.now(), plus=0)
    await cron.advance_to(due + 1)

    async def one_job():
        jobs = await _jobs(client, namespace)
        return len(jobs) == 1 and jobs[0]
    job = await eventually(one_job, 30, "the Job of the first minute")
    cj = await client.get(CRONJOBS, "tick", namespace=namespace)
    assert job["metadata"]["name"] == f"tick-{int(due) // 60}"
    stamp = dt.datetime.fromtimestamp(due, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == stamp
    assert job["metadata"]["labels"] == {"from": "tick"}
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("CronJob", "tick", cj["metadata"]["uid"], True)

    async def completed():
        cj = await client.get(CRONJOBS, "tick", namespace=namespace)
        s = cj.get("status") or {}
        return s.get("lastSuccessfulTime") and not s.get("active") and s
    status = await eventually(completed, 60, "the CronJob to see its Job complete")
    assert status["lastScheduleTime"] == stamp
    reasons = [e[1] for e in await events_for(client, namespace, "tick")]
    assert "SuccessfulCreate" in reasons and "SawCompletedJob" in reasons

    await cron.advance_to(due + 61)

    async def two_jobs():
        return len(await _jobs(client, namespace)) == 2
    await eventually(two_jobs, 30, "the Job of the second minute")


async def test_forbid_skips_while_a_job_runs_and_replace_swaps_it(cron, client, namespace, eventually):
    await create(cron, client, namespace, cronjob("solo", exit_after="1h", concurrencyPolicy="Forbid"),
                 cronjob("swap", exit_after="1h", concurrencyPolicy="Replace"))
    first = next_minute(cron.now(), plus=0)
    await cron.advance_to(first + 1)

    async def both_started():
        jobs = await _jobs(client, namespace)
        return len(jobs) == 2 and jobs
    await eventually(both_started, 30, "a Job for each CronJob")
    await cron.advance_to(first + 61)

    async def replaced():
        names = [j["metadata"]["name"] for j in await _jobs(client, namespace)
                 if not j["metadata"].get("deletionTimestamp")]
        return sorted(names) == sorted([f"solo-{int(first) // 60}", f"swap-{int(first) // 60 + 1}"]) and names
    await eventually(replaced, 30, "Replace to swap its Job and Forbid to keep its own")

    async def forbid_event():
        return any(e[1] == "JobAlreadyActive" for e in await events_for(client, namespace, "solo"))
    await eventually(forbid_event, 30, "a JobAlreadyActive event")
    swap = await client.get(CRONJOBS, "swap", namespace=namespace)
    assert [a["name"] for a in swap["status"]["active"]] == [f"swap-{int(first) // 60 + 1}"]


async def test_history_limits_keep_the_newest_finished_jobs(cron, client, namespace, eventually):
    await create(cron, client, namespace, cronjob("hist", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1))
    minute = next_minute(cron.now(), plus=0)
    for i in range(3):
        await cron.advance_to(minute + 60 * i + 1)

        async def finished(n=i + 1):
            jobs = await _jobs(client, namespace)
            cj = await client.get(CRONJOBS, "hist", namespace=namespace)
            return (jobs and all(_done(j) for j in jobs) and not (cj.get("status") or {}).get("active")
                    and jobs[-1]["metadata"]["name"] == f"hist-{int(minute) // 60 + n - 1}")
        await eventually(finished, 60, f"Job {i + 1} to finish")

    async def one_left():
        jobs = [j for j in await _jobs(client, namespace) if not j["metadata"].get("deletionTimestamp")]
        return len(jobs) == 1 and jobs
    jobs = await eventually(one_left, 30, "only the newest successful Job kept")
    assert jobs[0]["metadata"]["name"] == f"hist-{int(minute) // 60 + 2}"


async def test_start_deadline_skips_late_times_and_too_many_missed_times_warn(cron, client, namespace, eventually):
    await create(cron, client, namespace, cronjob("late", startingDeadlineSeconds=10), cronjob("behind"))
    # Jump 200 minutes and 30 s past a boundary: "late" is 30 s past its last time (deadline 10 s),
    # so that time is not run; "behind" missed 200 times, is warned, and runs the newest.
    start = next_minute(cron.now(), plus=0)
    newest = start + 200 * 60
    await cron.advance_to(newest + 30)

    async def warned():
        return "TooManyMissedTimes" in [e[1] for e in await events_for(client, namespace, "behind")]
    await eventually(warned, 30, "a TooManyMissedTimes event")

    async def only_behind():
        names = [j["metadata"]["name"] for j in await _jobs(client, namespace)]
        return names == [f"behind-{int(newest) // 60}"]
    await eventually(only_behind, 30, "one Job for the newest missed time, none for the late CronJob")
    await asyncio.sleep(0.5)
    assert not [j for j in await _jobs(client, namespace) if j["metadata"]["name"].startswith("late-")]
    # Within the deadline of the next time, it runs.
    await cron.advance_to(newest + 65)

    async def late_ran():
        names = [j["metadata"]["name"] for j in await _jobs(client, namespace)]
        return f"late-{int(newest) // 60 + 1}" in names
    await eventually(late_ran, 30, "the late CronJob to run within its deadline")


async def test_time_zone_and_suspend(cron, client, namespace, eventually):
    await create(cron, client, namespace, cronjob("tokyo", "0 9 * * *", timeZone="Asia/Tokyo"),
                 cronjob("off", suspend=True))
    tokyo = dt.timezone(dt.timedelta(hours=9))
    now = dt.datetime.fromtimestamp(cron.now(), tokyo)
    nine = now.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine <= now:
        nine += dt.timedelta(days=1)
    await cron.advance_to(nine.timestamp() + 5)

    async def tokyo_job():
        jobs = await _jobs(client, namespace)
        return len(jobs) == 1 and jobs[0]
    job = await eventually(tokyo_job, 30, "the 09:00 Tokyo Job")
    assert job["metadata"]["name"] == f"tokyo-{int(nine.timestamp()) // 60}"
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == nine.isoformat()
    await asyncio.sleep(0.5)
    assert [j["metadata"]["name"] for j in await _jobs(client, namespace)] == [job["metadata"]["name"]]


async def test_a_bad_schedule_is_a_422_on_spec_schedule(client, namespace):
    with pytest.raises(Invalid) as exc:
        await client.create(CRONJOBS, cronjob("bad", "61 * * * *"), namespace=namespace)
    assert exc.value.code == 422
    assert [(c.field, c.message) for c in exc.value.causes] == [
        ("spec.schedule", 'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61')]
    with pytest.raises(Invalid) as exc:
        await client.create(CRONJOBS, cronjob("tz", "TZ=UTC 0 * * * *"), namespace=namespace)
    assert [c.field for c in exc.value.causes] == ["spec.schedule"]
    assert "use timeZone field instead" in exc.value.causes[0].message
