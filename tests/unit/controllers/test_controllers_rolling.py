"""Deployment arithmetic, table-driven: fenceposts, new ReplicaSet size, proportional scaling, hashing, status."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.controllers import _deployment_util as du


def deployment(replicas=3, *, surge="25%", unavailable="25%", strategy="RollingUpdate", generation=1, status=None):
    spec = {"replicas": replicas, "strategy": {"type": strategy}, "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "generation": generation}, "spec": spec, "status": status or {}}


def rs(name, replicas, *, created="2024-01-01T00:00:00Z", max_replicas=None, desired=None, available=0,
       revision=None):
    annotations = {}
    if max_replicas is not None:
        annotations[du.MAX_REPLICAS] = str(max_replicas)
    if desired is not None:
        annotations[du.DESIRED_REPLICAS] = str(desired)
    if revision is not None:
        annotations[du.REVISION] = str(revision)
    return {"metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created,
                         "annotations": annotations},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


@pytest.mark.parametrize("surge,unavailable,desired,expected", [
    ("0%", "0%", 0, (0, 1)),  # both zero: one may be unavailable
    ("39%", "39%", 10, (4, 3)),  # surge rounds up, unavailable down
    (None, "39%", 10, (0, 3)),
    ("39%", None, 10, (4, 0)),
    (None, None, 10, (0, 1)),
    (1, 0, 10, (1, 0)),
    ("25%", "25%", 3, (1, 0)),  # the defaults on 3 replicas: 0.75 up is 1, down is 0
    ("25%", "25%", 4, (1, 1)),
    ("100%", "100%", 7, (7, 7)),
])
def test_fenceposts(surge, unavailable, desired, expected):
    assert du.resolve_fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize("surge,unavailable", [("oops", "1%"), ("55%", "urg"), ("5", "1%")])
def test_fenceposts_refuse_strings_that_are_not_percentages(surge, unavailable):
    with pytest.raises(ValueError, match="not a percentage"):
        du.resolve_fenceposts(surge, unavailable, 10)


@pytest.mark.parametrize("replicas,surge,unavailable,strategy,max_surge,max_unavailable", [
    (10, "25%", "25%", "RollingUpdate", 3, 2),
    (0, "25%", "25%", "RollingUpdate", 0, 0),  # nothing to keep available at size 0
    (2, 0, 5, "RollingUpdate", 0, 2),  # maxUnavailable is capped at the size
    (10, "25%", "25%", "Recreate", 0, 0),
])
def test_max_surge_and_unavailable(replicas, surge, unavailable, strategy, max_surge, max_unavailable):
    d = deployment(replicas, surge=surge, unavailable=unavailable, strategy=strategy)
    assert (du.max_surge(d), du.max_unavailable(d)) == (max_surge, max_unavailable)


@pytest.mark.parametrize("strategy,d_replicas,new_replicas,surge,old_replicas,expected", [
    ("RollingUpdate", 1, 5, 1, 5, 5),  # already past the surge: keep the size
    ("RollingUpdate", 6, 2, 10, 5, 6),  # room to spare: up to the Deployment's size, not beyond
    ("RollingUpdate", 10, 0, 3, 10, 3),  # the first step of a rollout: the surge
    ("RollingUpdate", 10, 3, 3, 8, 5),  # old ones scaled down by 2 make room for 2 more
    ("Recreate", 3, 1, 1, 1, 3),
])
def test_new_replica_set_size(strategy, d_replicas, new_replicas, surge, old_replicas, expected):
    d = deployment(d_replicas, surge=surge, unavailable=0, strategy=strategy)
    new = rs("new", new_replicas)
    assert du.new_rs_new_replicas(d, [new, rs("old", old_replicas)], new) == expected


OLDER, NEWER = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"


@pytest.mark.parametrize("d_replicas,surge,unavailable,sets,expected", [
    # Scaled up mid-rollout: 10 more than 13, by share of 13: 8*23/13 = 14.2 -> 14, 5*23/13 = 8.8 -> 9.
    (20, 3, 2, [("old", 8, OLDER, 13), ("new", 5, NEWER, 13)], [("old", 14), ("new", 9)]),
    # Scaled down: 8*8/13 = 4.9 -> 5, then the rest of the 5 removed from the smaller one.
    (5, 3, 2, [("old", 8, OLDER, 13), ("new", 5, NEWER, 13)], [("old", 5), ("new", 3)]),
    # To zero: everything goes.
    (0, 3, 2, [("old", 8, OLDER, 13), ("new", 5, NEWER, 13)], [("old", 0), ("new", 0)]),
    # Equal sizes, scaling up: the newer one first, and Go rounds 5.5 half away from zero.
    (11, 0, 1, [("old", 5, OLDER, 10), ("new", 5, NEWER, 10)], [("new", 6), ("old", 5)]),
    # Equal sizes, scaling down: the older one first.
    (9, 0, 1, [("old", 5, OLDER, 10), ("new", 5, NEWER, 10)], [("old", 4), ("new", 5)]),
    # No max-replicas annotation and no status: no share, so the leftover goes to the first.
    (12, 0, 1, [("old", 5, OLDER, None), ("new", 5, NEWER, None)], [("new", 7), ("old", 5)]),
    # Inactive ReplicaSets (size 0) take no part.
    (6, 0, 1, [("older", 0, OLDER, 4), ("new", 4, NEWER, 4)], [("new", 6)]),
])
def test_proportional_scaling(d_replicas, surge, unavailable, sets, expected):
    d = deployment(d_replicas, surge=surge, unavailable=unavailable)
    rss = [rs(name, n, created=created, max_replicas=annotated) for name, n, created, annotated in sets]
    assert [(r["metadata"]["name"], size) for r, size in du.proportional_sizes(d, rss)] == expected


@given(st.integers(0, 50), st.integers(1, 30), st.integers(1, 30), st.integers(0, 10))
def test_proportional_scaling_always_lands_on_the_allowed_total(d_replicas, old, new, surge):
    d = deployment(d_replicas, surge=surge, unavailable=1)
    rss = [rs("old", old, created=OLDER, max_replicas=old + new), rs("new", new, created=NEWER, max_replicas=old + new)]
    sizes = du.proportional_sizes(d, rss)
    allowed = d_replicas + surge if d_replicas else 0
    assert sum(size for _, size in sizes) == allowed
    assert all(size >= 0 for _, size in sizes)


def test_find_active_or_latest():
    only = rs("only", 3, created=OLDER)
    assert du.find_active_or_latest(rs("new", 0, created=NEWER), [only]) is only
    # None active: the new one, or else the newest old one.
    new = rs("new", 0, created=NEWER)
    assert du.find_active_or_latest(new, [rs("a", 0)]) is new
    newest = rs("b", 0, created=NEWER)
    assert du.find_active_or_latest(None, [rs("a", 0, created=OLDER), newest]) is newest
    assert du.find_active_or_latest(rs("new", 1, created=NEWER), [only]) is None


def test_saturation_needs_size_annotation_and_availability():
    d = deployment(3)
    assert du.is_saturated(d, rs("new", 3, desired=3, available=3))
    assert not du.is_saturated(d, rs("new", 3, desired=2, available=3))
    assert not du.is_saturated(d, rs("new", 3, desired=3, available=2))
    assert not du.is_saturated(d, rs("new", 3, available=3))
    assert not du.is_saturated(d, None)


# -- hashing and the new ReplicaSet ------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def test_pod_template_hash_is_stable_and_a_valid_label():
    value = du.pod_template_hash(TEMPLATE)
    assert value == du.pod_template_hash(TEMPLATE)
    assert value == "79bfd649dc"  # pinned: a change here renames every ReplicaSet of every Deployment
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", value)


def test_pod_template_hash_sees_the_template_and_the_collision_count_only():
    changed = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    assert du.pod_template_hash(changed) != du.pod_template_hash(TEMPLATE)
    assert du.pod_template_hash(TEMPLATE, 1) != du.pod_template_hash(TEMPLATE)
    assert du.pod_template_hash(TEMPLATE, 1) != du.pod_template_hash(TEMPLATE, 2)
    labelled = {"metadata": {"labels": {"app": "web", du.POD_TEMPLATE_HASH: "x"}, "creationTimestamp": None},
                "spec": {**TEMPLATE["spec"], "volumes": []}}
    assert du.pod_template_hash(labelled) == du.pod_template_hash(TEMPLATE)


def test_equal_ignore_hash():
    with_hash = {"metadata": {"labels": {"app": "web", du.POD_TEMPLATE_HASH: "abc"}}, "spec": TEMPLATE["spec"]}
    assert du.equal_ignore_hash(with_hash, TEMPLATE)
    other_label = {"metadata": {"labels": {"app": "api"}}, "spec": TEMPLATE["spec"]}
    assert not du.equal_ignore_hash(other_label, TEMPLATE)


def test_find_new_and_old_replica_sets():
    d = deployment(3)
    d["spec"]["template"] = TEMPLATE
    matching_older = {**rs("a", 1, created=OLDER), "spec": {"replicas": 1, "template": TEMPLATE}}
    matching_newer = {**rs("b", 0, created=NEWER), "spec": {"replicas": 0, "template": TEMPLATE}}
    other = {**rs("c", 2), "spec": {"replicas": 2, "template": {"spec": {}}}}
    assert du.find_new_replica_set(d, [matching_newer, other, matching_older]) is matching_older
    required, everything = du.find_old_replica_sets(d, [matching_newer, other, matching_older])
    assert required == [other] and everything == [matching_newer, other]


@pytest.mark.parametrize("existing,new,exists,expected_revision,expected_history", [
    (None, 1, False, "1", None),
    ("1", 3, True, "3", "1"),  # a rollback to revision 1's ReplicaSet
    ("4", 3, True, "4", None),  # never lowered
])
def test_new_replica_set_annotations(existing, new, exists, expected_revision, expected_history):
    d = deployment(4)
    d["metadata"]["annotations"] = {"team": "a", du.REVISION: "9", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    target = rs("x", 4, revision=existing)
    du.set_new_replica_set_annotations(d, target, new, exists=exists)
    annotations = target["metadata"]["annotations"]
    assert annotations[du.REVISION] == expected_revision
    assert annotations.get(du.REVISION_HISTORY) == expected_history
    assert annotations["team"] == "a" and "kubectl.kubernetes.io/last-applied-configuration" not in annotations
    if not exists:
        assert (annotations[du.DESIRED_REPLICAS], annotations[du.MAX_REPLICAS]) == ("4", "5")


def test_revision_history_grows_by_rollbacks():
    target = rs("x", 1, revision=3)
    target["metadata"]["annotations"][du.REVISION_HISTORY] = "1"
    du.set_new_replica_set_annotations(deployment(1), target, 5, exists=True)
    assert target["metadata"]["annotations"][du.REVISION_HISTORY] == "1,3"


# -- conditions and status ------------------------------------------------------------------------


def test_set_condition_keeps_transition_time_and_ignores_same_reason():
    status: dict = {}
    du.set_condition(status, du.new_condition("Progressing", "True", "A", "first", now=100))
    du.set_condition(status, du.new_condition("Progressing", "True", "A", "second", now=200))
    assert status["conditions"][0]["message"] == "first"  # same status and reason: unchanged
    du.set_condition(status, du.new_condition("Progressing", "True", "B", "third", now=300))
    (c,) = status["conditions"]
    assert (c["reason"], c["lastTransitionTime"], c["lastUpdateTime"]) == (
        "B", "1970-01-01T00:01:40Z", "1970-01-01T00:05:00Z")
    du.set_condition(status, du.new_condition("Progressing", "False", "C", "fourth", now=400))
    assert status["conditions"][0]["lastTransitionTime"] == "1970-01-01T00:06:40Z"


def test_status_adds_up_replica_sets_and_sets_availability():
    d = deployment(4, surge=1, unavailable=1, generation=7)
    new = {**rs("new", 2), "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 1}}
    old = {**rs("old", 3), "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}}
    status = du.calculate_status([old, new], new, d, now=0)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 7, "replicas": 5, "updatedReplicas": 2, "readyReplicas": 5,
        "availableReplicas": 4, "unavailableReplicas": 1}
    assert du.get_condition(status, "Available")["reason"] == "MinimumReplicasAvailable"
    new["status"]["availableReplicas"] = 0
    old["status"]["availableReplicas"] = 2
    status = du.calculate_status([old, new], new, d, now=0)
    available = du.get_condition(status, "Available")
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")


def test_complete_progressing_and_timed_out():
    d = deployment(2, status={"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2})
    assert du.deployment_complete(d, {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                                      "observedGeneration": 1})
    assert not du.deployment_complete(d, {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                                          "observedGeneration": 0})
    assert du.deployment_progressing(d, {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2})
    assert du.deployment_progressing(d, {"replicas": 2, "updatedReplicas": 1, "availableReplicas": 2})  # fewer old
    assert not du.deployment_progressing(d, {"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2})
    status = {"conditions": [du.new_condition("Progressing", "True", "ReplicaSetUpdated", "", now=1000)]}
    assert not du.deployment_timed_out(d, status, now=1000 + 600)
    assert du.deployment_timed_out(d, status, now=1000 + 601)
    done = {"conditions": [du.new_condition("Progressing", "True", "NewReplicaSetAvailable", "", now=0)]}
    assert not du.deployment_timed_out(d, done, now=10**9)
