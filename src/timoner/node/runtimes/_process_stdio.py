"""A process container's stdio socket: how `kubectl attach` reaches a main process that a shim owns.

The shim (`_process_shim.py`) listens on a unix socket in the runtime's state
dir (`containers/<id>.sock`) for the container's whole life, so an agent that
restarts can attach again. Every connection is one attach. The shim sends it
the container's output as it reads it (before the log file sees it, so a
prompt without a newline shows at once) and takes its stdin.

Standard library only: the shim is a standalone script and loads this file
by path; the runtime imports it as a module.

Frames, both ways: `>BI` (kind, payload length), then the payload.

- client to shim: HELLO first (JSON `{"stdin": bool}`: whether this attach
  brings stdin), then STDIN data, CLOSE_STDIN (the client's stdin ended),
  RESIZE (`>HH` width, height);
- shim to client: STDOUT and STDERR data (a TTY has only STDOUT).

Stdin follows containerd: the container's stdin (a pipe, or the TTY) stays
open across attaches; when an attach that brought stdin ends it (or goes
away), a `stdinOnce` container without a TTY has its stdin closed for good.
A client that does not read its output is dropped once `CLIENT_BACKLOG`
bytes wait for it: the container must never block on an attach.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import socket
import struct
import termios
import time
from collections.abc import Callable, Iterator

HELLO, STDOUT, STDERR, STDIN, CLOSE_STDIN, RESIZE = 0, 1, 2, 3, 4, 5
HEADER = struct.Struct(">BI")
MAX_FRAME = 1 << 20
CLIENT_BACKLOG = 8 << 20
_FINAL_FLUSH = 1.0  # seconds the shim spends handing the last output to attached clients


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


@contextlib.contextmanager
def short_path(path: str) -> Iterator[str]:
    """`path` as something `bind`/`connect` accept: unix socket paths end at 107 bytes, state dirs may not."""
    if len(path.encode()) < 100:
        yield path
        return
    directory = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{os.path.basename(path)}"
    finally:
        os.close(directory)


def listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    with short_path(path) as address:
        sock.bind(address)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


class _Sink:
    """The container's stdin, written without ever blocking the shim."""

    def __init__(self, fd: int, selector: selectors.BaseSelector) -> None:
        self.fd: int | None = fd
        self._selector = selector
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
            self._selector.register(self.fd, selectors.EVENT_WRITE, self._on_writable)

    def close(self) -> None:
        """Close once what is pending is written (the container then reads end of file)."""
        self._closing = True
        if not self._pending:
            self._close_now()

    def _on_writable(self, _mask: int) -> None:
        self._flush()
        if not self._pending and self.fd is not None:
            self._selector.unregister(self.fd)
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
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.fd)
            os.close(self.fd)
            self.fd = None


class _Client:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.frames = FrameReader()
        self.out = bytearray()
        self.stdin = False
        self.stdin_done = False
        self.writing = False  # registered for EVENT_WRITE


class StdioServer:
    """The shim's side: accepts attaches on `listener` and serves them from the shim's selector loop.

    Selector keys it registers carry a callable taking the event mask; the shim's loop calls it.
    """

    def __init__(self, listener: socket.socket, path: str, selector: selectors.BaseSelector, *,
                 stdin_fd: int | None, stdin_once: bool, tty_fd: int | None) -> None:
        self._listener = listener
        self._path = path
        self._selector = selector
        self._sink = _Sink(stdin_fd, selector) if stdin_fd is not None else None
        self._stdin_once = stdin_once
        self._tty_fd = tty_fd
        self._clients: dict[int, _Client] = {}
        selector.register(listener, selectors.EVENT_READ, self._accept)

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
        """The container exited: give clients what is left (briefly), then end every attach."""
        deadline = time.monotonic() + _FINAL_FLUSH
        for client in list(self._clients.values()):
            with contextlib.suppress(OSError):
                client.conn.setblocking(True)
                while client.out and time.monotonic() < deadline:
                    client.conn.settimeout(max(deadline - time.monotonic(), 0.01))
                    sent = client.conn.send(client.out)
                    del client.out[:sent]
            self._drop(client)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        if self._sink is not None:
            self._sink.close()

    def _accept(self, _mask: int) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        client = _Client(conn)
        self._clients[conn.fileno()] = client
        self._selector.register(conn, selectors.EVENT_READ, self._handler(client))

    def _handler(self, client: _Client) -> Callable[[int], None]:
        def on_event(mask: int) -> None:
            if mask & selectors.EVENT_WRITE:
                self._send(client)
            if mask & selectors.EVENT_READ and client.conn.fileno() in self._clients:
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
                with contextlib.suppress(ValueError, AttributeError):
                    client.stdin = bool(json.loads(payload).get("stdin"))
            elif kind == STDIN and client.stdin and not client.stdin_done and self._sink is not None:
                self._sink.write(payload)
            elif kind == CLOSE_STDIN:
                self._stdin_ended(client)
            elif kind == RESIZE and self._tty_fd is not None and len(payload) == 4:
                width, height = struct.unpack(">HH", payload)
                with contextlib.suppress(OSError):
                    fcntl.ioctl(self._tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

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
        if bool(client.out) != client.writing:
            client.writing = bool(client.out)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.writing else 0)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(client.conn, events, self._selector.get_key(client.conn).data)

    def _drop(self, client: _Client) -> None:
        if self._clients.pop(client.conn.fileno(), None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.conn)
        client.conn.close()
        self._stdin_ended(client)
