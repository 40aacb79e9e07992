"""The real kubectl against our SPDY stack, through a tiny fake API server.

The fake server answers just enough discovery and a Running pod for kubectl
to reach the upgrade request. It refuses the WebSocket attempt with 400 (so
kubectl 1.32 falls back to SPDY) and hands the upgraded connection to
``SpdySession`` — exactly what the node agent will do behind the API server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable

import pytest

from timoner.node.streaming.portforward import serve_port_forward
from timoner.node.streaming.remotecommand import ExecOptions, collect_streams, exit_status, finish
from timoner.node.streaming.spdy import SpdySession, SpdyStream
from timoner.node.streaming.transport import StreamTransport

# No skip: these tests exist to prove compatibility, so a missing kubectl must fail loudly.
KUBECTL = shutil.which("kubectl") or "kubectl-not-installed"
pytestmark = pytest.mark.slow

POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {"name": "p", "namespace": "default", "uid": "1", "resourceVersion": "1"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0,
                                                          "image": "busybox", "imageID": "",
                                                          "state": {"running": {}}}]},
}
RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list"], "shortNames": ["po"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
         "verbs": ["create", "get"]},
    ],
}
ROUTES = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": RESOURCES,
    "/api/v1/namespaces/default/pods/p": POD,
}

SessionHandler = Callable[[SpdySession, str], Awaitable[None]]


class FakeApiServer:
    """HTTP/1.1 keep-alive server: JSON routes, 400 to WebSocket, SPDY upgrade to ``on_spdy``."""

    def __init__(self, on_spdy: SessionHandler) -> None:
        self.on_spdy = on_spdy
        self.requests: list[str] = []
        self.sessions: list[asyncio.Task[None]] = []

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, list[str]] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers.setdefault(k.strip().lower(), []).append(v.strip())
                path = target.split("?", 1)[0]
                upgrade = ",".join(headers.get("upgrade", [])).lower()
                self.requests.append(f"{method} {path} upgrade={upgrade}")
                if path.endswith(("/exec", "/portforward", "/attach")):
                    if upgrade == "websocket":
                        self._reply(writer, 400, {"kind": "Status", "status": "Failure", "code": 400})
                        await writer.drain()
                        continue
                    offered = [p.strip() for v in headers.get("x-stream-protocol-version", []) for p in v.split(",")]
                    chosen = "portforward.k8s.io" if path.endswith("/portforward") else "v4.channel.k8s.io"
                    assert chosen in offered, offered
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                        + f"X-Stream-Protocol-Version: {chosen}\r\n\r\n".encode()
                    )
                    await writer.drain()
                    session = SpdySession(StreamTransport(reader, writer))
                    runner = asyncio.create_task(session.run())
                    try:
                        await self.on_spdy(session, target)
                    finally:
                        await session.close()
                        await runner
                    return
                body = ROUTES.get(path)
                self._reply(writer, 200 if body else 404, body or {"kind": "Status", "code": 404})
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )


async def start(tmp_path, on_spdy: SessionHandler) -> tuple[asyncio.Server, FakeApiServer, dict[str, str]]:
    fake = FakeApiServer(on_spdy)
    server = await asyncio.start_server(fake._conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "default"}}],
    }))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    return server, fake, env


async def test_kubectl_exec_over_spdy_gets_output_and_exit_code(tmp_path) -> None:
    seen: dict[str, str] = {}

    async def on_spdy(session: SpdySession, target: str) -> None:
        seen["target"] = target
        streams = await asyncio.wait_for(collect_streams(session, ExecOptions(stdout=True, stderr=True)), 10)
        await streams.stdout.write(b"hello\n")
        await streams.stderr.write(b"oops\n")
        await finish(streams, exit_status(3))

    server, fake, env = await start(tmp_path, on_spdy)
    async with server:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "exec", "p", "--", "echo", "hi",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert out == b"hello\n", (out, err, fake.requests)
    assert b"oops\n" in err
    assert proc.returncode == 3, (err, fake.requests)
    assert "command=echo&command=hi" in seen["target"]
    assert any("/exec upgrade=spdy/3.1" in r for r in fake.requests), fake.requests


async def test_kubectl_port_forward_over_spdy_echoes_bytes(tmp_path) -> None:
    ports: list[int] = []

    async def echo(port: int, data: SpdyStream, error: SpdyStream) -> None:
        ports.append(port)
        while chunk := await data.read():
            await data.write(chunk)
        await data.close()

    async def on_spdy(session: SpdySession, target: str) -> None:
        await serve_port_forward(session, echo)

    server, fake, env = await start(tmp_path, on_spdy)
    async with server:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "port-forward", "pod/p", "0:8080",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.startswith(b"Forwarding from 127.0.0.1:"), (line, fake.requests)
            local = int(line.split(b"127.0.0.1:")[1].split(b" ")[0])
            for payload in (b"ping\n", os.urandom(200_000)):
                reader, writer = await asyncio.open_connection("127.0.0.1", local)
                writer.write(payload)
                await writer.drain()
                got = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
                assert got == payload
                writer.close()
        finally:
            proc.terminate()
            await proc.wait()
    assert ports and set(ports) == {8080}
    assert any("/portforward upgrade=spdy/3.1" in r for r in fake.requests), fake.requests
