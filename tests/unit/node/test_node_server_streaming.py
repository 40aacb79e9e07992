"""The node server's WebSocket and SPDY glue, against a scripted runtime and a real WebSocket client.

`websockets`' own client plays kubectl and the Python client here (the
real ones run in tests/e2e/test_streaming_e2e.py): exec and attach over
`v5`/`v4.channel.k8s.io`, port-forward over `v4.channel.k8s.io` with
`?ports=` and over `SPDY/3.1+portforward.k8s.io`, and the client
certificate check.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from timoner.apiserver.certs import ensure_pki
from timoner.node.runtime import ContainerID
from timoner.node.server import NodeServer
from timoner.node.streaming import channels as ch
from timoner.node.streaming.commandio import ResizeDecoder
from timoner.node.streaming.spdy import SpdySession
from timoner.node.streaming.transport import MessageTransport

CID = ContainerID("fake", "c1")
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
       "status": {"containerStatuses": [{"name": "c", "containerID": str(CID)}]}}


class ScriptedSession:
    """Echoes stdin on stdout and reports resizes on stderr; ends at the end of stdin (at once without one)."""

    def __init__(self, *, exit_code: int, stdin: bool) -> None:
        self.exit_code = exit_code
        self.events: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.closed = False
        if not stdin:
            self.events.put_nowait((1, b"no stdin\n"))
            self.events.put_nowait(None)

    async def write_stdin(self, data: bytes) -> None:
        await self.events.put((1, data))

    async def close_stdin(self) -> None:
        await self.events.put(None)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while (item := await self.events.get()) is not None:
            yield item

    async def resize(self, width: int, height: int) -> None:
        await self.events.put((2, f"{width}x{height}".encode()))

    async def wait(self) -> int:
        return self.exit_code

    async def close(self) -> None:
        self.closed = True
        await self.events.put(None)


class ScriptedRuntime:
    """ExecRuntime, AttachRuntime and PortForwardRuntime without processes: the exit code is the last argv."""

    name = "fake"
    version = "0"

    def __init__(self) -> None:
        self.sessions: list[ScriptedSession] = []
        self.dialled: list[tuple[str, int]] = []

    async def exec(self, container, command, *, tty=False, stdin=False) -> ScriptedSession:
        assert container == CID
        self.sessions.append(ScriptedSession(exit_code=int(command[-1]), stdin=stdin))
        return self.sessions[-1]

    async def attach(self, container, *, stdin=False) -> ScriptedSession:
        self.sessions.append(ScriptedSession(exit_code=99, stdin=stdin))
        return self.sessions[-1]

    async def connect(self, pod_uid: str, port: int):
        self.dialled.append((pod_uid, port))
        return await asyncio.open_connection("127.0.0.1", port)


def _client_context(cert=None, key=None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture
async def node(tmp_path):
    runtime = ScriptedRuntime()
    server = NodeServer(runtime, lambda ns, name: POD if (ns, name) == ("ns", "p") else None,
                        host="127.0.0.1", port=0, cert_dir=tmp_path / "pki")
    port = await server.start()
    yield runtime, f"wss://127.0.0.1:{port}"
    await server.close()


@pytest.fixture
async def echo_port():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


class RawWebSocket:
    """A bare WebSocket client that offers any subprotocol (`websockets`' own refuses kubectl's
    `SPDY/3.1+portforward.k8s.io`, which is not an RFC 7230 token)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head
        self.protocol = ClientProtocol(parse_uri("wss://node/"), state=State.OPEN)
        self.messages: list[bytes] = []

    @classmethod
    async def open(cls, base: str, path: str, subprotocol: str) -> RawWebSocket:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_context())
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: node\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                     f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n".encode())
        return cls(reader, writer, await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))

    async def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.protocol.send_binary(data)
        await self._flush()

    async def recv(self) -> bytes | None:
        while not self.messages:
            data = await self.reader.read(65536)
            if not data:
                return None
            self.protocol.receive_data(data)
            self.messages += [f.data for f in self.protocol.events_received() if f.opcode is Opcode.BINARY]
            await self._flush()
        return self.messages.pop(0)

    async def close(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            await self._flush()
        self.writer.close()


async def _messages(ws, until_channel: int = ch.ERROR) -> list[bytes]:
    """Messages up to and including the first one on `until_channel`."""
    got = []
    while True:
        message = await asyncio.wait_for(ws.recv(), 10)
        got.append(message)
        if message[:1] == bytes([until_channel]):
            return got


async def test_exec_over_v5_relays_stdin_resize_and_the_exit_code(node):
    runtime, base = node
    url = f"{base}/exec/ns/p/c?command=run&command=3&stdin=true&stdout=true&stderr=true&tty=true"
    async with connect(url, ssl=_client_context(), subprotocols=[ch.V5, ch.V4]) as ws:
        assert ws.subprotocol == ch.V5
        assert await ws.recv() == b"\x01"  # kubelet's "streams are up": an empty stdout message
        await ws.send(b'\x04{"Width":120,"Height":40}\n')
        assert await ws.recv() == b"\x02120x40"
        await ws.send(b"\x00hello")
        assert await ws.recv() == b"\x01hello"
        await ws.send(ch.encode_close(ch.STDIN))
        status = json.loads((await ws.recv())[1:])
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1000
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_exec_over_v4_has_no_stdin_close_and_reports_success(node):
    runtime, base = node
    url = f"{base}/exec/ns/p/c?command=run&command=0&stdin=true&stdout=true&stderr=false"
    async with connect(url, ssl=_client_context(), subprotocols=[ch.V4]) as ws:
        assert ws.subprotocol == ch.V4
        assert await ws.recv() == b"\x01"
        await ws.send(b"\xff\x00")  # not a CLOSE in v4: skipped, stdin stays open
        await ws.send("\x00typed as text")  # the Python client sends str stdin as text frames
        assert await ws.recv() == b"\x01typed as text"
        await ws.send(b'\x04{"Width":1,"Height":2}')  # stderr was not asked for: the resize report is dropped
        await ws.send(b"\x00more")
        assert await ws.recv() == b"\x01more"
    session = runtime.sessions[-1]
    # The client went away: that is the end of stdin, so the command ends.
    assert await asyncio.wait_for(session.wait(), 5) == 0


async def test_exec_without_stdin_ends_with_success(node):
    _, base = node
    async with connect(f"{base}/exec/ns/p/c?command=true&command=0", ssl=_client_context(),
                       subprotocols=[ch.V5]) as ws:
        got = await _messages(ws)
    assert got[:-1] == [b"\x01", b"\x01no stdin\n"]
    assert json.loads(got[-1][1:]) == {"metadata": {}, "status": "Success"}


async def test_attach_ends_with_success_and_detaches(node):
    runtime, base = node
    async with connect(f"{base}/attach/ns/p/c?stdin=true&stdout=true", ssl=_client_context(),
                       subprotocols=[ch.V5]) as ws:
        assert await ws.recv() == b"\x01"
        await ws.send(b"\x00in")
        assert await ws.recv() == b"\x01in"
        await ws.send(ch.encode_close(ch.STDIN))
        got = await _messages(ws)
    assert json.loads(got[-1][1:])["status"] == "Success"  # kubelet reports no exit code for attach
    assert runtime.sessions[-1].closed


@pytest.mark.parametrize(("path", "offered", "status"), [
    ("/exec/ns/p/c?command=x&command=0", ["v3.channel.k8s.io"], 400),  # no protocol we serve
    ("/exec/ns/p/c", [ch.V5], 400),  # no command
    ("/exec/ns/gone/c?command=x", [ch.V5], 404),
    ("/exec/ns/p/wrong-uid/c?command=x", [ch.V5], 404),
    ("/portForward/ns/p", [ch.V4], 400),  # the channel form needs ?ports=
    ("/portForward/ns/p?ports=0", [ch.V4], 400),
])
async def test_refusals_before_the_upgrade(node, path, offered, status):
    _, base = node
    with pytest.raises(InvalidStatus) as refused:
        async with connect(base + path, ssl=_client_context(), subprotocols=offered):
            pass
    assert refused.value.response.status_code == status


async def test_port_forward_over_v4_channels(node, echo_port, unused_tcp_port):
    runtime, base = node
    url = f"{base}/portForward/ns/p?ports={echo_port},{unused_tcp_port}"
    async with connect(url, ssl=_client_context(), subprotocols=[ch.V5, ch.V4]) as ws:
        assert ws.subprotocol == ch.V4  # no v5 for port-forward, as kubelet
        opening = [await ws.recv() for _ in range(4)]
        assert opening == ch.port_prefix_messages([echo_port, unused_tcp_port])
        await ws.send(b"\x00ping")
        received = await asyncio.wait_for(ws.recv(), 10)
        if received[0] == 3:  # the refused port's error may come first
            error, received = received, await asyncio.wait_for(ws.recv(), 10)
        else:
            error = await asyncio.wait_for(ws.recv(), 10)
        assert received == b"\x00ping"
        assert error[0] == ch.error_channel(1) and str(unused_tcp_port).encode() in error
    assert ("uid-1", echo_port) in runtime.dialled


async def test_port_forward_spdy_inside_websocket(node, echo_port):
    """kubectl 1.32's form: SPDY frames in binary messages, streams paired by request id."""
    _, base = node
    ws = await RawWebSocket.open(base, "/portForward/ns/p", ch.PORT_FORWARD_SPDY_WS)
    assert ws.head.startswith(b"HTTP/1.1 101 ")
    assert f"Sec-WebSocket-Protocol: {ch.PORT_FORWARD_SPDY_WS}\r\n".encode() in ws.head
    session = SpdySession(MessageTransport(ws.recv, ws.send, ws.close), server=False)
    runner = asyncio.create_task(session.run())
    try:
        headers = {"port": str(echo_port), "requestid": "0"}
        error = await session.open_stream({**headers, "streamtype": "error"})
        data = await session.open_stream({**headers, "streamtype": "data"})
        payload = bytes(range(256)) * 400
        await data.write(payload)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += await asyncio.wait_for(data.read(), 10)
        assert echoed == payload
        await data.close()  # the client is done: the pod side is half-closed, and the echo server ends
        assert await asyncio.wait_for(data.read(), 10) == b""
        assert await asyncio.wait_for(error.read_all(), 10) == b""  # closed, with no error in it
    finally:
        await session.close()
        await runner


async def test_port_forward_reports_a_refused_port_on_the_error_stream(node, unused_tcp_port):
    _, base = node
    ws = await RawWebSocket.open(base, "/portForward/ns/p", ch.PORT_FORWARD_SPDY_WS)
    session = SpdySession(MessageTransport(ws.recv, ws.send, ws.close), server=False)
    runner = asyncio.create_task(session.run())
    try:
        headers = {"port": str(unused_tcp_port), "requestid": "7"}
        error = await session.open_stream({**headers, "streamtype": "error"})
        await session.open_stream({**headers, "streamtype": "data"})
        message = await asyncio.wait_for(error.read_all(), 10)
        assert f"error forwarding port {unused_tcp_port}".encode() in message
    finally:
        await session.close()
        await runner


async def test_client_certificates_are_checked_against_the_cluster_ca(tmp_path):
    cluster, other = ensure_pki(tmp_path / "cluster"), ensure_pki(tmp_path / "other")
    server = NodeServer(ScriptedRuntime(), lambda ns, name: POD, host="127.0.0.1", port=0,
                        cert_dir=tmp_path / "node", client_ca=cluster.ca_cert.read_bytes())
    port = await server.start()

    async def get(context: ssl.SSLContext) -> bytes:
        """The status line, or b"" when the TLS handshake failed (with TLS 1.3 the client may only
        learn of its rejected certificate when it reads)."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readline(), 10)
        except (ssl.SSLError, ConnectionError):
            return b""
        writer.close()
        return head

    try:
        assert await get(_client_context()) == b"HTTP/1.1 401 Unauthorized\r\n"
        # The API server's certificate passes: the request reaches routing (404 for this path).
        kubelet_client = _client_context(cluster.kubelet_client_cert, cluster.kubelet_client_key)
        assert await get(kubelet_client) == b"HTTP/1.1 404 Not Found\r\n"
        assert await get(_client_context(other.admin_cert, other.admin_key)) == b""  # signed by another CA
    finally:
        await server.close()


@pytest.mark.parametrize(("chunks", "sizes"), [
    ([b'{"Width":80,"Height":24}\n'], [(80, 24)]),
    ([b'{"Width":80,', b'"Height":24}\n{"Width":1', b',"Height":2}'], [(80, 24), (1, 2)]),
    ([b'{"Width":80,"Height":24}{"Width":81,"Height":25}'], [(80, 24), (81, 25)]),
    ([b'{"Height":24}\n', b'{"Width":3,"Height":4}'], [(3, 4)]),  # a size without a width is skipped
    ([b"  \n"], []),
])
def test_resize_decoder(chunks, sizes):
    decoder = ResizeDecoder()
    assert [size for chunk in chunks for size in decoder.feed(chunk)] == sizes
