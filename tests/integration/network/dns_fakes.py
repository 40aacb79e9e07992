"""A fake upstream resolver for the cluster DNS tests.

It answers on 127.0.0.1 (UDP and TCP, a port the OS picks)
from a fixed table, truncates UDP replies past 512 bytes as a real server
does, and counts the queries each transport brought, so tests can see the
forwarding without any real resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

# name -> (type, TTL, records) the fake upstream knows
UPSTREAM_ZONE = {
    "www.example.test.": ("A", 300, ["192.0.2.7"]),
    "db.example.test.": ("A", 300, ["192.0.2.8"]),
    "big.example.test.": ("TXT", 300, [f'"{i:03d} {"x" * 60}"' for i in range(20)]),  # ~1.5 kB
    "7.2.0.192.in-addr.arpa.": ("PTR", 300, ["www.example.test."]),
}


class FakeUpstream:
    """A tiny authoritative server for UPSTREAM_ZONE; `queries` counts (transport, name) pairs."""

    def __init__(self) -> None:
        self.queries: Counter[tuple[str, str]] = Counter()
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def __str__(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reply(self, wire: bytes, transport: str) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().lower()
        self.queries[(transport, name)] += 1
        response = dns.message.make_response(query, recursion_available=True)
        known = UPSTREAM_ZONE.get(name)
        if known is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif known[0] == dns.rdatatype.to_text(question.rdtype):
            response.answer.append(dns.rrset.from_text_list(question.name, known[1], "IN", known[0], known[2]))
        limit = 65535 if transport == "tcp" else max(512, query.payload if query.edns >= 0 else 512)
        return response.to_wire(max_size=limit, prefer_truncation=True)

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        fake = self

        class UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(fake.reply(data, "udp"), addr)

        for _ in range(20):
            self._udp, _ = await loop.create_datagram_endpoint(UDP, local_addr=("127.0.0.1", 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
                return self
            except OSError:
                self._udp.close()
        raise RuntimeError("no free port for the fake upstream")

    async def _serve_tcp(self, reader, writer):
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                out = self.reply(await reader.readexactly(size), "tcp")
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        writer.close()

    def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


def closed_port() -> int:
    """A UDP port on 127.0.0.1 nobody listens on (queries there are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
