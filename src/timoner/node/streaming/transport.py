"""Byte transports a SPDY session can run over.

The session needs only "give me the next bytes" and "send these bytes", so the
same ``SpdySession`` serves a hijacked HTTP/1.1 connection (``Upgrade:
SPDY/3.1``) and the ``SPDY/3.1+portforward.k8s.io`` WebSocket subprotocol,
where every binary message carries SPDY bytes. Chunk boundaries carry no
meaning: the frame decoder buffers partial frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol


class ByteTransport(Protocol):
    """An ordered, reliable byte pipe."""

    async def receive(self) -> bytes:
        """The next chunk of bytes; ``b""`` once the peer has closed."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class StreamTransport:
    """A ``ByteTransport`` over an asyncio ``StreamReader``/``StreamWriter`` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def receive(self) -> bytes:
        try:
            return await self._reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass  # the peer left first; closing is all we wanted


class MessageTransport:
    """A ``ByteTransport`` over binary messages (a WebSocket, for instance).

    Built from three callables so this package does not depend on a WebSocket
    library: ``receive`` returns the next binary message or None at close.
    """

    def __init__(
        self,
        receive: Callable[[], Awaitable[bytes | None]],
        send: Callable[[bytes], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self._receive, self._send, self._close = receive, send, close

    async def receive(self) -> bytes:
        while True:
            message = await self._receive()
            if message is None:
                return b""
            if message:  # an empty message must not read as end-of-stream
                return message

    async def send(self, data: bytes) -> None:
        await self._send(data)

    async def close(self) -> None:
        await self._close()
