"""The cluster DNS server: CoreDNS's `kubernetes` plugin (with `pods insecure`) and `forward`, for the node agent.

`ClusterDNS` keeps a `Resolver` (the pure record lookup, `_dns_resolver`,
which documents the names) up to date from two informers, Services and
EndpointSlices in every namespace, so answers follow the API within the
watch latency. It serves them over UDP and TCP on one port. A question the
cluster does not own goes, as it came, to the upstream resolvers
(`_dns_upstream`: the nameservers of the host's /etc/resolv.conf unless
configured), and so does the target of an ExternalName outside the cluster
domain, whose answer is appended after the CNAME; when no upstream replies
the answer is SERVFAIL.

Answers go out as the transport allows: over UDP at most 512 bytes, or the
query's EDNS payload size, the rest dropped whole RRsets at a time with TC
set so the client retries over TCP. Cluster answers are authoritative and
do not claim recursion (as CoreDNS's); forwarded ones are upstream's bytes
under the client's ID. Messages that cannot be parsed get FORMERR (or
nothing, without a whole header), other opcodes NOTIMP.

The message parsing and building is dnspython's; only the modules needed
for it are imported (about 2 MB of the agent's memory, 45 ms of its start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rrset

from timoner.client import Client, Informer

from ._dns_resolver import SCHEMA_VERSION, TTL, Answer, Resolver
from ._dns_upstream import Upstream, Upstreams, parse_upstream, resolv_conf_nameservers
from ._informers import service_informers

__all__ = ["SCHEMA_VERSION", "TTL", "Answer", "ClusterDNS", "Resolver"]

log = logging.getLogger("timoner.network.dns")


_PAYLOAD = 1232  # the EDNS payload we advertise and ask for (DNS flag day 2020)
_TCP_IDLE = 10.0  # seconds a TCP connection may wait for its next query (CoreDNS's read timeout)
_MAX_IN_FLIGHT = 1000  # queries waiting on upstreams; past it REFUSED, as CoreDNS's forward max_concurrent
_Reply = bytes | Coroutine[Any, Any, bytes | None] | None


class ClusterDNS:
    """Serves the cluster's DNS names over UDP and TCP on `host`:`port`; see the module docstring.

    `run()` lists and watches, binds both sockets once the informers have
    synced (port 0: any free port, the same for UDP and TCP), sets `ready`
    and serves until cancelled. `port` is the bound port once `ready` is
    set. `upstreams` are addresses (`10.0.0.2`, `127.0.0.1:5353`,
    `[::1]:53`); None means the nameservers of /etc/resolv.conf.
    """

    def __init__(self, client: Client, *, domain: str = "cluster.local", host: str = "127.0.0.1",
                 port: int = 53, upstreams: list[str] | None = None,
                 shared: tuple[Informer, Informer] | None = None) -> None:
        self.client = client
        self.host = host
        self.resolver = Resolver(domain)
        self.ready = asyncio.Event()
        self._port = port
        self._configured_upstreams = None if upstreams is None else [parse_upstream(u) for u in upstreams]
        self._upstreams = Upstreams([])
        # `shared`: informers on Services and labelled EndpointSlices (`service_informers`) that another
        # part of the process runs; without them the server runs its own.
        self._services, self._slices = shared or service_informers(client)
        self._own_informers = () if shared else (self._services, self._slices)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        _follow(self._services, self.resolver, self.resolver.set_service, self.resolver.delete_service)
        _follow(self._slices, self.resolver, self.resolver.set_endpoint_slice, self.resolver.delete_endpoint_slice)

    @property
    def port(self) -> int:
        """The port both sockets are bound to (before `ready`: the one asked for)."""
        return self._port

    @property
    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams.servers)

    async def run(self) -> None:
        """Watch, bind, serve; returns only by cancellation."""
        informers = [asyncio.create_task(i.run(), name=f"dns-{i.resource.plural}") for i in self._own_informers]
        try:
            await asyncio.gather(self._services.has_synced.wait(), self._slices.has_synced.wait())
            await self._bind()
            servers = self._configured_upstreams
            if servers is None:
                servers = await asyncio.to_thread(resolv_conf_nameservers)
            self._upstreams = Upstreams(self._without_self(servers))
            log.info("cluster DNS for %s on %s:%d (UDP, TCP), forwarding to %s", self.resolver.domain,
                     self.host, self._port, ", ".join(map(str, self._upstreams.servers)) or "nobody")
            self.ready.set()
            await asyncio.gather(*informers, asyncio.Event().wait())
        finally:
            self.ready.clear()
            for task in informers:
                task.cancel()
            if self._udp is not None:
                self._udp.close()
            if self._tcp is not None:
                self._tcp.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*informers, *self._tasks, return_exceptions=True)
            if self._tcp is not None:
                await self._tcp.wait_closed()
            self._udp = self._tcp = None

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        tries = 20 if self._port == 0 else 1
        for attempt in range(tries):
            udp, _ = await loop.create_datagram_endpoint(lambda: _UDPServer(self),
                                                         local_addr=(self.host, self._port))
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                udp.close()  # the port UDP got is taken for TCP: try another
                if attempt == tries - 1:
                    raise
                continue
            self._udp, self._port = udp, port
            return

    def _without_self(self, servers: Sequence[Upstream]) -> list[Upstream]:
        """Upstreams minus this server itself (a resolv.conf naming us would loop forever)."""
        wildcard = self.host in ("", "0.0.0.0", "::")
        out = []
        for server in servers:
            address = ipaddress.ip_address(server.host.split("%", 1)[0])
            if server.port == self._port and (server.host == self.host or (wildcard and address.is_loopback)):
                log.warning("cluster DNS: not forwarding to %s, which is this server", server)
                continue
            out.append(server)
        return out

    # -- queries ---------------------------------------------------------------------------

    def _handle(self, wire: bytes, *, tcp: bool) -> _Reply:
        """The reply to one message: bytes now, a coroutine when upstreams are asked, None to drop it."""
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None
        except Exception:  # anything dnspython cannot parse
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # a response, not a question
        limit = 65535 if tcp else max(512, query.payload if query.edns >= 0 else 512)
        if query.opcode() != dns.opcode.QUERY:
            return _render(query, Answer(rcode=dns.rcode.NOTIMP), limit, authoritative=False)
        if len(query.question) != 1:
            return _render(query, Answer(rcode=dns.rcode.FORMERR), limit, authoritative=False)
        question = query.question[0]
        try:
            answer = (self.resolver.resolve(question.name, question.rdtype)
                      if question.rdclass == dns.rdataclass.IN else Answer(forward=True))
        except Exception:
            log.exception("cluster DNS: answering %s failed", question)
            return _render(query, Answer(rcode=dns.rcode.SERVFAIL), limit, authoritative=False)
        if not answer.forward and answer.chase is None:
            return _render(query, answer, limit, authoritative=answer.rcode != dns.rcode.REFUSED)
        if len(self._tasks) >= _MAX_IN_FLIGHT:
            return _render(query, Answer(rcode=dns.rcode.REFUSED), limit, authoritative=False)
        if answer.forward:
            return self._forward(query, wire, limit)
        return self._chase(query, answer, limit)

    async def _forward(self, query: dns.message.Message, wire: bytes, limit: int) -> bytes:
        reply = await self._upstreams.exchange(wire)
        if reply is None:
            return _render(query, Answer(rcode=dns.rcode.SERVFAIL), limit, authoritative=False)
        if len(reply) <= limit:
            return reply
        try:  # a TCP reply to a UDP client: cut it to size, TC set
            return dns.message.from_wire(reply).to_wire(max_size=limit, prefer_truncation=True)
        except Exception:
            response = dns.message.make_response(query, our_payload=_PAYLOAD)
            response.flags |= dns.flags.TC | dns.flags.RA
            return response.to_wire(max_size=limit, prefer_truncation=True)

    async def _chase(self, query: dns.message.Message, answer: Answer, limit: int) -> bytes:
        """The cluster's CNAME chain, then what the upstreams answer for its target (as CoreDNS)."""
        assert answer.chase is not None
        rdtype = query.question[0].rdtype
        lookup = dns.message.make_query(answer.chase, rdtype, use_edns=0, payload=_PAYLOAD)
        more: list[dns.rrset.RRset] = []
        reply = await self._upstreams.exchange(lookup.to_wire())
        if reply is not None:
            with contextlib.suppress(Exception):
                more = list(dns.message.from_wire(reply).answer)
        return _render(query, answer, limit, authoritative=True, more=more)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE))
                    wire = await asyncio.wait_for(reader.readexactly(size), _TCP_IDLE)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                reply = self._handle(wire, tcp=True)
                if reply is not None and not isinstance(reply, bytes):
                    reply = await reply
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, owner: ClusterDNS) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (selector transports only duck-type it)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.owner._handle(data, tcp=False)
        if isinstance(reply, bytes):
            self._send(reply, addr)
        elif reply is not None:
            self.owner._spawn(self._send_later(reply, addr))

    async def _send_later(self, reply: Coroutine[Any, Any, bytes | None], addr: Any) -> None:
        out = await reply
        if out is not None:
            self._send(out, addr)

    def _send(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("cluster DNS: UDP error: %s", exc)


def _follow(informer: Informer, resolver: Resolver, upsert: Callable[[dict], None],
            delete: Callable[[dict], None]) -> None:
    """Feed an informer's changes to the resolver; the SOA serial becomes the time of the last one."""
    def changed(fn: Callable[[dict], None]) -> Callable[..., None]:
        def handler(*objs: dict) -> None:
            fn(objs[-1])  # on update: (old, new)
            resolver.serial = max(resolver.serial, int(time.time()))
        return handler

    informer.add_handler(on_add=changed(upsert), on_update=changed(upsert), on_delete=changed(delete))


def _render(query: dns.message.Message, answer: Answer, limit: int, *, authoritative: bool,
            more: Sequence[dns.rrset.RRset] = ()) -> bytes:
    response = dns.message.make_response(query, our_payload=_PAYLOAD)
    response.set_rcode(answer.rcode)
    if authoritative:
        response.flags |= dns.flags.AA
    response.answer.extend(answer.answer)
    response.answer.extend(more)
    response.authority.extend(answer.authority)
    response.additional.extend(answer.additional)
    return response.to_wire(max_size=limit, prefer_truncation=True)


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR under the message's ID and opcode, without a question (there is none we could read)."""
    if len(wire) < 12:
        return None
    flags = 0x8000 | (wire[2] & 0x79) << 8 | dns.rcode.FORMERR  # QR, the query's opcode and RD
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)
