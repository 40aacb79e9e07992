"""The EndpointSlice controller's arithmetic (`plan_slices`) and its tracker, table-driven."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timoner.controllers._endpointslice_util import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    address_types_for_service,
    endpoint_ports,
    plan_slices,
    pod_to_endpoint,
    slice_labels,
)
from timoner.controllers.endpointslice import SliceTracker

NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}},
         "n2": {"metadata": {"name": "n2"}}}


def node_of(name):
    return NODES.get(name)


def _ip_for(name):
    """p<n> lives at 10.0.<n // 250>.<n % 250 + 1>."""
    n = int(name[1:])
    return f"10.0.{n // 250}.{n % 250 + 1}"


def pod(name, ip=None, *, ready=True, deleting=False, node="n1", ports=None, hostname=None, subdomain=None,
        ips=None):
    ip = ip or _ip_for(name)
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec = {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    return {"metadata": meta, "spec": spec,
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": i} for i in (ips or [ip])],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(*, ports=None, labels=None, uid="svc-uid", **spec):
    body = {"selector": {"app": "web"}, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports}
    body.update(spec)
    meta = {"name": "web", "namespace": "ns", "uid": uid}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "spec": body}


def written(plan, start=0):
    """What the server would hold after the plan: creates named, updates applied, deletes gone (by name)."""
    out = {}
    for i, s in enumerate(plan.create):
        s = copy.deepcopy(s)
        s["metadata"]["name"] = f"web-{start + i}"
        out[s["metadata"]["name"]] = s
    for s in plan.update:
        out[s["metadata"]["name"]] = copy.deepcopy(s)
    return out


def apply(existing, plan, start=0):
    state = {s["metadata"]["name"]: s for s in existing}
    for s in plan.delete:
        state.pop(s["metadata"]["name"])
    state.update(written(plan, start))
    return list(state.values())


def endpoint_names(slices):
    return sorted(e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or ())


# -- one endpoint --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "publish", "conditions"), [
    (pod("p1"), False, {"ready": True, "serving": True, "terminating": False}),
    (pod("p1", ready=False), False, {"ready": False, "serving": False, "terminating": False}),
    (pod("p1", deleting=True), False, {"ready": False, "serving": True, "terminating": True}),
    (pod("p1", ready=False, deleting=True), False, {"ready": False, "serving": False, "terminating": True}),
    (pod("p1", ready=False), True, {"ready": True, "serving": False, "terminating": False}),
    (pod("p1", deleting=True), True, {"ready": True, "serving": True, "terminating": True}),
])
def test_endpoint_conditions(p, publish, conditions):
    assert pod_to_endpoint(p, NODES["n1"], service(publishNotReadyAddresses=publish), "IPv4")["conditions"] == \
        conditions


def test_an_endpoint_carries_node_zone_hostname_and_the_pod():
    p = pod("p1", "10.0.0.5", ips=["10.0.0.5", "fd00::5"], hostname="p1", subdomain="web")
    assert pod_to_endpoint(p, NODES["n1"], service(), "IPv4") == {
        "addresses": ["10.0.0.5"], "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "p1", "uid": "uid-p1"},
        "nodeName": "n1", "zone": "zone-a", "hostname": "p1"}
    other = pod("p2", "10.0.0.6", node="n2", hostname="p2", subdomain="elsewhere")
    endpoint = pod_to_endpoint(other, NODES["n2"], service(), "IPv6")
    assert endpoint["addresses"] == [] and "zone" not in endpoint and "hostname" not in endpoint


def test_endpoint_ports_resolve_per_pod_and_keep_names_protocols_and_app_protocols():
    ports = [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "appProtocol": "http"},
             {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"}]
    assert endpoint_ports(service(ports=ports), pod("p1", ports=[{"name": "web", "containerPort": 8080}])) == [
        {"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"},
        {"name": "dns", "port": 53, "protocol": "UDP"}]
    assert endpoint_ports(service(ports=ports), pod("p1")) == [{"name": "dns", "port": 53, "protocol": "UDP"}]


@pytest.mark.parametrize(("spec", "want"), [
    ({"ipFamilies": ["IPv4"]}, ["IPv4"]),
    ({"ipFamilies": ["IPv6", "IPv4"]}, ["IPv4", "IPv6"]),
    ({"ipFamilies": None, "clusterIP": "fd00::1"}, ["IPv6"]),
    ({"ipFamilies": None, "clusterIP": "None"}, ["IPv4", "IPv6"]),
])
def test_address_types_for_service(spec, want):
    assert address_types_for_service(service(**spec)) == want


def test_slice_labels_follow_the_service_except_the_reserved_keys():
    svc = service(labels={"tier": "front", LABEL_MANAGED_BY: "me"})
    labels = slice_labels({"metadata": {"labels": {"tier": "front", LABEL_SERVICE_NAME: "web"}}}, svc)
    assert labels.labels == {"tier": "front", LABEL_SERVICE_NAME: "web",
                             LABEL_MANAGED_BY: "endpointslice-controller.k8s.io"} and not labels.changed
    headless = slice_labels({"metadata": {}}, service(clusterIP="None"))
    assert headless.changed is False and headless.labels["service.kubernetes.io/headless"] == ""
    assert slice_labels({"metadata": {"labels": {"tier": "back"}}}, svc).changed


# -- the plan --------------------------------------------------------------------------------------------


def test_a_new_service_gets_one_slice_owned_by_it():
    plan = plan_slices(service(labels={"tier": "front"}), [pod("p1"), pod("p2", ready=False)], [], node_of=node_of)
    (s,) = plan.create
    assert not plan.update and not plan.delete and not plan.errors
    assert s["metadata"]["generateName"] == "web-" and "name" not in s["metadata"]
    assert s["metadata"]["labels"] == {"tier": "front", LABEL_SERVICE_NAME: "web",
                                       LABEL_MANAGED_BY: "endpointslice-controller.k8s.io"}
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert endpoint_names([s]) == ["p1", "p2"]


def test_no_endpoints_means_one_placeholder_which_is_then_kept():
    plan = plan_slices(service(), [], [], node_of=node_of)
    (placeholder,) = plan.create
    assert placeholder["endpoints"] == [] and placeholder["ports"] == []
    existing = apply([], plan)
    again = plan_slices(service(), [], existing, node_of=node_of)
    assert again.empty


def test_slices_hold_at_most_the_maximum_and_unchanged_slices_are_not_written():
    pods = [pod(f"p{i}") for i in range(230)]
    plan = plan_slices(service(), pods, [], node_of=node_of)
    assert sorted(len(s["endpoints"]) for s in plan.create) == [30, 100, 100]
    existing = apply([], plan)
    assert plan_slices(service(), pods, existing, node_of=node_of).empty

    # One pod more: it goes into the slice with room; nothing else is written.
    plan = plan_slices(service(), [*pods, pod("p999")], existing, node_of=node_of)
    (changed,) = plan.update
    assert not plan.create and not plan.delete and len(changed["endpoints"]) == 31

    # One pod's readiness changes: only its slice is rewritten, in place.
    flipped = [pod("p5", ready=False) if p["metadata"]["name"] == "p5" else p for p in pods]
    plan = plan_slices(service(), flipped, existing, node_of=node_of)
    (changed,) = plan.update
    holder = next(s for s in existing if "p5" in endpoint_names([s]))
    assert changed["metadata"]["name"] == holder["metadata"]["name"] and not plan.create and not plan.delete


def test_a_custom_maximum():
    plan = plan_slices(service(), [pod(f"p{i}") for i in range(10)], [], node_of=node_of, max_endpoints_per_slice=4)
    assert sorted(len(s["endpoints"]) for s in plan.create) == [2, 4, 4]


def test_pods_resolving_a_named_port_differently_get_separate_slices():
    ports = [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]
    pods = [pod("p1", ports=[{"name": "web", "containerPort": 8080}]),
            pod("p2", ports=[{"name": "web", "containerPort": 9090}]),
            pod("p3", ports=[{"name": "web", "containerPort": 8080}]),
            pod("p4")]
    plan = plan_slices(service(ports=ports), pods, [], node_of=node_of)
    got = sorted((tuple(p["port"] for p in s["ports"]), tuple(endpoint_names([s]))) for s in plan.create)
    assert got == [((), ("p4",)), ((8080,), ("p1", "p3")), ((9090,), ("p2",))]


def test_an_emptied_slice_is_reused_for_a_new_port_set_instead_of_deleted_and_created():
    ports = [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]
    existing = apply([], plan_slices(service(ports=ports), [pod("p1", ports=[{"name": "web", "containerPort": 8080}])],
                                     [], node_of=node_of))
    moved = [pod("p1", ports=[{"name": "web", "containerPort": 9090}])]
    plan = plan_slices(service(ports=ports), moved, existing, node_of=node_of)
    (reused,) = plan.update
    assert not plan.create and not plan.delete
    assert reused["metadata"]["name"] == existing[0]["metadata"]["name"]
    assert reused["ports"][0]["port"] == 9090 and endpoint_names([reused]) == ["p1"]


def test_slices_of_an_earlier_service_and_of_another_address_type_are_deleted():
    old = apply([], plan_slices(service(uid="old-uid"), [pod("p1")], [], node_of=node_of))
    plan = plan_slices(service(), [pod("p1")], old, node_of=node_of)
    # Not ours to reuse (an update might race the garbage collector): a fresh one, and the old one deleted.
    assert [s["metadata"]["name"] for s in plan.delete] == [old[0]["metadata"]["name"]]
    assert len(plan.create) == 1 and not plan.update
    ipv6 = [{**copy.deepcopy(old[0]), "addressType": "IPv6"}]
    ipv6[0]["metadata"]["ownerReferences"][0]["uid"] = "svc-uid"
    plan = plan_slices(service(), [pod("p1")], ipv6, node_of=node_of)
    assert plan.delete == ipv6 and len(plan.create) == 1


def test_a_pod_on_an_unknown_node_is_left_out_and_reported_unless_everything_is_published():
    plan = plan_slices(service(), [pod("p1"), pod("p2", node="ghost")], [], node_of=node_of)
    assert endpoint_names(plan.create) == ["p1"]
    assert plan.errors == ["skipping Pod p2 for Service ns/web: Node ghost Not Found"]
    plan = plan_slices(service(publishNotReadyAddresses=True), [pod("p1"), pod("p2", node="ghost")], [],
                       node_of=node_of)
    assert endpoint_names(plan.create) == ["p1", "p2"] and not plan.errors


def test_the_services_labels_are_followed():
    existing = apply([], plan_slices(service(), [pod("p1")], [], node_of=node_of))
    plan = plan_slices(service(labels={"tier": "back"}), [pod("p1")], existing, node_of=node_of)
    (s,) = plan.update
    assert s["metadata"]["labels"]["tier"] == "back" and endpoint_names([s]) == ["p1"]


_pod_sets = st.lists(st.tuples(st.integers(0, 60), st.booleans(), st.booleans()), max_size=60,
                     unique_by=lambda t: t[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(_pod_sets, min_size=1, max_size=4), st.integers(1, 30))
def test_any_sequence_of_syncs_publishes_every_pod_once_within_the_maximum(rounds, maximum):
    existing: list = []
    created = 0
    for spec in rounds:
        pods = [pod(f"p{i}", ready=ready, deleting=deleting) for i, ready, deleting in spec]
        plan = plan_slices(service(), pods, existing, node_of=node_of, max_endpoints_per_slice=maximum)
        existing = apply(existing, plan, created)
        created += len(plan.create)
        assert endpoint_names(existing) == sorted(f"p{i}" for i, _, _ in spec)
        assert all(len(s.get("endpoints") or ()) <= maximum for s in existing)
        assert len(existing) >= 1  # a placeholder at least
        # Converged: a second sync of the same world writes nothing.
        assert plan_slices(service(), pods, existing, node_of=node_of, max_endpoints_per_slice=maximum).empty


# -- the tracker --------------------------------------------------------------------------------------------


def _slice(uid, rv, service_name="web"):
    return {"metadata": {"name": uid, "namespace": "ns", "uid": uid, "resourceVersion": str(rv),
                         "labels": {LABEL_SERVICE_NAME: service_name}}}


def test_the_tracker_knows_a_cache_behind_our_writes_and_changes_by_others():
    tracker, svc = SliceTracker(), service()
    assert not tracker.stale(svc, []) and tracker.should_sync(_slice("a", 5))
    tracker.update(svc, _slice("a", 5))
    assert tracker.stale(svc, [])  # the cache does not show our slice yet
    assert tracker.stale(svc, [_slice("a", 4)])  # ... or an older version of it
    assert not tracker.stale(svc, [_slice("a", 5)])
    assert not tracker.should_sync(_slice("a", 5))  # our own write coming back
    assert tracker.should_sync(_slice("a", 6))  # someone else's

    tracker.expect_deletion(svc, _slice("a", 5))
    assert tracker.stale(svc, [_slice("a", 5)]) and not tracker.stale(svc, [])
    assert tracker.handle_deletion(_slice("a", 5)) is True  # expected
    tracker.update(svc, _slice("b", 7))
    assert tracker.handle_deletion(_slice("b", 7)) is False  # not expected: resync

    # A new Service of the same name is not held back by the old one's writes.
    tracker.update(svc, _slice("c", 9))
    assert not tracker.stale(service(uid="new-uid"), [])
