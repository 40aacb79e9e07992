"""A process container's stdio socket: how `kubectl attach` reaches a main process that a shim owns.

The shim (`_process_shim.py`) listens on a unix socket in the runtime's state
dir (`containers/<id>.sock`) for the container's whole life, so an agent that
restarts can attach again. Every connection is one attach. The shim sends it
the container's output as it reads it (before the log file sees it, so a
prompt without a newline shows at once) and takes its stdin.

Standard library only, and light to import: every shim loads it (by name,
from its own directory); the runtime imports it as a module for the frame
format.

Frames, both ways: `>BI` (kind, payload length), then the payload.

- client to shim: HELLO first (one byte of flags: `HELLO_STDIN` when this
  attach brings stdin), then STDIN data, CLOSE_STDIN (the client's stdin
  ended), RESIZE (`>HH` width, height);
- shim to client: STDOUT and STDERR data (a TTY has only STDOUT).

Stdin follows containerd: the container's stdin (a pipe, or the TTY) stays
open across attaches; when an attach that brought stdin ends it (or goes
away), a `stdinOnce` container without a TTY has its stdin closed for good.
A client that does not read its output is dropped once `CLIENT_BACKLOG`
bytes wait for it: the container must never block on an attach. When the
container exits, each attach gets the rest of the output and then its end
(the shim shuts its side for writing), and the shim reads on until the
client closes (within `_FINAL_FLUSH`), so that what the client still sends
never meets a closed socket.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import select
import struct
import termios
import time

HELLO, STDOUT, STDERR, STDIN, CLOSE_STDIN, RESIZE = 0, 1, 2, 3, 4, 5
HELLO_STDIN = 1
HEADER = struct.Struct(">BI")
MAX_FRAME = 1 << 20
CLIENT_BACKLOG = 8 << 20
_FINAL_FLUSH = 1.0  # seconds the shim spends handing the last output to attached clients
READ, WRITE = select.POLLIN, select.POLLOUT


def encode(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Splits a byte stream into (kind, payload) frames; any chunking."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ValueError(f"stdio frame of {length} bytes")
            if len(self._buffer) < HEADER.size + length:
                break
            frames.append((kind, bytes(self._buffer[HEADER.size:HEADER.size + length])))
            del self._buffer[:HEADER.size + length]
        return frames


class _Sink:
    """The container's stdin, written without ever blocking the shim."""

    def __init__(self, fd: int, poller) -> None:
        self.fd: int | None = fd
        self._poller = poller
        self._pending = bytearray()
        self._closing = False
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.fd is None or self._closing:
            return
        was_empty = not self._pending
        self._pending += data
        self._flush()
        if was_empty and self._pending and self.fd is not None:
            self._poller.register(self.fd, WRITE, self._on_writable)

    def close(self) -> None:
        """Close once what is pending is written (the container then reads end of file)."""
        self._closing = True
        if not self._pending:
            self._close_now()

    def _on_writable(self, _mask: int) -> None:
        self._flush()
        if not self._pending and self.fd is not None:
            self._poller.unregister(self.fd)
            if self._closing:
                self._close_now()

    def _flush(self) -> None:
        assert self.fd is not None
        try:
            while self._pending:
                written = os.write(self.fd, self._pending)
                del self._pending[:written]
        except BlockingIOError:
            pass
        except OSError:  # nobody reads the container's stdin any more
            self._pending.clear()

    def _close_now(self) -> None:
        if self.fd is not None:
            self._poller.unregister(self.fd)
            os.close(self.fd)
            self.fd = None


class _Client:
    def __init__(self, conn) -> None:
        self.conn = conn
        self.fd: int = conn.fileno()
        self.frames = FrameReader()
        self.out = bytearray()
        self.stdin = False
        self.stdin_done = False
        self.writing = False  # registered for WRITE


class StdioServer:
    """The shim's side: accepts attaches on `listener` (a listening `_socket.socket`) and serves them.

    `poller` is the shim's `Poller`: `register(fd, events, handler)`,
    `modify(fd, events)`, `unregister(fd)`; the shim's loop calls each
    handler with the event mask. Sockets are `_socket.socket`s, as the shim
    makes them (no `socket` module, to stay light).
    """

    def __init__(self, listener, path: str, poller, *, stdin_fd: int | None, stdin_once: bool,
                 tty_fd: int | None) -> None:
        self._listener = listener
        self._path = path
        self._poller = poller
        self._sink = _Sink(stdin_fd, poller) if stdin_fd is not None else None
        self._stdin_once = stdin_once
        self._tty_fd = tty_fd
        self._clients: dict[int, _Client] = {}
        poller.register(listener.fileno(), READ, self.accept)

    def broadcast(self, kind: int, data: bytes) -> None:
        """Hand a chunk of the container's output to every attached client."""
        if not self._clients or not data:
            return
        frame = encode(kind, data)
        for client in list(self._clients.values()):
            pending = bool(client.out)
            client.out += frame
            if len(client.out) > CLIENT_BACKLOG:
                self._drop(client)
            elif not pending:
                self._send(client)

    def close(self) -> None:
        """The container exited: give clients what is left, then end every attach (within `_FINAL_FLUSH`).

        Each client sees the end of its output (our side shut for writing), and its socket stays open until
        it closes it, what it still sends read and dropped: a client writing (a CLOSE_STDIN, say) to a socket
        already closed would get an error instead, and the agent's streams then drop output not yet read.
        """
        deadline = time.monotonic() + _FINAL_FLUSH
        for client in list(self._clients.values()):
            try:
                client.conn.setblocking(True)
                while client.out and time.monotonic() < deadline:
                    client.conn.settimeout(max(deadline - time.monotonic(), 0.01))
                    sent = client.conn.send(client.out)
                    del client.out[:sent]
                client.conn.shutdown(_socket.SHUT_WR)
                while time.monotonic() < deadline:
                    client.conn.settimeout(max(deadline - time.monotonic(), 0.01))
                    if not client.conn.recv(65536):
                        break
            except OSError:
                pass
            self._drop(client)
        self._poller.unregister(self._listener.fileno())
        self._listener.close()
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
        if self._sink is not None:
            self._sink.close()

    def accept(self, _mask: int) -> None:
        """The listener is readable: take the new attach."""
        try:
            fd, _ = self._listener._accept()
        except BlockingIOError:
            return
        conn = type(self._listener)(fileno=fd)
        conn.setblocking(False)
        client = _Client(conn)
        self._clients[client.fd] = client
        self._poller.register(client.fd, READ, self._handler(client))

    def _handler(self, client: _Client):
        def on_event(mask: int) -> None:
            if mask & WRITE:
                self._send(client)
            if mask & ~WRITE and client.fd in self._clients:  # readable, or hung up: `_receive` finds out
                self._receive(client)

        return on_event

    def _receive(self, client: _Client) -> None:
        try:
            data = client.conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            frames = client.frames.feed(data)
        except ValueError:
            self._drop(client)
            return
        for kind, payload in frames:
            if kind == HELLO:
                client.stdin = bool(payload[:1]) and bool(payload[0] & HELLO_STDIN)
            elif kind == STDIN and client.stdin and not client.stdin_done and self._sink is not None:
                self._sink.write(payload)
            elif kind == CLOSE_STDIN:
                self._stdin_ended(client)
            elif kind == RESIZE and self._tty_fd is not None and len(payload) == 4:
                width, height = struct.unpack(">HH", payload)
                try:
                    fcntl.ioctl(self._tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
                except OSError:
                    pass

    def _stdin_ended(self, client: _Client) -> None:
        if not client.stdin or client.stdin_done:
            return
        client.stdin_done = True
        if self._stdin_once and self._tty_fd is None and self._sink is not None:
            self._sink.close()

    def _send(self, client: _Client) -> None:
        try:
            while client.out:
                sent = client.conn.send(client.out)
                del client.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(client)
            return
        if bool(client.out) != client.writing and client.fd in self._clients:
            client.writing = bool(client.out)
            self._poller.modify(client.fd, READ | (WRITE if client.writing else 0))

    def _drop(self, client: _Client) -> None:
        if self._clients.pop(client.fd, None) is None:
            return
        self._poller.unregister(client.fd)
        client.conn.close()
        self._stdin_ended(client)
