"""build_routes: which frontends and endpoints each service port gets, as kube-proxy decides."""

from __future__ import annotations

import itertools

import pytest

from timoner.network.routes import (
    DEFAULT_AFFINITY_TIMEOUT,
    Endpoint,
    Frontend,
    FrontendKind,
    RouteTable,
    Verdict,
    build_routes,
)

NODE = "node-a"
NODE_IP = "100.64.2.1"


def service(name: str, *ports: dict, namespace: str = "default", cluster_ip: str = "100.65.0.10",
            labels: dict | None = None, status: dict | None = None, **spec) -> dict:
    spec.setdefault("type", "ClusterIP")
    out = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": namespace, "name": name, "labels": labels or {}},
           "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                    "ports": list(ports) or [port()], **spec}}
    if status is not None:
        out["status"] = status
    return out


def port(port: int = 80, name: str | None = None, protocol: str = "TCP", node_port: int | None = None) -> dict:
    out = {"port": port, "protocol": protocol}
    if name is not None:
        out["name"] = name
    if node_port is not None:
        out["nodePort"] = node_port
    return out


def endpoint(ip: str, node: str | None = NODE, **conditions) -> dict:
    out = {"addresses": [ip], "conditions": conditions}
    if node is not None:
        out["nodeName"] = node
    return out


def eslice(service_name: str, *endpoints: dict, ports: list[dict] | None = None, name: str | None = None,
           namespace: str = "default", address_type: str = "IPv4", labels: dict | None = None) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": namespace, "name": name or f"{service_name}-abc",
                         "labels": {"kubernetes.io/service-name": service_name} if labels is None else labels},
            "addressType": address_type, "endpoints": list(endpoints),
            "ports": ports if ports is not None else [{"port": 8080, "protocol": "TCP"}]}


def build(services, slices=(), node_ips=(NODE_IP,)) -> RouteTable:
    return build_routes(services, slices, node_name=NODE, node_ips=node_ips)


def only(table: RouteTable):
    assert len(table) == 1, table
    return table.routes[0]


# -- frontends --------------------------------------------------------------------------


def test_cluster_ip_tcp_and_udp_ports_each_get_a_route():
    table = build([service("dns", port(53, "dns-udp", "UDP"), port(53, "dns-tcp", "TCP"))])
    assert [(r.name, r.protocol) for r in table] == [("default/dns:dns-tcp", "TCP"), ("default/dns:dns-udp", "UDP")]
    assert table.get("default/dns:dns-udp", "UDP").frontends == (Frontend("100.65.0.10", 53),)
    assert table.get("default/dns:dns-udp", "TCP") is None


def test_an_unnamed_port_is_named_after_the_service_alone():
    route = only(build([service("web")]))
    assert route.name == "default/web" and route.port_name == ""


def test_sctp_ports_are_skipped():
    table = build([service("mixed", port(80, "http"), port(9, "sctp", "SCTP"))])
    assert [r.port_name for r in table] == ["http"]


def test_node_port_listens_on_node_ips_and_loopback():
    route = only(build([service("web", port(80, node_port=30080), type="NodePort")],
                       node_ips=(NODE_IP, "100.64.3.1", "fd00::1", NODE_IP)))
    assert route.frontends == (
        Frontend("100.65.0.10", 80),
        Frontend(NODE_IP, 30080, FrontendKind.NODE_PORT),
        Frontend("100.64.3.1", 30080, FrontendKind.NODE_PORT),
        Frontend("127.0.0.1", 30080, FrontendKind.NODE_PORT),
    )
    assert route.cluster_frontends == (Frontend("100.65.0.10", 80),)
    assert all(f.external for f in route.external_frontends) and len(route.external_frontends) == 3


def test_a_node_port_on_a_cluster_ip_service_is_ignored():
    route = only(build([service("web", port(80, node_port=30080))]))
    assert route.frontends == (Frontend("100.65.0.10", 80),)


def test_external_ips_are_frontends_on_the_service_port():
    route = only(build([service("web", port(80), externalIPs=["100.64.9.9", "fd00::9"])]))
    assert route.frontends == (Frontend("100.65.0.10", 80), Frontend("100.64.9.9", 80, FrontendKind.EXTERNAL_IP))


def test_load_balancer_ingress_ips_are_frontends_unless_the_balancer_proxies():
    status = {"loadBalancer": {"ingress": [{"ip": "100.64.8.1"}, {"ip": "100.64.8.2", "ipMode": "Proxy"},
                                           {"hostname": "lb.example"}]}}
    route = only(build([service("web", port(80, node_port=30080), type="LoadBalancer", status=status)]))
    assert Frontend("100.64.8.1", 80, FrontendKind.LOAD_BALANCER) in route.frontends
    assert not any(f.ip == "100.64.8.2" for f in route.frontends)
    assert Frontend("127.0.0.1", 30080, FrontendKind.NODE_PORT) in route.frontends


@pytest.mark.parametrize("svc", [
    service("headless", cluster_ip="None"),
    service("pending", cluster_ip=""),
    service("alias", type="ExternalName", externalName="example.com"),
    service("other-proxy", labels={"service.kubernetes.io/service-proxy-name": "elsewhere"}),
], ids=["headless", "no-cluster-ip", "external-name", "other-proxy"])
def test_services_that_get_no_routes(svc):
    slices = [eslice(svc["metadata"]["name"], endpoint("100.64.1.2"))]
    assert build([svc], slices) == RouteTable()


def test_an_ipv6_only_service_gets_no_routes():
    svc = service("v6", cluster_ip="fd00::10")
    assert build([svc]) == RouteTable()


# -- session affinity -------------------------------------------------------------------


def test_client_ip_affinity_defaults_to_three_hours():
    route = only(build([service("web", sessionAffinity="ClientIP")]))
    assert route.affinity_timeout == DEFAULT_AFFINITY_TIMEOUT == 10800


def test_client_ip_affinity_timeout_from_the_config():
    svc = service("web", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    assert only(build([svc])).affinity_timeout == 60


def test_no_affinity_by_default():
    assert only(build([service("web", sessionAffinity="None")])).affinity_timeout is None


# -- endpoints --------------------------------------------------------------------------


def test_ready_endpoints_are_used_and_sorted():
    slices = [eslice("web", endpoint("100.64.1.3", ready=True), endpoint("100.64.1.2"),
                     endpoint("100.64.1.4", ready=False))]
    route = only(build([service("web")], slices))
    assert route.endpoints == (Endpoint("100.64.1.2", 8080), Endpoint("100.64.1.3", 8080))
    assert route.internal_endpoints == route.external_endpoints == route.endpoints
    assert route.internal_verdict is None and route.external_verdict is None


def test_without_ready_endpoints_serving_terminating_ones_are_used():
    slices = [eslice("web", endpoint("100.64.1.2", ready=False, serving=True, terminating=True),
                     endpoint("100.64.1.3", ready=False, terminating=True),  # serving absent means serving
                     endpoint("100.64.1.4", ready=False, serving=False, terminating=True),
                     endpoint("100.64.1.5", ready=False, serving=True))]  # not terminating: just not ready
    route = only(build([service("web")], slices))
    assert route.endpoints == (Endpoint("100.64.1.2", 8080), Endpoint("100.64.1.3", 8080))


def test_terminating_endpoints_are_not_used_while_any_is_ready():
    slices = [eslice("web", endpoint("100.64.1.2", ready=False, serving=True, terminating=True),
                     endpoint("100.64.1.3", node="node-b"))]
    assert only(build([service("web")], slices)).endpoints == (Endpoint("100.64.1.3", 8080),)


def test_the_same_ip_and_port_in_two_slices_counts_once_and_local_wins():
    slices = [eslice("web", endpoint("100.64.1.2", node="node-b"), name="web-1"),
              eslice("web", endpoint("100.64.1.2", node=NODE), endpoint("100.64.1.3", node="node-b"), name="web-2")]
    route = only(build([service("web")], slices))
    assert route.endpoints == (Endpoint("100.64.1.2", 8080), Endpoint("100.64.1.3", 8080))
    assert route.local_endpoints == (Endpoint("100.64.1.2", 8080),)


def test_endpoints_are_matched_by_port_name_and_protocol():
    svc = service("multi", port(80, "http"), port(443, "https"), port(53, "dns", "UDP"))
    slices = [eslice("multi", endpoint("100.64.1.2"),
                     ports=[{"name": "http", "port": 8080, "protocol": "TCP"},
                            {"name": "https", "port": 8443},  # protocol defaults to TCP
                            {"name": "dns", "port": 5353, "protocol": "TCP"}])]  # wrong protocol
    table = build([svc], slices)
    assert table.get("default/multi:http").endpoints == (Endpoint("100.64.1.2", 8080),)
    assert table.get("default/multi:https").endpoints == (Endpoint("100.64.1.2", 8443),)
    assert table.get("default/multi:dns", "UDP").endpoints == ()


def test_an_unnamed_service_port_matches_an_unnamed_slice_port_only():
    slices = [eslice("web", endpoint("100.64.1.2"), ports=[{"name": "http", "port": 8080}])]
    assert only(build([service("web")], slices)).endpoints == ()


@pytest.mark.parametrize("other", [
    eslice("web", endpoint("100.64.1.9"), namespace="elsewhere"),
    eslice("web", endpoint("fd00::9"), address_type="IPv6"),
    eslice("web", endpoint("100.64.1.9"), labels={}),
    eslice("web", endpoint("100.64.1.9"), labels={"kubernetes.io/service-name": "web",
                                                  "service.kubernetes.io/service-proxy-name": "x"}),
    eslice("other", endpoint("100.64.1.9")),
    eslice("web", {"addresses": [], "conditions": {}}),
], ids=["other-namespace", "ipv6", "unlabelled", "other-proxy", "other-service", "no-address"])
def test_slices_that_do_not_count(other):
    assert only(build([service("web")], [other])).endpoints == ()


def test_the_result_does_not_depend_on_input_order():
    services = [service("a", port(80, "http"), cluster_ip="100.65.0.1"),
                service("b", port(53, "dns", "UDP"), cluster_ip="100.65.0.2")]
    slices = [eslice("a", endpoint("100.64.1.2", node="node-b"), ports=[{"name": "http", "port": 1}], name="a-1"),
              eslice("a", endpoint("100.64.1.2"), endpoint("100.64.1.3"), ports=[{"name": "http", "port": 1}],
                     name="a-2"),
              eslice("b", endpoint("100.64.1.4"), ports=[{"name": "dns", "port": 2, "protocol": "UDP"}])]
    tables = {build(s, sl) for s in itertools.permutations(services) for sl in itertools.permutations(slices)}
    assert len(tables) == 1


# -- no endpoints -----------------------------------------------------------------------


def test_no_usable_endpoint_rejects_every_kind_of_traffic():
    slices = [eslice("web", endpoint("100.64.1.2", ready=False))]
    route = only(build([service("web", port(80, node_port=30080), type="NodePort")], slices))
    assert route.endpoints == ()
    assert route.internal_verdict is Verdict.REJECT and route.external_verdict is Verdict.REJECT


# -- traffic policies -------------------------------------------------------------------


def test_internal_traffic_policy_local_uses_this_nodes_endpoints_for_cluster_ips():
    slices = [eslice("web", endpoint("100.64.1.2", node=NODE), endpoint("100.64.1.3", node="node-b"))]
    svc = service("web", port(80, node_port=30080), type="NodePort", internalTrafficPolicy="Local")
    route = only(build([svc], slices))
    assert route.internal_policy_local and not route.external_policy_local
    assert route.internal_endpoints == (Endpoint("100.64.1.2", 8080),)
    assert route.external_endpoints == (Endpoint("100.64.1.2", 8080), Endpoint("100.64.1.3", 8080))


def test_internal_traffic_policy_local_without_local_endpoints_drops():
    slices = [eslice("web", endpoint("100.64.1.3", node="node-b"))]
    route = only(build([service("web", internalTrafficPolicy="Local")], slices))
    assert route.internal_endpoints == () and route.internal_verdict is Verdict.DROP


def test_external_traffic_policy_local_uses_this_nodes_endpoints_for_external_traffic():
    slices = [eslice("web", endpoint("100.64.1.2", node=NODE), endpoint("100.64.1.3", node="node-b"),
                     endpoint("100.64.1.4", node=None))]
    svc = service("web", port(80, node_port=30080), type="NodePort", externalTrafficPolicy="Local")
    route = only(build([svc], slices))
    assert route.external_policy_local and not route.internal_policy_local
    assert route.external_endpoints == (Endpoint("100.64.1.2", 8080),)
    assert len(route.internal_endpoints) == 3


def test_external_traffic_policy_local_without_local_endpoints_drops_external_traffic_only():
    slices = [eslice("web", endpoint("100.64.1.3", node="node-b"))]
    svc = service("web", port(80, node_port=30080), type="NodePort", externalTrafficPolicy="Local")
    route = only(build([svc], slices))
    assert route.external_verdict is Verdict.DROP and route.internal_verdict is None


def test_external_traffic_policy_means_nothing_without_external_frontends():
    svc = service("web", externalTrafficPolicy="Local")
    assert not only(build([svc])).external_policy_local


def test_local_endpoints_fall_back_to_local_serving_terminating_ones():
    slices = [eslice("web", endpoint("100.64.1.2", node=NODE, ready=False, serving=True, terminating=True),
                     endpoint("100.64.1.3", node="node-b"))]
    route = only(build([service("web", internalTrafficPolicy="Local")], slices))
    assert route.endpoints == (Endpoint("100.64.1.3", 8080),)
    assert route.local_endpoints == route.internal_endpoints == (Endpoint("100.64.1.2", 8080),)
