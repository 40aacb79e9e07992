"""The node server's streaming endpoints: the upgrade handshakes of exec, attach and port-forward, and the
pumps between a client's streams and a runtime's sessions or a pod's ports.

Which protocol a request gets is the client's choice, in the order kubelet
and kube-apiserver offer them:

- exec and attach: a WebSocket with `v5.channel.k8s.io` (kubectl 1.32) or
  `v4.channel.k8s.io` (the Python client), else SPDY/3.1 with
  `v4.channel.k8s.io` (kubectl's fallback);
- port-forward: a WebSocket with `SPDY/3.1+portforward.k8s.io` (kubectl 1.32:
  SPDY frames inside binary messages), a WebSocket with `v4.channel.k8s.io`
  (or no subprotocol) and the ports in `?ports=` (the Python client), or
  plain SPDY/3.1 with `portforward.k8s.io`.

Exec ends with the command: its exit code becomes the final Status. Attach
ends when the container exits or the client detaches, always with Success,
as kubelet reports it; `kubectl run -i` reads the exit code from the pod.
A port-forward connection ends when the pod's side closes it; then the data
and error streams are closed, which is what lets kubectl close its local
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from .runtime import AttachSession, ExecSession
from .streaming import channels
from .streaming.commandio import CommandIO, SpdyCommandIO, WebSocketCommandIO
from .streaming.portforward import PROTOCOL as PORT_FORWARD_PROTOCOL
from .streaming.portforward import serve_port_forward
from .streaming.remotecommand import ExecOptions, collect_streams, exit_status, success_status
from .streaming.spdy import SpdySession, SpdyStream, StreamClosedError
from .streaming.transport import StreamTransport
from .streaming.websocket import WebSocket, accept

__all__ = ["Connect", "Upgrade", "command_io", "port_forward", "run_attach", "run_exec"]

log = logging.getLogger("timoner.node.server")

# What the node server uses to reach a port of the pod a request names.
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Reply = Callable[[asyncio.StreamWriter, int, str], None]

_STREAMS_TIMEOUT = 30.0  # seconds kubectl has to open its SPDY streams after the upgrade
_SPDY_EXEC_PROTOCOL = channels.V4


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade request whose head the server has read; the connection is ours from here on."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: bytes  # the request line and headers, as read
    headers: Sequence[tuple[str, str]]
    reply: Reply  # writes a refusal (status code, message) before any upgrade

    def header(self, name: str) -> list[str]:
        """Every comma-separated value of header `name`, over repeated headers too."""
        return [v.strip() for key, value in self.headers if key.lower() == name for v in value.split(",")
                if v.strip()]

    @property
    def kind(self) -> str:
        """`websocket`, `spdy/3.1`, or what else the client asked to upgrade to."""
        return ",".join(self.header("upgrade")).lower()

    async def spdy(self, protocols: Sequence[str]) -> SpdySession | None:
        """Answer 101 with the first of `protocols` the client offers; None (after a 400) if none is."""
        offered = self.header("x-stream-protocol-version")
        chosen = next((p for p in protocols if p in offered), None)
        if chosen is None:
            self.reply(self.writer, 400, f"no supported stream protocol in {offered}")
            return None
        self.writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                          + f"X-Stream-Protocol-Version: {chosen}\r\n\r\n".encode())
        await self.writer.drain()
        return SpdySession(StreamTransport(self.reader, self.writer))

    async def websocket(self, select: Callable[[Sequence[str]], str | None]) -> WebSocket | None:
        return await accept(self.reader, self.writer, self.head, select=select)


@contextlib.asynccontextmanager
async def _running(session: SpdySession) -> AsyncIterator[SpdySession]:
    runner = asyncio.create_task(session.run())
    try:
        yield session
    finally:
        await session.close()
        with contextlib.suppress(Exception):
            await runner


def _exec_protocol(offered: Sequence[str]) -> str:
    chosen = channels.select_protocol(list(offered))
    if chosen is None:
        raise ValueError(f"none of the offered subprotocols {list(offered)} is served; "
                         f"use one of {', '.join(channels.EXEC_PROTOCOLS)}")
    return chosen


@contextlib.asynccontextmanager
async def command_io(up: Upgrade, options: ExecOptions) -> AsyncIterator[CommandIO | None]:
    """Upgrade an exec/attach request and yield its streams; None when the upgrade was refused."""
    if up.kind == "websocket":
        ws = await up.websocket(_exec_protocol)
        if ws is None:
            yield None
            return
        io = WebSocketCommandIO(ws, options)
        try:
            await io.start()
            yield io
        finally:
            await ws.close()
    elif up.kind == "spdy/3.1":
        session = await up.spdy([_SPDY_EXEC_PROTOCOL])
        if session is None:
            yield None
            return
        async with _running(session):
            try:
                streams = await asyncio.wait_for(collect_streams(session, options), _STREAMS_TIMEOUT)
            except (TimeoutError, ConnectionError) as exc:
                log.info("exec/attach streams never came: %s", exc)
                yield None
                return
            yield SpdyCommandIO(streams, options)
    else:
        up.reply(up.writer, 400, "exec and attach need a WebSocket or SPDY/3.1 upgrade")
        yield None


async def _feed_stdin(io: CommandIO, session: ExecSession | AttachSession) -> None:
    try:
        while data := await io.read_stdin():
            await session.write_stdin(data)
        await session.close_stdin()
    except (ConnectionError, OSError) as exc:  # the command or container stopped reading
        log.debug("stdin relay ended: %s", exc)


async def _feed_sizes(io: CommandIO, session: ExecSession | AttachSession) -> None:
    async for width, height in io.resizes():
        with contextlib.suppress(OSError):
            await session.resize(width, height)


@contextlib.asynccontextmanager
async def _feeding(io: CommandIO, session: ExecSession | AttachSession) -> AsyncIterator[None]:
    tasks = []
    if io.options.stdin:
        tasks.append(asyncio.create_task(_feed_stdin(io, session)))
    if io.options.tty:
        tasks.append(asyncio.create_task(_feed_sizes(io, session)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_exec(io: CommandIO, session: ExecSession) -> None:
    """Relay a running command's streams until it exits, then send its exit code as the Status."""
    async with _feeding(io, session):
        client_gone = False
        async for stream, data in session.output():
            if client_gone:
                continue  # keep draining, so the command is not blocked on a full pipe
            try:
                await io.write(stream, data)
            except (ConnectionError, OSError):
                client_gone = True
        code = await session.wait()
    await io.finish(exit_status(code))


async def run_attach(io: CommandIO, session: AttachSession) -> None:
    """Relay a container's streams until it exits or the client detaches."""
    try:
        async with _feeding(io, session):
            async for stream, data in session.output():
                try:
                    await io.write(stream, data)
                except (ConnectionError, OSError):
                    break
    finally:
        await session.close()
    await io.finish(success_status())


# -- port-forward -----------------------------------------------------------------------------


async def port_forward(up: Upgrade, connect: Connect, ports: list[str]) -> None:
    """Serve a port-forward upgrade; `ports` are the `?ports=` values (what the v4 WebSocket form uses)."""
    if up.kind == "websocket":
        if channels.PORT_FORWARD_SPDY_WS in up.header("sec-websocket-protocol"):
            ws = await up.websocket(lambda offered: channels.PORT_FORWARD_SPDY_WS)
            if ws is not None:
                await _serve_spdy(SpdySession(ws.transport()), connect)
            return
        try:
            numbers = channels.parse_ports(ports)
        except channels.ChannelError as exc:
            up.reply(up.writer, 400, str(exc))
            return
        if not numbers:
            up.reply(up.writer, 400, "query parameter \"ports\" is required")
            return
        # kubelet serves the channel form as v4 or with no subprotocol at all.
        ws = await up.websocket(lambda offered: channels.V4 if channels.V4 in offered else None)
        if ws is not None:
            await _forward_channels(ws, numbers, connect)
    elif up.kind == "spdy/3.1":
        session = await up.spdy([PORT_FORWARD_PROTOCOL])
        if session is not None:
            await _serve_spdy(session, connect)
    else:
        up.reply(up.writer, 400, "port-forward needs a WebSocket or SPDY/3.1 upgrade")


async def _serve_spdy(session: SpdySession, connect: Connect) -> None:
    async def handle(port: int, data: SpdyStream, error: SpdyStream) -> None:
        try:
            await _forward_stream(await _dial(connect, port), data)
        except ConnectionError as exc:
            log.info("port-forward to port %d: %s", port, exc)
            with contextlib.suppress(StreamClosedError, ConnectionError, OSError):
                await error.write(f"error forwarding port {port}: {exc}".encode())
        finally:
            # As kubelet, both streams end with the connection: kubectl waits for the end of the error
            # stream (and, when there was an error, of the data stream) before it closes its local one.
            for stream in (data, error):
                with contextlib.suppress(StreamClosedError, ConnectionError, OSError):
                    await stream.close()

    async with _running(session):
        await serve_port_forward(session, handle)


async def _dial(connect: Connect, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await connect(port)
    except OSError as exc:
        raise ConnectionError(f"failed to connect to localhost:{port} inside the pod's network: "
                              f"{exc.strerror or exc}") from None


async def _forward_stream(pod: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: SpdyStream) -> None:
    """Copy both ways between one SPDY data stream and one pod connection, until the pod's side ends."""
    reader, writer = pod

    async def to_pod() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await data.read():
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    upstream = asyncio.create_task(to_pod())
    try:
        with contextlib.suppress(ConnectionError, OSError, StreamClosedError):
            while chunk := await reader.read(65536):
                await data.write(chunk)
            await data.close()
    finally:
        upstream.cancel()
        writer.close()
        await asyncio.gather(upstream, return_exceptions=True)


async def _forward_channels(ws: WebSocket, ports: list[int], connect: Connect) -> None:
    """The Python client's port-forward: one pod connection per port, data on channel 2i, errors on 2i+1."""
    loop = asyncio.get_running_loop()
    # Each port's pod connection once dialled (None if that failed): the client may send before it is.
    writers: list[asyncio.Future[asyncio.StreamWriter | None]] = [loop.create_future() for _ in ports]
    try:
        for message in channels.port_prefix_messages(ports):
            await ws.send(message)

        async def forward(index: int, port: int) -> None:
            try:
                reader, writer = await _dial(connect, port)
            except ConnectionError as exc:
                writers[index].set_result(None)
                with contextlib.suppress(ConnectionError, OSError):
                    await ws.send(channels.encode(channels.error_channel(index),
                                                  f"error forwarding port {port}: {exc}".encode()))
                return
            writers[index].set_result(writer)
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await reader.read(65536):
                    await ws.send(channels.encode(channels.data_channel(index), chunk))

        async def from_client() -> None:
            while (message := await ws.receive()) is not None:
                try:
                    item = channels.decode(message, protocol=channels.V4)
                except channels.ChannelError:
                    continue
                if not isinstance(item, channels.Data):
                    continue
                where = channels.port_channel(item.channel)
                if where.error or where.port_index >= len(writers):
                    continue
                writer = await writers[where.port_index]
                if writer is None or writer.is_closing():
                    continue
                with contextlib.suppress(ConnectionError, OSError):
                    writer.write(item.data)
                    await writer.drain()

        pumps = asyncio.gather(*(forward(i, port) for i, port in enumerate(ports)))
        client = asyncio.create_task(from_client())
        # Done when every port's pod side has ended, or when the client went away.
        await asyncio.wait({pumps, client}, return_when=asyncio.FIRST_COMPLETED)
        pumps.cancel()
        client.cancel()
        await asyncio.gather(pumps, client, return_exceptions=True)
    finally:
        for future in writers:
            if future.done() and future.result() is not None:
                future.result().close()
            future.cancel()
        await ws.close()

