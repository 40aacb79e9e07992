"""A SPDY/3.1 session: the multiplexer under kubectl exec, attach and port-forward.

``SpdySession`` runs over any ``ByteTransport`` and plays the server side by
default: kubectl opens every stream (odd ids) with SYN_STREAM, the session
answers with an empty SYN_REPLY before anything else is written on the stream
(spdystream drops DATA that arrives before the reply) and hands the stream to
``accept()``. ``SpdyStream`` is a half-closable byte pipe: ``read`` returns
``b""`` at the peer's FIN or RST, ``close`` sends FIN, ``reset`` sends RST.

Flow control. Receiving: each stream starts with a 64 KiB window and, as the
consumer reads, the session returns the consumed bytes with WINDOW_UPDATE once
half a window has been read, so a peer that honours windows never stalls.
Sending: we honour the peer's windows only after the peer shows it does flow
control (it sent a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting). kubectl's
spdystream neither sends WINDOW_UPDATE nor enforces windows, so a strict
sender would stall every exec and port-forward after 64 KiB. Overrunning our
receive window is logged, not reset, for the same reason.

Frames are encoded and written under one lock: the header compression
context is shared by all streams, so encode order must equal wire order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from timoner.node.streaming.spdy_frames import (
    CANCEL,
    FLOW_CONTROL_ERROR,
    GOAWAY_OK,
    GOAWAY_PROTOCOL_ERROR,
    INVALID_STREAM,
    MAX_STREAM_ID,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS_INITIAL_WINDOW_SIZE,
    DataFrame,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Headers,
    HeadersFrame,
    Ping,
    RstStream,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    WindowUpdate,
    header_value,
    make_headers,
)
from timoner.node.streaming.transport import ByteTransport

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 64 * 1024
# Data frames are cut well below the 16 MiB length limit so one big write does
# not monopolise the connection while other streams (stderr, error) wait.
MAX_DATA_CHUNK = 16 * 1024


class StreamClosedError(Exception):
    """Writing to a stream that we half-closed or that was reset."""


class SpdyStream:
    """One SPDY stream as seen by its consumer."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers, *, send_window: int) -> None:
        self.id = stream_id
        self.headers = headers
        self._session = session
        self._chunks: collections.deque[bytes] = collections.deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.remote_closed = False
        self.local_closed = False
        self.reset_status: int | None = None
        self.recv_window = session.initial_window
        self._unacked = 0
        self.send_window = send_window

    def header(self, name: str) -> str | None:
        """The stream's SYN_STREAM header ``name`` (names are lower-case on the wire)."""
        return header_value(self.headers, name)

    @property
    def closed(self) -> bool:
        return self.reset_status is not None or (self.remote_closed and self.local_closed)

    async def read(self) -> bytes:
        """The next chunk of data; ``b""`` once the peer finished or reset the stream."""
        while not self._chunks:
            if self.remote_closed or self.reset_status is not None:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        await self._consumed(len(chunk))
        return chunk

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    async def write(self, data: bytes, *, fin: bool = False) -> None:
        """Send ``data``; with ``fin`` the last frame also half-closes the stream."""
        view = memoryview(data)
        while True:
            if self.reset_status is not None or self.local_closed:
                raise StreamClosedError(f"stream {self.id} is closed for writing")
            size = min(len(view), MAX_DATA_CHUNK)
            if size and self._session.peer_flow_control:
                size = min(size, self.send_window, self._session.send_window)
                if size <= 0:
                    self._writable.clear()
                    await self._writable.wait()
                    continue
            last = size == len(view)
            self.send_window -= size
            self._session.send_window -= size
            await self._session._send(DataFrame(self.id, bytes(view[:size]), fin=fin and last))
            view = view[size:]
            if last:
                break
        if fin:
            self._local_fin()

    async def close(self) -> None:
        """Half-close: tell the peer we will send no more (empty DATA with FIN)."""
        if self.local_closed or self.reset_status is not None:
            return
        self._local_fin()
        await self._session._send(DataFrame(self.id, b"", fin=True))

    async def reset(self, status: int = CANCEL) -> None:
        if self.reset_status is not None:
            return
        self._on_reset(status)
        await self._session._send(RstStream(self.id, status))

    async def send_headers(self, headers: dict[str, str] | Headers, *, fin: bool = False) -> None:
        await self._session._send(HeadersFrame(self.id, make_headers(headers), fin=fin))
        if fin:
            self._local_fin()

    async def _consumed(self, n: int) -> None:
        self._unacked += n
        if self._unacked >= self._session.initial_window // 2 and not self.remote_closed:
            delta, self._unacked = self._unacked, 0
            self.recv_window += delta
            await self._session._send(WindowUpdate(self.id, delta))

    def _on_data(self, data: bytes, fin: bool) -> None:
        if data:
            self.recv_window -= len(data)
            if self.recv_window < 0:
                log.debug("spdy stream %d overran its receive window by %d", self.id, -self.recv_window)
            self._chunks.append(data)
        if fin:
            self.remote_closed = True
        self._readable.set()
        self._session._forget_if_done(self)

    def _on_reset(self, status: int) -> None:
        self.reset_status = status
        self._readable.set()
        self._writable.set()
        self._session._forget_if_done(self)

    def _local_fin(self) -> None:
        self.local_closed = True
        self._session._forget_if_done(self)

    def _grow_send_window(self, delta: int) -> None:
        self.send_window += delta
        if self.send_window > 0:
            self._writable.set()


class SpdySession:
    """Server (or client) end of one SPDY/3.1 connection.

    ``accept`` decides synchronously whether to take a new peer stream;
    refused streams get RST_STREAM REFUSED_STREAM. Call ``run()`` (usually as a
    task) to pump frames; it returns when the transport ends.
    """

    def __init__(
        self,
        transport: ByteTransport,
        *,
        server: bool = True,
        accept: Callable[[SpdyStream], bool] | None = None,
        initial_window: int = DEFAULT_WINDOW,
    ) -> None:
        self._transport = transport
        self._server = server
        self._accept_filter = accept
        self.initial_window = initial_window
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._next_id = 2 if server else 1
        self._next_ping = 2 if server else 1
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._last_peer_id = 0
        self._goaway_sent = False
        self.goaway_received = False
        self.peer_flow_control = False
        self._peer_initial_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW
        self.done = asyncio.Event()

    # -- public API ---------------------------------------------------------

    async def run(self) -> None:
        try:
            while chunk := await self._transport.receive():
                try:
                    frames = self._decoder.feed(chunk)
                except SpdyProtocolError as exc:
                    log.warning("spdy protocol error, closing: %s", exc)
                    await self.close(GOAWAY_PROTOCOL_ERROR)
                    break
                for frame in frames:
                    await self._dispatch(frame)
        finally:
            self._finish()

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened, already replied to; None once the session ended."""
        if self.done.is_set() and self._incoming.empty():
            return None
        return await self._incoming.get()

    async def open_stream(self, headers: dict[str, str] | Headers, *, fin: bool = False) -> SpdyStream:
        """Open a stream towards the peer (the client side of kubectl's protocols)."""
        sid, self._next_id = self._next_id, self._next_id + 2
        if sid > MAX_STREAM_ID:
            raise StreamClosedError("stream ids exhausted")
        stream = SpdyStream(self, sid, make_headers(headers), send_window=self._peer_initial_window)
        self._streams[sid] = stream
        await self._send(SynStream(sid, stream.headers, fin=fin))
        if fin:
            stream._local_fin()
        return stream

    async def ping(self) -> None:
        """Send a PING and wait for its echo."""
        pid, self._next_ping = self._next_ping, self._next_ping + 2
        fut = self._pings[pid] = asyncio.get_running_loop().create_future()
        await self._send(Ping(pid))
        await fut

    async def close(self, status: int = GOAWAY_OK) -> None:
        """Send GOAWAY (once) and close the transport."""
        if not self._goaway_sent:
            self._goaway_sent = True
            try:
                await self._send(GoAway(self._last_peer_id, status))
            except (ConnectionError, OSError):
                pass  # the peer is gone already; nothing left to tell it
        await self._transport.close()

    # -- internals ----------------------------------------------------------

    async def _send(self, frame: Frame) -> None:
        async with self._write_lock:
            await self._transport.send(self._encoder.encode(frame))

    def _forget_if_done(self, stream: SpdyStream) -> None:
        if stream.closed:
            self._streams.pop(stream.id, None)

    def _finish(self) -> None:
        for stream in list(self._streams.values()):
            stream.remote_closed = True
            stream._readable.set()
            stream._writable.set()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionError("spdy session ended"))
        self.done.set()
        self._incoming.put_nowait(None)

    async def _dispatch(self, frame: Frame) -> None:
        match frame:
            case DataFrame(stream_id=sid, data=data, fin=fin):
                stream = self._streams.get(sid)
                if stream is None or stream.remote_closed:
                    await self._send(RstStream(sid, INVALID_STREAM))
                else:
                    stream._on_data(data, fin)
            case SynStream():
                await self._on_syn_stream(frame)
            case SynReply(stream_id=sid, fin=fin) | HeadersFrame(stream_id=sid, fin=fin):
                stream = self._streams.get(sid)
                if stream is not None and fin:
                    stream._on_data(b"", True)
            case RstStream(stream_id=sid, status=status):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_reset(status)
            case Ping(id=pid):
                # Odd/even ids tell whose ping it is: ours resolve a waiter, theirs are echoed.
                if (pid % 2 == 0) == self._server:
                    fut = self._pings.pop(pid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                else:
                    await self._send(frame)
            case GoAway():
                self.goaway_received = True
            case WindowUpdate(stream_id=sid, delta=delta):
                self.peer_flow_control = True
                if sid == 0:
                    self.send_window += delta
                    for stream in self._streams.values():
                        stream._writable.set()
                elif (stream := self._streams.get(sid)) is not None:
                    if stream.send_window + delta > MAX_STREAM_ID:
                        stream._on_reset(FLOW_CONTROL_ERROR)
                        await self._send(RstStream(sid, FLOW_CONTROL_ERROR))
                    else:
                        stream._grow_send_window(delta)
            case Settings(entries=entries):
                for entry in entries:
                    if entry.id == SETTINGS_INITIAL_WINDOW_SIZE:
                        self.peer_flow_control = True
                        delta = entry.value - self._peer_initial_window
                        self._peer_initial_window = entry.value
                        for stream in self._streams.values():
                            stream._grow_send_window(delta)

    async def _on_syn_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        peer_parity = 1 if self._server else 0
        if sid % 2 != peer_parity or sid <= self._last_peer_id:
            await self._send(RstStream(sid, PROTOCOL_ERROR))
            return
        self._last_peer_id = sid
        if self._goaway_sent:
            await self._send(RstStream(sid, REFUSED_STREAM))
            return
        stream = SpdyStream(self, sid, frame.headers, send_window=self._peer_initial_window)
        if self._accept_filter is not None and not self._accept_filter(stream):
            await self._send(RstStream(sid, REFUSED_STREAM))
            return
        self._streams[sid] = stream
        if frame.fin:
            stream.remote_closed = True
        if frame.unidirectional:
            stream.local_closed = True
        # The reply must precede any DATA we write on this stream.
        await self._send(SynReply(sid))
        self._incoming.put_nowait(stream)
