"""TokenRequest, service-account bearer tokens, the ServiceAccount admission plugin and kube-root-ca.crt.

Against a real in-process API server (`srv`), spoken to over HTTPS: as admin (`c`) and with the tokens
the server issues.
"""

from __future__ import annotations

import ssl
import time

import httpx
import jwt
import pytest

from timoner.testing import wait_until

ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
POD_SPEC = {"containers": [{"name": "c", "image": "busybox"}]}


def request_token(c, ns: str, sa: str = "default", **spec) -> httpx.Response:
    return c.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                  json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})


def token_of(c, ns: str, sa: str = "default", **spec) -> str:
    response = request_token(c, ns, sa, **spec)
    assert response.status_code == 201, response.text
    return response.json()["status"]["token"]


def as_bearer(srv, token: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(srv.server.pki.ca_cert))
    return httpx.Client(base_url=srv.url, verify=context, headers={"Authorization": f"Bearer {token}"}, timeout=20)


def whoami(srv, token: str) -> httpx.Response:
    with as_bearer(srv, token) as client:
        return client.post(REVIEW, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def default_account(c, ns: str) -> dict:
    def found():
        r = c.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
        return r.json() if r.status_code == 200 else None
    return wait_until(found, timeout=10, what="the default ServiceAccount", interval=0.05)


def test_a_requested_token_authenticates_as_the_service_account(srv, c, ns):
    account = default_account(c, ns)
    before = int(time.time())
    response = request_token(c, ns, expirationSeconds=1200)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "TokenRequest" and body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["metadata"]["name"] == "default" and body["metadata"]["namespace"] == ns
    assert body["spec"] == {"audiences": [ISSUER], "expirationSeconds": 1200}
    token = body["status"]["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert before <= claims["iat"] <= claims["exp"] - 1200 + 1
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "default", "uid": account["metadata"]["uid"]}
    expires = time.strptime(body["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(time.mktime(expires) - time.mktime(time.gmtime(claims["iat"] + 1200))) <= 1

    review = whoami(srv, token)
    assert review.status_code == 201, review.text
    info = review.json()["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:default"
    assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    assert info["uid"] == account["metadata"]["uid"]
    assert info["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={claims['jti']}"]
    with as_bearer(srv, token) as client:
        assert client.get(f"/api/v1/namespaces/{ns}/configmaps").status_code == 200


def test_default_expiration_and_audiences(srv, c, ns):
    default_account(c, ns)
    body = request_token(c, ns).json()
    assert body["spec"]["expirationSeconds"] == 3600
    other = request_token(c, ns, audiences=["vault"]).json()
    assert other["spec"]["audiences"] == ["vault"]
    assert whoami(srv, other["status"]["token"]).status_code == 401  # not an audience of the API server


def test_expiration_below_ten_minutes_is_invalid(c, ns):
    default_account(c, ns)
    response = request_token(c, ns, expirationSeconds=599)
    assert response.status_code == 422
    status = response.json()
    assert status["reason"] == "Invalid"
    assert status["message"] == ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
                                 "Invalid value: 599: may not specify a duration less than 10 minutes")
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                                            "message": "Invalid value: 599: may not specify a duration less than "
                                                       "10 minutes"}]


def test_a_missing_account_is_not_found(c, ns):
    response = request_token(c, ns, "nobody")
    assert response.status_code == 404
    assert response.json()["message"] == 'serviceaccounts "nobody" not found'


def test_deleting_the_account_revokes_its_tokens(srv, c, ns):
    c.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": "robot"}}).raise_for_status()
    token = token_of(c, ns, "robot")
    assert whoami(srv, token).status_code == 201
    c.delete(f"/api/v1/namespaces/{ns}/serviceaccounts/robot").raise_for_status()
    response = whoami(srv, token)
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    # A new account of the same name is another account: the old token stays refused.
    c.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": "robot"}}).raise_for_status()
    assert whoami(srv, token).status_code == 401


def test_a_pod_bound_token_lives_as_long_as_the_pod(srv, c, ns):
    default_account(c, ns)
    pod = c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "web"}, "spec": POD_SPEC})
    assert pod.status_code == 201, pod.text
    uid = pod.json()["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": uid}
    token = token_of(c, ns, boundObjectRef=ref)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": uid}
    info = whoami(srv, token).json()["status"]["userInfo"]
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["web"]
    assert info["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]

    wrong = request_token(c, ns, boundObjectRef={**ref, "uid": "0000"})
    assert wrong.status_code == 409
    assert wrong.json()["message"] == (
        'Operation cannot be fulfilled on Pod "web": the UID in the bound object reference (0000) does not match '
        "the UID in record. The object might have been deleted and then recreated")
    assert request_token(c, ns, boundObjectRef={**ref, "name": "gone"}).status_code == 404
    c.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": "robot"}}).raise_for_status()
    other = request_token(c, ns, "robot", boundObjectRef=ref)
    assert other.status_code == 400
    assert other.json()["message"] == ('cannot bind token for serviceaccount "robot" to pod running with '
                                       "different serviceaccount name.")
    odd = request_token(c, ns, boundObjectRef={"apiVersion": "v1", "kind": "ConfigMap", "name": "x"})
    assert odd.status_code == 400
    assert odd.json()["message"] == 'cannot bind token for serviceaccount "default" to object of type /v1, Kind=ConfigMap.'

    c.delete(f"/api/v1/namespaces/{ns}/pods/web", params={"gracePeriodSeconds": "0"}).raise_for_status()
    wait_until(lambda: c.get(f"/api/v1/namespaces/{ns}/pods/web").status_code == 404, timeout=10, what="pod gone")
    assert whoami(srv, token).status_code == 401


def test_kubelets_token_request_is_extended_with_warnafter(c, ns):
    default_account(c, ns)
    pod = c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}, "spec": POD_SPEC}).json()
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": pod["metadata"]["uid"]}
    body = request_token(c, ns, expirationSeconds=3607, boundObjectRef=ref).json()
    claims = jwt.decode(body["status"]["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] == claims["iat"] + 3607
    assert body["spec"]["expirationSeconds"] == 3607  # the status says what was asked for


def test_a_secret_bound_token(srv, c, ns):
    default_account(c, ns)
    secret = c.post(f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": "s"}}).json()
    token = token_of(c, ns, boundObjectRef={"apiVersion": "v1", "kind": "Secret", "name": "s"})
    assert jwt.decode(token, options={"verify_signature": False})["kubernetes.io"]["secret"]["uid"] == \
        secret["metadata"]["uid"]
    assert whoami(srv, token).status_code == 201
    c.delete(f"/api/v1/namespaces/{ns}/secrets/s").raise_for_status()
    assert whoami(srv, token).status_code == 401


def test_bad_bearer_tokens_are_unauthorized_and_the_admin_token_still_works(srv, c):
    for token in ("nonsense", "a.b.c", jwt.encode({"iss": ISSUER, "sub": "x"}, "k" * 32, algorithm="HS256")):
        assert whoami(srv, token).status_code == 401
    assert whoami(srv, srv.server.pki.token()).json()["status"]["userInfo"]["username"] == "admin"


def test_issuer_discovery(srv, c, ns):
    default_account(c, ns)
    config = c.get("/.well-known/openid-configuration")
    assert config.status_code == 200
    assert config.json()["issuer"] == ISSUER
    assert config.json()["jwks_uri"].endswith("/openid/v1/jwks")
    jwks = c.get("/openid/v1/jwks")
    assert jwks.headers["content-type"] == "application/jwk-set+json"
    (key,) = jwks.json()["keys"]
    token = token_of(c, ns)
    assert jwt.get_unverified_header(token)["kid"] == key["kid"]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=[key["alg"]], audience=ISSUER)
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"


# -- admission ---------------------------------------------------------------------------------------


def test_pods_get_the_account_and_the_kube_api_access_volume(c, ns):
    default_account(c, ns)
    pod = c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}, "spec": POD_SPEC})
    assert pod.status_code == 201, pod.text
    spec = pod.json()["spec"]
    assert spec["serviceAccountName"] == "default"
    assert spec["serviceAccount"] == "default"  # the deprecated alias, defaulted from it
    (volume,) = spec["volumes"]
    assert volume["name"].startswith("kube-api-access-")
    assert [next(iter(s)) for s in volume["projected"]["sources"]] == ["serviceAccountToken", "configMap",
                                                                        "downwardAPI"]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]


def test_a_pod_of_a_missing_account_is_forbidden(c, ns):
    default_account(c, ns)
    response = c.post(f"/api/v1/namespaces/{ns}/pods", json={
        "metadata": {"name": "p"}, "spec": {"serviceAccountName": "ghost", **POD_SPEC}})
    assert response.status_code == 403
    assert response.json()["message"] == (f'pods "p" is forbidden: error looking up service account {ns}/ghost: '
                                          'serviceaccount "ghost" not found')


def test_an_account_that_opts_out_of_automount(c, ns):
    c.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={
        "metadata": {"name": "quiet"}, "automountServiceAccountToken": False}).raise_for_status()
    pod = c.post(f"/api/v1/namespaces/{ns}/pods", json={
        "metadata": {"name": "p"}, "spec": {"serviceAccountName": "quiet", **POD_SPEC}})
    assert pod.status_code == 201, pod.text
    assert "volumes" not in pod.json()["spec"]
    assert "volumeMounts" not in pod.json()["spec"]["containers"][0]


def test_a_pod_in_a_new_namespace_waits_for_the_default_account(c):
    name = f"fresh-{int(time.time() * 1000) % 10**8}"
    c.post("/api/v1/namespaces", json={"metadata": {"name": name}}).raise_for_status()
    pod = c.post(f"/api/v1/namespaces/{name}/pods", json={"metadata": {"name": "p"}, "spec": POD_SPEC})
    assert pod.status_code == 201, pod.text


# -- kube-root-ca.crt --------------------------------------------------------------------------------


@pytest.fixture
def root_ca(srv) -> str:
    return srv.server.pki.ca_cert.read_text()


def test_every_namespace_gets_kube_root_ca_and_keeps_it(c, ns, root_ca):
    path = f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"

    def published():
        r = c.get(path)
        return r.json() if r.status_code == 200 and r.json().get("data") == {"ca.crt": root_ca} else None

    cm = wait_until(published, timeout=10, what="kube-root-ca.crt", interval=0.05)
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith("Contains a CA bundle")
    for ns_name in ("default", "kube-system", "kube-public"):
        assert c.get(f"/api/v1/namespaces/{ns_name}/configmaps/kube-root-ca.crt").json()["data"]["ca.crt"] == root_ca

    c.patch(path, json={"data": {"ca.crt": "tampered", "extra": "x"}},
            headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    restored = wait_until(published, timeout=10, what="kube-root-ca.crt put back", interval=0.05)
    assert restored["metadata"]["uid"] == cm["metadata"]["uid"]

    c.delete(path).raise_for_status()
    again = wait_until(published, timeout=10, what="kube-root-ca.crt made again", interval=0.05)
    assert again["metadata"]["uid"] != cm["metadata"]["uid"]


def test_a_pod_in_a_missing_namespace_is_not_found_at_once(c):
    started = time.monotonic()
    response = c.post("/api/v1/namespaces/no-such-ns/pods", json={"metadata": {"name": "p"}, "spec": POD_SPEC})
    assert response.status_code == 404
    assert response.json()["message"] == 'namespaces "no-such-ns" not found'
    assert time.monotonic() - started < 1  # not after waiting for a default ServiceAccount that never comes


def test_a_node_bound_token(srv, c, ns):
    default_account(c, ns)
    node_name = f"node-{ns}"
    node = c.post("/api/v1/nodes", json={"metadata": {"name": node_name}})
    assert node.status_code == 201, node.text
    token = token_of(c, ns, boundObjectRef={"apiVersion": "v1", "kind": "Node", "name": node_name,
                                            "uid": node.json()["metadata"]["uid"]})
    info = whoami(srv, token).json()["status"]["userInfo"]
    assert info["extra"]["authentication.kubernetes.io/node-name"] == [node_name]
    assert info["extra"]["authentication.kubernetes.io/node-uid"] == [node.json()["metadata"]["uid"]]
    c.delete(f"/api/v1/nodes/{node_name}").raise_for_status()
    assert whoami(srv, token).status_code == 401
