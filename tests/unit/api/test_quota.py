"""Quota arithmetic: resource lists, pod usage, scopes, evaluators and the controller's usage sum."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from timoner.api.quantity import Quantity
from timoner.api.quota import (
    add,
    calculate_usage,
    evaluator_for,
    is_best_effort,
    less_than_or_equal,
    mask,
    matches,
    parse_list,
    pod_limits,
    pod_requests,
    pretty_print,
    quota_counts_pod,
    remove_zeros,
    subtract_non_negative,
    to_json,
)

NOW = 1_800_000_000.0


def pod(*containers: dict, init: tuple[dict, ...] = (), **spec) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": list(containers), "initContainers": list(init), **spec}}


def c(name: str = "app", *, req: dict | None = None, lim: dict | None = None, restart: str | None = None) -> dict:
    out: dict = {"name": name, "resources": {}}
    if req:
        out["resources"]["requests"] = req
    if lim:
        out["resources"]["limits"] = lim
    if restart:
        out["restartPolicy"] = restart
    return out


def quota(hard: dict, *, used: dict | None = None, scopes: list[str] | None = None,
          selector: list[dict] | None = None) -> dict:
    spec: dict = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    if selector:
        spec["scopeSelector"] = {"matchExpressions": selector}
    return {"metadata": {"name": "q", "namespace": "ns"}, "spec": spec,
            "status": {"hard": hard, "used": used if used is not None else dict.fromkeys(hard, "0")}}


def test_add_keeps_the_format_of_the_left_operand_unless_it_is_zero():
    total = add(parse_list({"memory": "0"}), parse_list({"memory": "128Mi"}))
    total = add(total, parse_list({"memory": "128Mi", "cpu": "250m"}))
    assert to_json(total) == {"cpu": "250m", "memory": "256Mi"}
    assert to_json(add(parse_list({"cpu": "1"}), parse_list({"cpu": "500m"}))) == {"cpu": "1500m"}


def test_subtract_never_goes_below_zero_and_keeps_only_left_names():
    out = subtract_non_negative(parse_list({"a": "1", "b": "5"}), parse_list({"a": "3", "c": "1"}))
    assert to_json(out) == {"a": "0", "b": "5"}


def test_less_than_or_equal_names_what_exceeds_among_bounded_names():
    ok, exceeded = less_than_or_equal(parse_list({"pods": "3", "cpu": "2", "x": "9"}),
                                      parse_list({"pods": "2", "cpu": "2", "memory": "1"}))
    assert (ok, exceeded) == (False, ["pods"])
    assert less_than_or_equal(parse_list({"pods": "2"}), parse_list({"pods": "2"})) == (True, [])


def test_pretty_print_sorts_names_and_formats_quantities():
    assert pretty_print(parse_list({"requests.cpu": "0.5", "pods": "1", "limits.memory": "1073741824"})) == \
        "limits.memory=1073741824,pods=1,requests.cpu=500m"
    assert pretty_print(parse_list({"requests.memory": "1Gi"})) == "requests.memory=1Gi"


def test_mask_and_remove_zeros():
    items = parse_list({"a": "0", "b": "1", "c": "2"})
    assert to_json(mask(items, ["b", "c", "d"])) == {"b": "1", "c": "2"}
    assert to_json(remove_zeros(items)) == {"b": "1", "c": "2"}


def test_pod_requests_sum_containers_and_take_the_largest_init_step():
    p = pod(c("a", req={"cpu": "100m"}), c("b", req={"cpu": "200m", "memory": "64Mi"}),
            init=(c("i", req={"cpu": "1", "memory": "32Mi"}),))
    assert to_json(pod_requests(p)) == {"cpu": "1", "memory": "64Mi"}


def test_sidecars_add_to_the_pod_and_to_later_init_steps():
    p = pod(c("a", req={"cpu": "100m"}),
            init=(c("side", req={"cpu": "200m"}, restart="Always"), c("i", req={"cpu": "250m"})))
    # steady state 100m + 200m = 300m; init step 200m + 250m = 450m wins
    assert to_json(pod_requests(p)) == {"cpu": "450m"}


def test_overhead_adds_to_requests_and_only_to_set_limits():
    p = pod(c("a", req={"cpu": "100m"}, lim={"cpu": "200m"}), overhead={"cpu": "50m", "memory": "10Mi"})
    assert to_json(pod_requests(p)) == {"cpu": "150m", "memory": "10Mi"}
    assert to_json(pod_limits(p)) == {"cpu": "250m"}
    assert to_json(pod_requests(p, overhead=False)) == {"cpu": "100m"}


def test_pod_usage_names_requests_limits_and_counts():
    usage = evaluator_for("", "pods").usage(pod(c(req={"cpu": "250m", "memory": "64Mi"},
                                                  lim={"cpu": "500m", "nvidia.com/gpu": "1"})), now=NOW)
    assert to_json(usage) == {"count/pods": "1", "cpu": "250m", "limits.cpu": "500m", "memory": "64Mi",
                              "pods": "1", "requests.cpu": "250m", "requests.memory": "64Mi"}


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_terminal_pods_count_only_as_objects(phase):
    p = pod(c(req={"cpu": "1"}))
    p["status"] = {"phase": phase}
    assert to_json(evaluator_for("", "pods").usage(p, now=NOW)) == {"count/pods": "1"}


def test_terminating_pods_count_until_their_grace_period_is_overdue():
    p = pod(c())
    deleted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW))
    p["metadata"].update(deletionTimestamp=deleted, deletionGracePeriodSeconds=30)
    assert quota_counts_pod(p, NOW + 29)
    assert not quota_counts_pod(p, NOW + 31)


def test_best_effort_means_no_cpu_or_memory_anywhere():
    assert is_best_effort(pod(c(), c("b", req={"ephemeral-storage": "1Gi"})))
    assert not is_best_effort(pod(c(), init=(c("i", lim={"memory": "1Mi"}),)))
    assert is_best_effort(pod(c(req={"cpu": "0"})))


@pytest.mark.parametrize(("scope", "deadline", "expected"), [
    ("Terminating", 30, True), ("Terminating", None, False),
    ("NotTerminating", None, True), ("NotTerminating", 30, False),
])
def test_terminating_scopes_follow_active_deadline_seconds(scope, deadline, expected):
    extra = {"activeDeadlineSeconds": deadline} if deadline is not None else {}
    assert matches(evaluator_for("", "pods"), quota({"pods": "5"}, scopes=[scope]), pod(c(), **extra)) is expected


def test_best_effort_scopes():
    ev = evaluator_for("", "pods")
    best, burstable = pod(c()), pod(c(req={"cpu": "1"}))
    assert matches(ev, quota({"pods": "5"}, scopes=["BestEffort"]), best)
    assert not matches(ev, quota({"pods": "5"}, scopes=["BestEffort"]), burstable)
    assert matches(ev, quota({"pods": "5"}, scopes=["NotBestEffort"]), burstable)


@pytest.mark.parametrize(("operator", "values", "priority", "expected"), [
    ("In", ["high"], "high", True), ("In", ["high"], "low", False), ("In", ["high"], None, False),
    ("NotIn", ["high"], "low", True), ("NotIn", ["high"], None, True), ("NotIn", ["high"], "high", False),
    ("Exists", [], "low", True), ("Exists", [], None, False), ("DoesNotExist", [], None, True),
])
def test_priority_class_scope_selector(operator, values, priority, expected):
    extra = {"priorityClassName": priority} if priority else {}
    q = quota({"pods": "5"}, selector=[{"scopeName": "PriorityClass", "operator": operator, "values": values}])
    assert matches(evaluator_for("", "pods"), q, pod(c(), **extra)) is expected


def test_a_quota_matches_only_kinds_it_names_and_never_scoped_for_other_kinds():
    cm = {"metadata": {"name": "x"}}
    assert matches(evaluator_for("", "configmaps"), quota({"configmaps": "1"}), cm)
    assert matches(evaluator_for("", "configmaps"), quota({"count/configmaps": "1"}), cm)
    assert not matches(evaluator_for("", "configmaps"), quota({"pods": "1"}), cm)
    assert not matches(evaluator_for("", "configmaps"), quota({"configmaps": "1"}, scopes=["BestEffort"]), cm)
    unstatused = quota({"pods": "1"})
    del unstatused["status"]
    assert not matches(evaluator_for("", "pods"), unstatused, pod(c()))


def test_object_count_names_carry_the_group():
    ev = evaluator_for("apps", "deployments")
    assert to_json(ev.usage({}, now=NOW)) == {"count/deployments.apps": "1"}
    assert ev.handles("CREATE") and not ev.handles("UPDATE")
    assert to_json(evaluator_for("", "secrets").usage({}, now=NOW)) == {"count/secrets": "1", "secrets": "1"}


@pytest.mark.parametrize(("spec", "expected"), [
    ({"type": "ClusterIP", "ports": [{"port": 80}]},
     {"services.loadbalancers": "0", "services.nodeports": "0"}),
    ({"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]},
     {"services.loadbalancers": "0", "services.nodeports": "2"}),
    ({"type": "LoadBalancer", "ports": [{"port": 80}]},
     {"services.loadbalancers": "1", "services.nodeports": "1"}),
    ({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]},
     {"services.loadbalancers": "1", "services.nodeports": "1"}),  # as upstream's evaluator counts them
])
def test_service_usage(spec, expected):
    usage = to_json(evaluator_for("", "services").usage({"spec": spec}, now=NOW))
    assert usage == {"count/services": "1", "services": "1", **expected}


def test_claim_usage_rounds_storage_up_and_charges_the_class():
    claim = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1500m"}}}}
    usage = evaluator_for("", "persistentvolumeclaims").usage(claim, now=NOW)
    assert to_json(usage) == {
        "count/persistentvolumeclaims": "1", "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "fast.storageclass.storage.k8s.io/requests.storage": "2", "persistentvolumeclaims": "1",
        "requests.storage": "2"}
    ev = evaluator_for("", "persistentvolumeclaims")
    assert ev.matching_resources(["requests.storage", "pods", "gold.storageclass.storage.k8s.io/requests.storage"]) \
        == ["requests.storage", "gold.storageclass.storage.k8s.io/requests.storage"]


def test_pod_constraints_name_missing_resources_and_containers():
    ev = evaluator_for("", "pods")
    p = pod(c("a", req={"cpu": "1"}), c("b"), init=(c("i", lim={"cpu": "1"}),))
    assert ev.constraints(["limits.cpu", "requests.memory", "pods"], p) == \
        "must specify limits.cpu for: a,b; requests.memory for: a,b,i"
    assert ev.constraints(["pods", "count/pods"], p) is None


def test_calculate_usage_sums_matching_objects_with_zero_for_unused_names():
    q = quota({"pods": "10", "requests.cpu": "4", "requests.memory": "1Gi", "configmaps": "3"},
              scopes=["NotTerminating"])
    pods = [pod(c(req={"cpu": "500m"})), pod(c(req={"cpu": "1"}), activeDeadlineSeconds=5)]
    done = pod(c(req={"cpu": "2"}))
    done["status"] = {"phase": "Succeeded"}
    pods.append(done)
    evs = [evaluator_for("", "pods"), evaluator_for("", "configmaps")]
    objects = {"pods": pods, "configmaps": [{"metadata": {"name": "a"}}]}
    used = calculate_usage(q, evs, lambda ev: objects[ev.resource], now=NOW)
    # configmaps match no scoped quota; the terminating pod is out of scope; the finished one uses nothing
    assert to_json(used) == {"configmaps": "0", "pods": "1", "requests.cpu": "500m", "requests.memory": "0"}


def test_parse_list_skips_garbage():
    assert parse_list({"cpu": "1", "bad": "1x1", "n": 2}) == {"cpu": Quantity(Decimal(1)), "n": Quantity(Decimal(2))}
