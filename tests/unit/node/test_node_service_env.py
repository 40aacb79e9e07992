"""Service environment variables: upstream's `envvars.FromServices` table, `getServiceEnvVarMap`'s choice of
Services, and their precedence in a container's environment (`build_container_spec`)."""

from __future__ import annotations

import asyncio

import pytest

from timoner.node.pods import ContainerConfigError, PodNetwork, build_container_spec
from timoner.node.pods._services import pod_service_env, service_env_map, service_env_vars


def svc(name, ip, *ports, namespace="ns1"):
    """A Service; each port is (port, protocol) or (name, port, protocol)."""
    spec_ports = []
    for port in ports:
        if len(port) == 3:
            spec_ports.append({"name": port[0], "port": port[1], "protocol": port[2]})
        else:
            spec_ports.append({"port": port[0], "protocol": port[1]})
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "selector": {"bar": "baz"}, "ports": spec_ports}}


def test_from_services_matches_upstreams_table():
    services = [
        svc("foo-bar", "1.2.3.4", (8080, "TCP")),
        svc("abc-123", "5.6.7.8", ("u-d-p", 8081, "UDP"), ("t-c-p", 8081, "TCP")),
        svc("q-u-u-x", "9.8.7.6", (8082, "TCP"), ("8083", 8083, "TCP")),
        svc("svrc-clusterip-none", "None", (8082, "TCP")),
        svc("svrc-clusterip-empty", "", (8082, "TCP")),
        svc("super-ipv6", "2001:DB8::", ("u-d-p", 8084, "UDP"), ("t-c-p", 8084, "TCP")),
        svc("sctp-1", "1.2.3.4", (777, "SCTP")),
    ]
    want = [
        ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
        ("FOO_BAR_SERVICE_PORT", "8080"),
        ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
        ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
        ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
        ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
        ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
        ("ABC_123_SERVICE_HOST", "5.6.7.8"),
        ("ABC_123_SERVICE_PORT", "8081"),
        ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
        ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
        ("ABC_123_PORT", "udp://5.6.7.8:8081"),
        ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
        ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
        ("ABC_123_PORT_8081_UDP_PORT", "8081"),
        ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
        ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
        ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
        ("ABC_123_PORT_8081_TCP_PORT", "8081"),
        ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
        ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
        ("Q_U_U_X_SERVICE_PORT", "8082"),
        ("Q_U_U_X_SERVICE_PORT_8083", "8083"),
        ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
        ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
        ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
        ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
        ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
        ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
        ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
        ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
        ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
        ("SUPER_IPV6_SERVICE_HOST", "2001:DB8::"),
        ("SUPER_IPV6_SERVICE_PORT", "8084"),
        ("SUPER_IPV6_SERVICE_PORT_U_D_P", "8084"),
        ("SUPER_IPV6_SERVICE_PORT_T_C_P", "8084"),
        ("SUPER_IPV6_PORT", "udp://[2001:DB8::]:8084"),
        ("SUPER_IPV6_PORT_8084_UDP", "udp://[2001:DB8::]:8084"),
        ("SUPER_IPV6_PORT_8084_UDP_PROTO", "udp"),
        ("SUPER_IPV6_PORT_8084_UDP_PORT", "8084"),
        ("SUPER_IPV6_PORT_8084_UDP_ADDR", "2001:DB8::"),
        ("SUPER_IPV6_PORT_8084_TCP", "tcp://[2001:DB8::]:8084"),
        ("SUPER_IPV6_PORT_8084_TCP_PROTO", "tcp"),
        ("SUPER_IPV6_PORT_8084_TCP_PORT", "8084"),
        ("SUPER_IPV6_PORT_8084_TCP_ADDR", "2001:DB8::"),
        ("SCTP_1_SERVICE_HOST", "1.2.3.4"),
        ("SCTP_1_SERVICE_PORT", "777"),
        ("SCTP_1_PORT", "sctp://1.2.3.4:777"),
        ("SCTP_1_PORT_777_SCTP", "sctp://1.2.3.4:777"),
        ("SCTP_1_PORT_777_SCTP_PROTO", "sctp"),
        ("SCTP_1_PORT_777_SCTP_PORT", "777"),
        ("SCTP_1_PORT_777_SCTP_ADDR", "1.2.3.4"),
    ]
    assert list(service_env_vars(services).items()) == want


def test_a_port_without_protocol_is_tcp():
    service = {"metadata": {"name": "web"}, "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}
    assert service_env_vars([service])["WEB_PORT_80_TCP_PROTO"] == "tcp"


MASTER = svc("kubernetes", "10.96.0.1", ("https", 443, "TCP"), namespace="default")
SERVICES = [
    MASTER,
    svc("web", "10.96.0.20", ("http", 80, "TCP"), namespace="shop"),
    svc("headless", "None", ("http", 80, "TCP"), namespace="shop"),
    {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "x.org"}},
    svc("db", "10.96.0.30", ("sql", 5432, "TCP"), namespace="other"),
]


def hosts(env):
    return sorted(name for name in env if name.endswith("_SERVICE_HOST"))


@pytest.mark.parametrize(("namespace", "links", "want"), [
    ("shop", True, ["KUBERNETES_SERVICE_HOST", "WEB_SERVICE_HOST"]),
    ("shop", False, ["KUBERNETES_SERVICE_HOST"]),  # the master service even without links
    ("default", False, ["KUBERNETES_SERVICE_HOST"]),
    ("default", True, ["KUBERNETES_SERVICE_HOST"]),
    ("other", True, ["DB_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"]),
    ("empty", True, ["KUBERNETES_SERVICE_HOST"]),
])
def test_service_env_map_picks_the_namespaces_services_and_the_master_service(namespace, links, want):
    env = service_env_map(SERVICES, namespace=namespace, enable_service_links=links)
    assert hosts(env) == want
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"


def test_a_kubernetes_service_of_the_pods_namespace_wins_over_the_master_one():
    own = svc("kubernetes", "10.96.7.7", ("https", 8443, "TCP"), namespace="shop")
    for order in ([MASTER, own], [own, MASTER]):
        env = service_env_map(order, namespace="shop", enable_service_links=True)
        assert env["KUBERNETES_SERVICE_HOST"] == "10.96.7.7"
    # Without links the namespace's own is not looked at.
    assert service_env_map([own, MASTER], namespace="shop",
                           enable_service_links=False)["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


class FakeInformer:
    def __init__(self, services, synced=True):
        self.has_synced = asyncio.Event()
        if synced:
            self.has_synced.set()
        self.lister = self
        self._services = services

    def list(self, namespace=None):
        return list(self._services)


async def test_pod_service_env_reads_the_informer_and_waits_for_its_first_list():
    pod = {"metadata": {"namespace": "shop"}, "spec": {"enableServiceLinks": False}}
    assert pod_service_env(pod, None) == {}
    assert hosts(pod_service_env(pod, FakeInformer(SERVICES))) == ["KUBERNETES_SERVICE_HOST"]
    pod["spec"]["enableServiceLinks"] = True
    assert hosts(pod_service_env(pod, FakeInformer(SERVICES))) == ["KUBERNETES_SERVICE_HOST", "WEB_SERVICE_HOST"]
    with pytest.raises(ContainerConfigError, match="services have not yet been read at least once"):
        pod_service_env(pod, FakeInformer(SERVICES, synced=False))


async def test_container_env_overrides_service_variables_which_expand_in_values_and_commands():
    service_env = service_env_map(SERVICES, namespace="shop", enable_service_links=True)
    pod = {"metadata": {"name": "p", "namespace": "shop", "uid": "u"}, "spec": {}}
    container = {"name": "c", "image": "busybox",
                 "command": ["wget", "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/$(WEB_PORT)"],
                 "env": [{"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT_HTTP)"},
                         {"name": "WEB_SERVICE_PORT", "value": "8080"},
                         {"name": "WEB_PORT", "value": "mine $(WEB_SERVICE_PORT)"}]}
    spec = await build_container_spec(None, pod, container, network=PodNetwork("10.0.0.1", "10.0.0.1"), attempt=0,
                                      service_env=service_env)
    assert spec.env["URL"] == "http://10.96.0.20:80"
    assert spec.env["WEB_SERVICE_PORT"] == "8080" and spec.env["WEB_PORT"] == "mine 8080"
    assert spec.env["WEB_SERVICE_HOST"] == "10.96.0.20" and spec.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert spec.command == ("wget", "http://10.96.0.20:8080/mine 8080")
    assert list(spec.env)[:3] == ["URL", "WEB_SERVICE_PORT", "WEB_PORT"]  # the container's own first
    without = await build_container_spec(None, pod, container, network=PodNetwork("10.0.0.1", "10.0.0.1"),
                                         attempt=0)
    assert without.env["URL"] == "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT_HTTP)"
    assert "KUBERNETES_SERVICE_HOST" not in without.env
