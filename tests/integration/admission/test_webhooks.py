"""Admission webhooks against a real in-process API server and a real HTTPS webhook server."""

from __future__ import annotations

import base64
import socket
import time
import uuid

import orjson
from webhook_server import add_label, allow, deny, json_patch, slow, webhook

MWC = "MutatingWebhookConfiguration"
VWC = "ValidatingWebhookConfiguration"


def _cm(name: str | None = None, **meta) -> dict:
    metadata = {"name": name, **meta} if name else dict(meta)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


def _path() -> str:
    return f"/{uuid.uuid4().hex[:10]}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_configuration_defaults_and_validation(c, hooks, configure):
    made = configure(MWC, [webhook("defaults.example.com", hooks.url("/x"), hooks.ca_bundle)])
    hook = made["webhooks"][0]
    assert hook["failurePolicy"] == "Fail"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 10
    assert hook["reinvocationPolicy"] == "Never"
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["rules"][0]["scope"] == "*"
    bad = webhook("dup.example.com", hooks.url("/x"), hooks.ca_bundle, timeoutSeconds=31, sideEffects="Some")
    bad["admissionReviewVersions"] = ["v2"]
    r = c.post("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", json={
        "metadata": {"name": "bad-config"},
        "webhooks": [bad, webhook("dup.example.com", "http://h/x", "", sideEffects=None),
                     {**webhook("nourl.example.com", "", ""), "clientConfig": {}}, webhook("short.name", "", "")]})
    assert r.status_code == 422, r.text
    causes = {(x["field"], x["reason"]) for x in r.json()["details"]["causes"]}
    assert ("webhooks[0].timeoutSeconds", "FieldValueInvalid") in causes
    assert ("webhooks[0].sideEffects", "FieldValueNotSupported") in causes
    assert ("webhooks[0].admissionReviewVersions", "FieldValueInvalid") in causes
    assert ("webhooks[1].name", "FieldValueDuplicate") in causes
    assert ("webhooks[1].sideEffects", "FieldValueRequired") in causes
    assert ("webhooks[1].clientConfig.url", "FieldValueInvalid") in causes  # http, not https
    assert ("webhooks[2].clientConfig", "FieldValueRequired") in causes
    assert ("webhooks[3].name", "FieldValueInvalid") in causes
    messages = [x["message"] for x in r.json()["details"]["causes"]]
    assert "the timeout value must be between 1 and 30 seconds" in " ".join(messages)


def test_mutating_webhook_patches_before_name_generation(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = add_label("mutated-by", "webhook")
    configure(MWC, [webhook("label.example.com", hooks.url(path), hooks.ca_bundle, ns=ns)])
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps?fieldManager=tester", json=_cm(generateName="gen-"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["metadata"]["labels"] == {"mutated-by": "webhook"}
    assert created["metadata"]["name"].startswith("gen-")
    stored = c.get(f"/api/v1/namespaces/{ns}/configmaps/{created['metadata']['name']}").json()
    assert stored["metadata"]["labels"] == {"mutated-by": "webhook"}
    (review,) = hooks.received(path, "gen-")
    request = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert request["requestResource"] == request["resource"]
    assert request["namespace"] == ns
    assert request["name"] == ""  # upstream's mutating admission runs before the name is generated
    assert request["object"]["metadata"]["generateName"] == "gen-"
    assert "name" not in request["object"]["metadata"]
    assert request["oldObject"] is None
    assert request["dryRun"] is False
    assert request["userInfo"]["username"] == "admin"
    assert "system:masters" in request["userInfo"]["groups"]
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "tester"}
    assert len(request["uid"]) == 36


def test_mutation_making_the_object_invalid_is_refused(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = add_label("bad", "not a valid value!")
    configure(MWC, [webhook("invalid.example.com", hooks.url(path), hooks.ca_bundle, ns=ns)])
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("cm-invalid"))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "metadata.labels"
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/cm-invalid").status_code == 404


def test_validating_webhook_denies_with_upstream_status(c, ns, hooks, configure):
    plain, coded = _path(), _path()
    hooks.handlers[plain] = deny("configmaps named deny-me are not allowed")
    hooks.handlers[coded] = deny("no", code=403, reason="Forbidden")
    configure(VWC, [
        webhook("plain.example.com", hooks.url(plain), hooks.ca_bundle, ns=ns,
                objectSelector={"matchLabels": {"which": "plain"}}),
        webhook("coded.example.com", hooks.url(coded), hooks.ca_bundle, ns=ns,
                objectSelector={"matchLabels": {"which": "coded"}}),
    ])
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("deny-me", labels={"which": "plain"}))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == ('admission webhook "plain.example.com" denied the request: '
                               "configmaps named deny-me are not allowed")
    assert body["status"] == "Failure"
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/deny-me").status_code == 404
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("coded", labels={"which": "coded"}))
    assert r.status_code == 403
    assert r.json()["reason"] == "Forbidden"
    assert r.json()["message"] == 'admission webhook "coded.example.com" denied the request: no'
    # The object selector kept both webhooks away from an unlabelled object.
    before = len(hooks.received(plain)) + len(hooks.received(coded))
    assert c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("other")).status_code == 201
    assert len(hooks.received(plain)) + len(hooks.received(coded)) == before
    # Validating webhooks see the object as it will be stored: the name is generated by then.
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm(generateName="deny-", labels={"which": "plain"}))
    assert r.status_code == 400
    assert hooks.received(plain, "deny-")[-1]["request"]["object"]["metadata"]["name"].startswith("deny-")


def test_warnings_become_warning_headers(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = json_patch([], warnings=("watch out", "twice"))
    configure(MWC, [webhook("warn.example.com", hooks.url(path), hooks.ca_bundle, ns=ns)])
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("warned"))
    assert r.status_code == 201
    warnings = r.headers.get_list("warning")
    assert '299 - "watch out"' in warnings and '299 - "twice"' in warnings


def test_failure_policy_with_an_unreachable_webhook(c, ns, hooks, configure):
    url = f"https://127.0.0.1:{_closed_port()}/gone"
    configure(VWC, [
        webhook("ignore.example.com", url, hooks.ca_bundle, ns=ns, failurePolicy="Ignore",
                objectSelector={"matchLabels": {"policy": "ignore"}}),
        webhook("fail.example.com", url, hooks.ca_bundle, ns=ns, failurePolicy="Fail",
                objectSelector={"matchLabels": {"policy": "fail"}}),
    ])
    assert c.post(f"/api/v1/namespaces/{ns}/configmaps",
                  json=_cm("ignored", labels={"policy": "ignore"})).status_code == 201
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("failed", labels={"policy": "fail"}))
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["reason"] == "InternalError"
    assert body["message"].startswith(
        f'Internal error occurred: failed calling webhook "fail.example.com": failed to call webhook: '
        f'Post "{url}?timeout=10s": ')
    assert "connection refused" in body["message"]
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/failed").status_code == 404


def test_timeout_and_untrusted_certificate(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = slow(3)
    other = WebhookCA()
    configure(VWC, [
        webhook("slow.example.com", hooks.url(path), hooks.ca_bundle, ns=ns, timeoutSeconds=1,
                objectSelector={"matchLabels": {"case": "slow"}}),
        webhook("untrusted.example.com", hooks.url(path), other.bundle, ns=ns,
                objectSelector={"matchLabels": {"case": "tls"}}),
    ])
    started = time.monotonic()
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("slow", labels={"case": "slow"}))
    assert r.status_code == 500
    assert time.monotonic() - started < 2.8
    assert r.json()["message"].endswith(f'Post "{hooks.url(path)}?timeout=1s": context deadline exceeded')
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("tls", labels={"case": "tls"}))
    assert r.status_code == 500
    assert "tls: failed to verify certificate: x509:" in r.json()["message"]


class WebhookCA:
    """A CA bundle that did not sign the webhook server's certificate."""

    def __init__(self) -> None:
        from webhook_server import make_certs

        self.bundle = base64.b64encode(make_certs(("localhost",), "127.0.0.1")[0]).decode()


def test_namespace_selector(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = add_label("seen", "yes")
    other = f"o-{uuid.uuid4().hex[:8]}"
    c.post("/api/v1/namespaces", json={"metadata": {"name": other, "labels": {"webhooks": "off"}}}).raise_for_status()
    c.patch(f"/api/v1/namespaces/{ns}", json={"metadata": {"labels": {"webhooks": "on"}}},
            headers={"content-type": "application/merge-patch+json"}).raise_for_status()
    configure(MWC, [webhook("nssel.example.com", hooks.url(path), hooks.ca_bundle,
                            namespaceSelector={"matchExpressions": [
                                {"key": "webhooks", "operator": "In", "values": ["on"]}]})])
    inside = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("a")).json()
    outside = c.post(f"/api/v1/namespaces/{other}/configmaps", json=_cm("a")).json()
    assert inside["metadata"]["labels"] == {"seen": "yes"}
    assert "labels" not in outside["metadata"]


def test_dry_run_and_side_effects(c, srv, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = add_label("dry", "run")
    configure(MWC, [webhook("nosideeffects.example.com", hooks.url(path), hooks.ca_bundle, ns=ns)])
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", json=_cm("dry"))
    assert r.status_code == 201
    assert r.json()["metadata"]["labels"] == {"dry": "run"}
    assert hooks.received(path, "dry")[-1]["request"]["dryRun"] is True
    assert hooks.received(path, "dry")[-1]["request"]["options"]["dryRun"] == ["All"]
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/dry").status_code == 404
    # sideEffects Some cannot be created through v1 any more; a configuration stored before is honoured.
    legacy_path = _path()
    hooks.handlers[legacy_path] = allow
    legacy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": VWC,
              "metadata": {"name": f"legacy-{uuid.uuid4().hex[:6]}", "uid": str(uuid.uuid4()),
                           "creationTimestamp": "2020-01-01T00:00:00Z"},
              "webhooks": [webhook("legacy.example.com", hooks.url(legacy_path), hooks.ca_bundle, ns=ns,
                                   sideEffects="Some", failurePolicy="Fail", timeoutSeconds=10)]}
    key = f"/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/{legacy['metadata']['name']}"
    server = srv.server
    srv.call(server.backend.create(key, orjson.dumps(legacy)))
    config_url = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{legacy['metadata']['name']}"
    deadline = time.monotonic() + 10
    while c.get(config_url).status_code != 200:  # written behind the server's back: wait for its watch cache
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        r = c.post(f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", json=_cm("dry2"))
        assert r.status_code == 400, r.text
        assert r.json()["message"] == 'admission webhook "legacy.example.com" does not support dry run'
        assert hooks.received(legacy_path, "dry2") == []
        assert c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("wet")).status_code == 201
        assert len(hooks.received(legacy_path, "wet")) == 1
    finally:
        c.delete(config_url)


def test_update_sends_old_object_and_delete_is_admitted(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = deny("keep it")
    assert c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("kept", labels={"v": "1"})).status_code == 201
    configure(VWC, [webhook("update.example.com", hooks.url(path), hooks.ca_bundle, ns=ns,
                            operations=("UPDATE", "DELETE"))])
    r = c.patch(f"/api/v1/namespaces/{ns}/configmaps/kept", json={"metadata": {"labels": {"v": "2"}}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 400
    request = hooks.received(path, "kept")[-1]["request"]
    assert request["operation"] == "UPDATE" and request["name"] == "kept"
    assert request["oldObject"]["metadata"]["labels"] == {"v": "1"}
    assert request["object"]["metadata"]["labels"] == {"v": "2"}
    assert request["options"]["kind"] == "UpdateOptions"
    r = c.delete(f"/api/v1/namespaces/{ns}/configmaps/kept")
    assert r.status_code == 400
    assert r.json()["message"] == 'admission webhook "update.example.com" denied the request: keep it'
    request = hooks.received(path, "kept")[-1]["request"]
    assert request["operation"] == "DELETE"
    assert request["object"] is None
    assert request["oldObject"]["metadata"]["name"] == "kept"
    assert request["options"]["kind"] == "DeleteOptions"
    got = c.get(f"/api/v1/namespaces/{ns}/configmaps/kept").json()
    assert got["metadata"]["labels"] == {"v": "1"}
    # deletecollection asks for each item
    r = c.delete(f"/api/v1/namespaces/{ns}/configmaps")
    assert r.status_code == 400
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/kept").status_code == 200


def test_subresource_rules(c, ns, hooks, configure):
    path = _path()
    hooks.handlers[path] = deny("status is frozen")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    configure(VWC, [webhook("status.example.com", hooks.url(path), hooks.ca_bundle, ns=ns,
                            resources=("pods/status",), operations=("UPDATE",))])
    assert c.post(f"/api/v1/namespaces/{ns}/pods", json=pod).status_code == 201
    # An update of the pod itself is not a pods/status request.
    r = c.patch(f"/api/v1/namespaces/{ns}/pods/p", json={"metadata": {"labels": {"a": "b"}}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert hooks.received(path) == []
    r = c.patch(f"/api/v1/namespaces/{ns}/pods/p/status",
                json={"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == 'admission webhook "status.example.com" denied the request: status is frozen'
    request = hooks.received(path)[-1]["request"]
    assert request["subResource"] == "status"
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["kind"]["kind"] == "Pod"


def test_reinvocation_if_needed(c, ns, hooks, configure):
    first, second = _path(), _path()
    hooks.handlers[first] = allow
    hooks.handlers[second] = add_label("second", "yes")
    configure(MWC, [
        webhook("first.example.com", hooks.url(first), hooks.ca_bundle, ns=ns, reinvocationPolicy="IfNeeded"),
        webhook("second.example.com", hooks.url(second), hooks.ca_bundle, ns=ns),
    ])
    assert c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("again")).status_code == 201
    calls = hooks.received(first, "again")
    assert len(calls) == 2
    assert calls[1]["request"]["object"]["metadata"]["labels"] == {"second": "yes"}
    assert len(hooks.received(second, "again")) == 1


def test_scale_subresource_sees_a_scale(c, ns, hooks, configure):
    cap, frozen = _path(), _path()
    hooks.handlers[cap] = json_patch([{"op": "replace", "path": "/spec/replicas", "value": 3}])
    hooks.handlers[frozen] = deny("no scaling to zero")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                           "template": {"metadata": {"labels": {"app": "d"}},
                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    assert c.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment).status_code == 201
    configure(MWC, [webhook("cap.example.com", hooks.url(cap), hooks.ca_bundle, ns=ns, groups=("apps",),
                            resources=("deployments/scale",), operations=("UPDATE",))])
    configure(VWC, [webhook("frozen.example.com", hooks.url(frozen), hooks.ca_bundle, ns=ns, groups=("apps",),
                            resources=("*/scale",), operations=("UPDATE",),
                            objectSelector={"matchLabels": {"never": "there"}})])
    r = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/d/scale", json={"spec": {"replicas": 5}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["replicas"] == 3  # the webhook's patch of the Scale went into the Deployment
    assert c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/d").json()["spec"]["replicas"] == 3
    request = hooks.received(cap, "d")[-1]["request"]
    assert request["subResource"] == "scale"
    assert request["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert request["object"]["kind"] == "Scale" and request["object"]["spec"] == {"replicas": 5}
    assert request["oldObject"]["spec"] == {"replicas": 1}
    # A Scale carries no labels: an object selector never matches it (as upstream).
    assert hooks.received(frozen) == []
    # Updating the Deployment itself is not a deployments/scale request.
    before = len(hooks.received(cap))
    r = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/d", json={"spec": {"replicas": 2}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.json()["spec"]["replicas"] == 2
    assert len(hooks.received(cap)) == before


def test_service_reference_dials_an_endpoint_with_the_service_name(c, srv, ns, configure):
    from webhook_server import WebhookServer

    with WebhookServer(dns_names=(f"hooksvc.{ns}.svc",)) as server:
        server.handlers["/svc"] = add_label("via", "service")
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hooksvc"},
               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": server.port}]}}
        assert c.post(f"/api/v1/namespaces/{ns}/services", json=svc).status_code == 201
        # The API refuses loopback endpoint addresses (as upstream); this one is stored behind its back,
        # standing for a host-network pod's address.
        endpoints = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "hooksvc-1", "namespace": ns, "uid": str(uuid.uuid4()),
                                  "creationTimestamp": "2020-01-01T00:00:00Z",
                                  "labels": {"kubernetes.io/service-name": "hooksvc"}},
                     "addressType": "IPv4", "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}],
                     "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}
        key = f"/registry/discovery.k8s.io/endpointslices/{ns}/hooksvc-1"
        srv.call(srv.server.backend.create(key, orjson.dumps(endpoints)))
        deadline = time.monotonic() + 10
        while c.get(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/hooksvc-1").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        hook = webhook("svc.example.com", "", server.ca_bundle, ns=ns)
        hook["clientConfig"] = {"service": {"namespace": ns, "name": "hooksvc", "path": "/svc"},
                                "caBundle": server.ca_bundle}
        configure(MWC, [hook])
        r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm("through-service"))
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["labels"] == {"via": "service"}
        (call,) = [x for x in server.requests if x["path"] == "/svc"
                   and x["review"]["request"]["name"] == "through-service"]
        assert call["host"] == f"hooksvc.{ns}.svc:443"
        assert call["query"] == "timeout=10s"


def test_validating_admission_policies_are_stored(c):
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": f"p-{uuid.uuid4().hex[:6]}"},
              "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                                "operations": ["CREATE"],
                                                                "resources": ["configmaps"]}]},
                       "validations": [{"expression": "true"}]}}
    base = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    r = c.post(base, json=policy)
    assert r.status_code == 201, r.text
    assert c.get(f"{base}/{policy['metadata']['name']}").json()["spec"]["validations"] == [{"expression": "true"}]
    c.delete(f"{base}/{policy['metadata']['name']}")


def test_no_webhook_hears_of_a_create_in_a_missing_namespace(c, hooks, configure):
    path = _path()
    hooks.handlers[path] = allow
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    configure(MWC, [webhook("lifecycle.example.com", hooks.url(path), hooks.ca_bundle,
                            objectSelector={"matchLabels": {"probe": missing}})])
    r = c.post(f"/api/v1/namespaces/{missing}/configmaps", json=_cm("x", labels={"probe": missing}))
    assert r.status_code == 404
    assert r.json()["message"] == f'namespaces "{missing}" not found'
    assert hooks.received(path) == []


def test_match_policy_equivalent_converts_to_the_version_the_webhook_asked_for(c, ns, hooks, configure):
    v1, exact = _path(), _path()
    hooks.handlers[v1] = json_patch([{"op": "replace", "path": "/spec/maxReplicas", "value": 7}])
    hooks.handlers[exact] = allow
    configure(MWC, [
        webhook("equivalent.example.com", hooks.url(v1), hooks.ca_bundle, ns=ns, groups=("autoscaling",),
                resources=("horizontalpodautoscalers",)),
        webhook("exact.example.com", hooks.url(exact), hooks.ca_bundle, ns=ns, groups=("autoscaling",),
                resources=("horizontalpodautoscalers",), matchPolicy="Exact"),
    ])
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                    "minReplicas": 1, "maxReplicas": 3,
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}}
    r = c.post(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", json=hpa)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["maxReplicas"] == 7  # patched in v1, converted back to v2
    assert r.json()["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    (review,) = hooks.received(v1, "h")
    request = review["request"]
    assert request["kind"] == {"group": "autoscaling", "version": "v1", "kind": "HorizontalPodAutoscaler"}
    assert request["resource"]["version"] == "v1"
    assert request["requestKind"] == {"group": "autoscaling", "version": "v2", "kind": "HorizontalPodAutoscaler"}
    assert request["requestResource"]["version"] == "v2"
    assert request["object"]["apiVersion"] == "autoscaling/v1"
    assert request["object"]["spec"]["targetCPUUtilizationPercentage"] == 50
    assert hooks.received(exact, "h") == []  # rules name v1 only: Exact does not match a v2 request
