"""The Endpoints controller against a real API server: pods on agentless nodes, their status written by the test."""

from __future__ import annotations

from controller_helpers import PODS, events_for
from service_helpers import (
    ENDPOINTS,
    SERVICES,
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


async def endpoints_of(client, namespace, name):
    items = (await client.list(ENDPOINTS, namespace=namespace))["items"]
    return next((e for e in items if e["metadata"]["name"] == name), None)


async def gone(client, namespace, name):
    return await endpoints_of(client, namespace, name) is None


def ips(subset, field="addresses"):
    return sorted(a["ip"] for a in subset.get(field) or ())


async def subsets_are(client, namespace, name, want):
    """The Endpoints when its subsets, as (ready IPs, not-ready IPs, ports), are `want` (in any order)."""
    ep = await endpoints_of(client, namespace, name)
    if ep is None:
        return None
    got = sorted((ips(s), ips(s, "notReadyAddresses"), sorted((p.get("name", ""), p["port"]) for p in s["ports"]))
                 for s in ep.get("subsets") or ())
    return ep if got == sorted(want) else None


async def test_ready_and_not_ready_addresses_and_a_readiness_flip(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1")
    a = await pod(client, namespace, "a", "10.1.0.1", hostname="a", subdomain="web")
    b = await pod(client, namespace, "b", "10.1.0.2", ready=False, hostname="b", subdomain="other")
    await pod(client, namespace, "other", "10.1.0.9", labels={"app": "other"})
    await client.create(SERVICES, service("web", selector=WEB, labels={"tier": "front"}), namespace=namespace)

    ep = await eventually(lambda: subsets_are(client, namespace, "web",
                                              [(["10.1.0.1"], ["10.1.0.2"], [("http", 8080)])]), 10, "the endpoints")
    (subset,) = ep["subsets"]
    # `hostname` only for the pod whose subdomain names the Service.
    assert subset["addresses"] == [{"ip": "10.1.0.1", "hostname": "a", "nodeName": "n1", "targetRef": target_ref(a)}]
    assert subset["notReadyAddresses"] == [{"ip": "10.1.0.2", "nodeName": "n1", "targetRef": target_ref(b)}]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert ep["metadata"]["labels"] == {"tier": "front"}
    assert ep["metadata"]["annotations"][TRIGGER_TIME].endswith("Z")

    # The flip is seen within a couple of seconds, both ways.
    await set_ready(client, namespace, "b", True)
    await eventually(lambda: subsets_are(client, namespace, "web", [(["10.1.0.1", "10.1.0.2"], [], [("http", 8080)])]),
                     2, "b moved to the ready addresses")
    await set_ready(client, namespace, "a", False)
    await eventually(lambda: subsets_are(client, namespace, "web", [(["10.1.0.2"], ["10.1.0.1"], [("http", 8080)])]),
                     2, "a moved to the not-ready addresses")

    # A label change takes a pod out; another one's brings it in.
    await client.patch(PODS, "b", {"metadata": {"labels": {"app": "gone"}}}, namespace=namespace)
    await client.patch(PODS, "other", {"metadata": {"labels": {"app": "web"}}}, namespace=namespace)
    await eventually(lambda: subsets_are(client, namespace, "web", [(["10.1.0.9"], ["10.1.0.1"], [("http", 8080)])]),
                     5, "the pods the selector now matches")


async def test_publish_not_ready_addresses_and_terminating_pods(bare, client, namespace, eventually):
    await bare.start_manager()
    await web_and_peers(client, namespace)
    await eventually(lambda: subsets_are(client, namespace, "web",
                                         [(["10.1.0.1", "10.1.0.3"], ["10.1.0.2"], [("http", 8080)])]), 10, "web")
    await eventually(lambda: subsets_are(client, namespace, "peers",
                                         [(["10.1.0.1", "10.1.0.2", "10.1.0.3"], [], [("http", 8080)])]), 10, "peers")

    # No kubelet finishes the pod: it stays terminating, out of `web`, still in `peers` (as upstream).
    await client.delete(PODS, "c", namespace=namespace)
    assert (await client.get(PODS, "c", namespace=namespace))["metadata"]["deletionTimestamp"]
    await eventually(lambda: subsets_are(client, namespace, "web", [(["10.1.0.1"], ["10.1.0.2"], [("http", 8080)])]),
                     5, "the terminating pod gone from web")
    await eventually(lambda: subsets_are(client, namespace, "peers",
                                         [(["10.1.0.1", "10.1.0.2", "10.1.0.3"], [], [("http", 8080)])]), 5, "peers")

    # A finished pod is no endpoint at all (a kubelet reports it Succeeded and no longer Ready).
    finished = await client.get(PODS, "a", namespace=namespace)
    finished["status"]["phase"] = "Succeeded"
    finished["status"]["conditions"][0]["status"] = "False"
    await client.update(PODS, finished, subresource="status")
    await eventually(lambda: subsets_are(client, namespace, "peers",
                                         [(["10.1.0.2", "10.1.0.3"], [], [("http", 8080)])]), 5, "a gone")


async def test_a_named_target_port_resolves_per_pod_and_subsets_are_repacked(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1")
    await pod(client, namespace, "a", "10.1.0.1", ports=[{"name": "web", "containerPort": 8080}])
    await pod(client, namespace, "b", "10.1.0.2", ports=[{"name": "web", "containerPort": 9090}])
    await pod(client, namespace, "c", "10.1.0.3", ports=[{"name": "admin", "containerPort": 7000}])
    await pod(client, namespace, "d", "10.1.0.4", ready=False, ports=[{"name": "web", "containerPort": 8080}])
    ports = [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "metrics", "port": 9100}]
    await client.create(SERVICES, service("web", selector=WEB, ports=ports), namespace=namespace)
    # c lacks the `web` port: it serves only `metrics`. a and d share a port set but not their readiness.
    await eventually(lambda: subsets_are(client, namespace, "web", [
        (["10.1.0.1"], ["10.1.0.4"], [("http", 8080)]),
        (["10.1.0.2"], [], [("http", 9090)]),
        (["10.1.0.1", "10.1.0.2", "10.1.0.3"], ["10.1.0.4"], [("metrics", 9100)]),
    ]), 10, "the repacked subsets")


async def test_service_deletion_selectorless_services_and_leftovers(bare, client, namespace, eventually):
    await node(client, "n1")
    await pod(client, namespace, "a", "10.1.0.1")
    # Endpoints without a Service, left by a manager that was not running when the Service went.
    await client.create(ENDPOINTS, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "leftover"},
                                    "subsets": [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"port": 1}]}]},
                        namespace=namespace)
    # A Service without a selector and the Endpoints its user writes.
    await client.create(SERVICES, service("manual"), namespace=namespace)
    manual = await client.create(ENDPOINTS, {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"name": "http", "port": 8080}]}]},
        namespace=namespace)
    manager = await bare.start_manager()
    done = spy_on(manager, "endpoint-controller")
    await client.create(SERVICES, service("web", selector=WEB), namespace=namespace)

    await eventually(lambda: subsets_are(client, namespace, "web", [(["10.1.0.1"], [], [("http", 8080)])]), 10, "web")
    await eventually(lambda: gone(client, namespace, "leftover"), 10, "the leftover deleted")
    await eventually(lambda: Request(namespace, "manual") in done, 10, "the selectorless Service synced")
    assert await endpoints_of(client, namespace, "manual") == manual

    await client.delete(SERVICES, "web", namespace=namespace)
    await eventually(lambda: gone(client, namespace, "web"), 10, "web's Endpoints deleted")


async def test_over_capacity_endpoints_are_truncated_and_annotated(bare, client, namespace, eventually):
    await bare.start_manager()
    await node(client, "n1")
    # 1001 pods is slow to set up; two ports on the same pods make 1010 addresses from 505 pods.
    for i in range(505):
        await pod(client, namespace, f"p{i}", f"10.2.{i // 250}.{i % 250 + 1}", ready=i % 5 != 0,
                  ports=[{"name": "web", "containerPort": 8080 + i % 2}])
    ports = [{"name": "http", "port": 80, "targetPort": "web"}]
    await client.create(SERVICES, service("big", selector=WEB, ports=ports), namespace=namespace)

    async def truncated():
        ep = await endpoints_of(client, namespace, "big")
        return ep if ep and ep["metadata"].get("annotations", {}).get("endpoints.kubernetes.io/over-capacity") \
            else None
    # 505 addresses fit; the cap is on addresses, so this one is not truncated...
    ep = await eventually(lambda: subsets_are_counted(client, namespace, "big", 505), 30, "505 addresses")
    assert "endpoints.kubernetes.io/over-capacity" not in (ep["metadata"].get("annotations") or {})
    # ...until a second port doubles them: 1010 > 1000, ready ones kept first.
    ports.append({"name": "alt", "port": 81, "targetPort": 9000})
    await client.patch(SERVICES, "big", {"spec": {"ports": ports}}, namespace=namespace)
    ep = await eventually(truncated, 30, "the over-capacity annotation")
    assert ep["metadata"]["annotations"]["endpoints.kubernetes.io/over-capacity"] == "truncated"
    ready = sum(len(s.get("addresses") or ()) for s in ep["subsets"])
    not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in ep["subsets"])
    assert ready == 808 and not_ready == 1000 - 808

    await client.patch(SERVICES, "big", {"spec": {"ports": ports[:1]}}, namespace=namespace)
    ep = await eventually(lambda: subsets_are_counted(client, namespace, "big", 505), 30, "back to 505")
    assert "endpoints.kubernetes.io/over-capacity" not in (ep["metadata"].get("annotations") or {})


async def subsets_are_counted(client, namespace, name, count):
    ep = await endpoints_of(client, namespace, name)
    total = sum(len(s.get("addresses") or ()) + len(s.get("notReadyAddresses") or ())
                for s in (ep or {}).get("subsets") or ())
    return ep if total == count else None


async def test_a_refused_write_is_a_warning_event(bare, client, namespace, eventually):
    await node(client, "n1")
    await pod(client, namespace, "lo", "127.0.0.1")  # the API refuses loopback endpoint addresses
    await client.create(SERVICES, service("web", selector=WEB), namespace=namespace)
    # Started last, so its informers list the Ready pod and the Service together: started first, the
    # Service's event may beat the pod's status to the controller, which then creates the Endpoints
    # empty and its refused write is an update, not the create this test is about.
    await bare.start_manager()

    async def warned():
        events = await events_for(client, namespace, "web")
        return [e for e in events if e[1] == "FailedToCreateEndpoint"]
    (event,) = await eventually(warned, 10, "a FailedToCreateEndpoint event")
    assert event[0] == "Warning" and event[3] == "endpoint-controller"
    assert event[2].startswith(f"Failed to create endpoint for service {namespace}/web: ")
    assert "loopback" in event[2]
