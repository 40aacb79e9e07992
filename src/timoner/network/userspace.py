"""The userspace data plane: the fallback for hosts without nftables, forwarding connections itself.

Like kube-proxy's old userspace mode, it listens where the traffic arrives
and opens a connection to an endpoint for each client:

- a TCP listener or UDP socket per frontend with somewhere to go (no
  endpoint: no listener, so a connection is refused at once);
- cluster IPs are made local addresses (/32 on a dummy interface,
  `timoner-svc` by default, which needs root; an empty bridge where the
  kernel has no dummy driver) so listeners can bind them;
  with `interface=None` cluster IPs are not served at all (node ports only);
- endpoints are taken round-robin; with ClientIP affinity a client keeps its
  endpoint while it comes back within the timeout and the endpoint stays;
  a TCP endpoint that refuses is skipped for the next one;
- UDP keeps one upstream socket per client address, closed when idle.

Endpoints see the proxy's address, never the client's: traffic policies
still choose the endpoints (a frontend on 127.0.0.0/8 counts as the node's
own traffic and may use every endpoint), but no source address survives.
Updating the table keeps the sockets that stay and their affinity state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterable

from .routes import Endpoint, RouteTable

__all__ = ["UserspaceDataPlane", "UserspaceError"]

log = logging.getLogger("timoner.network.userspace")

_Key = tuple[str, str, int]  # protocol, ip, port


class UserspaceError(RuntimeError):
    """A listener or an address could not be set up (the rest of the table was applied)."""


class _Balancer:
    """Picks an endpoint per new connection: round-robin, sticky per client IP with affinity."""

    def __init__(self, endpoints: tuple[Endpoint, ...], affinity_timeout: int | None) -> None:
        self.endpoints = endpoints
        self.affinity_timeout = affinity_timeout
        self._next = 0
        self._affinity: dict[str, tuple[Endpoint, float]] = {}

    def update(self, endpoints: tuple[Endpoint, ...], affinity_timeout: int | None) -> None:
        if affinity_timeout != self.affinity_timeout:
            self._affinity.clear()
        self.endpoints = endpoints
        self.affinity_timeout = affinity_timeout

    def pick(self, client_ip: str, *, avoid: Iterable[Endpoint] = ()) -> Endpoint | None:
        avoid = set(avoid)
        now = time.monotonic()
        if self.affinity_timeout is not None:
            remembered = self._affinity.get(client_ip)
            if (remembered and remembered[1] > now and remembered[0] in self.endpoints
                    and remembered[0] not in avoid):
                self._affinity[client_ip] = (remembered[0], now + self.affinity_timeout)
                return remembered[0]
        candidates = [ep for ep in self.endpoints if ep not in avoid]
        if not candidates:
            return None
        chosen = candidates[self._next % len(candidates)]
        self._next += 1
        if self.affinity_timeout is not None:
            if len(self._affinity) > 4096:
                self._affinity = {ip: v for ip, v in self._affinity.items() if v[1] > now}
            self._affinity[client_ip] = (chosen, now + self.affinity_timeout)
        return chosen


class _TcpListener:
    def __init__(self, balancer: _Balancer, connect_timeout: float) -> None:
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, ip: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, ip, port, reuse_address=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_ip = writer.get_extra_info("peername")[0]
        tried: list[Endpoint] = []
        upstream = None
        while upstream is None:
            endpoint = self.balancer.pick(client_ip, avoid=tried)
            if endpoint is None:
                writer.close()
                return
            tried.append(endpoint)
            with contextlib.suppress(OSError, TimeoutError):
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(endpoint.ip, endpoint.port), self.connect_timeout)
        up_reader, up_writer = upstream
        try:
            pumps = {asyncio.ensure_future(_pump(reader, up_writer)),
                     asyncio.ensure_future(_pump(up_reader, writer))}
            while pumps:
                done, pumps = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                if not all(t.result() for t in done):  # a reset: nothing more will flow either way
                    break
        finally:
            for task in pumps:
                task.cancel()
            writer.close()
            up_writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF and pass the EOF on (True), or until the connection breaks (False)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        return True
    except OSError:
        return False


class _UdpListener(asyncio.DatagramProtocol):
    """One frontend socket; one connected upstream socket per client address."""

    def __init__(self, balancer: _Balancer, idle_timeout: float) -> None:
        self.balancer = balancer
        self.idle_timeout = idle_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple, _UdpSession] = {}

    async def start(self, ip: str, port: int) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, local_addr=(ip, port))

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        session = self.sessions.get(addr)
        if session is None:
            endpoint = self.balancer.pick(addr[0])
            if endpoint is None:
                return
            session = self.sessions[addr] = _UdpSession(self, addr, endpoint)
        session.send(data)

    def forget(self, endpoints: tuple[Endpoint, ...]) -> None:
        """Close the sessions to endpoints that are gone (what a conntrack flush does for a DNAT)."""
        for session in list(self.sessions.values()):
            if session.endpoint not in endpoints:
                session.close()

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
        if self.transport is not None:
            self.transport.close()


class _UdpSession(asyncio.DatagramProtocol):
    def __init__(self, listener: _UdpListener, client: tuple, endpoint: Endpoint) -> None:
        self.listener = listener
        self.client = client
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.last_used = time.monotonic()
        loop = asyncio.get_running_loop()
        self._connect = loop.create_task(
            loop.create_datagram_endpoint(lambda: self, remote_addr=(endpoint.ip, endpoint.port)))
        self._connect.add_done_callback(self._connected)
        self._timer = loop.call_later(listener.idle_timeout, self._check_idle)

    def _connected(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            self.close()
            return
        for data in self.pending:
            self.send(data)
        self.pending.clear()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, data: bytes) -> None:
        self.last_used = time.monotonic()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr) -> None:
        self.last_used = time.monotonic()
        if self.listener.transport is not None:
            self.listener.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error from the endpoint: the client will time out and retry, as with a DNAT

    def _check_idle(self) -> None:
        idle = time.monotonic() - self.last_used
        if idle >= self.listener.idle_timeout:
            self.close()
        else:
            self._timer = asyncio.get_running_loop().call_later(self.listener.idle_timeout - idle, self._check_idle)

    def close(self) -> None:
        self._timer.cancel()
        self._connect.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.listener.sessions.get(self.client) is self:
            del self.listener.sessions[self.client]


class UserspaceDataPlane:
    """Applies route tables by listening on every frontend and forwarding; see the module docstring."""

    def __init__(self, *, interface: str | None = "timoner-svc", ip_command: tuple[str, ...] = ("ip",),
                 udp_idle_timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
        self.interface = interface
        self.ip_command = ip_command
        self.udp_idle_timeout = udp_idle_timeout
        self.connect_timeout = connect_timeout
        self._listeners: dict[_Key, tuple[_Balancer, _TcpListener | _UdpListener]] = {}
        self._addresses: set[str] = set()
        self._interface_ready = False

    @property
    def listening(self) -> frozenset[_Key]:
        """(protocol, ip, port) of every open frontend."""
        return frozenset(self._listeners)

    async def apply(self, table: RouteTable) -> None:
        wanted: dict[_Key, tuple[tuple[Endpoint, ...], int | None]] = {}
        cluster_ips: set[str] = set()
        for route in table:
            for frontend in route.frontends:
                if not frontend.external:
                    if self.interface is None:
                        continue
                    endpoints = route.internal_endpoints
                elif ipaddress.ip_address(frontend.ip).is_loopback:
                    endpoints = route.endpoints  # the node's own traffic is not subject to Local policy
                else:
                    endpoints = route.external_endpoints
                if endpoints:
                    wanted[(route.protocol, frontend.ip, frontend.port)] = (endpoints, route.affinity_timeout)
                    if not frontend.external:
                        cluster_ips.add(frontend.ip)

        for key in [k for k in self._listeners if k not in wanted]:
            await self._listeners.pop(key)[1].close()
        await self._sync_addresses(cluster_ips)
        failed = []
        for key, (endpoints, affinity) in wanted.items():
            if key in self._listeners:
                balancer, existing = self._listeners[key]
                balancer.update(endpoints, affinity)
                if isinstance(existing, _UdpListener):
                    existing.forget(endpoints)
                continue
            balancer = _Balancer(endpoints, affinity)
            protocol, ip, port = key
            listener: _TcpListener | _UdpListener = (
                _TcpListener(balancer, self.connect_timeout) if protocol == "TCP"
                else _UdpListener(balancer, self.udp_idle_timeout))
            try:
                await listener.start(ip, port)
            except OSError as exc:
                failed.append(f"{protocol} {ip}:{port}: {exc}")
                continue
            self._listeners[key] = (balancer, listener)
        if failed:
            raise UserspaceError("cannot listen on " + "; ".join(failed))

    async def cleanup(self) -> None:
        """Close every listener and remove the interface (and with it the cluster IPs)."""
        for _, listener in self._listeners.values():
            await listener.close()
        self._listeners.clear()
        self._addresses.clear()
        if self.interface is not None:
            await self._ip("link", "del", self.interface, tolerate="Cannot find device")
        self._interface_ready = False

    async def _sync_addresses(self, wanted: set[str]) -> None:
        if self.interface is None or (not wanted and not self._addresses):
            return
        if not self._interface_ready:
            try:
                await self._ip("link", "add", self.interface, "type", "dummy", tolerate="File exists")
            except UserspaceError as exc:
                if "Unknown device type" not in str(exc):
                    raise
                # A kernel without the dummy driver: a bridge without ports holds addresses as well
                # and sends nothing anywhere either.
                await self._ip("link", "add", self.interface, "type", "bridge", tolerate="File exists")
            await self._ip("addr", "flush", "dev", self.interface)  # a previous run's addresses
            await self._ip("link", "set", self.interface, "up")
            self._interface_ready = True
            self._addresses.clear()
        for ip in sorted(self._addresses - wanted):
            await self._ip("addr", "del", f"{ip}/32", "dev", self.interface, tolerate="Cannot assign")
            self._addresses.discard(ip)
        for ip in sorted(wanted - self._addresses):
            await self._ip("addr", "add", f"{ip}/32", "dev", self.interface, tolerate="File exists")
            self._addresses.add(ip)

    async def _ip(self, *args: str, tolerate: str | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.ip_command, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await proc.communicate()
        message = stderr.decode(errors="replace").strip()
        if proc.returncode != 0 and not (tolerate and tolerate in message):
            self._interface_ready = False
            raise UserspaceError(f"{' '.join((*self.ip_command, *args))}: {message}")
