"""HTTP/1.1 messages for the ingress proxy, parsed by llhttp (`httptools`) on asyncio streams.

`Downstream` reads a client's requests: heads (`RequestHead`, with the
path normalized as nginx's `$uri`), then each body as it arrives, with
pipelined requests kept in order; an `Upgrade` (or CONNECT) stops llhttp,
and what follows the head is raw bytes (`leftover`, then the socket).
`ResponseReader` reads one endpoint response the same way. Both turn
llhttp's callbacks into a queue of head/body/end events that the proxy
pulls from, so nothing is read from a socket before it is wanted: that is
the back-pressure. Request heads are limited to 64 KiB (431).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

__all__ = ["BadRequest", "Downstream", "RequestHead", "ResponseReader", "UpstreamError", "connection_tokens",
           "drain", "error_page", "normalize_path", "read", "send_page", "status_line"]

READ = 65536
MAX_HEAD = 64 * 1024  # request head limit (ingress-nginx: large-client-header-buffers 4 8k, per line)
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})


@dataclass(slots=True)
class RequestHead:
    """A parsed request head. `host` is the Host header as given; `path` the normalized path (None: invalid)."""

    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    host: str
    path: str | None
    keep_alive: bool
    upgrade: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def error_page(status: int) -> bytes:
    """nginx's error page for `status`, signed by Timoner."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    if status == 503:
        phrase = "Service Temporarily Unavailable"  # nginx's wording
    title = f"{status} {phrase}".strip()
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>timoner</center>\r\n</body>\r\n</html>\r\n").encode()


def normalize_path(target: bytes) -> str | None:
    """The request path as routes see it (nginx's $uri): decoded, dot segments resolved, slashes merged."""
    text = target.decode("latin-1")
    if text.startswith(("http://", "https://")):
        text = urlsplit(text).path or "/"
    path = unquote(text.split("?", 1)[0].split("#", 1)[0], errors="surrogateescape")
    if not path.startswith("/"):
        return None
    parts: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                return None  # above the root: nginx answers 400
            parts.pop()
            continue
        parts.append(segment)
    out = "/" + "/".join(parts)
    if parts and segments and segments[-1] in ("", ".", ".."):
        out += "/"
    return out


class BadRequest(Exception):
    """A request we answer with `status` and then close the connection."""

    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


class Downstream:
    """A client connection: requests parsed by llhttp into a queue of head/body/end events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = httptools.HttpRequestParser(self)
        self.events: deque[tuple[str, Any]] = deque()
        self.eof = False
        self.paused = False  # llhttp stopped at an upgrade (or CONNECT): the rest is raw bytes
        self.leftover = b""
        self.requests = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # bytes read since the current head began (bounds an unfinished head)
        self._head_size = 0  # the current head's size as parsed
        self._in_head = False
        self.too_large = False

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._in_head, self._head_bytes, self._head_size = b"", [], True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._head_size > MAX_HEAD:
            self.too_large = True
            return
        self.events.append(("head", self._head()))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", bytes(body)))

    def on_message_complete(self) -> None:
        self.events.append(("end", None))

    def _head(self) -> RequestHead:
        headers = self._headers
        lowered = [(k.lower(), v) for k, v in headers]
        connection = {t.strip().lower() for k, v in lowered if k == b"connection" for t in v.split(b",")}
        upgrade = any(k == b"upgrade" for k, _ in lowered) and b"upgrade" in connection
        content_length = None
        chunked = False
        for key, value in lowered:
            if key == b"content-length":
                content_length = int(value.strip() or b"0")
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        host = next((v for k, v in lowered if k == b"host"), b"").decode("latin-1")
        method = self.parser.get_method().decode("latin-1")
        expect = next((v for k, v in lowered if k == b"expect"), b"").strip().lower() == b"100-continue"
        target = self._url
        if target.startswith((b"http://", b"https://")):
            parts = urlsplit(target.decode("latin-1"))
            host = parts.netloc or host
            target = (parts.path or "/").encode("latin-1") + (b"?" + parts.query.encode("latin-1")
                                                              if parts.query else b"")
        return RequestHead(method=method, target=target, version=self.parser.get_http_version(),
                           headers=headers, host=host, path=normalize_path(target),
                           keep_alive=self.parser.should_keep_alive(), upgrade=upgrade,
                           content_length=content_length, chunked=chunked, expect_continue=expect)

    async def _fill(self, timeout: float) -> bool:
        """Read once and parse; False at end of stream."""
        if self.paused or self.eof:
            return False
        data = await read(self.reader, READ, timeout)
        if not data:
            self.eof = True
            return False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.paused = True
            self.leftover = data[exc.args[0]:]
        except httptools.HttpParserError:
            raise BadRequest(400) from None
        if self.too_large:
            raise BadRequest(431)
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                raise BadRequest(431)
        return True

    async def next_head(self, timeout: float, head_timeout: float) -> RequestHead | None:
        """The next request's head; None when the client closed (or went idle) between requests."""
        while not self.events or self.events[0][0] != "head":
            if self.events:
                self.events.popleft()  # the unread rest of a previous request: never reached here in practice
                continue
            started = self._in_head
            try:
                if not await self._fill(head_timeout if started else timeout):
                    if self._in_head:
                        raise BadRequest(400)
                    return None
            except TimeoutError:
                if self._in_head:
                    raise BadRequest(408) from None
                return None
        self.requests += 1
        head: RequestHead = self.events.popleft()[1]
        if not head.has_body and self.events and self.events[0][0] == "end":
            self.events.popleft()  # llhttp ends a bodyless request with its head
        return head

    async def body(self, head: RequestHead, timeout: float) -> AsyncIterator[bytes]:
        """The current request's body chunks, as they arrive."""
        if self.paused:  # llhttp stopped after the head: a body can only be Content-Length raw bytes
            remaining = head.content_length or 0
            if remaining and self.leftover:
                chunk, self.leftover = self.leftover[:remaining], self.leftover[remaining:]
                remaining -= len(chunk)
                yield chunk
            while remaining:
                chunk = await read(self.reader, min(READ, remaining), timeout)
                if not chunk:
                    raise ConnectionError("client closed during the request body")
                remaining -= len(chunk)
                yield chunk
            return
        while True:
            while self.events:
                kind, value = self.events[0]
                if kind == "head":
                    return
                self.events.popleft()
                if kind == "end":
                    return
                yield value
            if not await self._fill(timeout):
                raise ConnectionError("client closed during the request body")

    def at_message_end(self) -> bool:
        """True once the current request was read to its end (so the connection can serve another)."""
        return not self.paused and (not self.events or self.events[0][0] == "head")

    async def discard_body(self, head: RequestHead, timeout: float, limit: int = 1 << 20) -> bool:
        """Read and drop the request body (up to `limit` bytes); whether the connection can go on."""
        if not head.has_body:
            return self._skip_end()
        total = 0
        async for chunk in self.body(head, timeout):
            total += len(chunk)
            if total > limit:
                return False
        return not self.paused

    def _skip_end(self) -> bool:
        if self.events and self.events[0][0] == "end":
            self.events.popleft()
        return not self.paused


@dataclass(slots=True)
class Response:
    """One response read from an endpoint by llhttp."""

    status: int = 0
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    events: deque[tuple[str, Any]] = field(default_factory=deque)
    paused: bool = False
    leftover: bytes = b""
    received: int = 0  # bytes read from the endpoint so far


class ResponseReader:
    """An endpoint's response as head/body/end events (after a 101, `response.leftover` is raw bytes)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.response = Response()
        self.parser = httptools.HttpResponseParser(self)
        self.eof = False
        self.keep_alive = False

    def on_message_begin(self) -> None:
        self.response.headers = []
        self.response.reason = b""

    def on_status(self, status: bytes) -> None:
        self.response.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self.response.events.append(("head", (self.response.status, self.response.reason,
                                              list(self.response.headers))))

    def on_body(self, body: bytes) -> None:
        self.response.events.append(("body", bytes(body)))

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is over
        self.response.events.append(("end", None))

    async def next_event(self, timeout: float) -> tuple[str, Any]:
        """The next head/body/end event; ("eof", None) when the endpoint closed."""
        while not self.response.events:
            if self.eof or self.response.paused:
                return ("eof", None)
            data = await read(self.reader, READ, timeout)
            if not data:
                self.eof = True
                return ("eof", None)
            self.response.received += len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                self.response.paused = True
                self.response.leftover = data[exc.args[0]:]
            except httptools.HttpParserError as exc:
                raise UpstreamError(f"invalid response: {exc}") from None
        return self.response.events.popleft()


class UpstreamError(Exception):
    """The endpoint answered something that is not HTTP, or could not be reached."""


async def read(reader: asyncio.StreamReader, size: int, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read(size)


async def drain(writer: asyncio.StreamWriter, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        await writer.drain()


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {t.strip().lower() for n, v in headers if n.lower() == b"connection" for t in v.split(b",") if t.strip()}


def status_line(status: int, reason: bytes) -> bytes:
    if not reason:
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


async def send_page(writer: asyncio.StreamWriter, status: int, headers: tuple[tuple[str, str], ...] = (),
                    body: bytes | None = None, *, keep: bool, head_only: bool) -> None:
    """A complete response of our own (`body` None: nginx's error page for `status`)."""
    page = body if body is not None else error_page(status)
    lines = [status_line(status, b"")]
    if body is None:
        lines.append(b"Content-Type: text/html\r\n")
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Content-Length: %d\r\n" % len(page))
    if not keep:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    writer.write(b"".join(lines) + (b"" if head_only else page))
    await writer.drain()
