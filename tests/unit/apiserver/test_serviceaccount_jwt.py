"""Service-account tokens: claims, signing, verification and what makes a token stop counting."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from timoner.apiserver.certs import ensure_pki
from timoner.apiserver.serviceaccounts import (
    CREDENTIAL_ID_KEY,
    ISSUER,
    NODE_NAME_KEY,
    NODE_UID_KEY,
    POD_NAME_KEY,
    POD_UID_KEY,
    ServiceAccountTokens,
    claims,
    key_id,
    load_signing_key,
)

NS = "team"


def obj(kind: str, name: str, uid: str, ns: str | None = NS, **meta) -> dict:
    metadata = {"name": name, "uid": uid, **meta}
    if ns is not None:
        metadata["namespace"] = ns
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata}


SA = obj("ServiceAccount", "robot", "sa-uid")
POD = obj("Pod", "web", "pod-uid")
NODE = obj("Node", "n1", "node-uid", ns=None)
SECRET = obj("Secret", "s", "secret-uid")


class World:
    """The objects the verifier looks up, by storage key."""

    def __init__(self, *objs: dict) -> None:
        self.objects: dict[str, dict] = {}
        for o in objs:
            self.put(o)

    def put(self, o: dict) -> None:
        plural = o["kind"].lower() + "s"
        meta = o["metadata"]
        where = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
        self.objects[f"/registry/core/{plural}/{where}"] = o

    def drop(self, o: dict) -> None:
        self.objects = {k: v for k, v in self.objects.items() if v is not o}

    def get(self, key: str) -> dict | None:
        return self.objects.get(key)


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


def tokens_for(key, world: World) -> ServiceAccountTokens:
    return ServiceAccountTokens(key, world.get)


def test_claims_of_a_pod_bound_token_on_a_node():
    c = claims(SA, issuer=ISSUER, audiences=[ISSUER], expiration_seconds=3600, now=1000, warn_after=3607,
               pod=POD, node=NODE)
    assert c["iss"] == ISSUER and c["sub"] == "system:serviceaccount:team:robot"
    assert c["aud"] == ISSUER  # one audience is written as a string, as go-jose does
    assert (c["iat"], c["nbf"], c["exp"]) == (1000, 1000, 4600)
    assert len(c["jti"]) == 36
    assert c["kubernetes.io"] == {"namespace": NS, "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                  "pod": {"name": "web", "uid": "pod-uid"}, "node": {"name": "n1", "uid": "node-uid"},
                                  "warnafter": 4607}


def test_claims_of_secret_and_node_bound_tokens():
    c = claims(SA, issuer=ISSUER, audiences=["a", "b"], expiration_seconds=600, now=0, secret=SECRET)
    assert c["aud"] == ["a", "b"]
    assert c["kubernetes.io"]["secret"] == {"name": "s", "uid": "secret-uid"}
    assert "pod" not in c["kubernetes.io"] and "warnafter" not in c["kubernetes.io"]
    c = claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=0, node=NODE)
    assert c["kubernetes.io"]["node"] == {"name": "n1", "uid": "node-uid"}
    with pytest.raises(Exception, match="only be bound to one object type"):
        claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=0, secret=SECRET, pod=POD)


def test_a_token_authenticates_as_its_service_account(key):
    world = World(SA, POD, NODE)
    tokens = tokens_for(key, world)
    token = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=3600, pod=POD, node=NODE)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == key_id(key.public_key())
    user = tokens.authenticate(token)
    assert user is not None
    assert user.name == "system:serviceaccount:team:robot"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated")
    assert user.uid == "sa-uid"
    extra = dict(user.extra)
    assert extra[POD_NAME_KEY] == ("web",) and extra[POD_UID_KEY] == ("pod-uid",)
    assert extra[NODE_NAME_KEY] == ("n1",) and extra[NODE_UID_KEY] == ("node-uid",)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert extra[CREDENTIAL_ID_KEY] == (f"JTI={jti}",)
    assert tokens.authenticate(token) == user  # from the cache of verified tokens, same answer


def test_deleting_the_account_or_the_bound_pod_revokes_cached_tokens(key):
    world = World(SA, POD)
    tokens = tokens_for(key, world)
    token = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=3600, pod=POD)
    assert tokens.authenticate(token) is not None
    world.drop(POD)
    assert tokens.authenticate(token) is None
    world.put(obj("Pod", "web", "another-uid"))  # recreated under the same name: not the bound pod
    assert tokens.authenticate(token) is None
    world.put(POD)
    assert tokens.authenticate(token) is not None
    world.put(obj("ServiceAccount", "robot", "new-uid"))
    assert tokens.authenticate(token) is None
    world.drop(world.get("/registry/core/serviceaccounts/team/robot"))
    assert tokens.authenticate(token) is None


def test_an_object_being_deleted_counts_for_a_minute(key):
    world = World(SA)
    tokens = tokens_for(key, world)
    token = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=3600)
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10))
    world.put(obj("ServiceAccount", "robot", "sa-uid", deletionTimestamp=recent))
    assert tokens.authenticate(token) is not None
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    world.put(obj("ServiceAccount", "robot", "sa-uid", deletionTimestamp=old))
    assert tokens.authenticate(token) is None


def test_secret_and_node_bound_tokens_need_their_object(key):
    world = World(SA, SECRET, NODE)
    tokens = tokens_for(key, world)
    by_secret = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=3600, secret=SECRET)
    by_node = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=3600, node=NODE)
    assert tokens.authenticate(by_secret) is not None
    assert dict(tokens.authenticate(by_node).extra)[NODE_NAME_KEY] == ("n1",)
    world.drop(SECRET)
    world.drop(NODE)
    assert tokens.authenticate(by_secret) is None
    assert tokens.authenticate(by_node) is None


def test_expiry_with_a_minute_of_leeway(key):
    world = World(SA)
    tokens = tokens_for(key, world)
    now = int(time.time())
    stale = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=600, now=now - 700)  # expired 100 s ago
    fresh_enough = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=600, now=now - 630)  # 30 s ago
    future = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=600, now=now + 300)  # nbf in 5 minutes
    assert tokens.authenticate(stale) is None
    assert tokens.authenticate(fresh_enough) is not None
    assert tokens.authenticate(future) is None


def test_audience_issuer_and_key_must_be_ours(key):
    world = World(SA)
    tokens = tokens_for(key, world)
    assert tokens.authenticate(tokens.issue(SA, audiences=["vault"], expiration_seconds=600)) is None
    assert tokens.authenticate(tokens.issue(SA, audiences=["vault", ISSUER], expiration_seconds=600)) is not None
    other = ServiceAccountTokens(ec.generate_private_key(ec.SECP256R1()), world.get)
    assert tokens.authenticate(other.issue(SA, audiences=[ISSUER], expiration_seconds=600)) is None
    elsewhere = ServiceAccountTokens(key, world.get, issuer="https://elsewhere", audiences=[ISSUER])
    assert tokens.authenticate(elsewhere.issue(SA, audiences=[ISSUER], expiration_seconds=600)) is None
    payload = claims(SA, issuer=ISSUER, audiences=[ISSUER], expiration_seconds=600, now=int(time.time()))
    assert tokens.authenticate(jwt.encode(payload, "a-shared-secret-of-32-bytes-or-more", algorithm="HS256")) is None
    assert tokens.authenticate("not-a-jwt") is None
    assert tokens.authenticate("a.b.c") is None


def test_jwks_verifies_issued_tokens(key):
    tokens = tokens_for(key, World(SA))
    token = tokens.issue(SA, audiences=[ISSUER], expiration_seconds=600)
    (jwk,) = tokens.jwks()["keys"]
    assert jwk["kid"] == key_id(key.public_key()) and jwk["alg"] == "ES256" and jwk["use"] == "sig"
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=["ES256"], audience=ISSUER)["sub"] == "system:serviceaccount:team:robot"
    config = tokens.openid_configuration("10.0.0.1:6443")
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == "https://10.0.0.1:6443/openid/v1/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["ES256"]


def test_the_signing_key_is_kept_across_restarts(tmp_path):
    first = ensure_pki(tmp_path)
    kid = key_id(load_signing_key(first.sa_key).public_key())
    assert first.sa_pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    again = ensure_pki(tmp_path)
    assert key_id(load_signing_key(again.sa_key).public_key()) == kid
    assert (first.sa_key.stat().st_mode & 0o777) == 0o600
