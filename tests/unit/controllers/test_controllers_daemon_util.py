"""DaemonSet rules, pure parts: node eligibility, tolerations, placement affinity, updated pods, fenceposts."""

from __future__ import annotations

import pytest

from timoner.controllers import _daemon_util as du


def ds(*, node_selector=None, affinity=None, tolerations=None, node_name=None, host_network=False,
       strategy=None, annotations=None):
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = tolerations
    if node_name:
        spec["nodeName"] = node_name
    if host_network:
        spec["hostNetwork"] = True
    meta = {"name": "agent", "namespace": "ns", "uid": "uid-agent"}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                       "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec},
                                       "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {
                                           "maxUnavailable": 1, "maxSurge": 0}}}}


def node(name="n1", *, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def taint(key, effect, value=None):
    t = {"key": key, "effect": effect}
    if value is not None:
        t["value"] = value
    return t


def affinity(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


@pytest.mark.parametrize("daemon,n,expected", [
    (ds(), node(), (True, True)),
    (ds(node_selector={"disk": "ssd"}), node(labels={"disk": "ssd"}), (True, True)),
    (ds(node_selector={"disk": "ssd"}), node(labels={"disk": "hdd"}), (False, False)),
    (ds(affinity=affinity({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]})),
     node(labels={"zone": "b"}), (True, True)),
    (ds(affinity=affinity({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                          {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})),
     node(labels={"zone": "c"}), (True, True)),  # terms are ORed
    (ds(affinity=affinity({"matchExpressions": [{"key": "zone", "operator": "Exists"}]})), node(), (False, False)),
    (ds(affinity=affinity({"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["4"]}]})),
     node(labels={"cpus": "8"}), (True, True)),
    (ds(affinity=affinity()), node(), (False, False)),  # no terms: nothing matches
    (ds(node_name="n2"), node(), (False, False)),
    (ds(node_name="n1"), node(), (True, True)),
    # A NoSchedule taint: not scheduled there, but a pod already there may stay.
    (ds(), node(taints=[taint("dedicated", "NoSchedule", "x")]), (False, True)),
    (ds(), node(taints=[taint("dedicated", "NoExecute", "x")]), (False, False)),
    (ds(), node(taints=[taint("dedicated", "PreferNoSchedule", "x")]), (True, True)),
    (ds(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "x"}]),
     node(taints=[taint("dedicated", "NoExecute", "x")]), (True, True)),
    (ds(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "y"}]),
     node(taints=[taint("dedicated", "NoExecute", "x")]), (False, False)),
    (ds(tolerations=[{"operator": "Exists"}]), node(taints=[taint("anything", "NoExecute")]), (True, True)),
    # The taints every daemon pod tolerates.
    (ds(), node(taints=[taint("node.kubernetes.io/not-ready", "NoExecute"),
                        taint("node.kubernetes.io/unreachable", "NoExecute"),
                        taint("node.kubernetes.io/disk-pressure", "NoSchedule"),
                        taint("node.kubernetes.io/memory-pressure", "NoSchedule"),
                        taint("node.kubernetes.io/pid-pressure", "NoSchedule"),
                        taint("node.kubernetes.io/unschedulable", "NoSchedule")]), (True, True)),
    (ds(), node(taints=[taint("node.kubernetes.io/not-ready", "NoSchedule")]), (False, True)),
    (ds(), node(taints=[taint("node.kubernetes.io/network-unavailable", "NoSchedule")]), (False, True)),
    (ds(host_network=True), node(taints=[taint("node.kubernetes.io/network-unavailable", "NoSchedule")]),
     (True, True)),
])
def test_node_should_run(daemon, n, expected):
    assert du.node_should_run(n, daemon) == expected


def test_daemon_tolerations_replace_same_ones_and_keep_others():
    spec = {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300},
                            {"key": "mine", "operator": "Exists"}]}
    du.add_daemon_tolerations(spec)
    assert spec["tolerations"][0] == {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                      "effect": "NoExecute"}
    assert spec["tolerations"][1] == {"key": "mine", "operator": "Exists"}
    assert len(spec["tolerations"]) == 7
    du.add_daemon_tolerations(spec)
    assert len(spec["tolerations"]) == 7  # idempotent


def test_placement_affinity_replaces_required_terms_and_keeps_the_rest():
    preferred = [{"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]
    original = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": preferred},
        "podAntiAffinity": {"x": 1}}
    replaced = du.replace_node_affinity(original, "n7")
    assert replaced["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}
    assert replaced["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert replaced["podAntiAffinity"] == {"x": 1}
    assert original["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0] \
        .get("matchExpressions")  # not mutated
    assert du.replace_node_affinity(None, "n1")["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


@pytest.mark.parametrize("pod,expected", [
    ({"spec": {"nodeName": "n1"}}, "n1"),
    ({"spec": {"affinity": du.replace_node_affinity(None, "n2")}}, "n2"),
    ({"spec": {"nodeName": "n1", "affinity": du.replace_node_affinity(None, "n2")}}, "n1"),
    ({"spec": {}}, None),
    ({"spec": {"affinity": affinity({"matchFields": [{"key": "metadata.name", "operator": "In",
                                                       "values": ["a", "b"]}]})}}, None),
])
def test_target_node_name(pod, expected):
    assert du.target_node_name(pod) == expected


def test_pod_template_labels_the_revision_and_generation_and_adds_tolerations():
    template = du.pod_template(ds(annotations={du.TEMPLATE_GENERATION: "4"}), "h1")
    assert template["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": "h1",
                                              "pod-template-generation": "4"}
    assert len(template["spec"]["tolerations"]) == 6


def _pod(name, labels, *, deleting=False, node_name="n1", created="2024-01-01T00:00:00Z"):
    meta = {"name": name, "labels": labels, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"nodeName": node_name} if node_name else {}}


def test_updated_pods_on_a_node():
    new, old = _pod("a", {"controller-revision-hash": "h2"}), _pod("b", {"controller-revision-hash": "h1"})
    assert du.find_updated_pods_on_node([new, old], "h2", None) == (new, old, True)
    assert du.find_updated_pods_on_node([new, _pod("c", {"controller-revision-hash": "h2"})], "h2", None) == \
        (None, None, False)
    going = _pod("d", {"controller-revision-hash": "h2"}, deleting=True)
    assert du.find_updated_pods_on_node([going, old], "h2", None) == (None, old, True)
    assert du.is_pod_updated(_pod("e", {"pod-template-generation": "3"}), "h9", "3")
    assert not du.is_pod_updated(_pod("f", {}), "", None)


def test_sort_puts_scheduled_then_oldest_first():
    pods = [_pod("late", {}, created="2024-01-03T00:00:00Z"), _pod("unbound", {}, node_name=None),
            _pod("b", {}, created="2024-01-02T00:00:00Z"), _pod("a", {}, created="2024-01-02T00:00:00Z")]
    assert [p["metadata"]["name"] for p in du.sort_by_creation_and_phase(pods)] == ["a", "b", "late", "unbound"]


@pytest.mark.parametrize("rolling,desired,expected", [
    ({"maxUnavailable": 1, "maxSurge": 0}, 5, (1, 0)),
    ({"maxUnavailable": "30%", "maxSurge": 0}, 5, (2, 0)),  # rounded up
    ({"maxUnavailable": 0, "maxSurge": "10%"}, 5, (0, 1)),
    ({"maxUnavailable": "10%"}, 0, (0, 0)),
])
def test_fenceposts_round_up(rolling, desired, expected):
    daemon = ds(strategy={"type": "RollingUpdate", "rollingUpdate": rolling})
    assert (du.unavailable_count(daemon, desired), du.surge_count(daemon, desired)) == expected
    assert du.unavailable_count(ds(strategy={"type": "OnDelete"}), desired) == 0


def test_pods_by_node_leaves_out_finished_pods_being_deleted():
    running = _pod("a", {})
    unbound = {"metadata": {"name": "b"}, "spec": {"affinity": du.replace_node_affinity(None, "n2")}}
    gone = {**_pod("c", {}, deleting=True), "status": {"phase": "Failed"}}
    failed = {**_pod("d", {}), "status": {"phase": "Failed"}}
    nowhere = _pod("e", {}, node_name=None)
    assert du.pods_by_node([running, unbound, gone, failed, nowhere]) == {"n1": [running, failed], "n2": [unbound]}


def test_daemon_pod_is_generated_owned_and_placed():
    ref = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "uid-agent", "controller": True}
    pod = du.daemon_pod(du.pod_template(ds(), "h1"), ds(), ref, "n3")
    assert pod["metadata"] == {"generateName": "agent-", "ownerReferences": [ref],
                               "labels": {"app": "agent", "controller-revision-hash": "h1"}}
    assert du.target_node_name(pod) == "n3" and "nodeName" not in pod["spec"]


def test_failed_pod_backoff_doubles_to_a_cap_and_resets_after_long_quiet():
    backoff = du.FailedPodBackoff(initial=1.0, maximum=4.0)
    assert backoff.in_backoff("k", 0.0) == 0.0
    delays = []
    now = 0.0
    for _ in range(4):
        backoff.next("k", now)
        delays.append(backoff.in_backoff("k", now))
        assert backoff.in_backoff("k", now + delays[-1]) == 0.0  # over once the delay has passed
        now += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 4.0]
    backoff.next("k", now + 100.0)  # quiet for longer than twice the cap: back to the start
    assert backoff.in_backoff("k", now + 100.0) == 1.0
    assert backoff.in_backoff("other", now) == 0.0
