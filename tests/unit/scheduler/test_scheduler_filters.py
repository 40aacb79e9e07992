"""Table-driven tests for the node-level filters: NodeName, NodeUnschedulable, TaintToleration, NodeAffinity."""

from __future__ import annotations

import pytest
from scheduler_builders import make_node, make_pod

from timoner.scheduler import Code, CycleState, NodeInfo, Status
from timoner.scheduler.plugins import NodeAffinity, NodeName, NodeUnschedulable, TaintToleration

AFFINITY_REASON = "node(s) didn't match Pod's node affinity/selector"


def run_filter(plugin, pod, node) -> Status:
    return plugin.filter(CycleState(), pod, NodeInfo(node))


@pytest.mark.parametrize(("pod", "node", "ok"), [
    (make_pod().obj(), make_node().name("n1").obj(), True),
    (make_pod().node("n1").obj(), make_node().name("n1").obj(), True),
    (make_pod().node("n2").obj(), make_node().name("n1").obj(), False),
], ids=["no-node-name", "same-node", "other-node"])
def test_node_name(pod, node, ok):
    status = run_filter(NodeName(), pod, node)
    assert status.is_success is ok
    if not ok:
        assert status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        assert status.reasons == ("node(s) didn't match the requested node name",)


@pytest.mark.parametrize(("pod", "node", "ok"), [
    (make_pod().obj(), make_node().obj(), True),
    (make_pod().obj(), make_node().unschedulable().obj(), False),
    (make_pod().toleration("node.kubernetes.io/unschedulable", operator="Exists", effect="NoSchedule").obj(),
     make_node().unschedulable().obj(), True),
    (make_pod().toleration(operator="Exists").obj(), make_node().unschedulable().obj(), True),
    (make_pod().toleration("node.kubernetes.io/unschedulable", operator="Exists", effect="NoExecute").obj(),
     make_node().unschedulable().obj(), False),
], ids=["schedulable", "cordoned", "tolerates-cordon", "tolerates-everything", "wrong-effect"])
def test_node_unschedulable(pod, node, ok):
    status = run_filter(NodeUnschedulable(), pod, node)
    assert status.is_success is ok
    if not ok:
        assert status == Status.unresolvable("node(s) were unschedulable")


@pytest.mark.parametrize(("pod", "node", "reason"), [
    (make_pod().obj(), make_node().obj(), None),
    (make_pod().obj(), make_node().taint("dedicated", "gpu").obj(), "node(s) had untolerated taint {dedicated: gpu}"),
    (make_pod().obj(), make_node().taint("node-role.kubernetes.io/control-plane").obj(),
     "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
    (make_pod().obj(), make_node().taint("k", "v", effect="NoExecute").obj(), "node(s) had untolerated taint {k: v}"),
    (make_pod().obj(), make_node().taint("k", "v", effect="PreferNoSchedule").obj(), None),
    (make_pod().toleration("dedicated", value="gpu", effect="NoSchedule").obj(),
     make_node().taint("dedicated", "gpu").obj(), None),
    (make_pod().toleration("dedicated", value="gpu", effect="NoSchedule").obj(),
     make_node().taint("dedicated", "gpu").taint("zone", "x").obj(), "node(s) had untolerated taint {zone: x}"),
    (make_pod().toleration(operator="Exists").obj(), make_node().taint("a", "1").taint("b", "2").obj(), None),
], ids=["no-taints", "key-value", "empty-value", "no-execute", "prefer-ignored", "tolerated",
        "second-untolerated", "wildcard"])
def test_taint_toleration(pod, node, reason):
    status = run_filter(TaintToleration(), pod, node)
    if reason is None:
        assert status.is_success
    else:
        assert status == Status.unresolvable(reason)


def expr(key, operator, *values):
    out = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


ZONE_A = make_node().name("n1").label("zone", "a").label("cores", "8").obj()


@pytest.mark.parametrize(("pod", "ok"), [
    (make_pod().node_selector(zone="a").obj(), True),
    (make_pod().node_selector(zone="b").obj(), False),
    (make_pod().node_selector(zone="a", disk="ssd").obj(), False),
    (make_pod().node_affinity_in("zone", "a", "b").obj(), True),
    (make_pod().node_affinity_in("zone", "b").obj(), False),
    (make_pod().node_affinity_term(match_expressions=[expr("zone", "NotIn", "b")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("zone", "NotIn", "a")]).obj(), False),
    (make_pod().node_affinity_term(match_expressions=[expr("missing", "NotIn", "a")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("zone", "Exists")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("gpu", "Exists")]).obj(), False),
    (make_pod().node_affinity_term(match_expressions=[expr("gpu", "DoesNotExist")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("zone", "DoesNotExist")]).obj(), False),
    (make_pod().node_affinity_term(match_expressions=[expr("cores", "Gt", "4")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("cores", "Gt", "8")]).obj(), False),
    (make_pod().node_affinity_term(match_expressions=[expr("cores", "Lt", "9")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("cores", "Lt", "8")]).obj(), False),
    (make_pod().node_affinity_term(match_expressions=[expr("zone", "Gt", "1")]).obj(), False),  # not a number
    (make_pod().node_affinity_term(match_expressions=[expr("missing", "Lt", "1")]).obj(), False),
    (make_pod().node_affinity_term(match_fields=[expr("metadata.name", "In", "n1")]).obj(), True),
    (make_pod().node_affinity_term(match_fields=[expr("metadata.name", "In", "n2")]).obj(), False),
    (make_pod().node_affinity_term(match_fields=[expr("metadata.name", "NotIn", "n2")]).obj(), True),
    (make_pod().node_affinity_term(match_expressions=[expr("zone", "In", "a")],
                                   match_fields=[expr("metadata.name", "In", "n2")]).obj(), False),
    (make_pod().node_affinity_in("zone", "b").node_affinity_in("cores", "8").obj(), True),  # terms are ORed
    (make_pod().node_affinity_term().obj(), False),  # an empty term matches nothing
    (make_pod().node_selector(zone="a").node_affinity_in("zone", "b").obj(), False),  # both must hold
])
def test_node_affinity(pod, ok):
    status = run_filter(NodeAffinity(), pod, ZONE_A)
    assert status.is_success is ok
    if not ok:
        assert status == Status.unresolvable(AFFINITY_REASON)


def test_node_affinity_empty_term_list_matches_nothing():
    pod = make_pod().obj()
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": []}}}
    assert run_filter(NodeAffinity(), pod, ZONE_A) == Status.unresolvable(AFFINITY_REASON)


@pytest.mark.parametrize(("pod", "code"), [
    (make_pod().obj(), Code.SKIP),
    (make_pod().node_selector(zone="a").obj(), Code.SUCCESS),
    (make_pod().node_affinity_in("zone", "a").obj(), Code.SUCCESS),
])
def test_node_affinity_pre_filter_skips_unconstrained_pods(pod, code):
    assert NodeAffinity().pre_filter(CycleState(), pod).code is code
