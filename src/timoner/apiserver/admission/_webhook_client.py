"""Calling an admission webhook: one AdmissionReview v1 POSTed over HTTPS, its response checked.

`WebhookClient` keeps keep-alive HTTP/1.1 connections per webhook address
and `caBundle` (a webhook without one is verified against the system's
trust store, as upstream). The connections are the event loop's own TLS
streams (`asyncio.open_connection`; uvloop's in the API server) and
responses are parsed by httptools: an admission call is on the path of
every write it matches, and httpx's TLS (anyio's, in Python) cost ~1-2 ms
of CPU per call where this costs ~0.05 ms (docs/BENCHMARKS.md,
"Extensibility").

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
from urllib.parse import urlsplit

import httptools
import orjson

__all__ = ["CallError", "Target", "WebhookClient"]

_IDLE_PER_ADDRESS = 256  # connections kept open per webhook address: as many as requests run at once


class CallError(Exception):
    """The webhook could not be called or gave no usable AdmissionReview (upstream's ErrCallingWebhook)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one webhook call goes."""

    url: str  # as upstream names it in messages, e.g. https://svc.ns.svc:443/path?timeout=10s
    connect_url: str  # what is dialled (the same, or the resolved address of a Service)
    server_name: str | None = None  # the certificate's expected name when it differs from the URL's host
    host_header: str | None = None


class _Closed(Exception):
    """The connection ended before a whole response came back."""


def _address(url: str) -> tuple[str, int, str]:
    """(host, port, path with query) of an https URL."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise CallError(f'failed to call webhook: Post "{url}": unsupported protocol scheme "{parts.scheme}"')
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or "", parts.port or 443, path


def _describe(exc: BaseException, host: str, port: int) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"tls: failed to verify certificate: x509: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"remote error: tls: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {host}:{port}: connect: connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "refused" in text.lower():
        return f"dial tcp {host}:{port}: connect: connection refused"
    if isinstance(exc, _Closed | asyncio.IncompleteReadError | ConnectionResetError):
        return "EOF"
    return text or type(exc).__name__


class _Response:
    """httptools callbacks for one response."""

    __slots__ = ("body", "close", "done", "header")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.close = False
        self.done = False
        self.header = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and value.strip().lower() == b"close":
            self.close = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    """One keep-alive HTTP/1.1 connection over TLS."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection may be used again)."""
        self.writer.write(head + body)
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not response.done:
            data = await self.reader.read(65536)
            if not data:
                raise _Closed()
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise CallError(f"malformed response: {exc}") from None
        reusable = not response.close and parser.get_http_version() != "1.0"
        return parser.get_status_code(), b"".join(response.body), reusable

    def close(self) -> None:
        self.writer.close()


class WebhookClient:
    """Webhook connections, per address and caBundle, kept for the server's life."""

    def __init__(self) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._idle: dict[tuple[str, int, str, str], list[_Connection]] = {}

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        context = self._contexts.get(ca_bundle)
        if context is None:
            if ca_bundle:
                try:
                    pem = base64.b64decode(ca_bundle, validate=True).decode("ascii")
                    context = ssl.create_default_context(cadata=pem)
                except (binascii.Error, UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
                    raise CallError(f"could not get REST client: unable to load root certificates: {exc}") from None
            else:
                context = ssl.create_default_context()
            self._contexts[ca_bundle] = context
        return context

    async def _post(self, target: Target, body: bytes, ca_bundle: str) -> tuple[int, bytes]:
        host, port, path = _address(target.connect_url)
        context = self._context(ca_bundle)
        server_name = target.server_name or host
        key = (host, port, server_name, ca_bundle)
        host_header = target.host_header or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        head = (f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n"
                f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
        idle = self._idle.setdefault(key, [])
        while idle:
            # A kept connection the webhook server closed meanwhile fails at once: try the next, then a new one.
            conn = idle.pop()
            if conn.writer.is_closing():
                continue
            try:
                return await self._use(conn, idle, head, body)
            except (_Closed, ConnectionError):
                conn.close()
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=server_name)
        except (OSError, ssl.SSLError) as exc:
            raise CallError(f'failed to call webhook: Post "{target.url}": {_describe(exc, host, port)}') from None
        try:
            return await self._use(_Connection(reader, writer), idle, head, body)
        except (_Closed, OSError) as exc:
            raise CallError(f'failed to call webhook: Post "{target.url}": {_describe(exc, host, port)}') from None

    async def _use(self, conn: _Connection, idle: list[_Connection], head: bytes, body: bytes) -> tuple[int, bytes]:
        try:
            status, content, reusable = await conn.post(head, body)
        except BaseException:
            conn.close()  # cancelled (timeout) or broken mid-request: never reused
            raise
        if reusable and len(idle) < _IDLE_PER_ADDRESS:
            idle.append(conn)
        else:
            conn.close()
        return status, content

    async def call(self, target: Target, review: dict, *, ca_bundle: str, timeout: float) -> dict:
        """POST `review`; the AdmissionReview's `response` with its uid checked against the request's."""
        try:
            # `timeoutSeconds` bounds the whole call, as upstream's request context does, not each read.
            async with asyncio.timeout(timeout):
                status, content = await self._post(target, orjson.dumps(review), ca_bundle)
        except TimeoutError:
            raise CallError(f'failed to call webhook: Post "{target.url}": context deadline exceeded') from None
        if status < 200 or status > 299:
            raise CallError(f"failed to call webhook: the server responded with the status code "
                            f"{status} but did not return more information")
        try:
            body = orjson.loads(content)
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
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
