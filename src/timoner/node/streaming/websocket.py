"""The server side of a WebSocket (RFC 6455) on a connection whose request head was already read.

kubectl 1.32 opens exec, attach and port-forward as WebSocket upgrades first;
so does the Python client's ``stream()`` and ``portforward()``. The framing
(handshake checks, masking, fragmentation, ping/pong, the closing handshake)
is the ``websockets`` library's sans-I/O ``ServerProtocol``; this module only
feeds it the bytes of an asyncio stream pair and hands out whole messages.

A reader task owns the ``StreamReader``: it answers pings while the consumer
is busy and queues data messages, at most ``QUEUE_DEPTH`` of them, so a slow
consumer slows the peer down through TCP instead of filling memory.
Text messages are returned as their UTF-8 bytes: the Python client sends
``str`` stdin as text frames, with the channel byte first all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from http import HTTPStatus

from websockets.exceptions import InvalidState
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from timoner.node.streaming.transport import MessageTransport

__all__ = ["MAX_MESSAGE", "WebSocket", "accept"]

# The Python client's port-forward sends up to 1 MiB of data plus the channel byte in one message.
MAX_MESSAGE = 16 * 1024 * 1024
QUEUE_DEPTH = 64
_CLOSE_TIMEOUT = 2.0

SelectProtocol = Callable[[Sequence[str]], str | None]


class WebSocket:
    """One accepted WebSocket: `receive` and `send` whole binary messages, then `close`."""

    def __init__(self, protocol: ServerProtocol, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, subprotocol: str | None) -> None:
        self.subprotocol = subprotocol
        self._protocol = protocol
        self._reader = reader
        self._writer = writer
        self._messages: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_DEPTH)
        self._fragments: list[bytes] | None = None
        self._done = asyncio.Event()
        self._reading = asyncio.create_task(self._read_loop())

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    async def receive(self) -> bytes | None:
        """The next data message; None once the connection is closing or closed."""
        if self._done.is_set() and self._messages.empty():
            return None
        message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # every later call sees the end too
        return message

    async def send(self, data: bytes) -> None:
        """Send one binary message; raises `ConnectionError` once the connection is closing."""
        try:
            self._protocol.send_binary(data)
        except InvalidState:
            raise ConnectionError("the WebSocket is closing") from None
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: send Close, wait briefly for the peer's, then close the connection."""
        if self._protocol.state is State.OPEN:
            self._protocol.send_close(code, reason)
            with contextlib.suppress(ConnectionError, OSError):
                await self._flush()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._done.wait()
        except TimeoutError:
            self._reading.cancel()
        self._writer.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reading

    def transport(self) -> MessageTransport:
        """These messages as a byte pipe, for SPDY inside WebSocket (`SPDY/3.1+portforward.k8s.io`)."""
        return MessageTransport(self.receive, self.send, self.close)

    async def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._writer.write(chunk)
            else:  # SEND_EOF: TLS has no half-close, so the end of our side is the end of the connection
                self._writer.close()
                return
        await self._writer.drain()

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if data:
                    self._protocol.receive_data(data)
                else:
                    self._protocol.receive_eof()
                for frame in self._protocol.events_received():
                    message = self._assemble(frame.opcode, frame.data, frame.fin)
                    if message is not None:
                        await self._messages.put(message)
                await self._flush()  # pongs, the answer to a Close, or the end of the connection
                if not data or self._protocol.state is State.CLOSED:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self._done.set()
            # Wakes a waiting receive(); with a full queue nobody waits, and receive() checks `_done`.
            with contextlib.suppress(asyncio.QueueFull):
                self._messages.put_nowait(None)

    def _assemble(self, opcode: Opcode, data: bytes, fin: bool) -> bytes | None:
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragments = [bytes(data)]
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(data))
        else:
            return None  # control frames: the protocol answered them already
        if not fin:
            return None
        message, self._fragments = b"".join(self._fragments), None
        return message


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, *,
                 select: SelectProtocol) -> WebSocket | None:
    """Answer a WebSocket upgrade whose `head` (request line and headers, up to the blank line) was read.

    `select` picks our subprotocol among those the client offers, or None to go on without one; when
    it raises `ValueError` the handshake fails with 400, as it does for a malformed request. Returns
    None once the refusal is written.

    Subprotocols are negotiated here, not by the library: kubectl's `SPDY/3.1+portforward.k8s.io` is
    not an RFC 7230 token (the `/`), and `websockets` refuses a header that offers it.
    """
    offered, kept = _take_subprotocols(head)
    protocol = ServerProtocol(max_size=MAX_MESSAGE)
    # The protocol parses the head itself: it must, to move on to reading frames.
    protocol.receive_data(kept)
    request = next((event for event in protocol.events_received() if isinstance(event, Request)), None)
    if request is None:  # not a GET, or not HTTP/1.1: the protocol has its 400 ready
        response = None
    else:
        try:
            chosen = select(offered)
        except ValueError as exc:
            response = protocol.reject(HTTPStatus.BAD_REQUEST, f"Failed to open a WebSocket connection: {exc}\n")
        else:
            response = protocol.accept(request)
            if response.status_code == 101 and chosen is not None:
                response.headers["Sec-WebSocket-Protocol"] = chosen
        protocol.send_response(response)
    for chunk in protocol.data_to_send():
        writer.write(chunk)
    await writer.drain()
    if response is None or response.status_code != 101:
        return None
    return WebSocket(protocol, reader, writer, response.headers.get("Sec-WebSocket-Protocol"))


def _take_subprotocols(head: bytes) -> tuple[list[str], bytes]:
    """The subprotocols a request head offers (every `Sec-WebSocket-Protocol`), and the head without them."""
    offered, kept = [], []
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"sec-websocket-protocol":
            offered += [item.strip() for item in value.decode("latin-1").split(",") if item.strip()]
        else:
            kept.append(line)
    return offered, b"\r\n".join(kept)
