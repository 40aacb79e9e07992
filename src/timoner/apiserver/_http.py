"""The raw ASGI plumbing: request parsing, content negotiation and responses.

We speak ASGI directly instead of through a web framework: the API server
answers thousands of small requests a second, and every layer between the
socket and the handler shows up in the benchmark. A `Request` is parsed once
(path, query, headers, body with its size limit); a handler returns a
`Response`, or streams through `Request.send`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import yaml

from timoner.api import errors
from timoner.api.protobuf import PROTOBUF_CONTENT_TYPE, decode_protobuf

MAX_BODY = 3 * 1024 * 1024  # upstream's limit for a request body (3 MiB)

JSON = b"application/json"

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


@dataclass(frozen=True, slots=True)
class User:
    """Who is asking, as authentication found out."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # user.Info's Extra: (key, values) pairs


@dataclass
class Request:
    """One HTTP request with the parts handlers need, parsed once."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    scope: dict
    receive: Receive
    send: Send
    user: User | None = None
    warnings: list[str] = field(default_factory=list)
    _body: bytes | None = None

    @classmethod
    def from_scope(cls, scope: dict, receive: Receive, send: Send) -> Request:
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            key = k.decode("latin-1")
            val = v.decode("latin-1")
            headers[key] = f"{headers[key]},{val}" if key in headers else val
        qs = scope.get("query_string") or b""
        query = parse_qs(qs.decode("latin-1"), keep_blank_values=True) if qs else {}
        return cls(scope["method"], scope["path"], query, headers, scope, receive, send)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def flag(self, name: str) -> bool:
        value = self.arg(name)
        return value is not None and value.lower() in ("true", "1", "")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise errors.BadRequest(f"invalid value for {name}: {value!r} is not an integer") from None

    async def body(self) -> bytes:
        """The whole request body; 413 past `MAX_BODY` without reading the rest into memory."""
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise errors.TooLarge()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise errors.TooLarge()
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        self._body = b"".join(chunks)
        return self._body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    async def json_body(self) -> Any:
        """The body decoded as JSON or YAML (by Content-Type); 400 when it is malformed."""
        raw = await self.body()
        return decode_body(raw, self.content_type)

    @property
    def wants_table(self) -> bool:
        accept = self.headers.get("accept", "")
        return "as=Table" in accept and "g=meta.k8s.io" in accept


def decode_body(raw: bytes, content_type: str) -> Any:
    """Parse a request body as JSON, or YAML for the YAML media types; 400 on malformed input."""
    if content_type == PROTOBUF_CONTENT_TYPE:
        # kubectl's typed clients send protobuf (e.g. `kubectl create configmap`); we answer in JSON.
        return decode_protobuf(raw)
    if "protobuf" in content_type or "cbor" in content_type:
        raise errors.UnsupportedMediaType(
            f'the body of the request was in an unknown format - accepted media types include: '
            f'application/json, application/yaml; got "{content_type}"')
    if not raw.strip():
        raise errors.BadRequest("the request body is empty; an object is required")
    if "yaml" in content_type:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise errors.BadRequest(f"error converting YAML to JSON: {exc}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(f"couldn't get version/kind; json parse error: {exc}") from None


# The request being served (set once it is authenticated): admission reads its user and adds its warnings.
current_request: ContextVar[Request | None] = ContextVar("timoner_current_request", default=None)


@dataclass(slots=True)
class Response:
    """A complete (non-streaming) response."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def json_response(obj: Any, status: int = 200, *, content_type: bytes = JSON) -> Response:
    return Response(status, orjson.dumps(obj), content_type)


def error_response(exc: errors.APIError) -> Response:
    response = json_response(exc.status(), exc.code)
    if exc.retry_after is not None:
        response.headers.append((b"retry-after", str(exc.retry_after).encode()))
    return response


async def send_response(send: Send, response: Response, warnings: list[str] | None = None) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
        (b"cache-control", b"no-cache, private"),
        *response.headers,
    ]
    for warning in warnings or ():
        headers.append((b"warning", f'299 - "{_escape_warning(warning)}"'.encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _escape_warning(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
