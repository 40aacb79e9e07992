"""Bad input gets a Kubernetes Status with the right code and reason, and changes nothing."""

from __future__ import annotations

import pytest

from timoner.testing import ServerThread, http_client, wait_until


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("bad") / "data", storage="sqlite") as srv:
        with http_client(srv) as c:
            c.post("/api/v1/namespaces", json={"metadata": {"name": "bad"}}).raise_for_status()
            c.post("/api/v1/namespaces/bad/configmaps",
                   json={"metadata": {"name": "keep"}, "data": {"a": "1"}}).raise_for_status()
            # Let the server finish publishing kube-root-ca.crt to every namespace before anything is compared.
            wait_until(lambda: all(c.get(f"/api/v1/namespaces/{n}/configmaps/kube-root-ca.crt").status_code == 200
                                   for n in ("default", "kube-system", "kube-public", "kube-node-lease", "bad")),
                       timeout=10, what="kube-root-ca.crt in every namespace", interval=0.02)
            yield c, srv


def _snapshot(c):
    """Every object a rejected request could have touched, with its resourceVersion."""
    items = []
    for path in ("/api/v1/configmaps", "/apis/apps/v1/deployments", "/api/v1/namespaces"):
        body = c.get(path).json()
        items += [(i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"],
                   i["metadata"]["resourceVersion"]) for i in body["items"]]
    return sorted(items)


def _status(resp, code, reason):
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert body["message"]
    return body


CM = "/api/v1/namespaces/bad/configmaps"
DEP = "/apis/apps/v1/namespaces/bad/deployments"

CASES = [
    # (description, method, path, kwargs, code, reason)
    ("malformed json", "POST", CM, {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "BadRequest"),
    ("malformed yaml", "POST", CM, {"content": b"a: [b", "headers": {"content-type": "application/yaml"}},
     400, "BadRequest"),
    ("empty body", "POST", CM, {"content": b"", "headers": {"content-type": "application/json"}}, 400, "BadRequest"),
    ("wrong kind", "POST", CM, {"json": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}},
     400, "BadRequest"),
    ("namespace mismatch", "POST", CM, {"json": {"metadata": {"name": "x", "namespace": "other"}}},
     400, "BadRequest"),
    ("invalid name", "POST", CM, {"json": {"metadata": {"name": "Not_Valid"}}}, 422, "Invalid"),
    ("no name", "POST", CM, {"json": {"metadata": {}}}, 422, "Invalid"),
    ("type error", "POST", DEP, {"json": {"metadata": {"name": "d"}, "spec": {"replicas": "three"}}},
     400, "BadRequest"),
    ("strict unknown field", "POST", CM + "?fieldValidation=Strict",
     {"json": {"metadata": {"name": "x"}, "bogus": 1}}, 400, "BadRequest"),
    ("invalid deployment", "POST", DEP, {"json": {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": []}}}}}, 422, "Invalid"),
    ("already exists", "POST", CM, {"json": {"metadata": {"name": "keep"}}}, 409, "AlreadyExists"),
    ("missing namespace", "POST", "/api/v1/namespaces/nope/configmaps", {"json": {"metadata": {"name": "x"}}},
     404, "NotFound"),
    ("missing object", "GET", CM + "/nope", {}, 404, "NotFound"),
    ("unknown resource", "GET", "/api/v1/namespaces/bad/widgets", {}, 404, "NotFound"),
    ("unknown path", "GET", "/nothing/here", {}, 404, "NotFound"),
    ("stale update", "PUT", CM + "/keep",
     {"json": {"metadata": {"name": "keep", "resourceVersion": "1"}, "data": {"a": "2"}}}, 409, "Conflict"),
    ("malformed scale patch", "PATCH", DEP + "/any/scale", {
        "content": b"{oops", "headers": {"content-type": "application/merge-patch+json"}}, 400, "BadRequest"),
    ("bad patch type", "PATCH", CM + "/keep", {"content": b"{}", "headers": {"content-type": "text/plain"}},
     415, "UnsupportedMediaType"),
    ("failing json-patch test", "PATCH", CM + "/keep", {
        "content": b'[{"op":"test","path":"/data/a","value":"9"},{"op":"replace","path":"/data/a","value":"x"}]',
        "headers": {"content-type": "application/json-patch+json"}}, 422, "Invalid"),
    ("too large", "POST", CM, {"json": {"metadata": {"name": "big"}, "data": {"x": "y" * (3 * 1024 * 1024 + 10)}}},
     413, "RequestEntityTooLarge"),
    ("bad label selector", "GET", CM + "?labelSelector=a%20in%20(", {}, 400, "BadRequest"),
    ("unsupported field selector", "GET", CM + "?fieldSelector=data.a%3D1", {}, 400, "BadRequest"),
    ("bad continue token", "GET", CM + "?limit=1&continue=garbage", {}, 400, "BadRequest"),
    ("bad delete precondition", "DELETE", CM + "/keep", {"json": {"preconditions": {"uid": "nope"}}},
     409, "Conflict"),
    ("bad dryRun", "POST", CM + "?dryRun=Some", {"json": {"metadata": {"name": "x"}}}, 400, "BadRequest"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rejected_and_nothing_changed(http, case):
    c, _ = http
    _, method, path, kwargs, code, reason = case
    before = _snapshot(c)
    if method == "DELETE" and "json" in kwargs:
        resp = c.request("DELETE", path, json=kwargs["json"])
    else:
        resp = c.request(method, path, **kwargs)
    body = _status(resp, code, reason)
    if code == 422 and "patch" not in case[0]:  # upstream's failed JSON-patch 422 carries no causes
        causes = body["details"]["causes"]
        assert causes and all(cause["reason"] and cause["message"] for cause in causes)
    assert _snapshot(c) == before
    assert c.get("/healthz").status_code == 200


def test_unauthenticated_requests_get_401(http):
    _, srv = http
    with http_client(srv, token=False) as anon:
        resp = anon.get("/api/v1/namespaces")
        assert resp.status_code == 401
        assert resp.json()["reason"] == "Unauthorized"
        wrong = anon.get("/api/v1/namespaces", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401


def test_invalid_causes_name_fields(http):
    c, _ = http
    resp = c.post(DEP, json={"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}}}})
    body = _status(resp, 422, "Invalid")
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert "spec.template.spec.containers[0].image" in fields
    assert body["message"].startswith('Deployment.apps "d" is invalid')


def test_strict_duplicate_and_unknown_fields(http):
    c, _ = http
    body = b'{"metadata": {"name": "dup", "name": "dup2"}, "data": {"a": "1"}, "bogus": true}'
    resp = c.post(CM + "?fieldValidation=Strict", content=body, headers={"content-type": "application/json"})
    status = _status(resp, 400, "BadRequest")
    assert status["message"] == 'strict decoding error: duplicate field "metadata.name", unknown field "bogus"'
    warn = c.post(CM + "?fieldValidation=Warn", json={"metadata": {"name": "warned"}, "bogus": True})
    assert warn.status_code == 201
    assert 'unknown field \\"bogus\\"' in warn.headers["warning"]
    assert "bogus" not in warn.json()
    c.delete(CM + "/warned")


def test_protobuf_only_accept_is_406(http):
    c, _ = http
    resp = c.get(CM, headers={"accept": "application/vnd.kubernetes.protobuf"})
    _status(resp, 406, "NotAcceptable")
    both = c.get(CM, headers={"accept": "application/vnd.kubernetes.protobuf,application/json"})
    assert both.status_code == 200 and both.headers["content-type"] == "application/json"


def test_openapi_v2_is_protobuf_only(http):
    c, _ = http
    pb = c.get("/openapi/v2", headers={"accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert pb.status_code == 200
    # kube-openapi's answer: Go's mime parser (client-go) rejects the `@` of the type asked for.
    assert pb.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert pb.content.startswith(b"\x0a\x032.0")  # swagger = "2.0"
    _status(c.get("/openapi/v2", headers={"accept": "application/json"}), 406, "NotAcceptable")
