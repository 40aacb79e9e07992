"""The ingress data plane: an HTTP/1.1 reverse proxy on asyncio streams and `httptools` (llhttp).

`HTTPProxy.serve` is the connection handler of both listeners (plain and
TLS). For each request on a connection it asks its `Router` what to do:
answer at once (`Reply`: an error page, a redirect) or `Forward` to one of
a backend's endpoints, picked at random (another one, up to three tries,
when connecting fails, as ingress-nginx's `proxy-next-upstream`).

Forwarding streams both ways: the request head goes first, its body is
pumped in a task while the response is read, and the response body is
written to the client as it arrives, so neither body is ever held whole
(a slow reader slows the other side through the streams' flow control).
Bodies are re-framed, never copied blindly: a request keeps its
Content-Length or chunked framing; a response keeps its Content-Length,
and a chunked or close-delimited one reaches an HTTP/1.1 client chunked
(an HTTP/1.0 one, close-delimited). Hop-by-hop headers are dropped; the
client's Host is kept, and the forwarding headers are set as
ingress-nginx sets them with its defaults (`X-Forwarded-For` and
`X-Real-IP` = the client's address, replacing what the client sent, which
goes on in `X-Original-Forwarded-For`; `X-Forwarded-Host`, `-Port`,
`-Proto`, `-Scheme`, `X-Scheme`; `X-Request-ID` unless the client sent
one). `Expect: 100-continue` is answered here.

Connections: the client's is kept alive between requests (75 s idle, as
ingress-nginx's keep-alive) unless either side asked to close or a body
was left unread; pipelined requests are answered in order. Connections to
endpoints are pooled (idle up to 60 s, 32 per endpoint); a request without
a body that fails on a pooled connection before any answer is retried
once on a new one.

Upgrades (WebSocket, anything with `Connection: upgrade`): the request goes
to the endpoint with its `Upgrade` header; on `101 Switching Protocols`
both connections are spliced until either side closes or neither carries
a byte for the read timeout (60 s, as ingress-nginx's proxy-read-timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._ingress_h1 import (
    HOP_BY_HOP,
    READ,
    BadRequest,
    Downstream,
    RequestHead,
    ResponseReader,
    UpstreamError,
    connection_tokens,
    drain,
    read,
    send_page,
    status_line,
)

__all__ = ["Dialer", "Forward", "HTTPProxy", "Listener", "Reply", "RequestHead"]

log = logging.getLogger("timoner.network.ingress")

# Set by the proxy, whatever the client sent (ingress-nginx's proxy_set_header list).
_REPLACED = frozenset({b"host", b"content-length", b"expect", b"proxy", b"x-real-ip", b"x-forwarded-for",
                       b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-proto", b"x-forwarded-scheme",
                       b"x-scheme", b"x-original-forwarded-for"})


# -- what a router answers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listener:
    """Which listener a request came in on."""

    scheme: str  # "http" or "https"
    port: int


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer without a backend."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # None: the standard error page for `status`


@dataclass(frozen=True, slots=True)
class Forward:
    """Proxy to one of `endpoints` (host, port); `response_headers` are added to the answer."""

    endpoints: Sequence[tuple[str, int]]
    response_headers: tuple[tuple[str, str], ...] = ()


Router = Callable[[RequestHead, Listener], Reply | Forward]


class Dialer(Protocol):
    """Opens a TCP connection to an endpoint (the default: `asyncio.open_connection`)."""

    async def __call__(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


async def open_connection(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, limit=READ)


# -- the endpoint side -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: tuple[str, int]
    idle_since: float = 0.0
    reused: bool = False


class _Pool:
    """Idle keep-alive connections to endpoints."""

    def __init__(self, *, max_idle: int = 32, idle_timeout: float = 60.0) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], deque[_Conn]] = {}

    def take(self, key: tuple[str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reader.at_eof() or conn.writer.is_closing() or now - conn.idle_since > self.idle_timeout:
                conn.writer.close()
                continue
            conn.reused = True
            return conn
        return None

    def give(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= self.max_idle or conn.writer.is_closing():
            conn.writer.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def sweep(self) -> None:
        now = time.monotonic()
        for key in list(self._idle):
            idle = self._idle[key]
            keep = deque(c for c in idle if not (c.reader.at_eof() or now - c.idle_since > self.idle_timeout))
            for conn in idle:
                if conn not in keep:
                    conn.writer.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.writer.close()
        self._idle.clear()

    def __len__(self) -> int:
        return sum(len(idle) for idle in self._idle.values())


# -- the proxy ----------------------------------------------------------------------------------


class HTTPProxy:
    """Serves client connections through a `Router`; see the module docstring."""

    def __init__(self, route: Router, *, dial: Dialer = open_connection, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0, send_timeout: float = 60.0, keepalive_timeout: float = 75.0,
                 header_timeout: float = 60.0, keepalive_requests: int = 1000, tries: int = 3) -> None:
        self.route = route
        self.dial = dial
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.keepalive_requests = keepalive_requests
        self.tries = tries
        self.pool = _Pool()
        self._connections: set[asyncio.Task[Any]] = set()

    def close(self) -> None:
        """Drop pooled connections and cancel the connections being served."""
        self.pool.close()
        for task in list(self._connections):
            task.cancel()

    @property
    def active(self) -> int:
        return len(self._connections)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    listener: Listener) -> None:
        """One client connection, request after request."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        down = Downstream(reader, writer)
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else ""
        try:
            while True:
                try:
                    head = await down.next_head(self.keepalive_timeout if down.requests else self.header_timeout,
                                                self.header_timeout)
                except BadRequest as exc:
                    await _send_reply(writer, Reply(exc.status), keep=False, head_only=False)
                    return
                if head is None:
                    return
                keep = await self._exchange(down, head, listener, client_ip)
                if not keep or down.requests >= self.keepalive_requests:
                    return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, BadRequest):
            pass
        except asyncio.CancelledError:
            pass  # shutting down; this is the connection's own task (asyncio 3.11 would log a cancelled one)
        except Exception:
            log.exception("ingress: serving a connection from %s failed", client_ip)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _exchange(self, down: Downstream, head: RequestHead, listener: Listener, client_ip: str) -> bool:
        """Answer one request; whether the client connection can carry another."""
        keep = head.keep_alive and not down.paused and down.requests < self.keepalive_requests
        if head.method == "CONNECT":
            await _send_reply(down.writer, Reply(405), keep=False, head_only=False)
            return False
        if head.path is None or (down.paused and head.chunked):
            await _send_reply(down.writer, Reply(400), keep=False, head_only=False)
            return False
        try:
            decision = self.route(head, listener)
        except Exception:
            log.exception("ingress: routing %s %s failed", head.method, head.target)
            decision = Reply(500)
        if isinstance(decision, Reply):
            if keep:  # the body must be read before the next request can be
                keep = await down.discard_body(head, self.read_timeout)
            await _send_reply(down.writer, decision, keep=keep, head_only=head.method == "HEAD")
            return keep
        return await self._forward(down, head, listener, client_ip, decision, keep)

    async def _connect(self, endpoints: Sequence[tuple[str, int]], *, pooled: bool) -> _Conn:
        candidates = list(endpoints)
        random.shuffle(candidates)
        last: Exception | None = None
        for host, port in candidates[: self.tries]:
            if pooled:
                conn = self.pool.take((host, port))
                if conn is not None:
                    return conn
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await self.dial(host, port)
            except (OSError, TimeoutError) as exc:
                log.debug("ingress: connecting to %s:%d failed: %s", host, port, exc)
                last = exc
                continue
            return _Conn(reader, writer, (host, port))
        raise UpstreamError(f"no endpoint reachable ({last})")

    async def _forward(self, down: Downstream, head: RequestHead, listener: Listener, client_ip: str,
                       decision: Forward, keep: bool) -> bool:
        if head.expect_continue and head.has_body:
            down.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request_head = _request_head(head, listener, client_ip)
        retry_allowed = not head.has_body
        pooled = True
        pump: asyncio.Task[None] | None = None
        conn: _Conn | None = None
        sent_head = False
        try:
            while True:
                try:
                    conn = await self._connect(decision.endpoints, pooled=pooled)
                except UpstreamError as exc:
                    log.warning("ingress: %s %s: %s", head.method, head.target, exc)
                    keep = keep and await down.discard_body(head, self.read_timeout)
                    await _send_reply(down.writer, Reply(502), keep=keep, head_only=head.method == "HEAD")
                    return keep
                conn.writer.write(request_head)
                if head.has_body:
                    pump = asyncio.create_task(self._pump_body(down, head, conn))
                reader = ResponseReader(conn.reader)
                try:
                    event = await self._final_head(reader)
                except (ConnectionError, UpstreamError) as exc:
                    if conn.reused and retry_allowed and reader.response.received == 0:
                        conn.writer.close()
                        pooled = False
                        continue  # a pooled connection the endpoint had closed: once more, on a new one
                    log.warning("ingress: %s %s: endpoint %s:%d failed: %s", head.method, head.target,
                                *conn.key, exc)
                    await self._fail(down, head, pump, 502)
                    return False
                except TimeoutError:
                    await self._fail(down, head, pump, 504)
                    return False
                break
            status, reason, headers = event[1]
            if status == 101:
                if not (head.upgrade and down.paused and reader.response.paused):
                    await self._fail(down, head, pump, 502)
                    return False
                sent_head = True
                await self._tunnel(down, conn, reader, status, reason, headers, decision)
                conn = None  # closed by the tunnel
                return False
            sent_head = True
            finished = await self._relay(down, head, reader, status, reason, headers, decision, keep)
            if pump is not None and not pump.done():  # answered before the whole body: give it a moment
                await asyncio.wait({pump}, timeout=1.0)
            body_sent = pump is None or (pump.done() and not pump.cancelled() and pump.exception() is None)
            reusable = (finished.upstream_reusable and body_sent and head.method != "HEAD"
                        and reader.keep_alive)
            if reusable:
                self.pool.give(conn)
                conn = None
            return keep and finished.client_reusable and body_sent and down.at_message_end()
        except (ConnectionError, TimeoutError, UpstreamError) as exc:
            log.debug("ingress: %s %s: connection failed: %s", head.method, head.target, exc)
            if not sent_head:
                with contextlib.suppress(Exception):
                    await _send_reply(down.writer, Reply(502), keep=False, head_only=head.method == "HEAD")
            return False
        finally:
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            if conn is not None:
                conn.writer.close()

    async def _final_head(self, reader: ResponseReader) -> tuple[str, Any]:
        """The first non-1xx response head (1xx interim answers other than 101 are dropped)."""
        while True:
            event = await reader.next_event(self.read_timeout)
            if event[0] == "eof":
                raise ConnectionError("endpoint closed before answering")
            if event[0] != "head":
                continue
            status = event[1][0]
            if 100 <= status < 200 and status != 101:
                end = await reader.next_event(self.read_timeout)
                if end[0] != "end":
                    raise UpstreamError("interim response with a body")
                continue
            return event

    async def _fail(self, down: Downstream, head: RequestHead, pump: asyncio.Task[None] | None,
                    status: int) -> None:
        if pump is not None:
            pump.cancel()
        with contextlib.suppress(Exception):
            await _send_reply(down.writer, Reply(status), keep=False, head_only=head.method == "HEAD")

    async def _pump_body(self, down: Downstream, head: RequestHead, conn: _Conn) -> None:
        """The request body from the client to the endpoint, in its framing."""
        try:
            async for chunk in down.body(head, self.read_timeout):
                if not chunk:
                    continue
                conn.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if head.chunked else chunk)
                await drain(conn.writer, self.send_timeout)
            if head.chunked:
                conn.writer.write(b"0\r\n\r\n")
                await drain(conn.writer, self.send_timeout)
        except BaseException:
            conn.writer.close()  # the endpoint must not wait for the rest, nor the reader for its answer
            raise

    async def _relay(self, down: Downstream, head: RequestHead, reader: ResponseReader, status: int,
                     reason: bytes, headers: list[tuple[bytes, bytes]], decision: Forward,
                     keep: bool) -> _Relayed:
        no_body = head.method == "HEAD" or status in (204, 304)
        length: int | None = None
        chunked_in = False
        out: list[tuple[bytes, bytes]] = []
        listed = connection_tokens(headers)
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in listed:
                if lower == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked_in = True
                continue
            if lower == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value.strip())
            out.append((name, value))
        if chunked_in:
            out = [(n, v) for n, v in out if n.lower() != b"content-length"]
            length = None
        for name, value in decision.response_headers:
            out.append((name.encode("latin-1"), value.encode("latin-1")))
        client_11 = head.version == "1.1"
        if no_body:
            framing = "none"
        elif length is not None:
            framing = "length"
        elif client_11:
            framing = "chunked"
            out.append((b"Transfer-Encoding", b"chunked"))
        else:
            framing = "close"
            keep = False
        if not client_11:
            keep = False
        if not keep:
            out.append((b"Connection", b"close"))
        writer = down.writer
        writer.write(status_line(status, reason) + b"".join(b"%s: %s\r\n" % (n, v) for n, v in out) + b"\r\n")
        await drain(writer, self.send_timeout)
        if no_body:
            if head.method == "HEAD":  # llhttp would wait for the body a HEAD answer announces but never has
                return _Relayed(client_reusable=keep, upstream_reusable=False)
            end = await reader.next_event(self.read_timeout)
            return _Relayed(client_reusable=keep, upstream_reusable=end[0] == "end")
        while True:
            event = await reader.next_event(self.read_timeout)
            kind, value = event
            if kind == "body":
                if framing == "chunked":
                    writer.write(b"%x\r\n%s\r\n" % (len(value), value))
                else:
                    writer.write(value)
                await drain(writer, self.send_timeout)
                continue
            if kind == "end":
                break
            # eof: the end of a close-delimited body, or a truncated one
            if length is not None or chunked_in:
                raise ConnectionError("endpoint closed in the middle of the response body")
            if framing == "chunked":
                break
            return _Relayed(client_reusable=False, upstream_reusable=False)
        if framing == "chunked":
            writer.write(b"0\r\n\r\n")
            await drain(writer, self.send_timeout)
        close_delimited = length is None and not chunked_in
        return _Relayed(client_reusable=keep, upstream_reusable=not close_delimited)

    async def _tunnel(self, down: Downstream, conn: _Conn, reader: ResponseReader, status: int, reason: bytes,
                      headers: list[tuple[bytes, bytes]], decision: Forward) -> None:
        """101: hand the response head to the client, then splice both connections."""
        out = [(n, v) for n, v in headers if n.lower() not in (b"connection", b"keep-alive", b"transfer-encoding")]
        out.extend((n.encode("latin-1"), v.encode("latin-1")) for n, v in decision.response_headers)
        out.append((b"Connection", b"upgrade"))
        down.writer.write(status_line(status, reason) + b"".join(b"%s: %s\r\n" % (n, v) for n, v in out)
                          + b"\r\n")
        if reader.response.leftover:
            down.writer.write(reader.response.leftover)
        if down.leftover:
            conn.writer.write(down.leftover)
            down.leftover = b""
        activity = [time.monotonic()]

        async def splice(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while True:
                try:
                    data = await read(src, READ, self.read_timeout)
                except TimeoutError:
                    if time.monotonic() - activity[0] < self.read_timeout:
                        continue  # the other direction is busy
                    return
                if not data:
                    if dst.can_write_eof():
                        with contextlib.suppress(OSError, RuntimeError):
                            dst.write_eof()
                    return
                activity[0] = time.monotonic()
                dst.write(data)
                await dst.drain()

        up = asyncio.create_task(splice(conn.reader, down.writer))
        back = asyncio.create_task(splice(down.reader, conn.writer))
        try:
            done, pending = await asyncio.wait({up, back}, return_when=asyncio.FIRST_COMPLETED)
            if up in done:  # the endpoint is done: nothing more for the client
                back.cancel()
            else:  # the client is done sending; let the endpoint finish, as long as it talks
                await asyncio.wait({up}, timeout=self.read_timeout)
        finally:
            for task in (up, back):
                task.cancel()
            await asyncio.gather(up, back, return_exceptions=True)
            conn.writer.close()


@dataclass(frozen=True, slots=True)
class _Relayed:
    client_reusable: bool
    upstream_reusable: bool


def _request_head(head: RequestHead, listener: Listener, client_ip: str) -> bytes:
    """The head sent to the endpoint: the client's, minus hop-by-hop headers, plus ingress-nginx's."""
    listed = connection_tokens(head.headers)
    lines = [b"%s %s HTTP/1.1\r\n" % (head.method.encode("latin-1"), head.target)]
    forwarded_for = None
    has_request_id = False
    for name, value in head.headers:
        lower = name.lower()
        if lower == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        if lower in HOP_BY_HOP or lower in _REPLACED or lower in listed:
            continue
        if lower == b"x-request-id":
            has_request_id = True
        lines.append(b"%s: %s\r\n" % (name, value))
    host = head.host.encode("latin-1")
    port = b"443" if listener.scheme == "https" else str(listener.port).encode()
    client = client_ip.encode("latin-1")
    scheme = listener.scheme.encode()
    lines.append(b"Host: %s\r\n" % host)
    if not has_request_id:
        lines.append(b"X-Request-ID: %s\r\n" % os.urandom(16).hex().encode())
    lines.append(b"X-Real-IP: %s\r\nX-Forwarded-For: %s\r\n" % (client, client))
    lines.append(b"X-Forwarded-Host: %s\r\nX-Forwarded-Port: %s\r\n" % (host, port))
    lines.append(b"X-Forwarded-Proto: %s\r\nX-Forwarded-Scheme: %s\r\nX-Scheme: %s\r\n" % (scheme, scheme, scheme))
    if forwarded_for is not None:
        lines.append(b"X-Original-Forwarded-For: %s\r\n" % forwarded_for)
    if head.upgrade:
        upgrade = head.header(b"upgrade") or b""
        lines.append(b"Upgrade: %s\r\nConnection: upgrade\r\n" % upgrade)
    if head.chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif head.content_length is not None:
        lines.append(b"Content-Length: %d\r\n" % head.content_length)
    lines.append(b"\r\n")
    return b"".join(lines)


async def _send_reply(writer: asyncio.StreamWriter, reply: Reply, *, keep: bool, head_only: bool) -> None:
    await send_page(writer, reply.status, reply.headers, reply.body, keep=keep, head_only=head_only)
