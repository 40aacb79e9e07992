"""The Endpoints controller's pure parts and what it shares with the EndpointSlice one, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.controllers._endpoints_util import (
    TriggerTimeTracker,
    find_port,
    format_trigger_time,
    pod_endpoints_changed,
    service_selector,
    services_for_pod_change,
    should_pod_be_in_endpoints,
    should_set_hostname,
)
from timoner.controllers.endpoints import (
    address_count,
    desired_subsets,
    endpoint_address,
    repack_subsets,
    subsets_equal,
    truncate_subsets,
)

NOW = 1_700_000_000.0


def stamp(seconds):
    return dt.datetime.fromtimestamp(NOW + seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, ip="10.0.0.1", *, ready=True, labels=None, deleting=False, phase="Running", ports=None, ready_at=0,
        hostname=None, subdomain=None, namespace="ns", rv="1", ips=None, sidecar_ports=None):
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {"app": "web"},
            "resourceVersion": rv}
    if deleting:
        meta["deletionTimestamp"] = stamp(0)
    spec = {"nodeName": "n1", "containers": [{"name": "c", "ports": ports or []}]}
    if sidecar_ports is not None:
        spec["initContainers"] = [{"name": "side", "restartPolicy": "Always", "ports": sidecar_ports},
                                  {"name": "init", "ports": [{"name": "init-only", "containerPort": 1}]}]
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                              "lastTransitionTime": stamp(ready_at)}]}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": i} for i in (ips or [ip])]
    return {"metadata": meta, "spec": spec, "status": status}


def service(name="web", *, selector=None, ports=None, created=0, **spec):
    body = {"selector": {"app": "web"} if selector is None else selector, "clusterIP": "10.96.0.1",
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports}
    body.update(spec)
    return {"metadata": {"name": name, "namespace": "ns", "uid": "svc-uid", "creationTimestamp": stamp(created)},
            "spec": body}


def addr(ip, name=None):
    out = {"ip": ip}
    if name:
        out["targetRef"] = {"kind": "Pod", "uid": f"uid-{name}"}
    return out


# -- which pods, which ports ---------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "terminating_too", "want"), [
    (pod("a"), False, True),
    (pod("a", ready=False), False, True),  # readiness decides where, not whether
    (pod("a", ip=None), False, False),
    (pod("a", phase="Succeeded"), True, False),
    (pod("a", phase="Failed"), True, False),
    (pod("a", deleting=True), False, False),
    (pod("a", deleting=True), True, True),
])
def test_should_pod_be_in_endpoints(p, terminating_too, want):
    assert should_pod_be_in_endpoints(p, terminating_too) is want


@pytest.mark.parametrize(("p", "want"), [
    (pod("a", hostname="a", subdomain="web"), True),
    (pod("a", hostname="a", subdomain="other"), False),
    (pod("a", subdomain="web"), False),
    (pod("a", hostname="a", subdomain="web", namespace="elsewhere"), False),
])
def test_should_set_hostname(p, want):
    assert should_set_hostname(p, service()) is want


@pytest.mark.parametrize(("port", "p", "want"), [
    ({"port": 80, "targetPort": 8080}, pod("a"), 8080),
    ({"port": 80}, pod("a"), 80),  # no targetPort: the port itself
    ({"port": 80, "targetPort": "web"}, pod("a", ports=[{"name": "web", "containerPort": 9000}]), 9000),
    ({"port": 80, "targetPort": "web"}, pod("a", ports=[{"name": "other", "containerPort": 9000}]), None),
    ({"port": 80, "targetPort": "web", "protocol": "UDP"},
     pod("a", ports=[{"name": "web", "containerPort": 9000}]), None),  # named, but TCP
    ({"port": 53, "targetPort": "dns", "protocol": "UDP"},
     pod("a", ports=[{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]), 5353),
    ({"port": 80, "targetPort": "side"}, pod("a", sidecar_ports=[{"name": "side", "containerPort": 7}]), 7),
    ({"port": 80, "targetPort": "init-only"}, pod("a", sidecar_ports=[]), None),  # not a sidecar
])
def test_find_port(port, p, want):
    assert find_port(p, port) == want


def test_a_service_without_a_selector_or_with_an_empty_one_selects_nothing():
    assert service_selector(service(selector={})) is None
    assert service_selector({"metadata": {"name": "x"}, "spec": {}}) is None
    assert service_selector(service()) == {"app": "web"}


# -- which Services a pod change concerns ----------------------------------------------------------------


SERVICES = [service("web"), service("all-web", selector={"app": "web"}), service("api", selector={"app": "api"}),
            service("manual", selector={})]


def relabelled(p, labels, rv="2"):
    return {**p, "metadata": {**p["metadata"], "labels": labels, "resourceVersion": rv}}


@pytest.mark.parametrize(("old", "new", "want"), [
    (None, pod("a"), ["all-web", "web"]),
    (pod("a"), None, ["all-web", "web"]),
    (pod("a"), pod("a"), []),  # a resync: same resourceVersion
    (pod("a"), pod("a", rv="2", ready_at=5), []),  # nothing endpoints show changed
    (pod("a"), pod("a", rv="2", ready=False), ["all-web", "web"]),
    (pod("a"), pod("a", rv="2", deleting=True), ["all-web", "web"]),
    (pod("a"), pod("a", "10.0.0.2", rv="2"), ["all-web", "web"]),
    # Only the labels: Services that selected it before and after see nothing new.
    (pod("a"), relabelled(pod("a"), {"app": "api"}), ["all-web", "api", "web"]),
    (pod("a"), relabelled(pod("a"), {"app": "web", "x": "y"}), []),
    # Labels and readiness: everyone before or after.
    (pod("a"), relabelled(pod("a", ready=False), {"app": "web", "x": "y"}), ["all-web", "web"]),
])
def test_services_for_pod_change(old, new, want):
    assert sorted(services_for_pod_change(SERVICES, old, new)) == want


def test_a_hostname_change_counts_as_a_label_change():
    change = pod_endpoints_changed(pod("a"), pod("a", hostname="a", rv="2"))
    assert (change.labels, change.endpoints) == (True, False)


# -- addresses and subsets --------------------------------------------------------------------------------


def test_endpoint_address_takes_the_ip_of_the_services_family():
    dual = pod("a", "10.0.0.1", ips=["10.0.0.1", "fd00::1"], hostname="a", subdomain="web")
    assert endpoint_address(service(), dual) == {
        "ip": "10.0.0.1", "hostname": "a", "nodeName": "n1",
        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}
    assert endpoint_address(service(ipFamilies=["IPv6"]), dual)["ip"] == "fd00::1"
    assert endpoint_address(service(ipFamilies=["IPv6"]), pod("b")) is None
    # A headless Service without families: the pod's own family.
    headless = service(ipFamilies=None, clusterIP="None")
    assert endpoint_address(headless, pod("c", "fd00::3"))["ip"] == "fd00::3"


def test_desired_subsets_split_ready_and_not_ready_and_resolve_named_ports():
    ports = [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "appProtocol": "http"},
             {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}]
    pods = [pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080}]),
            pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 8080}], ready=False),
            pod("c", "10.0.0.3", ports=[{"name": "web", "containerPort": 9090}]),
            pod("d", "10.0.0.4"),  # no `web` port: metrics only
            pod("gone", "10.0.0.5", deleting=True),
            pod("done", "10.0.0.6", phase="Succeeded")]
    subsets = desired_subsets(service(ports=ports), pods)

    def ips(s, field):
        return [a["ip"] for a in s.get(field) or ()]
    got = [(ips(s, "addresses"), ips(s, "notReadyAddresses"), [(p["name"], p["port"]) for p in s["ports"]])
           for s in subsets]
    assert sorted(got) == sorted([
        (["10.0.0.1"], ["10.0.0.2"], [("http", 8080)]),
        (["10.0.0.3"], [], [("http", 9090)]),
        (["10.0.0.1", "10.0.0.3", "10.0.0.4"], ["10.0.0.2"], [("metrics", 9100)]),
    ])
    http = next(s for s in subsets if s["ports"][0]["port"] == 8080)
    assert http["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]


def test_publish_not_ready_addresses_makes_everything_ready_terminating_pods_included():
    pods = [pod("a"), pod("b", "10.0.0.2", ready=False), pod("c", "10.0.0.3", deleting=True)]
    (subset,) = desired_subsets(service(publishNotReadyAddresses=True), pods)
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert "notReadyAddresses" not in subset


def test_a_headless_service_without_ports_publishes_bare_addresses_a_clusterip_one_nothing():
    assert desired_subsets(service(clusterIP="None", ports=[]), [pod("a")]) == [
        {"addresses": [endpoint_address(service(), pod("a"))]}]
    assert desired_subsets(service(ports=[]), [pod("a")]) == []


P80 = {"name": "a", "port": 80, "protocol": "TCP"}
P81 = {"name": "b", "port": 81, "protocol": "TCP"}


@pytest.mark.parametrize(("subsets", "want"), [
    ([], []),
    # One address per port, two ports: one subset with both ports.
    ([{"addresses": [addr("1.1.1.1")], "ports": [P80]}, {"addresses": [addr("1.1.1.1")], "ports": [P81]}],
     [{"addresses": [addr("1.1.1.1")], "ports": [P80, P81]}]),
    # Different address sets per port stay apart; addresses sort by IP.
    ([{"addresses": [addr("2.2.2.2"), addr("1.1.1.1")], "ports": [P80]}, {"addresses": [addr("1.1.1.1")],
                                                                          "ports": [P81]}],
     [{"addresses": [addr("1.1.1.1"), addr("2.2.2.2")], "ports": [P80]},
      {"addresses": [addr("1.1.1.1")], "ports": [P81]}]),
    # Not ready anywhere for a port means not ready for it.
    ([{"addresses": [addr("1.1.1.1")], "ports": [P80]}, {"notReadyAddresses": [addr("1.1.1.1")], "ports": [P80]}],
     [{"notReadyAddresses": [addr("1.1.1.1")], "ports": [P80]}]),
    # The same IP for two pods is two addresses.
    ([{"addresses": [addr("1.1.1.1", "x"), addr("1.1.1.1", "y")], "ports": [P80]}],
     [{"addresses": [addr("1.1.1.1", "x"), addr("1.1.1.1", "y")], "ports": [P80]}]),
    # No ports at all.
    ([{"addresses": [addr("1.1.1.1")]}, {"notReadyAddresses": [addr("2.2.2.2")]}],
     [{"addresses": [addr("1.1.1.1")], "notReadyAddresses": [addr("2.2.2.2")]}]),
])
def test_repack_subsets(subsets, want):
    assert sorted(repack_subsets(subsets), key=repr) == sorted(want, key=repr)


_addresses = st.lists(st.tuples(st.sampled_from(["1.1.1.1", "2.2.2.2", "3.3.3.3"]), st.booleans()), max_size=4)
_subsets = st.lists(st.tuples(_addresses, st.lists(st.sampled_from([P80, P81]), max_size=2, unique_by=repr)),
                    max_size=5)


def _build(raw):
    return [{"addresses": [addr(ip) for ip, ready in entries if ready],
             "notReadyAddresses": [addr(ip) for ip, ready in entries if not ready], "ports": ports}
            for entries, ports in raw]


@given(_subsets)
def test_repacking_is_idempotent_and_keeps_every_address_port_pair(raw):
    once = repack_subsets(_build(raw))
    assert repack_subsets(once) == once

    def pairs(subsets):
        return {(a["ip"], p["port"]) for s in subsets
                for a in [*s.get("addresses", ()), *s.get("notReadyAddresses", ())] for p in s.get("ports") or ()}

    def ips(subsets):
        return {a["ip"] for s in subsets for a in [*s.get("addresses", ()), *s.get("notReadyAddresses", ())]}
    # (Port-less entries of an address set that also has ports merge into that subset, as upstream's.)
    assert pairs(once) == pairs(_build(raw)) and ips(once) == ips(_build(raw))


def _many(ready, not_ready, ports=(P80,)):
    return {"addresses": [addr(f"10.0.{i // 250}.{i % 250}") for i in range(ready)],
            "notReadyAddresses": [addr(f"10.1.{i // 250}.{i % 250}") for i in range(not_ready)], "ports": list(ports)}


def test_truncation_keeps_ready_addresses_first_and_takes_proportionally():
    small = [_many(10, 5)]
    assert truncate_subsets(small, 100) is small

    # Ready ones fit: not-ready ones are cut, in proportion per subset.
    # Shares round up, so the last subset gives up more: 150.5 -> 151, then 49.5 -> the 49 left.
    out = truncate_subsets([_many(600, 301), _many(200, 99, (P81,))], 1000)
    assert address_count(out) == 1000
    assert [len(s["addresses"]) for s in out] == [600, 200]
    assert [len(s["notReadyAddresses"]) for s in out] == [151, 49]

    # Too many ready ones: every not-ready one goes, ready ones cut in proportion.
    out = truncate_subsets([_many(900, 10), _many(300, 10, (P81,))], 1000)
    assert [len(s["addresses"]) for s in out] == [750, 250]
    assert not any(s.get("notReadyAddresses") for s in out)


def test_subsets_compare_without_the_pods_resource_version():
    a = [{"addresses": [{"ip": "1.1.1.1", "targetRef": {"kind": "Pod", "uid": "u", "resourceVersion": "5"}}]}]
    b = [{"addresses": [{"ip": "1.1.1.1", "targetRef": {"kind": "Pod", "uid": "u"}}], "notReadyAddresses": []}]
    assert subsets_equal(a, b)
    assert not subsets_equal(a, [{"notReadyAddresses": b[0]["addresses"]}])


# -- the last-change-trigger-time annotation ---------------------------------------------------------------


def test_trigger_time_is_the_creation_first_then_the_earliest_new_change():
    tracker = TriggerTimeTracker()
    svc = service(created=-100)
    pods = [pod("a", ready_at=-50), pod("b", ready_at=-40)]
    assert tracker.compute(svc, pods) == NOW - 100  # a Service seen for the first time
    assert tracker.compute(svc, pods) is None  # nothing new
    pods = [pod("a", ready_at=-10), pod("b", ready_at=-20), pod("c", ready_at=-30)]
    assert tracker.compute(svc, pods) == NOW - 30  # the earliest change not yet written out
    tracker.delete_service("ns", "web")
    assert tracker.compute(svc, pods) == NOW - 100


@pytest.mark.parametrize(("when", "want"), [
    (0.0, "1970-01-01T00:00:00Z"),
    (1_700_000_000.5, "2023-11-14T22:13:20.5Z"),
    (1_700_000_000.123456, "2023-11-14T22:13:20.123456Z"),
])
def test_trigger_times_print_as_go_rfc3339nano(when, want):
    assert format_trigger_time(when) == want
