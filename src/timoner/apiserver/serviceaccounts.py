"""Service-account tokens: the JWTs of the TokenRequest API, issued and verified with the cluster's key.

Upstream's `pkg/serviceaccount` in Python. `ServiceAccountTokens.issue`
signs the claims kube-apiserver puts in a bound token (`claims`): `iss`,
`sub` (`system:serviceaccount:<ns>:<name>`), `aud`, `exp`/`iat`/`nbf`,
`jti`, and the private `kubernetes.io` claim naming the namespace, the
ServiceAccount and the object the token is bound to (a Pod, with its Node
when the pod is scheduled; a Secret; a Node), each with its uid.

`ServiceAccountTokens.authenticate` is the bearer-token authenticator: a
JWT of our issuer, signed by our key, within its validity (go-jose's one
minute of leeway), for one of the API server's audiences, whose
ServiceAccount (and bound Pod or Secret, or Node) still exists with the
uid in the token, is that ServiceAccount's `User`. Signature checks are
the expensive part, so verified claims are kept (bounded) until the token
expires; the existence checks are watch-cache lookups and run every time,
so a deleted ServiceAccount or pod revokes its tokens at once.

The key is kubeadm's `sa.key` (EC P-256 here, so ES256 tokens, which
upstream accepts as it accepts RS256); `openid_configuration` and `jwks`
are the service account issuer discovery documents.

`create_token` is the `serviceaccounts/token` subresource (upstream's
`TokenREST.Create`): validation, bound-object checks and the response, in
upstream's words. As kube-apiserver does by default
(`--service-account-extend-token-expiration`), a pod-bound token that asks
for kubelet's 3607 s lasts a year and carries `warnafter` instead.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from timoner.api import errors
from timoner.api.registry import ResourceInfo
from timoner.api.structural import decode as structural_decode

from ._http import User
from .store import Store

__all__ = [
    "DEFAULT_EXPIRATION_SECONDS",
    "ISSUER",
    "JWKS_PATH",
    "OPENID_CONFIGURATION_PATH",
    "ServiceAccountTokens",
    "claims",
    "create_token",
    "key_id",
    "load_signing_key",
    "username",
]

ISSUER = "https://kubernetes.default.svc.cluster.local"
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 10 * 60
MAX_EXPIRATION_SECONDS = 1 << 32
WARN_ONLY_EXPIRATION_SECONDS = 3607  # what kubelet asks for: such pod-bound tokens are extended
EXTENDED_EXPIRATION_SECONDS = 365 * 24 * 3600
LEEWAY_SECONDS = 60  # go-jose's jwt.DefaultLeeway: exp and nbf, and how long a deleted object still counts

_ALGORITHM = "ES256"
_CACHE_SIZE = 4096
_PREFIX = "/registry/core/"

POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
NODE_UID_KEY = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID_KEY = "authentication.kubernetes.io/credential-id"

Lookup = Callable[[str], dict | None]
"""An object by its storage key (`/registry/core/pods/<ns>/<name>`), or None: the watch cache's view."""


def username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Upstream's `kid`: the unpadded base64url SHA-256 of the key's PKIX DER encoding."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: the service-account signing key must be an EC key")
    return key


def _ref(obj: dict) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {"name": meta.get("name", ""), "uid": meta.get("uid", "")}


def claims(account: dict, *, issuer: str, audiences: Sequence[str], expiration_seconds: int, now: int,
           warn_after: int = 0, pod: dict | None = None, secret: dict | None = None,
           node: dict | None = None) -> dict[str, Any]:
    """The claims of a token for `account` bound to at most one of pod (with its node) / secret / node."""
    if secret is not None and (pod is not None or node is not None):
        raise errors.InternalError("internal error, token can only be bound to one object type")
    meta = account.get("metadata") or {}
    private: dict[str, Any] = {"namespace": meta.get("namespace", ""), "serviceaccount": _ref(account)}
    if pod is not None:
        private["pod"] = _ref(pod)
        if node is not None:
            private["node"] = _ref(node)
    elif secret is not None:
        private["secret"] = _ref(secret)
    elif node is not None:
        private["node"] = _ref(node)
    if warn_after:
        private["warnafter"] = now + warn_after
    return {
        "iss": issuer,
        "sub": username(meta.get("namespace", ""), meta.get("name", "")),
        # go-jose writes a single audience as a string
        "aud": audiences[0] if len(audiences) == 1 else list(audiences),
        "exp": now + expiration_seconds,
        "iat": now,
        "nbf": now,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": private,
    }


class ServiceAccountTokens:
    """Issues and verifies the cluster's service-account tokens (see the module docstring)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, objects: Lookup, *, issuer: str = ISSUER,
                 audiences: Sequence[str] = (ISSUER,)) -> None:
        self._key = key
        self._public = key.public_key()
        self._kid = key_id(self._public)
        self._objects = objects
        self.issuer = issuer
        self.audiences = tuple(audiences)
        self._verified: dict[str, dict[str, Any]] = {}

    # -- issuing ---------------------------------------------------------------------------

    def issue(self, account: dict, *, audiences: Sequence[str], expiration_seconds: int, now: int | None = None,
              warn_after: int = 0, pod: dict | None = None, secret: dict | None = None,
              node: dict | None = None) -> str:
        payload = claims(account, issuer=self.issuer, audiences=audiences, expiration_seconds=expiration_seconds,
                         now=int(time.time()) if now is None else now, warn_after=warn_after, pod=pod,
                         secret=secret, node=node)
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM, headers={"kid": self._kid})

    # -- authenticating ----------------------------------------------------------------------

    def authenticate(self, token: str) -> User | None:
        """The ServiceAccount user a bearer token stands for, or None when it is not a valid token of ours."""
        if token.count(".") != 2:
            return None
        payload = self._verified.get(token)
        now = time.time()
        if payload is None:
            payload = self._verify(token)
            if payload is None:
                return None
        elif payload["exp"] + LEEWAY_SECONDS <= now:
            del self._verified[token]
            return None
        return self._user(payload, now)

    def _verify(self, token: str) -> dict[str, Any] | None:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != _ALGORITHM:
                return None
            payload = jwt.decode(token, self._public, algorithms=[_ALGORITHM], audience=list(self.audiences),
                                 issuer=self.issuer, leeway=LEEWAY_SECONDS,
                                 options={"require": ["exp", "iat", "nbf", "sub", "aud"]})
        except jwt.PyJWTError:
            return None
        private = payload.get("kubernetes.io")
        if not isinstance(private, dict) or not isinstance(private.get("serviceaccount"), dict):
            return None
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = payload
        return payload

    def _alive(self, key: str, ref: Any, now: float) -> bool:
        """The object `ref` names still exists under `key` with its uid (deleted for less than the leeway)."""
        if not isinstance(ref, dict):
            return False
        obj = self._objects(key)
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if meta.get("uid") != ref.get("uid"):
            return False
        deleted = meta.get("deletionTimestamp")
        if deleted:
            try:
                when = calendar.timegm(time.strptime(deleted, "%Y-%m-%dT%H:%M:%SZ"))
            except ValueError:
                return False
            if when < now - LEEWAY_SECONDS:
                return False
        return True

    def _user(self, payload: dict[str, Any], now: float) -> User | None:
        private = payload["kubernetes.io"]
        namespace = private.get("namespace") or ""
        account = private["serviceaccount"]
        if not self._alive(f"{_PREFIX}serviceaccounts/{namespace}/{account.get('name')}", account, now):
            return None
        pod, secret, node = private.get("pod"), private.get("secret"), private.get("node")
        if secret is not None and not self._alive(f"{_PREFIX}secrets/{namespace}/{secret.get('name')}", secret, now):
            return None
        if pod is not None and not self._alive(f"{_PREFIX}pods/{namespace}/{pod.get('name')}", pod, now):
            return None
        if pod is None and node is not None and not self._alive(f"{_PREFIX}nodes/{node.get('name')}", node, now):
            return None
        extra: list[tuple[str, tuple[str, ...]]] = []
        if pod is not None and pod.get("name") and pod.get("uid"):
            extra += [(POD_NAME_KEY, (pod["name"],)), (POD_UID_KEY, (pod["uid"],))]
        if payload.get("jti"):
            extra.append((CREDENTIAL_ID_KEY, (f"JTI={payload['jti']}",)))
        if node is not None and node.get("name"):
            extra.append((NODE_NAME_KEY, (node["name"],)))
            if node.get("uid"):
                extra.append((NODE_UID_KEY, (node["uid"],)))
        return User(username(namespace, account.get("name", "")),
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
                    uid=account.get("uid", ""), extra=tuple(extra))

    # -- issuer discovery ---------------------------------------------------------------------

    def openid_configuration(self, server_address: str) -> dict[str, Any]:
        """`/.well-known/openid-configuration`; the JWKS is served by this API server (no --service-account-jwks-uri)."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"https://{server_address}{JWKS_PATH}",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [_ALGORITHM],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._public.public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

        return {"keys": [{"use": "sig", "kty": "EC", "kid": self._kid, "crv": "P-256", "alg": _ALGORITHM,
                          "x": b64(numbers.x), "y": b64(numbers.y)}]}


# -- the TokenRequest subresource -----------------------------------------------------------------

_TOKEN_REQUEST = "io.k8s.api.authentication.v1.TokenRequest"
_GROUP = "authentication.k8s.io"
_API_VERSION = "authentication.k8s.io/v1"


def _invalid(name: str, field: str, value: Any, detail: str) -> errors.Invalid:
    return errors.Invalid("TokenRequest", name, [errors.Cause(
        "FieldValueInvalid", f"Invalid value: {_go_value(value)}: {detail}", field)], group=_GROUP)


def _go_value(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


async def create_token(store: Store, tokens: ServiceAccountTokens,
                       resource: Callable[[str, str, str], ResourceInfo | None], namespace: str, name: str,
                       body: Any) -> dict:
    """Answer `POST .../serviceaccounts/<name>/token`: the TokenRequest with its status."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the body of the request must be a TokenRequest object")
    if body.get("apiVersion") not in (None, "", _API_VERSION) or body.get("kind") not in (None, "", "TokenRequest"):
        raise errors.BadRequest(f"the API version in the data ({body.get('apiVersion')}) or kind "
                                f"({body.get('kind')}) does not match the expected TokenRequest ({_API_VERSION})")
    structural_decode(body, _TOKEN_REQUEST, kind="TokenRequest", api_version=_API_VERSION)
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    if meta.get("name") and meta["name"] != name:
        raise _invalid(name, "metadata.name", meta["name"], "must match the service account name if specified")
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise _invalid(name, "metadata.namespace", meta["namespace"],
                       "must match the service account namespace if specified")
    account = await store.get(resource("", "v1", "serviceaccounts"), namespace, name)
    audiences = list(spec.get("audiences") or tokens.audiences)
    seconds = spec.get("expirationSeconds")
    seconds = DEFAULT_EXPIRATION_SECONDS if seconds is None else seconds
    issued = int(time.time())
    if seconds < MIN_EXPIRATION_SECONDS:
        raise _invalid("", "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")
    if seconds > MAX_EXPIRATION_SECONDS:
        raise _invalid("", "spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds")

    pod = secret = node = None
    ref = spec.get("boundObjectRef")
    if ref:
        kind, api_version, ref_name = ref.get("kind", ""), ref.get("apiVersion", ""), ref.get("name", "")
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
        version = api_version.rpartition("/")[2]
        if group == "" and kind == "Pod":
            pod = await store.get(resource("", "v1", "pods"), namespace, ref_name)
            if ((pod.get("spec") or {}).get("serviceAccountName") or "default") != name:
                raise errors.BadRequest(f'cannot bind token for serviceaccount "{name}" to pod running with '
                                        "different serviceaccount name.")
            bound = pod
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                cached = store.cache.get(f"{_PREFIX}nodes/{node_name}")
                node = cached.obj if cached is not None else None  # optional, as upstream
        elif group == "" and kind == "Node":
            node = bound = await store.get(resource("", "v1", "nodes"), None, ref_name)
        elif group == "" and kind == "Secret":
            secret = bound = await store.get(resource("", "v1", "secrets"), namespace, ref_name)
        else:
            raise errors.BadRequest(f'cannot bind token for serviceaccount "{name}" to object of type '
                                    f"{group}/{version}, Kind={kind}.")
        uid = bound["metadata"].get("uid", "")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.Conflict(kind, ref_name, (
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated"), group=group)

    lifetime, warn_after = seconds, 0
    # Only for the API server's own audiences (upstream's isKubeAudiences: every requested one is ours).
    if pod is not None and seconds == WARN_ONLY_EXPIRATION_SECONDS and set(audiences) <= set(tokens.audiences):
        lifetime, warn_after = EXTENDED_EXPIRATION_SECONDS, seconds
    token = tokens.issue(account, audiences=audiences, expiration_seconds=lifetime, now=issued,
                         warn_after=warn_after, pod=pod, secret=secret, node=node)
    out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds}
    if ref:
        out_spec["boundObjectRef"] = ref
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
    return {
        "kind": "TokenRequest",
        "apiVersion": _API_VERSION,
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": stamp},
        "spec": out_spec,
        "status": {"token": token,
                   "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued + seconds))},
    }
