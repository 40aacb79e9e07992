"""Calling an admission webhook: one AdmissionReview v1 POSTed over HTTPS, its response checked.

`WebhookClient` keeps one `httpx.AsyncClient` per `caBundle` (a webhook
without one is verified against the system's trust store, as upstream).
A `Target` says where to connect and which name the server certificate
must carry: the URL of `clientConfig.url` as given, or for
`clientConfig.service` an address the caller resolved with the
certificate checked against `<service>.<namespace>.svc` (sent as SNI and
Host). Every failure to get a well-formed answer raises `CallError` with
upstream's wording (`failed to call webhook: Post "<url>": ...`), which the
dispatcher turns into a 500 or ignores per `failurePolicy`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from dataclasses import dataclass

import httpx
import orjson

__all__ = ["CallError", "Target", "WebhookClient"]


class CallError(Exception):
    """The webhook could not be called or gave no usable AdmissionReview (upstream's ErrCallingWebhook)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one webhook call goes."""

    url: str  # as upstream names it in messages, e.g. https://svc.ns.svc:443/path?timeout=10s
    connect_url: str  # what is dialled (the same, or the resolved address of a Service)
    server_name: str | None = None  # the certificate's expected name when it differs from the URL's host
    host_header: str | None = None


def _describe(exc: Exception, target: Target) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "context deadline exceeded"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"tls: failed to verify certificate: x509: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"remote error: tls: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            host = httpx.URL(target.connect_url)
            return f"dial tcp {host.host}:{host.port or 443}: connect: connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "refused" in text.lower():
        host = httpx.URL(target.connect_url)
        return f"dial tcp {host.host}:{host.port or 443}: connect: connection refused"
    return text or type(exc).__name__


class WebhookClient:
    """HTTPS clients for webhooks, one per caBundle, kept for the server's life."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, ca_bundle: str) -> httpx.AsyncClient:
        client = self._clients.get(ca_bundle)
        if client is None:
            if ca_bundle:
                try:
                    pem = base64.b64decode(ca_bundle, validate=True).decode("ascii")
                    context = ssl.create_default_context(cadata=pem)
                except (binascii.Error, UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
                    raise CallError(f"could not get REST client: unable to load root certificates: {exc}") from None
            else:
                context = ssl.create_default_context()
            # Keep as many connections alive as requests run at once: with httpx's default of 20, a busier
            # API server would open (and TLS-handshake) a new connection for most calls.
            client = httpx.AsyncClient(verify=context, trust_env=False,
                                       limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))
            self._clients[ca_bundle] = client
        return client

    async def call(self, target: Target, review: dict, *, ca_bundle: str, timeout: float) -> dict:
        """POST `review`; the AdmissionReview's `response` with its uid checked against the request's."""
        client = self._client(ca_bundle)
        headers = {"content-type": "application/json", "accept": "application/json"}
        if target.host_header:
            headers["host"] = target.host_header
        extensions = {"sni_hostname": target.server_name} if target.server_name else None
        try:
            # `timeoutSeconds` bounds the whole call, as upstream's request context does, not each read.
            async with asyncio.timeout(timeout):
                answer = await client.post(target.connect_url, content=orjson.dumps(review), headers=headers,
                                           timeout=timeout, extensions=extensions)
        except TimeoutError:
            raise CallError(f'failed to call webhook: Post "{target.url}": context deadline exceeded') from None
        except httpx.HTTPError as exc:
            raise CallError(f'failed to call webhook: Post "{target.url}": {_describe(exc, target)}') from None
        if answer.status_code < 200 or answer.status_code > 299:
            raise CallError(f"failed to call webhook: the server responded with the status code "
                            f"{answer.status_code} but did not return more information")
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError as exc:
            raise CallError(f"received invalid webhook response: {exc}") from None
        if not isinstance(body, dict):
            raise CallError("received invalid webhook response: not a JSON object")
        if body.get("apiVersion") != "admission.k8s.io/v1" or body.get("kind") != "AdmissionReview":
            raise CallError(f"received invalid webhook response: expected webhook response of "
                            f"admission.k8s.io/v1, Kind=AdmissionReview, got {body.get('apiVersion')}, "
                            f"Kind={body.get('kind')}")
        response = body.get("response")
        if not isinstance(response, dict):
            raise CallError("received invalid webhook response: webhook response was absent")
        want = review["request"]["uid"]
        if response.get("uid") != want:
            raise CallError(f"received invalid webhook response: expected response.uid=\"{want}\", "
                            f"got \"{response.get('uid', '')}\"")
        return response

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
