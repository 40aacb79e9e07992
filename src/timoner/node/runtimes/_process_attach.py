"""`kubectl attach` for the process runtime: one connection to a container's stdio socket.

The shim serves the socket (`_process_stdio`); this is the agent's end, an
`AttachSession`. Closing stdin follows containerd: for a `stdinOnce`
container without a TTY the shim closes the container's stdin and the
attach goes on until the container exits; otherwise the attach detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

from . import _process_stdio as stdio
from ._process_shim import short_path

__all__ = ["ProcessAttachSession", "open_attach"]


class ProcessAttachSession:
    """An `AttachSession` over the stdio socket; `output()` may be iterated once."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, closes_stdin: bool) -> None:
        self._reader = reader
        self._writer = writer
        self._closes_stdin = closes_stdin

    async def _send(self, kind: int, payload: bytes = b"") -> None:
        if self._writer.is_closing():
            raise ConnectionError("the attach has ended")
        self._writer.write(stdio.encode(kind, payload))
        await self._writer.drain()

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # frames stay below the shim's limit
            await self._send(stdio.STDIN, bytes(view[:65536]))
            view = view[65536:]

    async def close_stdin(self) -> None:
        if self._closes_stdin:
            await self._send(stdio.CLOSE_STDIN)
        else:
            await self.close()

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        frames = stdio.FrameReader()
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await self._reader.read(65536):
                for kind, payload in frames.feed(chunk):
                    if kind in (stdio.STDOUT, stdio.STDERR):
                        yield kind, payload

    async def resize(self, width: int, height: int) -> None:
        await self._send(stdio.RESIZE, struct.pack(">HH", width & 0xFFFF, height & 0xFFFF))

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


async def open_attach(path: str, *, stdin: bool, closes_stdin: bool) -> ProcessAttachSession:
    """Attach through the socket at `path`; raises `OSError` when nothing listens there."""
    with short_path(path) as address:
        reader, writer = await asyncio.open_unix_connection(address)
    writer.write(stdio.encode(stdio.HELLO, bytes([stdio.HELLO_STDIN if stdin else 0])))
    await writer.drain()
    return ProcessAttachSession(reader, writer, closes_stdin=closes_stdin)
