"""Webhook matching (rules, scopes, selectors), configuration defaults, Service resolution."""

from __future__ import annotations

import pytest

from timoner.api.defaults import apply_defaults
from timoner.api.registry import BUILTIN
from timoner.apiserver.admission import CREATE, DELETE, Attributes
from timoner.apiserver.admission._webhook import _Dispatcher, resolve_service
from timoner.apiserver.admission._webhook_client import WebhookClient
from timoner.apiserver.admission._webhook_rules import (
    compile_webhooks,
    namespace_selected,
    object_selected,
    rules_match,
)
from timoner.apiserver.watchcache import CachedObject


def hook(rules: list[dict] | None = None, **fields):
    entry = {"name": "w.example.com", "clientConfig": {"url": "https://x"}, "sideEffects": "None",
             "admissionReviewVersions": ["v1"], "rules": rules or [], **fields}
    (compiled,) = compile_webhooks({"metadata": {"name": "cfg"}, "webhooks": [entry]})
    return compiled


def rule(resources, *, operations=("*",), groups=("*",), versions=("*",), scope=None) -> dict:
    out = {"operations": list(operations), "apiGroups": list(groups), "apiVersions": list(versions),
           "resources": list(resources)}
    if scope:
        out["scope"] = scope
    return out


@pytest.mark.parametrize(("resources", "resource", "sub", "want"), [
    (["pods"], "pods", "", True),
    (["pods"], "pods", "status", False),
    (["*"], "pods", "", True),
    (["*"], "pods", "status", False),
    (["*/*"], "pods", "status", True),
    (["*/*"], "pods", "", True),
    (["pods/status"], "pods", "status", True),
    (["pods/status"], "pods", "", False),
    (["pods/*"], "pods", "log", True),
    (["*/scale"], "deployments", "scale", True),
    (["*/scale"], "deployments", "", False),
    (["configmaps"], "pods", "", False),
])
def test_resource_forms(resources, resource, sub, want):
    assert rules_match(hook([rule(resources)]), operation=CREATE, group="", version="v1", resource=resource,
                       subresource=sub, namespace="ns") is want


def test_operations_groups_versions():
    h = hook([rule(["deployments"], operations=("CREATE", "UPDATE"), groups=("apps",), versions=("v1",))])
    kw = dict(group="apps", version="v1", resource="deployments", namespace="ns")
    assert rules_match(h, operation="CREATE", **kw)
    assert not rules_match(h, operation="DELETE", **kw)
    assert not rules_match(h, operation="CREATE", **{**kw, "group": ""})
    assert not rules_match(h, operation="CREATE", **{**kw, "version": "v1beta1"})
    assert rules_match(hook([rule(["x"]), rule(["deployments"])]), operation="DELETE", **kw)


@pytest.mark.parametrize(("scope", "resource", "namespace", "want"), [
    ("Namespaced", "configmaps", "ns", True),
    ("Namespaced", "nodes", "", False),
    ("Namespaced", "namespaces", "ns", False),  # a Namespace object is cluster-scoped
    ("Cluster", "nodes", "", True),
    ("Cluster", "namespaces", "ns", True),
    ("Cluster", "configmaps", "ns", False),
    ("*", "configmaps", "ns", True),
    (None, "nodes", "", True),
])
def test_scope(scope, resource, namespace, want):
    h = hook([rule(["*"], scope=scope)])
    assert rules_match(h, operation=CREATE, group="", version="v1", resource=resource,
                       namespace=namespace) is want


def test_namespace_selector():
    h = hook([rule(["*"])], namespaceSelector={"matchLabels": {"team": "a"}})
    assert namespace_selected(h, namespace="ns", is_namespace=False, namespace_labels={"team": "a"})
    assert not namespace_selected(h, namespace="ns", is_namespace=False, namespace_labels={"team": "b"})
    assert not namespace_selected(h, namespace="ns", is_namespace=False, namespace_labels=None)
    # cluster-scoped requests other than Namespaces are never exempted
    assert namespace_selected(h, namespace="", is_namespace=False, namespace_labels=None)
    assert not namespace_selected(h, namespace="x", is_namespace=True, namespace_labels={})
    everyone = hook([rule(["*"])])
    assert namespace_selected(everyone, namespace="ns", is_namespace=False, namespace_labels={})


def test_object_selector_matches_new_or_old():
    h = hook([rule(["*"])], objectSelector={"matchExpressions": [{"key": "app", "operator": "Exists"}]})
    labelled = {"metadata": {"labels": {"app": "x"}}}
    bare = {"metadata": {}}
    assert object_selected(h, labelled, None)
    assert object_selected(h, bare, labelled)
    assert object_selected(h, None, labelled)  # DELETE: only the old object
    assert not object_selected(h, bare, bare)
    assert object_selected(hook([rule(["*"])]), None, None)


def test_configuration_defaults():
    config = {"webhooks": [{"name": "a.b.c", "clientConfig": {"service": {"name": "s", "namespace": "n"}},
                            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                       "resources": ["pods"]}]}]}
    mutating = {"apiVersion": "admissionregistration.k8s.io/v1", **config}
    apply_defaults("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", mutating)
    (h,) = mutating["webhooks"]
    assert (h["failurePolicy"], h["matchPolicy"], h["timeoutSeconds"], h["reinvocationPolicy"]) == (
        "Fail", "Equivalent", 10, "Never")
    assert h["namespaceSelector"] == {} and h["objectSelector"] == {}
    assert h["rules"][0]["scope"] == "*"
    assert h["clientConfig"]["service"]["port"] == 443
    validating = {"webhooks": [{"name": "a.b.c", "failurePolicy": "Ignore", "timeoutSeconds": 5}]}
    apply_defaults("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", validating)
    (v,) = validating["webhooks"]
    assert v["failurePolicy"] == "Ignore" and v["timeoutSeconds"] == 5
    assert "reinvocationPolicy" not in v


class FakeCache:
    def __init__(self, *objs: dict, prefix_of=None) -> None:
        self.objs = {}
        for obj in objs:
            meta = obj["metadata"]
            kind = obj["kind"]
            base = {"Service": "/registry/core/services/", "Namespace": "/registry/core/namespaces/",
                    "EndpointSlice": "/registry/discovery.k8s.io/endpointslices/"}[kind]
            key = f"{base}{meta['namespace']}/{meta['name']}" if "namespace" in meta else f"{base}{meta['name']}"
            self.objs[key] = CachedObject(key, obj, 1)

    def get(self, key):
        return self.objs.get(key)

    def list(self, prefix, after=None):
        return [v for k, v in sorted(self.objs.items()) if k.startswith(prefix)]


SERVICE = {"kind": "Service", "metadata": {"name": "hook", "namespace": "sys"},
           "spec": {"clusterIP": "100.65.0.9", "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}


def _slice(ready: bool | None, address: str = "10.0.0.5") -> dict:
    endpoint: dict = {"addresses": [address]}
    if ready is not None:
        endpoint["conditions"] = {"ready": ready}
    return {"kind": "EndpointSlice", "metadata": {"name": "hook-abc", "namespace": "sys",
                                                   "labels": {"kubernetes.io/service-name": "hook"}},
            "ports": [{"name": "https", "port": 8443}], "endpoints": [endpoint]}


def test_resolve_service_prefers_a_ready_endpoint_then_the_cluster_ip():
    ref = {"namespace": "sys", "name": "hook", "port": 443}
    assert resolve_service(FakeCache(SERVICE, _slice(True)), ref) == ("10.0.0.5", 8443)
    assert resolve_service(FakeCache(SERVICE, _slice(None)), ref) == ("10.0.0.5", 8443)
    assert resolve_service(FakeCache(SERVICE, _slice(False)), ref) == ("100.65.0.9", 443)
    assert resolve_service(FakeCache(SERVICE), ref) == ("100.65.0.9", 443)
    assert resolve_service(FakeCache(SERVICE), {**ref, "port": 444}) is None
    assert resolve_service(FakeCache(), ref) is None


def test_service_target_names_the_service_for_tls():
    store = type("S", (), {"cache": FakeCache(SERVICE, _slice(True))})()
    dispatcher = _Dispatcher(store, "/x/", WebhookClient())
    h = hook([rule(["*"])], clientConfig={"service": {"namespace": "sys", "name": "hook", "path": "/v"}},
             timeoutSeconds=7)
    target = dispatcher.target(h)
    assert target.url == "https://hook.sys.svc:443/v?timeout=7s"
    assert target.connect_url == "https://10.0.0.5:8443/v?timeout=7s"
    assert target.server_name == "hook.sys.svc"
    assert target.host_header == "hook.sys.svc:443"


def test_review_of_a_namespace_delete_names_the_namespace():
    namespaces = next(r for r in BUILTIN if r.plural == "namespaces" and not r.group)
    store = type("S", (), {"cache": FakeCache({"kind": "Namespace", "metadata": {"name": "n1", "labels": {"a": "b"}}})})()
    dispatcher = _Dispatcher(store, "/x/", WebhookClient())
    attrs = Attributes(DELETE, namespaces, None, "n1", None, {"metadata": {"name": "n1"}})
    h = hook([rule(["namespaces"], scope="Cluster")], namespaceSelector={"matchLabels": {"a": "b"}})
    assert dispatcher._namespace(attrs) == "n1"
    assert dispatcher._namespace_labels(attrs, "n1") == {"a": "b"}
    review = dispatcher.review(h, attrs)["request"]
    assert review["namespace"] == "n1" and review["object"] is None
    assert review["userInfo"]["username"] == "system:apiserver"
    assert review["options"] == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}


def test_admission_configurations_never_go_to_webhooks():
    store = type("S", (), {"cache": FakeCache()})()
    dispatcher = _Dispatcher(store, "/x/", WebhookClient())
    dispatcher.webhooks = lambda: [hook([rule(["*"])])]  # one webhook matching everything
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                   "validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        info = next(r for r in BUILTIN if r.plural == plural)
        assert dispatcher.matching(Attributes(CREATE, info, None, "x", {"metadata": {"name": "x"}}, None)) == []
    configmaps = next(r for r in BUILTIN if r.plural == "configmaps")
    assert len(dispatcher.matching(Attributes(CREATE, configmaps, "ns", "x", {"metadata": {}}, None))) == 1


def test_a_namespace_create_is_selected_by_its_own_labels():
    namespaces = next(r for r in BUILTIN if r.plural == "namespaces" and not r.group)
    store = type("S", (), {"cache": FakeCache()})()
    dispatcher = _Dispatcher(store, "/x/", WebhookClient())
    dispatcher.webhooks = lambda: [hook([rule(["namespaces"])], namespaceSelector={"matchLabels": {"env": "prod"}})]

    def create(labels: dict) -> Attributes:
        return Attributes(CREATE, namespaces, None, "n2", {"metadata": {"name": "n2", "labels": labels}}, None)

    assert len(dispatcher.matching(create({"env": "prod"}))) == 1
    assert dispatcher.matching(create({"env": "dev"})) == []
