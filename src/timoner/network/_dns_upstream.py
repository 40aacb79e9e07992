"""The upstream resolvers the cluster DNS forwards to: one exchange of wire bytes, UDP first, TCP on truncation.

Each upstream is tried in the order given (resolv.conf's order, as CoreDNS's
`forward` with `policy sequential`), for `timeout` seconds each; the first
reply wins whatever its rcode, and `exchange` returns None when none replied
(the server then answers SERVFAIL). The query goes out under a fresh random
ID on a fresh socket, and a reply under another ID is ignored, so a stray
or spoofed datagram cannot answer it; the caller restores the client's ID.
A truncated UDP reply is asked again over TCP; when that fails the
truncated reply is returned (the client can retry over TCP itself).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Upstream", "Upstreams", "parse_upstream", "resolv_conf_nameservers"]

log = logging.getLogger("timoner.network.dns")

_TC = 0x02  # the truncation bit, in the third byte of the header


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """`1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353` -> Upstream; ValueError otherwise."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid upstream {text!r}")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host.split("%", 1)[0])  # an address, not a name: we would need DNS to resolve it
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in upstream {text!r}")
    return Upstream(host, port)


def resolv_conf_nameservers(path: Path = Path("/etc/resolv.conf")) -> list[Upstream]:
    """The `nameserver` lines of a resolv.conf, in order; [] when it cannot be read."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        log.warning("cannot read %s (%s): no upstream resolvers", path, exc)
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append(parse_upstream(fields[1]))
            except ValueError:
                log.warning("%s: ignoring nameserver %r", path, fields[1])
    return out


class _ReplyProtocol(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes) -> None:
        self.query_id = query_id
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if data[:2] == self.query_id and len(data) >= 12 and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc or ConnectionError("socket closed"))


class Upstreams:
    """Sends a query's wire bytes to the first upstream that answers; see the module docstring."""

    def __init__(self, servers: list[Upstream], *, timeout: float = 2.0) -> None:
        self.servers = list(servers)
        self.timeout = timeout

    async def exchange(self, wire: bytes) -> bytes | None:
        """The reply to `wire` (whose ID it carries), or None when no upstream replied."""
        for server in self.servers:
            query_id = secrets.token_bytes(2)
            query = query_id + wire[2:]
            try:
                reply = await asyncio.wait_for(self._udp(server, query, query_id), self.timeout)
            except (OSError, TimeoutError) as exc:
                log.debug("upstream %s: %s", server, exc or type(exc).__name__)
                continue
            if reply[2] & _TC:
                try:
                    reply = await asyncio.wait_for(self._tcp(server, query, query_id), self.timeout)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    log.debug("upstream %s over TCP: %s", server, exc or type(exc).__name__)
            return wire[:2] + reply[2:]
        return None

    async def _udp(self, server: Upstream, query: bytes, query_id: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _ReplyProtocol(query_id), remote_addr=(server.host, server.port))
        try:
            transport.sendto(query)
            return await protocol.reply
        finally:
            protocol.reply.cancel()  # no-op once done; else nobody is left to read what connection_lost sets
            transport.close()

    async def _tcp(self, server: Upstream, query: bytes, query_id: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await reader.readexactly(size)
                if reply[:2] == query_id and len(reply) >= 12:
                    return reply
        finally:
            writer.close()
