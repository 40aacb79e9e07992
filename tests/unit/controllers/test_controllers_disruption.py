"""The disruption controller's arithmetic and the pod garbage collector's order, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.controllers.disruption import (
    BudgetSize,
    budget_size,
    budget_status,
    count_healthy,
    disrupted_pods,
    stale_disruption_wait,
    uses_scale,
)
from timoner.controllers.podgc import gc_order, is_terminated

NOW = 1_700_000_000.0


def stamp(seconds_ago):
    return dt.datetime.fromtimestamp(NOW - seconds_ago, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, *, ready=True, deleting=False, phase="Running", created_ago=0, reason=None):
    meta = {"name": name, "creationTimestamp": stamp(created_ago)}
    if deleting:
        meta["deletionTimestamp"] = stamp(0)
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if reason:
        status["reason"] = reason
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize(("spec", "scaled"), [
    ({"minAvailable": 2}, False),
    ({"minAvailable": "50%"}, True),
    ({"maxUnavailable": 1}, True),
    ({"maxUnavailable": "10%"}, True),
    ({}, False),
])
def test_uses_scale(spec, scaled):
    assert uses_scale(spec) is scaled


@pytest.mark.parametrize(("spec", "pods", "scale", "want"), [
    ({"minAvailable": 2}, 3, 99, BudgetSize(3, 2)),        # an int: the pods found are the expected ones
    ({"minAvailable": 5}, 3, 99, BudgetSize(3, 5)),
    ({"minAvailable": "50%"}, 2, 3, BudgetSize(3, 2)),     # 1.5 rounds up
    ({"minAvailable": "100%"}, 2, 3, BudgetSize(3, 3)),
    ({"minAvailable": "0%"}, 2, 3, BudgetSize(3, 0)),
    ({"maxUnavailable": "50%"}, 3, 3, BudgetSize(3, 1)),   # 1.5 unavailable rounds up to 2
    ({"maxUnavailable": "1%"}, 3, 10, BudgetSize(10, 9)),  # 0.1 rounds up to 1
    ({"maxUnavailable": 1}, 3, 4, BudgetSize(4, 3)),
    ({"maxUnavailable": 5}, 3, 4, BudgetSize(4, 0)),       # never below 0
    ({"maxUnavailable": 0}, 3, 4, BudgetSize(4, 4)),
    ({}, 3, 3, BudgetSize(0, 0)),
])
def test_budget_size(spec, pods, scale, want):
    assert budget_size(spec, pod_count=pods, scale=scale) == want


@given(st.integers(0, 100), st.integers(0, 1000))
def test_max_unavailable_and_min_available_of_the_same_percentage_are_never_both_lenient(percent, scale):
    """Both round up: `maxUnavailable: p%` wants at most as many healthy pods as `minAvailable: (100-p)%`."""
    by_max = budget_size({"maxUnavailable": f"{percent}%"}, pod_count=0, scale=scale)
    by_min = budget_size({"minAvailable": f"{100 - percent}%"}, pod_count=0, scale=scale)
    assert 0 <= by_max.desired <= by_min.desired <= scale


def test_healthy_pods_are_ready_not_deleting_and_not_just_evicted():
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True), pod("e"), pod("f")]
    disrupted = {"e": stamp(10), "f": stamp(200)}  # e was evicted 10 s ago; f's eviction expired long ago
    assert count_healthy(pods, disrupted, NOW) == 3  # a, b, f
    assert count_healthy(pods, {}, NOW) == 4


def test_disrupted_pods_keep_fresh_entries_of_pods_not_yet_deleting():
    pods = [pod("fresh"), pod("old"), pod("going", deleting=True), pod("other")]
    recorded = {"fresh": stamp(30), "old": stamp(121), "going": stamp(5), "gone": stamp(5)}
    result = disrupted_pods(pods, recorded, NOW)
    assert result.kept == {"fresh": stamp(30)}
    assert result.recheck_at == NOW - 30 + 120
    assert [p["metadata"]["name"] for p in result.expired] == ["old"]
    assert disrupted_pods(pods, None, NOW).kept == {}


def _budget(status=None, generation=1):
    return {"metadata": {"name": "b", "generation": generation}, "status": status or {}}


def test_budget_status_allows_healthy_minus_desired_only_when_pods_are_expected():
    status = budget_status(_budget(), current_healthy=3, size=BudgetSize(3, 2), disrupted={}, now=stamp(0))
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3, "observedGeneration": 1}
    [c] = status["conditions"]
    assert (c["status"], c["reason"]) == ("True", "SufficientPods")
    # Nothing expected yet: nothing allowed, whatever is healthy.
    status = budget_status(_budget(), current_healthy=3, size=BudgetSize(0, 0), disrupted={}, now=stamp(0))
    assert status["disruptionsAllowed"] == 0 and status["conditions"][0]["reason"] == "InsufficientPods"
    # Fewer healthy than desired: 0, never negative.
    status = budget_status(_budget(), current_healthy=1, size=BudgetSize(3, 2), disrupted={"x": stamp(1)},
                           now=stamp(0))
    assert status["disruptionsAllowed"] == 0 and status["disruptedPods"] == {"x": stamp(1)}


def test_budget_status_is_none_when_nothing_changed():
    first = budget_status(_budget(), current_healthy=3, size=BudgetSize(3, 2), disrupted={}, now=stamp(0))
    assert budget_status(_budget(first), current_healthy=3, size=BudgetSize(3, 2), disrupted={}, now=stamp(0)) is None
    # A new generation, a healthy count or a SyncFailed condition are all worth a write.
    assert budget_status(_budget(first, generation=2), current_healthy=3, size=BudgetSize(3, 2), disrupted={},
                         now=stamp(0)) is not None
    assert budget_status(_budget(first), current_healthy=2, size=BudgetSize(3, 2), disrupted={},
                         now=stamp(0)) is not None
    failed = {**first, "conditions": [{**first["conditions"][0], "status": "False", "reason": "SyncFailed",
                                       "message": "boom"}]}
    fixed = budget_status(_budget(failed), current_healthy=3, size=BudgetSize(3, 2), disrupted={}, now=stamp(0))
    assert fixed is not None
    assert fixed["conditions"][0] | {"lastTransitionTime": None} == {
        "type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "",
        "observedGeneration": 1, "lastTransitionTime": None}


def _target(status="True", reason="EvictionByEvictionAPI", ago=30):
    return {"type": "DisruptionTarget", "status": status, "reason": reason, "lastTransitionTime": stamp(ago)}


@pytest.mark.parametrize(("p", "want"), [
    ({"metadata": {}, "status": {"phase": "Running", "conditions": [_target()]}}, 90.0),
    ({"metadata": {}, "status": {"phase": "Running", "conditions": [_target(ago=500)]}}, 0.0),
    ({"metadata": {}, "status": {"phase": "Running", "conditions": [_target(status="False")]}}, None),
    ({"metadata": {}, "status": {"phase": "Running", "conditions": [_target(reason="TerminationByKubelet")]}}, None),
    ({"metadata": {}, "status": {"phase": "Failed", "conditions": [_target()]}}, None),
    ({"metadata": {"deletionTimestamp": stamp(0)}, "status": {"phase": "Running", "conditions": [_target()]}}, None),
    ({"metadata": {}, "status": {"phase": "Running"}}, None),
])
def test_stale_disruption_wait(p, want):
    assert stale_disruption_wait(p, NOW) == want


def test_pod_gc_deletes_evicted_pods_first_then_the_oldest_then_by_name():
    pods = [pod("b-new", phase="Succeeded", created_ago=10), pod("z-old", phase="Failed", created_ago=100),
            pod("a-new", phase="Succeeded", created_ago=10),
            pod("evicted", phase="Failed", reason="Evicted", created_ago=1)]
    assert [p["metadata"]["name"] for p in gc_order(pods)] == ["evicted", "z-old", "a-new", "b-new"]


@pytest.mark.parametrize(("phase", "terminated"), [("Pending", False), ("Running", False), ("Unknown", False),
                                                   ("Succeeded", True), ("Failed", True)])
def test_is_terminated(phase, terminated):
    assert is_terminated({"status": {"phase": phase}}) is terminated
