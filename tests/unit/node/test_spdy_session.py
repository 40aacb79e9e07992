"""SpdySession behaviour, two sessions wired back to back over in-memory WebSocket-like messages."""

from __future__ import annotations

import asyncio

import pytest

from timoner.node.streaming import spdy_frames as f
from timoner.node.streaming.portforward import serve_port_forward
from timoner.node.streaming.remotecommand import (
    ExecOptions,
    collect_streams,
    exit_status,
    finish,
    parse_resize,
)
from timoner.node.streaming.spdy import SpdySession, SpdyStream, StreamClosedError
from timoner.node.streaming.transport import MessageTransport


class Wire:
    """One direction of a message pipe that also records every frame it carries."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.frames: list[f.Frame] = []
        self._decoder = f.FrameDecoder()

    async def send(self, data: bytes) -> None:
        self.frames += self._decoder.feed(data)
        await self.queue.put(data)

    async def close(self) -> None:
        await self.queue.put(None)


async def wait_until(condition, timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in iter(int, 1):
        if condition():
            return
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def pair(**server_kw) -> tuple[SpdySession, SpdySession, Wire, Wire]:
    up, down = Wire(), Wire()  # up: client -> server
    async def close_both() -> None:
        await up.close()
        await down.close()
    server = SpdySession(MessageTransport(up.queue.get, down.send, close_both), **server_kw)
    client = SpdySession(MessageTransport(down.queue.get, up.send, close_both), server=False)
    return server, client, up, down


@pytest.fixture
async def sessions():
    server, client, up, down = pair()
    tasks = [asyncio.create_task(server.run()), asyncio.create_task(client.run())]
    yield server, client, up, down
    await server.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_stream_open_reply_data_and_half_close(sessions) -> None:
    server, client, up, down = sessions
    c = await client.open_stream({"streamType": "stdin"})
    s = await asyncio.wait_for(server.accept(), 5)
    assert s.id == c.id == 1 and s.header("streamtype") == "stdin"
    assert isinstance(down.frames[0], f.SynReply) and down.frames[0].stream_id == 1
    await c.write(b"hello", fin=True)
    assert await s.read_all() == b"hello"
    with pytest.raises(StreamClosedError):
        await c.write(b"more")
    await s.write(b"back")
    await s.close()
    assert await c.read_all() == b"back"
    assert s.closed and c.closed


async def test_reset_wakes_reader_and_blocks_writes(sessions) -> None:
    server, client, _, _ = sessions
    c = await client.open_stream({"a": "b"})
    s = await server.accept()
    reader = asyncio.create_task(s.read())
    await c.reset(f.CANCEL)
    assert await asyncio.wait_for(reader, 5) == b""
    assert s.reset_status == f.CANCEL
    with pytest.raises(StreamClosedError):
        await s.write(b"x")


async def test_pings_are_answered_both_ways(sessions) -> None:
    server, client, up, down = sessions
    await asyncio.wait_for(client.ping(), 5)
    await asyncio.wait_for(server.ping(), 5)
    assert f.Ping(1) in down.frames and f.Ping(2) in up.frames


async def test_receiver_returns_consumed_bytes_with_window_update(sessions) -> None:
    server, client, _, down = sessions
    c = await client.open_stream({})
    s = await server.accept()
    payload = bytes(200_000)
    # No FIN: a finished stream needs no window back, so the session would rightly skip updates.
    writer = asyncio.create_task(c.write(payload))
    got = 0
    while got < len(payload):
        got += len(await s.read())
    await writer
    updates = [fr for fr in down.frames if isinstance(fr, f.WindowUpdate)]
    assert updates and all(u.stream_id == 1 for u in updates)
    # Everything read is returned, except less than half a window not yet worth an update.
    assert len(payload) - server.initial_window // 2 < sum(u.delta for u in updates) <= len(payload)


async def test_sender_honours_window_once_peer_does_flow_control(sessions) -> None:
    server, client, _, _ = sessions
    c = await client.open_stream({})
    s = await server.accept()
    await s.send_headers({"x": "1"})  # harmless HEADERS frame, ignored by the client
    # The client has seen a WINDOW_UPDATE from the server: it now enforces windows.
    await s._session._send(f.WindowUpdate(c.id, 1))
    await wait_until(lambda: client.peer_flow_control)
    c.send_window = 10
    writer = asyncio.create_task(c.write(b"y" * 25))
    assert await s.read() == b"y" * 10
    await asyncio.sleep(0)
    assert not writer.done()  # stalled on the window, not finished
    await s._session._send(f.WindowUpdate(c.id, 100))
    await asyncio.wait_for(writer, 5)
    assert await s.read() == b"y" * 15


async def test_refused_and_invalid_streams() -> None:
    server, client, up, down = pair(accept=lambda st: st.header("ok") == "yes")
    tasks = [asyncio.create_task(server.run()), asyncio.create_task(client.run())]
    bad = await client.open_stream({"ok": "no"})
    good = await client.open_stream({"ok": "yes"})
    assert (await server.accept()).id == good.id
    assert f.RstStream(bad.id, f.REFUSED_STREAM) in down.frames
    await up.send(f.FrameEncoder().encode(f.DataFrame(99, b"x")))  # raw bytes on an unknown stream
    await wait_until(lambda: f.RstStream(99, f.INVALID_STREAM) in down.frames)
    await server.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert f.GoAway(good.id, f.GOAWAY_OK) in down.frames
    assert await server.accept() is None


async def test_protocol_error_sends_goaway() -> None:
    server, _, up, down = pair()
    task = asyncio.create_task(server.run())
    await up.queue.put(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
    await asyncio.wait_for(task, 5)
    assert down.frames == [f.GoAway(0, f.GOAWAY_PROTOCOL_ERROR)]


async def test_port_forward_pairs_streams_by_request_id(sessions) -> None:
    server, client, _, _ = sessions
    handled: list[tuple[int, int, int]] = []

    async def handle(port: int, data: SpdyStream, error: SpdyStream) -> None:
        handled.append((port, data.id, error.id))
        await data.write(await data.read_all(), fin=True)

    serving = asyncio.create_task(serve_port_forward(server, handle))
    e0 = await client.open_stream({"streamType": "error", "port": "80", "requestID": "0"})
    e1 = await client.open_stream({"streamType": "error", "port": "81", "requestID": "1"})
    d1 = await client.open_stream({"streamType": "data", "port": "81", "requestID": "1"})
    d0 = await client.open_stream({"streamType": "data", "port": "80", "requestID": "0"})
    await d0.write(b"zero", fin=True)
    await d1.write(b"one", fin=True)
    assert await d0.read_all() == b"zero" and await d1.read_all() == b"one"
    assert sorted(handled) == [(80, d0.id, e0.id), (81, d1.id, e1.id)]
    serving.cancel()


async def test_exec_streams_and_final_status(sessions) -> None:
    server, client, _, _ = sessions
    names = ["error", "stdin", "stdout", "stderr", "resize"]
    opened = {n: await client.open_stream({"streamType": n}) for n in names}
    streams = await asyncio.wait_for(collect_streams(server, ExecOptions(stdin=True, tty=True)), 5)
    assert streams.stderr is None  # a TTY merges stderr: kubectl opens none and we do not wait for it
    assert opened["stderr"].id not in (streams.error.id, streams.stdout.id)
    await opened["resize"].write(b'{"Width":80,"Height":24}')
    assert parse_resize(await streams.resize.read()) == (80, 24)
    await finish(streams, exit_status(3))
    status = await opened["error"].read_all()
    assert b'"reason": "NonZeroExitCode"' in status and b'"message": "3"' in status
    assert await opened["stdout"].read_all() == b""


def test_exit_status_shapes() -> None:
    assert exit_status(0) == {"metadata": {}, "status": "Success"}
    assert exit_status(3)["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert parse_resize(b"nope") is None
