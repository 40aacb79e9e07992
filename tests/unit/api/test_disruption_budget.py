"""PodDisruptionBudget facts: IntOrString scaling, the DisruptionAllowed condition, which budgets guard a pod."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.disruption import (
    conditions_up_to_date,
    eviction_selects,
    scaled_value,
    set_status_condition,
    update_disruption_allowed_condition,
)

T0, T1 = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"


@pytest.mark.parametrize(("value", "total", "up", "want"), [
    (2, 10, True, 2),
    (0, 10, False, 0),
    ("50%", 3, True, 2),
    ("50%", 3, False, 1),
    ("10%", 1, True, 1),
    ("10%", 1, False, 0),
    ("100%", 7, True, 7),
    ("0%", 7, True, 0),
    ("33%", 100, True, 33),
    ("34%", 3, True, 2),  # 1.02 rounds up
])
def test_scaled_value(value, total, up, want):
    assert scaled_value(value, total, round_up=up) == want


@pytest.mark.parametrize("bad", ["50", "x%", "%", "5.5%"])
def test_scaled_value_refuses_strings_that_are_not_percentages(bad):
    with pytest.raises(ValueError):
        scaled_value(bad, 10, round_up=True)


@given(st.integers(0, 100), st.integers(0, 10_000))
def test_a_percentage_rounded_up_is_the_ceiling_and_never_exceeds_the_total(percent, total):
    got = scaled_value(f"{percent}%", total, round_up=True)
    assert got == math.ceil(percent * total / 100)
    assert 0 <= got <= total
    assert scaled_value(f"{percent}%", total, round_up=False) <= got


def test_set_status_condition_moves_the_transition_time_only_with_the_status():
    conditions: list[dict] = []
    assert set_status_condition(conditions, {"type": "A", "status": "True", "reason": "R"}, T0)
    assert conditions == [{"type": "A", "status": "True", "lastTransitionTime": T0, "reason": "R", "message": ""}]
    assert not set_status_condition(conditions, {"type": "A", "status": "True", "reason": "R"}, T1)
    assert set_status_condition(conditions, {"type": "A", "status": "True", "reason": "S", "message": "m",
                                             "observedGeneration": 2}, T1)
    assert conditions[0]["lastTransitionTime"] == T0 and conditions[0]["observedGeneration"] == 2
    assert set_status_condition(conditions, {"type": "A", "status": "False", "reason": "S", "message": "m",
                                             "observedGeneration": 2}, T1)
    assert conditions[0]["lastTransitionTime"] == T1 and len(conditions) == 1


@pytest.mark.parametrize(("allowed", "status", "reason"), [(0, "False", "InsufficientPods"),
                                                           (2, "True", "SufficientPods")])
def test_the_disruption_allowed_condition_follows_disruptions_allowed(allowed, status, reason):
    pdb = {"metadata": {"generation": 3},
           "status": {"disruptionsAllowed": allowed, "observedGeneration": 3}}
    assert not conditions_up_to_date(pdb)
    update_disruption_allowed_condition(pdb["status"], T0)
    [c] = pdb["status"]["conditions"]
    assert (c["type"], c["status"], c["reason"], c["observedGeneration"]) == ("DisruptionAllowed", status, reason, 3)
    assert conditions_up_to_date(pdb)
    pdb["metadata"]["generation"] = 4
    assert not conditions_up_to_date(pdb)


def _pdb(selector, namespace="ns"):
    return {"metadata": {"name": "b", "namespace": namespace}, "spec": {"selector": selector}}


POD = {"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "front"}}}


@pytest.mark.parametrize(("pdb", "selects"), [
    (_pdb({"matchLabels": {"app": "web"}}), True),
    (_pdb({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}), True),
    (_pdb({"matchLabels": {"app": "db"}}), False),
    (_pdb({"matchLabels": {"app": "web"}}, namespace="other"), False),
    (_pdb({}), False),     # an empty selector guards nothing against eviction
    (_pdb(None), False),
    (_pdb({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}), False),
])
def test_which_budgets_guard_a_pod_against_eviction(pdb, selects):
    assert eviction_selects(pdb, POD) is selects
