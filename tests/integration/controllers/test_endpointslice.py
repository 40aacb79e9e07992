"""The EndpointSlice controller against a real API server: pods on agentless nodes, their status written by the test."""

from __future__ import annotations

from controller_helpers import PODS, events_for
from service_helpers import (
    MANAGED_BY,
    SERVICE_NAME,
    SERVICES,
    SLICES,
    TRIGGER_TIME,
    WEB,
    node,
    pod,
    service,
    set_ready,
    spy_on,
    target_ref,
    web_and_peers,
)

from timoner.controllers import Request

OURS = "endpointslice-controller.k8s.io"


async def slices_of(client, namespace, name, managed_by=OURS):
    items = (await client.list(SLICES, namespace=namespace, label_selector=f"{SERVICE_NAME}={name}"))["items"]
    return [s for s in items if s["metadata"]["labels"].get(MANAGED_BY) == managed_by]


def by_pod(slices):
    return {e["targetRef"]["name"]: e for s in slices for e in s.get("endpoints") or ()}


async def endpoints_are(client, namespace, name, want):
    """The slices when their endpoints' conditions are `want` ({pod: (ready, serving, terminating)})."""
    slices = await slices_of(client, namespace, name)
    got = {pod_name: (e["conditions"]["ready"], e["conditions"]["serving"], e["conditions"]["terminating"])
           for pod_name, e in by_pod(slices).items()}
    return slices if got == want else None


async def test_a_slice_with_conditions_topology_and_a_readiness_flip(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1", zone="zone-a")
    await node(client, "n2")
    a = await pod(client, namespace, "a", "10.1.0.1", node_name="n1", hostname="a", subdomain="web")
    b = await pod(client, namespace, "b", "10.1.0.2", node_name="n2", ready=False)
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "appProtocol": "http"}]
    svc = await client.create(SERVICES, service("web", selector=WEB, ports=ports, labels={"tier": "front"}),
                              namespace=namespace)

    (s,) = await eventually(lambda: endpoints_are(client, namespace, "web", {
        "a": (True, True, False), "b": (False, False, False)}), 10, "one slice with both pods")
    assert s["metadata"]["name"].startswith("web-") and len(s["metadata"]["name"]) > len("web-")
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"tier": "front", SERVICE_NAME: "web", MANAGED_BY: OURS}
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": svc["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]
    assert s["metadata"]["annotations"][TRIGGER_TIME].endswith("Z")
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
    endpoints = by_pod([s])
    assert endpoints["a"] == {"addresses": ["10.1.0.1"], "conditions": {"ready": True, "serving": True,
                                                                         "terminating": False},
                              "nodeName": "n1", "zone": "zone-a", "hostname": "a", "targetRef": target_ref(a)}
    assert endpoints["b"] == {"addresses": ["10.1.0.2"], "conditions": {"ready": False, "serving": False,
                                                                         "terminating": False},
                              "nodeName": "n2", "targetRef": target_ref(b)}

    # Readiness flips show within a couple of seconds, in the same slice.
    await set_ready(client, namespace, "b", True)
    (flipped,) = await eventually(lambda: endpoints_are(client, namespace, "web", {
        "a": (True, True, False), "b": (True, True, False)}), 2, "b ready")
    assert flipped["metadata"]["name"] == s["metadata"]["name"]
    await set_ready(client, namespace, "a", False)
    await eventually(lambda: endpoints_are(client, namespace, "web", {
        "a": (False, False, False), "b": (True, True, False)}), 2, "a not ready")

    # The Service's labels follow onto the slice.
    await client.patch(SERVICES, "web", {"metadata": {"labels": {"tier": "back"}}}, namespace=namespace)

    async def relabelled():
        (one,) = await slices_of(client, namespace, "web")
        return one["metadata"]["labels"].get("tier") == "back" and one
    assert (await eventually(relabelled, 5, "the new label"))["metadata"]["name"] == s["metadata"]["name"]


async def test_terminating_endpoints_and_publish_not_ready_addresses(bare, client, namespace, eventually):
    await bare.start_manager()
    await web_and_peers(client, namespace)
    await eventually(lambda: endpoints_are(client, namespace, "web", {
        "a": (True, True, False), "b": (False, False, False), "c": (True, True, False)}), 10, "web")

    # Terminating endpoints stay, not ready, serving as long as the pod is Ready.
    await client.delete(PODS, "c", namespace=namespace)
    await client.delete(PODS, "b", namespace=namespace)
    await eventually(lambda: endpoints_are(client, namespace, "web", {
        "a": (True, True, False), "b": (False, False, True), "c": (False, True, True)}), 5, "terminating endpoints")
    # With publishNotReadyAddresses every endpoint is ready.
    await eventually(lambda: endpoints_are(client, namespace, "peers", {
        "a": (True, True, False), "b": (True, False, True), "c": (True, True, True)}), 5, "peers")

    # Gone for good (what a kubelet does at the end): the endpoint goes.
    await client.delete(PODS, "c", namespace=namespace, grace_period_seconds=0)
    await eventually(lambda: endpoints_are(client, namespace, "web", {
        "a": (True, True, False), "b": (False, False, True)}), 5, "c gone")


async def test_pods_resolving_a_named_port_differently_get_separate_slices(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1")
    await pod(client, namespace, "a", "10.1.0.1", ports=[{"name": "web", "containerPort": 8080}])
    await pod(client, namespace, "a2", "10.1.0.4", ports=[{"name": "web", "containerPort": 8080}])
    await pod(client, namespace, "b", "10.1.0.2", ports=[{"name": "web", "containerPort": 9090}])
    await pod(client, namespace, "c", "10.1.0.3", ports=[{"name": "admin", "containerPort": 7000}])
    await client.create(SERVICES, service("web", selector=WEB, ports=[{"name": "http", "port": 80,
                                                                       "targetPort": "web"}]), namespace=namespace)

    async def grouped():
        slices = await slices_of(client, namespace, "web")
        got = sorted((tuple(p["port"] for p in s.get("ports") or ()),
                      tuple(sorted(e["targetRef"]["name"] for e in s.get("endpoints") or ()))) for s in slices)
        return got == [((), ("c",)), ((8080,), ("a", "a2")), ((9090,), ("b",))] and slices
    await eventually(grouped, 10, "one slice per resolved port set")

    # b's port set empties: its slice goes, the others stay as they are.
    before = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await slices_of(client, namespace, "web")}
    await client.delete(PODS, "b", namespace=namespace, grace_period_seconds=0)

    async def regrouped():
        slices = await slices_of(client, namespace, "web")
        return sorted(tuple(p["port"] for p in s.get("ports") or ()) for s in slices) == [(), (8080,)] and slices
    for s in await eventually(regrouped, 10, "b's slice deleted"):
        assert before[s["metadata"]["name"]] == s["metadata"]["resourceVersion"]


async def test_many_pods_are_spread_over_slices_of_at_most_100(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1")
    for i in range(230):
        await pod(client, namespace, f"p{i}", f"10.3.{i // 200}.{i % 200 + 1}")
    await client.create(SERVICES, service("big", selector=WEB), namespace=namespace)

    async def spread(count):
        slices = await slices_of(client, namespace, "big")
        return len(by_pod(slices)) == count and slices
    slices = await eventually(lambda: spread(230), 30, "230 endpoints")
    assert sorted(len(s["endpoints"]) for s in slices) == [30, 100, 100]
    assert sum(len(s["endpoints"]) for s in slices) == 230  # each pod once

    # Shrinking keeps the slices it can and deletes the ones it empties.
    for i in range(100, 230):
        await client.delete(PODS, f"p{i}", namespace=namespace, grace_period_seconds=0)
    slices = await eventually(lambda: spread(100), 30, "100 endpoints")
    assert all(len(s["endpoints"]) <= 100 for s in slices) and sum(len(s["endpoints"]) for s in slices) == 100


async def test_max_endpoints_per_slice_is_a_manager_option(bare, client, namespace, eventually):
    await bare.start_manager(max_endpoints_per_slice=4)
    await node(client, "n1")
    for i in range(10):
        await pod(client, namespace, f"p{i}", f"10.4.0.{i + 1}")
    await client.create(SERVICES, service("web", selector=WEB), namespace=namespace)

    async def spread():
        slices = await slices_of(client, namespace, "web")
        return sorted(len(s.get("endpoints") or ()) for s in slices) == [2, 4, 4] and slices
    await eventually(spread, 10, "slices of 4, 4 and 2")


async def test_service_deletion_selectorless_services_and_foreign_slices(bare, client, namespace, eventually):
    manager = await bare.start_manager()
    done = spy_on(manager, "endpoint-slice-controller")
    await node(client, "n1")
    await pod(client, namespace, "a", "10.1.0.1")
    # Slices another manager keeps for the same Service name, and a selectorless Service.
    foreign = await client.create(SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-custom", "labels": {SERVICE_NAME: "web", MANAGED_BY: "my-controller.example.com"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["192.0.2.7"], "conditions": {"ready": True}}]}, namespace=namespace)
    await client.create(SERVICES, service("manual"), namespace=namespace)
    await client.create(SERVICES, service("web", selector=WEB), namespace=namespace)
    await client.create(SERVICES, service("empty", selector={"app": "nothing"}), namespace=namespace)

    await eventually(lambda: endpoints_are(client, namespace, "web", {"a": (True, True, False)}), 10, "web's slice")
    # A Service selecting nothing keeps one empty placeholder slice.
    (placeholder,) = await eventually(lambda: slices_of(client, namespace, "empty"), 10, "the placeholder")
    assert not placeholder.get("endpoints") and not placeholder.get("ports")
    await eventually(lambda: Request(namespace, "manual") in done, 10, "the selectorless Service synced")
    items = (await client.list(SLICES, namespace=namespace))["items"]
    assert not [s for s in items if s["metadata"]["labels"].get(SERVICE_NAME) == "manual"]
    assert await client.get(SLICES, "web-custom", namespace=namespace) == foreign

    # The Service goes: the garbage collector takes its slices (owned by it); the foreign slice stays.
    await client.delete(SERVICES, "web", namespace=namespace)
    await eventually(lambda: _none(slices_of(client, namespace, "web")), 10, "web's slices deleted")
    assert await client.get(SLICES, "web-custom", namespace=namespace) == foreign


async def _none(coro):
    return not await coro


async def test_a_deleted_slice_is_recreated_and_a_refused_write_is_a_warning(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1")
    await pod(client, namespace, "a", "10.1.0.1")
    await client.create(SERVICES, service("web", selector=WEB), namespace=namespace)
    (s,) = await eventually(lambda: endpoints_are(client, namespace, "web", {"a": (True, True, False)}), 10, "web")

    await client.delete(SLICES, s["metadata"]["name"], namespace=namespace)
    (again,) = await eventually(lambda: endpoints_are(client, namespace, "web", {"a": (True, True, False)}), 10,
                                "a new slice")
    assert again["metadata"]["name"] != s["metadata"]["name"]

    await pod(client, namespace, "lo", "127.0.0.1")  # the API refuses a loopback endpoint address

    async def warned():
        return [e for e in await events_for(client, namespace, "web") if e[1] == "FailedToUpdateEndpointSlices"]
    (event,) = await eventually(warned, 10, "a FailedToUpdateEndpointSlices event")
    assert event[0] == "Warning" and event[3] == "endpoint-slice-controller"
    assert event[2].startswith(f"Error updating Endpoint Slices for Service {namespace}/web: failed to update ")
    assert "loopback" in event[2]
