"""The ingress routing table: class selection, host and path matching, precedence, merging, TLS hosts."""

from __future__ import annotations

import pytest

from timoner.network._ingress_h1 import normalize_path
from timoner.network._ingress_routes import (
    CATCH_ALL,
    CONTROLLER,
    FAKE_CERTIFICATE,
    Backend,
    backend_endpoints,
    build_ingress_routes,
    is_served,
    normalize_host,
    path_matches,
)
from timoner.network._ingress_tls import Certificate

NS = "default"


def svc(name: str, port: int | str = 80) -> dict:
    return {"service": {"name": name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def ingress(name: str, *rules: dict, namespace: str = NS, created: str = "2024-01-01T00:00:00Z",
            default: dict | None = None, tls: list | None = None, annotations: dict | None = None,
            class_name: str | None = None) -> dict:
    spec: dict = {"rules": list(rules)}
    if default is not None:
        spec["defaultBackend"] = default
    if tls is not None:
        spec["tls"] = tls
    if class_name is not None:
        spec["ingressClassName"] = class_name
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created,
                         "annotations": annotations or {}},
            "spec": spec}


def rule(host: str | None, *paths: tuple[str, str, str]) -> dict:
    """A rule; each path is (path, pathType, service name)."""
    out: dict = {"http": {"paths": [{"path": p, "pathType": t, "backend": svc(s)} for p, t, s in paths]}}
    if host is not None:
        out["host"] = host
    return out


def served_by(routes, host: str, path: str) -> str | None:
    """The service answering host+path (None: the controller's default backend, a 404)."""
    _, location = routes.route(normalize_host(host), path)
    assert location is not None
    return location.backend.service if location.backend else None


# -- paths --------------------------------------------------------------------------------------

# The examples table of https://kubernetes.io/docs/concepts/services-networking/ingress/#examples
SPEC_EXAMPLES = [
    ("Prefix", ["/"], "/anything/at/all", True),
    ("Exact", ["/foo"], "/foo", True),
    ("Exact", ["/foo"], "/bar", False),
    ("Exact", ["/foo"], "/foo/", False),
    ("Exact", ["/foo/"], "/foo", False),
    ("Prefix", ["/foo"], "/foo", True),
    ("Prefix", ["/foo"], "/foo/", True),
    ("Prefix", ["/foo/"], "/foo", True),
    ("Prefix", ["/foo/"], "/foo/", True),
    ("Prefix", ["/aaa/bb"], "/aaa/bbb", False),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb", True),
    ("Prefix", ["/aaa/bbb/"], "/aaa/bbb", True),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/", True),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/ccc", True),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbbxyz", False),
    ("Prefix", ["/", "/aaa"], "/aaa/ccc", True),
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/aaa/bbb", True),
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/ccc", True),
    ("Prefix", ["/aaa"], "/ccc", False),
    ("Prefix", ["/foo"], "/foobar", False),
    ("Prefix", ["/foo"], "/foo/bar", True),
    ("ImplementationSpecific", ["/foo"], "/foo/bar", True),
    ("ImplementationSpecific", ["/foo"], "/foobar", False),
]


@pytest.mark.parametrize(("path_type", "paths", "request_path", "matches"), SPEC_EXAMPLES)
def test_the_specs_path_examples(path_type, paths, request_path, matches):
    assert any(path_matches(path_type, p, request_path) for p in paths) is matches
    routes = build_ingress_routes([ingress("i", rule("h.test", *[(p, path_type, "svc") for p in paths]))])
    assert (served_by(routes, "h.test", request_path) == "svc") is matches


def test_the_longest_path_wins_and_exact_beats_prefix_at_equal_length():
    routes = build_ingress_routes([ingress("i", rule(
        "h.test",
        ("/", "Prefix", "root"),
        ("/aaa", "Prefix", "aaa"),
        ("/aaa/bbb", "Prefix", "bbb"),
        ("/aaa/bbb", "Exact", "bbb-exact"),
        ("/aaa/bbb/", "Exact", "bbb-slash-exact"),
    ))])
    cases = {"/aaa/bbb": "bbb-exact", "/aaa/bbb/": "bbb-slash-exact", "/aaa/bbb/c": "bbb", "/aaa/ccc": "aaa",
             "/aaa": "aaa", "/ccc": "root", "/": "root"}
    assert {p: served_by(routes, "h.test", p) for p in cases} == cases


def test_mixed_types_prefer_exact_whatever_the_order():
    routes = build_ingress_routes([ingress("i", rule("h.test", ("/foo", "Prefix", "p"), ("/foo", "Exact", "e")))])
    assert served_by(routes, "h.test", "/foo") == "e"
    assert served_by(routes, "h.test", "/foo/") == "p"


# -- hosts -------------------------------------------------------------------------------------


def test_hosts_exact_and_one_label_wildcards():
    routes = build_ingress_routes([ingress(
        "i",
        rule("foo.bar.com", ("/", "Prefix", "exact")),
        rule("*.bar.com", ("/", "Prefix", "wild")),
        rule(None, ("/", "Prefix", "any")),
    )])
    cases = {
        "foo.bar.com": "exact", "FOO.Bar.com:8080": "exact", "foo.bar.com.": "exact",
        "baz.bar.com": "wild", "baz.bar.com:80": "wild",
        "bar.com": "any",  # the wildcard needs one more label
        "baz.foo.bar.com": "any",  # and only one
        "other.test": "any", "": "any", "127.0.0.1:80": "any",
    }
    assert {h: served_by(routes, h, "/") for h in cases} == cases


def test_a_host_without_matching_path_gets_its_own_default_not_the_catch_alls():
    routes = build_ingress_routes([
        ingress("catch-all", default=svc("fallback")),
        ingress("site", rule("h.test", ("/app", "Prefix", "app"))),
        ingress("with-default", rule("d.test", ("/app", "Prefix", "app")), default=svc("mine")),
    ])
    assert served_by(routes, "h.test", "/app/x") == "app"
    assert served_by(routes, "h.test", "/other") is None  # 404, as ingress-nginx
    assert served_by(routes, "d.test", "/other") == "mine"
    assert served_by(routes, "unknown.test", "/other") == "fallback"


def test_default_backend_of_an_ingress_without_rules_takes_the_catch_all_first_come():
    routes = build_ingress_routes([
        ingress("late", default=svc("late"), created="2024-01-02T00:00:00Z"),
        ingress("early", default=svc("early"), created="2024-01-01T00:00:00Z"),
    ])
    assert served_by(routes, "anything.test", "/x") == "early"
    assert build_ingress_routes([]).route("x", "/")[1].backend is None


def test_a_hostless_slash_prefix_rule_does_not_displace_a_rule_less_default_backend():
    # ingress-nginx builds servers (with their defaults) before placing paths.
    routes = build_ingress_routes([
        ingress("rules", rule(None, ("/", "Prefix", "rule")), created="2024-01-01T00:00:00Z"),
        ingress("default", default=svc("default"), created="2024-01-02T00:00:00Z"),
    ])
    assert served_by(routes, "x.test", "/") == "default"


# -- merging across Ingresses ------------------------------------------------------------------


def test_rules_merge_per_host_and_the_oldest_ingress_keeps_a_path():
    routes = build_ingress_routes([
        ingress("b-new", rule("h.test", ("/api", "Prefix", "new-api"), ("/web", "Prefix", "web")),
                created="2024-01-02T00:00:00Z"),
        ingress("a-old", rule("h.test", ("/api", "Prefix", "old-api")), created="2024-01-01T00:00:00Z"),
    ])
    assert served_by(routes, "h.test", "/api") == "old-api"
    assert served_by(routes, "h.test", "/web/x") == "web"
    assert routes.ingresses == ("default/a-old", "default/b-new")


def test_equal_creation_times_order_by_namespace_and_name_descending():
    routes = build_ingress_routes([
        ingress("aaa", rule("h.test", ("/", "Prefix", "from-aaa"))),
        ingress("zzz", rule("h.test", ("/", "Prefix", "from-zzz"))),
    ])
    assert served_by(routes, "h.test", "/") == "from-zzz"  # ingress-nginx's `in > jn`


def test_same_path_different_types_are_both_kept_and_a_slash_prefix_replaces_the_default():
    routes = build_ingress_routes([
        ingress("one", rule("h.test", ("/x", "Exact", "exact")), default=svc("dflt"),
                created="2024-01-01T00:00:00Z"),
        ingress("two", rule("h.test", ("/x", "Prefix", "prefix"), ("/", "Prefix", "root")),
                created="2024-01-02T00:00:00Z"),
    ])
    assert served_by(routes, "h.test", "/x") == "exact"
    assert served_by(routes, "h.test", "/x/y") == "prefix"
    assert served_by(routes, "h.test", "/elsewhere") == "root"


def test_paths_without_a_service_backend_are_skipped():
    resource = {"path": "/r", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}
    ing = ingress("i", {"host": "h.test", "http": {"paths": [resource]}})
    assert served_by(build_ingress_routes([ing]), "h.test", "/r") is None


def test_backend_port_by_number_or_name():
    ing = ingress("i", {"host": "h.test", "http": {"paths": [
        {"path": "/n", "pathType": "Prefix", "backend": svc("s", 8080)},
        {"path": "/p", "pathType": "Prefix", "backend": svc("s", "web")},
    ]}})
    routes = build_ingress_routes([ing])
    assert routes.route("h.test", "/n")[1].backend == Backend(NS, "s", 8080)
    assert routes.route("h.test", "/p")[1].backend == Backend(NS, "s", "web")


# -- class selection ---------------------------------------------------------------------------


def klass(name: str = "timoner", *, default: bool = True, controller: str = CONTROLLER) -> dict:
    return {"metadata": {"name": name,
                         "annotations": {"ingressclass.kubernetes.io/is-default-class": str(default).lower()}},
            "spec": {"controller": controller}}


@pytest.mark.parametrize(("ing", "ingress_class", "served"), [
    (ingress("i", class_name="timoner"), klass(), True),
    (ingress("i", class_name="timoner"), klass(default=False), True),
    (ingress("i", class_name="timoner"), None, False),  # the class is gone
    (ingress("i", class_name="timoner"), klass(controller="k8s.io/ingress-nginx"), False),
    (ingress("i", class_name="nginx"), klass(), False),
    (ingress("i"), klass(), True),  # no class: ours is the default
    (ingress("i"), klass(default=False), False),
    (ingress("i"), None, False),
    (ingress("i", annotations={"kubernetes.io/ingress.class": "timoner"}), klass(default=False), True),
    (ingress("i", annotations={"kubernetes.io/ingress.class": "timoner"}), None, True),
    (ingress("i", annotations={"kubernetes.io/ingress.class": "nginx"}), klass(), False),
])
def test_class_selection(ing, ingress_class, served):
    assert is_served(ing, class_name="timoner", ingress_class=ingress_class) is served


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_hosts_get_their_secret_or_the_fake_certificate():
    certificates = {
        f"{NS}/good": Certificate(dns_names=("secure.test",)),
        f"{NS}/wild": Certificate(dns_names=("*.wild.test",)),
        f"{NS}/wrong": Certificate(common_names=("elsewhere.test",)),
    }
    routes = build_ingress_routes([
        ingress("tls", rule("secure.test", ("/", "Prefix", "s")), rule("a.wild.test", ("/", "Prefix", "s")),
                rule("mismatch.test", ("/", "Prefix", "s")), rule("missing.test", ("/", "Prefix", "s")),
                rule("unlisted.test", ("/", "Prefix", "s")),
                tls=[{"hosts": ["secure.test"], "secretName": "good"},
                     {"hosts": ["mismatch.test"], "secretName": "wrong"},
                     {"hosts": ["missing.test"], "secretName": "absent"},
                     {"secretName": "wild"}]),
        ingress("plain", rule("plain.test", ("/", "Prefix", "s"))),
    ], certificates=certificates)
    assert routes.servers["secure.test"].tls == f"{NS}/good"
    assert routes.servers["a.wild.test"].tls == f"{NS}/wild"  # found by the certificate's SAN
    assert routes.servers["mismatch.test"].tls == FAKE_CERTIFICATE
    assert routes.servers["missing.test"].tls == FAKE_CERTIFICATE
    assert routes.servers["unlisted.test"].tls == FAKE_CERTIFICATE  # listed nowhere, but its Ingress has TLS
    assert routes.servers["plain.test"].tls is None
    assert routes.servers[CATCH_ALL].tls is None
    assert routes.certificate_for("SECURE.test") == f"{NS}/good"
    assert routes.certificate_for("mismatch.test") == FAKE_CERTIFICATE
    assert routes.certificate_for("plain.test") is None and not routes.tls_configured("plain.test")
    assert routes.certificate_for(None) is None and routes.certificate_for("nowhere.test") is None
    assert routes.tls_configured("secure.test") and routes.tls_configured("missing.test")


def test_a_wildcard_server_certificate_covers_sni_names_one_label_deep():
    routes = build_ingress_routes([ingress("w", rule("*.w.test", ("/", "Prefix", "s")),
                                           tls=[{"hosts": ["*.w.test"], "secretName": "w"}])],
                                  certificates={f"{NS}/w": Certificate(dns_names=("*.w.test",))})
    assert routes.certificate_for("a.w.test") == f"{NS}/w"
    assert routes.certificate_for("a.b.w.test") is None


def test_the_first_ingress_naming_a_host_decides_its_certificate():
    certificates = {f"{NS}/one": Certificate(dns_names=("h.test",)), f"{NS}/two": Certificate(dns_names=("h.test",))}
    routes = build_ingress_routes([
        ingress("second", rule("h.test", ("/b", "Prefix", "s")), tls=[{"hosts": ["h.test"], "secretName": "two"}],
                created="2024-01-02T00:00:00Z"),
        ingress("first", rule("h.test", ("/a", "Prefix", "s")), tls=[{"hosts": ["h.test"], "secretName": "one"}],
                created="2024-01-01T00:00:00Z"),
    ], certificates=certificates)
    assert routes.servers["h.test"].tls == f"{NS}/one"


def test_certificate_hostname_verification():
    cert = Certificate(common_names=("cn.test",), dns_names=("*.wild.test", "exact.test"), ip_addresses=("10.0.0.1",))
    for host, ok in [("exact.test", True), ("EXACT.test.", True), ("a.wild.test", True), ("a.b.wild.test", False),
                     ("wild.test", False), ("cn.test", True), ("10.0.0.1", True), ("10.0.0.2", False),
                     ("*.wild.test", True), ("*.exact.test", False)]:
        assert cert.verify_hostname(host) is ok, host


# -- endpoints ---------------------------------------------------------------------------------


def service(*ports: dict, type_: str = "ClusterIP", **spec) -> dict:
    return {"metadata": {"name": "s", "namespace": NS}, "spec": {"type": type_, "ports": list(ports), **spec}}


def eps(*endpoints: dict, ports=({"name": "http", "port": 8080, "protocol": "TCP"},), address_type="IPv4") -> dict:
    return {"addressType": address_type, "endpoints": list(endpoints), "ports": list(ports)}


def ep(ip: str, ready: bool | None = True) -> dict:
    return {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}


def test_backend_endpoints_ready_only_by_port_number_or_name():
    svc_ = service({"name": "http", "port": 80, "targetPort": 8080})
    slices = [eps(ep("10.0.0.1"), ep("10.0.0.2", ready=False), ep("10.0.0.3", ready=None)),
              eps(ep("10.0.0.1"))]  # the same endpoint twice counts once
    assert backend_endpoints(svc_, slices, 80) == [("10.0.0.1", 8080), ("10.0.0.3", 8080)]
    assert backend_endpoints(svc_, slices, "http") == [("10.0.0.1", 8080), ("10.0.0.3", 8080)]
    assert backend_endpoints(svc_, slices, 8080) == [("10.0.0.1", 8080), ("10.0.0.3", 8080)]  # targetPort too
    assert backend_endpoints(svc_, slices, 81) == []
    assert backend_endpoints(None, slices, 80) == []
    assert backend_endpoints(svc_, [], 80) == []


def test_backend_endpoints_resolve_the_slice_port_by_the_service_port_name():
    svc_ = service({"name": "web", "port": 80, "targetPort": "web-port"}, {"name": "admin", "port": 81, "targetPort": 9000})
    slices = [eps(ep("10.0.0.1"), ports=({"name": "admin", "port": 9000}, {"name": "web", "port": 8000}))]
    assert backend_endpoints(svc_, slices, 80) == [("10.0.0.1", 8000)]
    assert backend_endpoints(svc_, slices, "admin") == [("10.0.0.1", 9000)]
    unnamed = service({"port": 80, "targetPort": 8080})
    assert backend_endpoints(unnamed, [eps(ep("10.0.0.1"), ports=({"port": 7000},))], 80) == [("10.0.0.1", 7000)]
    udp = [eps(ep("10.0.0.1"), ports=({"name": "web", "port": 8000, "protocol": "UDP"},))]
    assert backend_endpoints(svc_, udp, 80) == []


def test_external_name_backends():
    ext = service({"name": "http", "port": 80, "targetPort": 8080}, type_="ExternalName",
                  externalName="api.example.com")
    assert backend_endpoints(ext, [], 80) == [("api.example.com", 8080)]
    assert backend_endpoints(ext, [], 443) == [("api.example.com", 443)]
    local = service({"port": 80}, type_="ExternalName", externalName="localhost")
    assert backend_endpoints(local, [], 80) == []


# -- request paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "path"), [
    (b"/", "/"), (b"/a/b?x=1", "/a/b"), (b"/a//b/", "/a/b/"), (b"/a/./b", "/a/b"), (b"/a/../b", "/b"),
    (b"/a/b/..", "/a/"), (b"/%61%2Fb", "/a/b"), (b"http://h.test/x/y?z", "/x/y"), (b"/..", None), (b"*", None),
])
def test_request_paths_are_normalized_before_matching(target, path):
    assert normalize_path(target) == path
