"""One exec or attach request's streams, whichever protocol carries them.

kubectl reaches a command over SPDY (one stream per channel, `remotecommand`)
or over a WebSocket (one channel byte per message, `channels`); the Python
client over a WebSocket. `CommandIO` is what the node agent needs from
either: the client's stdin until its end, the terminal sizes it sends, a way
to write stdout and stderr, and the final `Status`.

Ends of stdin, as the protocols have them: SPDY half-closes the stdin
stream; `v5.channel.k8s.io` sends the CLOSE message `[255, 0]`;
`v4.channel.k8s.io` has no way to say it, so its stdin ends only with the
connection. Output for a stream the request did not ask for is dropped, as
kubelet drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Protocol

from timoner.node.streaming import channels
from timoner.node.streaming.remotecommand import ExecOptions, RemoteCommandStreams, finish
from timoner.node.streaming.spdy import SpdyStream, StreamClosedError
from timoner.node.streaming.websocket import WebSocket

__all__ = ["CommandIO", "ResizeDecoder", "SpdyCommandIO", "WebSocketCommandIO"]


class CommandIO(Protocol):
    """The client side of one exec/attach."""

    options: ExecOptions

    async def read_stdin(self) -> bytes:
        """The next chunk of the client's stdin; `b""` at its end (or when none was asked for)."""
        ...

    def resizes(self) -> AsyncIterator[tuple[int, int]]:
        """(width, height) each time the client's terminal changes size, until it goes away."""
        ...

    async def write(self, stream: int, data: bytes) -> None:
        """Output for the client: stream 1 stdout, 2 stderr. Raises `ConnectionError` once it is gone."""
        ...

    async def finish(self, status: dict) -> None:
        """Send the final `Status` and end the exchange."""
        ...


class ResizeDecoder:
    """Terminal sizes from a resize stream: JSON objects one after another (Go's `json.Encoder`)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buffer += data.decode("utf-8", "replace")
        sizes = []
        while True:
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                break
            try:
                size, end = self._decoder.raw_decode(self._buffer)
            except ValueError:
                break  # incomplete: wait for more (a bad stream just never yields a size)
            self._buffer = self._buffer[end:]
            with contextlib.suppress(KeyError, TypeError, ValueError):
                sizes.append((int(size["Width"]), int(size["Height"])))
        return sizes


class SpdyCommandIO:
    """`CommandIO` over the SPDY streams kubectl opened (see `remotecommand.collect_streams`)."""

    def __init__(self, streams: RemoteCommandStreams, options: ExecOptions) -> None:
        self.streams = streams
        self.options = options

    async def read_stdin(self) -> bytes:
        return await self.streams.stdin.read() if self.streams.stdin is not None else b""

    async def resizes(self) -> AsyncIterator[tuple[int, int]]:
        if self.streams.resize is None:
            return
        decoder = ResizeDecoder()
        while data := await self.streams.resize.read():
            for size in decoder.feed(data):
                yield size

    async def write(self, stream: int, data: bytes) -> None:
        target: SpdyStream | None = self.streams.stdout if stream == 1 else self.streams.stderr
        if target is None:
            return
        try:
            await target.write(data)
        except StreamClosedError as exc:
            raise ConnectionError(str(exc)) from None

    async def finish(self, status: dict) -> None:
        with contextlib.suppress(StreamClosedError, ConnectionError, OSError):
            await finish(self.streams, status)


class WebSocketCommandIO:
    """`CommandIO` over `v4`/`v5.channel.k8s.io`: a reader task sorts the client's messages by channel."""

    def __init__(self, ws: WebSocket, options: ExecOptions) -> None:
        self.ws = ws
        self.options = options
        self.protocol = ws.subprotocol or channels.V4
        # Bounded, so a command that reads its stdin slowly slows the client down (through the socket).
        self._stdin: asyncio.Queue[bytes] = asyncio.Queue(16)
        self._sizes: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def start(self) -> None:
        """Tell the client the streams are up, as kubelet does: an empty message on the first output channel."""
        first = channels.STDOUT if self.options.stdout else channels.STDERR if self.options.stderr else channels.ERROR
        await self.ws.send(channels.encode(first, b""))

    async def _read(self) -> None:
        decoder = ResizeDecoder()
        stdin_open = True
        try:
            while (message := await self.ws.receive()) is not None:
                try:
                    item = channels.decode(message, protocol=self.protocol)
                except channels.ChannelError:
                    continue  # kubelet skips what it cannot place, too
                match item:
                    case channels.Close(channel=channels.STDIN) if stdin_open:
                        stdin_open = False
                        await self._stdin.put(b"")
                    case channels.Data(channel=channels.STDIN, data=data) if stdin_open and data:
                        if self.options.stdin:
                            await self._stdin.put(data)
                    case channels.Data(channel=channels.RESIZE, data=data):
                        for size in decoder.feed(data):
                            self._sizes.put_nowait(size)
        finally:
            self._sizes.put_nowait(None)
            if stdin_open:
                with contextlib.suppress(asyncio.QueueFull):  # full: stdin is not being read any more
                    self._stdin.put_nowait(b"")

    async def read_stdin(self) -> bytes:
        if not self.options.stdin:
            return b""
        return await self._stdin.get()

    async def resizes(self) -> AsyncIterator[tuple[int, int]]:
        while (size := await self._sizes.get()) is not None:
            yield size

    async def write(self, stream: int, data: bytes) -> None:
        if (stream == channels.STDOUT and self.options.stdout) or (stream == channels.STDERR and self.options.stderr):
            await self.ws.send(channels.encode(stream, data))

    async def finish(self, status: dict) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.ws.send(channels.encode(channels.ERROR, json.dumps(status).encode()))
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
