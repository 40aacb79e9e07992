"""Pod facts for controllers: deletion ranking (upstream's ActivePodsWithRanks), slow start, availability."""

from __future__ import annotations

import pytest

from timoner.controllers._expectations import Expectations
from timoner.controllers._pods import (
    is_available,
    pod_from_template,
    rank_pods_for_deletion,
    slow_start_batch,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def stamp(seconds_ago):
    import datetime as dt

    return dt.datetime.fromtimestamp(NOW - seconds_ago, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, *, node="n1", phase="Running", ready=True, ready_for=100, created_ago=1000, restarts=0, cost=None,
        uid=None):
    conditions = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": stamp(ready_for)}]
    meta = {"name": name, "uid": uid or f"uid-{name}", "creationTimestamp": stamp(created_ago)}
    if cost is not None:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    return {"metadata": meta, "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


@pytest.mark.parametrize("first,second,why", [
    (pod("a", node=""), pod("b"), "unassigned before assigned"),
    (pod("a", phase="Pending"), pod("b", phase="Unknown"), "pending before unknown"),
    (pod("a", phase="Unknown"), pod("b", phase="Running"), "unknown before running"),
    (pod("a", ready=False), pod("b"), "not ready before ready"),
    (pod("a", cost=-5), pod("b"), "lower deletion cost first"),
    (pod("a", cost=1), pod("b", cost=10), "lower deletion cost first"),
    (pod("a", ready_for=10), pod("b", ready_for=10_000), "ready for less time first"),
    (pod("a", restarts=3), pod("b", restarts=1), "more restarts first"),
    (pod("a", created_ago=10), pod("b", created_ago=10_000), "newer first"),
])
def test_deletion_order_criteria(first, second, why):
    for pods in ([first, second], [second, first]):
        ranked = rank_pods_for_deletion(pods, [], now=NOW)
        assert [p["metadata"]["name"] for p in ranked] == ["a", "b"], why


def test_criteria_apply_in_upstream_order():
    # Unready outranks every later criterion, even a lower deletion cost or more restarts on the other.
    unready = pod("a", ready=False, restarts=0, created_ago=100_000)
    busy = pod("b", restarts=9, created_ago=1)
    assert [p["metadata"]["name"] for p in rank_pods_for_deletion([busy, unready], [], now=NOW)] == ["a", "b"]


def test_doubled_up_pods_go_first():
    # Both ready alike; "a" shares its node with two pods of a sibling ReplicaSet.
    a, b = pod("a", node="crowded"), pod("b", node="quiet")
    siblings = [pod("s1", node="crowded"), pod("s2", node="crowded"), pod("s3", node="quiet")]
    ranked = rank_pods_for_deletion([b, a], siblings, now=NOW)
    assert [p["metadata"]["name"] for p in ranked] == ["a", "b"]


def test_ready_times_of_about_the_same_age_rank_alike_and_the_uid_decides():
    # 100 s and 110 s ago fall in the same log2 bucket of nanoseconds: the uid decides, not the 10 s.
    a = pod("a", ready_for=110, uid="1")
    b = pod("b", ready_for=100, uid="2")
    assert [p["metadata"]["name"] for p in rank_pods_for_deletion([b, a], [], now=NOW)] == ["a", "b"]


async def test_slow_start_doubles_batches_and_stops_at_the_first_failure():
    calls = []

    async def ok():
        calls.append(1)

    assert await slow_start_batch(10, 1, ok) == (10, None)
    assert len(calls) == 10

    attempts = []

    async def fails_after_three():
        attempts.append(1)
        if len(attempts) > 3:
            raise RuntimeError("quota")

    successes, error = await slow_start_batch(20, 1, fails_after_three)
    assert (successes, str(error), len(attempts)) == (3, "quota", 7)  # batches 1, 2, 4; no batch of 8
    assert await slow_start_batch(0, 1, ok) == (0, None)


def test_availability_waits_min_ready_seconds():
    p = pod("a", ready_for=5)
    assert is_available(p, 0, NOW)
    assert is_available(p, 4, NOW)
    assert not is_available(p, 5, NOW)
    assert not is_available(pod("b", ready=False), 0, NOW)


def test_pod_from_template_names_and_owns_it():
    owner = {"metadata": {"name": "web-abc", "uid": "u1"}}
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u1", "controller": True,
           "blockOwnerDeletion": True}
    template = {"metadata": {"labels": {"app": "web"}, "annotations": {"x": "y"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    made = pod_from_template(template, owner, ref)
    assert made["metadata"] == {"generateName": "web-abc-", "ownerReferences": [ref], "labels": {"app": "web"},
                                "annotations": {"x": "y"}}
    assert made["spec"] == template["spec"] and made["spec"] is not template["spec"]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t

    async def sleep(self, seconds):
        self.t += seconds


def test_expectations_count_creates_and_each_deletion_once():
    clock = FakeClock()
    e = Expectations(clock=clock)
    assert e.satisfied("ns/rs")  # never seen: nothing to wait for
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/a")
    e.deletion_observed("ns/rs", "ns/a")  # the pod's final delete after its graceful start: counted once
    e.deletion_observed("ns/rs", "ns/other")
    assert e.pending("ns/rs") == (0, 1) and not e.satisfied("ns/rs")
    clock.t += 301  # lost events never wedge a controller
    assert e.satisfied("ns/rs")
    e.delete("ns/rs")
    assert e.pending("ns/rs") == (0, 0)
