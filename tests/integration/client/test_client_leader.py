"""Leader election on a real Lease: one leader at a time, handover on release and on expiry, step-down."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid

import pytest

from timoner.api.errors import Conflict
from timoner.client import LEASES, LeaderElector

FAST = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.3}
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Leaders:
    """Who is leading now, and whether two ever led at once."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.history: list[str] = []
        self.overlaps = 0

    def elect(self, elector: LeaderElector):
        async def started():
            if self.active:
                self.overlaps += 1
            self.active.add(elector.identity)
            self.history.append(elector.identity)
            await asyncio.Event().wait()  # lead until cancelled

        def stopped():
            self.active.discard(elector.identity)

        return asyncio.create_task(elector.run(started, stopped))


async def _stop(task):
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _renewals(client, ns, name, count, check):
    """Wait until the Lease has been renewed `count` more times, calling `check()` on each poll."""
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(seen) <= count:
        assert loop.time() < deadline, "lease not renewed"
        check()
        seen.add((await client.get(LEASES, name, namespace=ns))["spec"]["renewTime"])
        await asyncio.sleep(0.05)


def test_durations_must_nest(client):
    with pytest.raises(ValueError):
        LeaderElector(client, namespace="x", name="y", identity="z", lease_duration=2, renew_deadline=3)


async def test_one_leader_and_handover_on_release(client, ns, eventually):
    name = f"lock-{uuid.uuid4().hex[:6]}"
    leaders = Leaders()
    one = LeaderElector(client, namespace=ns, name=name, identity="one", **FAST)
    two = LeaderElector(client, namespace=ns, name=name, identity="two", **FAST)
    t1 = leaders.elect(one)
    await eventually(lambda: leaders.active == {"one"}, what="one leads")
    t2 = leaders.elect(two)

    def only_one():
        assert leaders.active == {"one"} and not two.is_leader

    await _renewals(client, ns, name, 3, only_one)
    lease = await client.get(LEASES, name, namespace=ns)
    spec = lease["spec"]
    assert spec["holderIdentity"] == "one" and spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICRO.match(spec["acquireTime"]) and MICRO.match(spec["renewTime"])
    assert spec["renewTime"] > spec["acquireTime"]

    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    await _stop(t1)
    await eventually(lambda: leaders.active == {"two"}, what="two takes over")
    # Released, not expired: well within one lease duration.
    assert loop.time() - stopped_at < FAST["lease_duration"]
    lease = await client.get(LEASES, name, namespace=ns)
    assert lease["spec"]["holderIdentity"] == "two" and lease["spec"]["leaseTransitions"] == 1
    await _stop(t2)
    assert leaders.overlaps == 0 and leaders.history == ["one", "two"]
    assert (await client.get(LEASES, name, namespace=ns))["spec"]["holderIdentity"] == ""


async def test_takeover_waits_for_expiry_when_the_leader_vanishes(client, ns, eventually):
    name = f"lock-{uuid.uuid4().hex[:6]}"
    leaders = Leaders()
    one = LeaderElector(client, namespace=ns, name=name, identity="one", release_on_cancel=False, **FAST)
    two = LeaderElector(client, namespace=ns, name=name, identity="two", **FAST)
    t1 = leaders.elect(one)
    await eventually(lambda: leaders.active == {"one"}, what="one leads")
    t2 = leaders.elect(two)
    await eventually(lambda: two.leader == "one", what="two observes one")
    loop = asyncio.get_running_loop()
    vanished_at = loop.time()
    await _stop(t1)  # as if it crashed: no release
    await eventually(lambda: leaders.active == {"two"}, what="two takes over")
    waited = loop.time() - vanished_at
    # Two only trusts its own clock: the lease must look unchanged for a whole duration.
    assert waited >= FAST["lease_duration"] - FAST["retry_period"] * 1.2
    await _stop(t2)
    assert leaders.overlaps == 0


async def test_leader_steps_down_when_it_cannot_renew(client, ns, eventually):
    name = f"lock-{uuid.uuid4().hex[:6]}"
    one = LeaderElector(client, namespace=ns, name=name, identity="one", **FAST)
    stopped = asyncio.Event()

    async def lead():
        await asyncio.Event().wait()

    task = asyncio.create_task(one.run(lead, stopped.set))
    await eventually(lambda: one.is_leader, what="one leads")
    # Someone else takes the Lease by force (as an operator might); one must notice and step down.
    while True:  # the leader may renew between our read and write
        lease = await client.get(LEASES, name, namespace=ns)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["leaseDurationSeconds"] = 60
        try:
            await client.update(LEASES, lease)
            break
        except Conflict:
            continue
    await asyncio.wait_for(task, 10)  # run() returns once leadership is lost
    assert stopped.is_set() and not one.is_leader
    assert (await client.get(LEASES, name, namespace=ns))["spec"]["holderIdentity"] == "intruder"
