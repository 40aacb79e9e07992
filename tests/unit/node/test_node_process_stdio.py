"""The shim's side of a process container's stdio socket (`_process_stdio.StdioServer`), over a real unix socket."""

from __future__ import annotations

import _socket
import os
import socket
import threading

from timoner.node.runtimes._process_shim import Poller
from timoner.node.runtimes._process_stdio import CLOSE_STDIN, HELLO, STDOUT, FrameReader, StdioServer, encode


def test_at_the_containers_exit_an_attach_ends_but_its_socket_stays_open_until_the_client_closes_it(tmp_path):
    # The agent may still write (a CLOSE_STDIN, once kubectl's stdin ended) after the container's last
    # output: had the shim closed the socket, that write would fail, and the agent's streams would drop
    # the output they had not read yet (`kubectl run -i` then printed nothing).
    path = str(tmp_path / "c.sock")
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    listener.bind(path)
    listener.listen(1)
    listener.setblocking(False)
    poller = Poller()
    server = StdioServer(listener, path, poller, stdin_fd=None, stdin_once=True, tty_fd=None)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(path)
    client.sendall(encode(HELLO, b"\x01"))
    poller.poll(5000)  # the shim accepts the attach
    server.broadcast(STDOUT, b"last words\n")

    closing = threading.Thread(target=server.close)  # what the shim does once the container's output drained
    closing.start()
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    assert FrameReader().feed(received) == [(STDOUT, b"last words\n")]
    client.sendall(encode(CLOSE_STDIN))  # after the end of the output: still a socket to write to
    client.close()
    closing.join(5)
    assert not closing.is_alive()
    assert not os.path.exists(path)
