"""A minimal HTTP/1.1 keep-alive client over asyncio streams, for the load Python generates itself.

The benchmark's own traffic (setting up 10,000 ConfigMaps, timing lists, the
paced watch writer) must cost the client as little CPU as possible on a
2-core machine, so this speaks just enough HTTP/1.1: one request at a time
per connection, `Content-Length` or chunked response bodies, a bearer token.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Endpoint", "Connection", "Response", "HTTPError"]


class HTTPError(Exception):
    """A response with an unexpected status, or a broken connection."""


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and how to authenticate."""

    host: str
    port: int
    ssl: ssl.SSLContext | None
    token: str | None = None

    @classmethod
    def from_url(cls, url: str, *, ca_file: str | None = None, token: str | None = None) -> Endpoint:
        parts = urlsplit(url)
        ctx = None
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca_file)
            if ca_file is None:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        return cls(parts.hostname or "127.0.0.1", parts.port or (443 if ctx else 80), ctx, token)

    def head(self, method: str, path: str, *, body_len: int | None = None,
             content_type: str = "application/json") -> bytes:
        """The request line and headers, ready to write."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: application/json"]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        if body_len is not None:
            lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {body_len}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection; `request` is not re-entrant."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> Connection:
        ep = self.endpoint
        self.reader, self.writer = await asyncio.open_connection(
            ep.host, ep.port, ssl=ep.ssl, limit=1 << 20)
        return self

    async def request(self, method: str, path: str, body: bytes | None = None, *,
                      content_type: str = "application/json") -> Response:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        head = self.endpoint.head(method, path, body_len=None if body is None else len(body),
                                  content_type=content_type)
        self.writer.write(head + body if body is not None else head)
        return await self.read_response()

    async def read_response(self) -> Response:
        assert self.reader is not None
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HTTPError(f"connection closed before a response: {exc!r}") from exc
        status, headers = parse_head(raw)
        length = headers.get("content-length")
        if length is not None:
            body = await self.reader.readexactly(int(length))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        return Response(status, headers, body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head ending in a blank line."""
    lines = raw.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise HTTPError(f"bad status line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers
