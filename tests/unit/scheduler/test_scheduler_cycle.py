"""The scheduling cycle as a pure function: placement, spreading, and the upstream-shaped failure message."""

from __future__ import annotations

import pytest
from scheduler_builders import make_node, make_pod

from timoner.scheduler import (
    NO_NODES_MESSAGE,
    Code,
    CycleState,
    Snapshot,
    Status,
    default_plugins,
    fit_error_message,
    schedule,
)

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def cluster(*nodes, pods=()):
    return Snapshot.build(nodes, pods)


def test_picks_the_only_feasible_node():
    snap = cluster(make_node().name("a").taint(CONTROL_PLANE).obj(),
                   make_node().name("b").unschedulable().obj(),
                   make_node().name("c").obj())
    result = schedule(make_pod().obj(), snap, default_plugins())
    assert result.node_name == "c"
    assert result.message == ""
    assert {name: s.plugin for name, s in result.statuses.items()} == {"a": "TaintToleration",
                                                                        "b": "NodeUnschedulable"}


def test_spreads_onto_the_least_allocated_node():
    busy = make_pod().name("busy").node("a").requests(cpu="3", memory="1Gi").obj()
    snap = cluster(make_node().name("a").obj(), make_node().name("b").obj(), pods=[busy])
    result = schedule(make_pod().requests(cpu="100m").obj(), snap, default_plugins())
    assert result.node_name == "b"
    assert result.scores["b"] > result.scores["a"]


def test_equal_scores_go_to_the_first_node_by_name():
    snap = cluster(make_node().name("z").obj(), make_node().name("m").obj())
    assert schedule(make_pod().obj(), snap, default_plugins()).node_name == "m"


def test_the_upstream_message_counts_reasons_and_sorts_them_as_strings():
    snap = cluster(
        make_node().name("a").allocatable(cpu="1").obj(),
        make_node().name("b").taint(CONTROL_PLANE).obj(),
        make_node().name("c").taint(CONTROL_PLANE).obj(),
    )
    result = schedule(make_pod().requests(cpu="2").obj(), snap, default_plugins())
    assert result.node_name is None
    assert result.message == (
        f"0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {{{CONTROL_PLANE}: }}. "
        "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
        "2 Preemption is not helpful for scheduling.")
    assert result.statuses["a"].code is Code.UNSCHEDULABLE
    assert result.statuses["b"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def test_a_node_short_of_two_resources_counts_under_both():
    snap = cluster(make_node().name("a").allocatable(cpu="1", memory="1Gi").obj())
    result = schedule(make_pod().requests(cpu="2", memory="2Gi").obj(), snap, default_plugins())
    assert result.message.startswith("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. ")


@pytest.mark.parametrize(("statuses", "expected"), [
    # Go's sort.Strings: "10 ..." sorts before "2 ...", and upstream keeps that quirk
    ({**{f"n{i}": Status.unresolvable("node(s) were unschedulable") for i in range(10)},
      "x": Status.unresolvable("node(s) didn't match Pod's node affinity/selector"),
      "y": Status.unresolvable("node(s) didn't match Pod's node affinity/selector")},
     "0/12 nodes are available: 10 node(s) were unschedulable, "
     "2 node(s) didn't match Pod's node affinity/selector. "
     "preemption: 0/12 nodes are available: 12 Preemption is not helpful for scheduling."),
])
def test_fit_error_message(statuses, expected):
    assert fit_error_message(len(statuses), statuses) == expected


def test_no_nodes():
    result = schedule(make_pod().obj(), cluster(), default_plugins())
    assert result.node_name is None
    assert result.message == NO_NODES_MESSAGE


def test_assigned_pods_on_unknown_nodes_are_ignored():
    stray = make_pod().name("stray").node("gone").requests(cpu="4").obj()
    snap = cluster(make_node().name("a").allocatable(cpu="1").obj(), pods=[stray])
    assert schedule(make_pod().requests(cpu="1").obj(), snap, default_plugins()).node_name == "a"


class RejectAll:
    name = "RejectAll"

    def pre_filter(self, state: CycleState, pod) -> Status:
        return Status.unresolvable("pod is not welcome")


class CountingFilter:
    """Records which pods its filter saw; a Skip from its own PreFilter must silence it."""

    name = "Counting"

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.calls = 0

    def pre_filter(self, state: CycleState, pod) -> Status:
        return Status.skip() if self.skip else Status.success()

    def filter(self, state, pod, node_info) -> Status:
        self.calls += 1
        return Status.success()


def test_a_pre_filter_rejection_ends_the_cycle():
    snap = cluster(make_node().name("a").obj(), make_node().name("b").obj())
    counting = CountingFilter(skip=False)
    result = schedule(make_pod().obj(), snap, [RejectAll(), counting])
    assert result.node_name is None
    assert counting.calls == 0
    assert result.pre_filter_status == Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("pod is not welcome",),
                                              "RejectAll")
    assert result.message == ("0/2 nodes are available: pod is not welcome. "
                              "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")


@pytest.mark.parametrize(("skip", "calls"), [(True, 0), (False, 2)])
def test_skip_turns_off_the_plugins_filter(skip, calls):
    snap = cluster(make_node().name("a").obj(), make_node().name("b").obj())
    counting = CountingFilter(skip=skip)
    assert schedule(make_pod().obj(), snap, [counting]).node_name == "a"
    assert counting.calls == calls


def test_the_cycle_does_not_change_its_inputs():
    import copy

    node = make_node().name("a").obj()
    pod = make_pod().requests(cpu="1").obj()
    before = (copy.deepcopy(node), copy.deepcopy(pod))
    schedule(pod, cluster(node), default_plugins())
    assert (node, pod) == before
