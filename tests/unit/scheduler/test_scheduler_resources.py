"""Pod requests arithmetic, NodeResourcesFit's filter and the two resource scores, table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scheduler_builders import make_node, make_pod

from timoner.scheduler import CycleState, Resources, Snapshot, Status, pod_requests
from timoner.scheduler.plugins import NodeResourcesBalancedAllocation, NodeResourcesFit

MI = 1024 * 1024


@pytest.mark.parametrize(("pod", "expected"), [
    (make_pod().obj(), Resources()),
    (make_pod().requests(cpu="100m", memory="64Mi").obj(), Resources(100, 64 * MI)),
    (make_pod().requests(cpu="1").container(cpu="250m").obj(), Resources(1250)),
    (make_pod().requests(cpu="0.5", ephemeral_storage="1Gi").obj(), Resources(500, 0, 1024 * MI)),
    (make_pod().requests(cpu="1m").obj(), Resources(1)),
    # init containers run one at a time, before the app: the larger of the two wins, per resource
    (make_pod().requests(cpu="100m", memory="1Gi").init_container(cpu="2", memory="1Mi").obj(),
     Resources(2000, 1024 * MI)),
    (make_pod().requests(cpu="100m").init_container(cpu="300m").init_container(cpu="200m").obj(), Resources(300)),
    # a sidecar runs alongside the app and every later init container
    (make_pod().requests(cpu="100m").init_container(sidecar=True, cpu="50m").init_container(cpu="500m").obj(),
     Resources(550)),
    (make_pod().requests(cpu="100m").init_container(sidecar=True, cpu="50m").obj(), Resources(150)),
    (make_pod().requests(cpu="100m").overhead(cpu="10m", memory="1Mi").obj(), Resources(110, MI)),
    (make_pod().requests(**{"example.com/gpu": "2"}).obj(), Resources(scalar={"example.com/gpu": 2})),
], ids=["empty", "cpu-memory", "two-containers", "storage", "millicore", "init-max", "init-peak",
        "sidecar-plus-init", "sidecar-sum", "overhead", "extended"])
def test_pod_requests(pod, expected):
    assert pod_requests(pod) == expected


def test_non_zero_requests_default_only_missing_values():
    pod = make_pod().requests(memory="0").obj()
    assert pod_requests(pod, non_zero=True) == Resources(100, 0)
    assert pod_requests(make_pod().obj(), non_zero=True) == Resources(100, 200 * MI)


@given(st.lists(st.integers(0, 4000), max_size=5), st.lists(st.integers(0, 4000), max_size=5))
def test_requests_cover_every_container_and_never_exceed_the_whole_sum(app, init):
    pod = make_pod().obj()
    pod["spec"]["containers"] = [{"name": f"c{i}", "resources": {"requests": {"cpu": f"{m}m"}}}
                                 for i, m in enumerate(app)]
    pod["spec"]["initContainers"] = [{"name": f"i{i}", "resources": {"requests": {"cpu": f"{m}m"}}}
                                     for i, m in enumerate(init)]
    got = pod_requests(pod).milli_cpu
    assert got == max(sum(app), max(init, default=0))
    assert got <= sum(app) + sum(init)


def node_with(node, *pods):
    return Snapshot.build([node], pods).list()[0]


def fit(pod, node_info) -> Status:
    plugin = NodeResourcesFit()
    state = CycleState()
    assert plugin.pre_filter(state, pod).is_success
    return plugin.filter(state, pod, node_info)


ONE_CPU = make_node().name("n1").allocatable(cpu="1", memory="1Gi", ephemeral_storage="10Gi",
                                             **{"example.com/gpu": "1"}).obj()


def placed(cpu="0", memory="0", **extra):
    return make_pod().name(f"placed-{cpu}-{memory}").node("n1").requests(cpu=cpu, memory=memory, **extra).obj()


@pytest.mark.parametrize(("pod", "already", "reasons"), [
    (make_pod().requests(cpu="400m").obj(), [], ()),
    (make_pod().requests(cpu="1").obj(), [], ()),
    (make_pod().requests(cpu="1001m").obj(), [], ("Insufficient cpu",)),
    (make_pod().requests(cpu="400m").obj(), [placed("400m"), placed("400m", "1")], ("Insufficient cpu",)),
    (make_pod().requests(cpu="200m").obj(), [placed("400m"), placed("400m", "1")], ()),
    (make_pod().requests(cpu="2", memory="2Gi").obj(), [], ("Insufficient cpu", "Insufficient memory")),
    (make_pod().requests(ephemeral_storage="11Gi").obj(), [], ("Insufficient ephemeral-storage",)),
    (make_pod().requests(**{"example.com/gpu": "2"}).obj(), [], ("Insufficient example.com/gpu",)),
    (make_pod().requests(**{"example.com/gpu": "1"}).obj(), [placed(**{"example.com/gpu": "1"})],
     ("Insufficient example.com/gpu",)),
    (make_pod().requests(**{"vendor.io/fpga": "1"}).obj(), [], ("Insufficient vendor.io/fpga",)),
    (make_pod().requests(**{"vendor.io/fpga": "0"}).obj(), [], ()),
    (make_pod().obj(), [placed("1", "1Gi")], ()),  # a pod asking nothing only needs a slot
    # finished pods have given their resources back
    (make_pod().requests(cpu="1").obj(), [make_pod().name("done").node("n1").requests(cpu="1").phase("Succeeded").obj()],
     ()),
], ids=["fits", "exactly", "cpu", "cpu-after-placed", "fits-after-placed", "cpu-and-memory", "storage",
        "extended", "extended-used", "extended-missing", "extended-zero", "best-effort", "finished-pods"])
def test_fit(pod, already, reasons):
    status = fit(pod, node_with(ONE_CPU, *already))
    assert status == (Status.unschedulable(*reasons) if reasons else Status.success())


def test_fit_counts_pods_against_the_pod_slots():
    node = make_node().name("n1").allocatable(cpu="4", pods="2").obj()
    assert fit(make_pod().obj(), node_with(node, placed())).is_success
    status = fit(make_pod().requests(cpu="8").obj(), node_with(node, placed(), placed("1")))
    assert status == Status.unschedulable("Too many pods", "Insufficient cpu")


def test_fit_reads_capacity_when_allocatable_is_missing():
    node = make_node().name("n1").capacity_only(cpu="2", memory="1Gi", pods="10").obj()
    assert fit(make_pod().requests(cpu="2").obj(), node_with(node)).is_success
    assert fit(make_pod().requests(cpu="3").obj(), node_with(node)) == Status.unschedulable("Insufficient cpu")


@pytest.mark.parametrize(("used_cpu", "used_memory", "expected"), [
    # (free cpu share 3900/4000 -> 97, free memory share 3896/4096 -> 95) / 2
    ("0", "0", 96),
    ("2", "2Gi", (1900 * 100 // 4000 + 1848 * 100 // 4096) // 2),
    ("4", "4Gi", 0),  # over-committed resources score zero, not negative
])
def test_least_allocated_score(used_cpu, used_memory, expected):
    node = make_node().name("n1").allocatable(cpu="4", memory="4Gi").obj()
    info = node_with(node, placed(used_cpu, used_memory))
    pod = make_pod().requests(cpu="100m", memory="200Mi").obj()
    assert NodeResourcesFit().score(CycleState(), pod, info) == expected


def test_least_allocated_prefers_the_emptier_node():
    node = make_node().name("n1").allocatable(cpu="4", memory="4Gi").obj()
    pod = make_pod().requests(cpu="100m").obj()
    empty, busy = node_with(node), node_with(node, placed("2", "1Gi"))
    assert NodeResourcesFit().score(CycleState(), pod, empty) > NodeResourcesFit().score(CycleState(), pod, busy)


@pytest.mark.parametrize(("used_cpu", "used_memory", "expected"), [
    ("1900m", "1848Mi", 100),  # with the pod: half of each
    ("3900m", "0", 52),  # cpu full, memory at 200Mi/4Gi: 1 - (1 - 0.049) / 2
])
def test_balanced_allocation_score(used_cpu, used_memory, expected):
    node = make_node().name("n1").allocatable(cpu="4", memory="4Gi").obj()
    info = node_with(node, placed(used_cpu, used_memory))
    pod = make_pod().requests(cpu="100m", memory="200Mi").obj()
    assert NodeResourcesBalancedAllocation().score(CycleState(), pod, info) == expected
