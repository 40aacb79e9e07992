"""kubectl logs, exec and port-forward through the API server to a node agent.

The node agent here is a stand-in built from the real streaming code
(`timoner.node.streaming`): it answers on the kubelet's paths behind a Node
object's `daemonEndpoints`, so these tests prove the API server's relay with
the real kubectl on the other end.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import uuid

import pytest

from timoner.node.streaming.portforward import serve_port_forward
from timoner.node.streaming.remotecommand import ExecOptions, collect_streams, exit_status, finish
from timoner.node.streaming.spdy import SpdySession, SpdyStream
from timoner.node.streaming.transport import StreamTransport
from timoner.testing import KUBECTL, ServerThread, http_client


class FakeNodeAgent:
    """HTTPS on the kubelet's paths: /containerLogs, /exec (SPDY only), /portForward (SPDY only)."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            self.requests.append(f"{method} {target} upgrade={headers.get('upgrade', '').lower()}")
            path = target.split("?", 1)[0]
            if path.startswith("/containerLogs/"):
                body = b"line one\nline two\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                return
            if headers.get("upgrade", "").lower() != "spdy/3.1":
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            chosen = "portforward.k8s.io" if path.startswith("/portForward/") else "v4.channel.k8s.io"
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                         + f"X-Stream-Protocol-Version: {chosen}\r\n\r\n".encode())
            await writer.drain()
            session = SpdySession(StreamTransport(reader, writer))
            runner = asyncio.create_task(session.run())
            try:
                if chosen == "portforward.k8s.io":
                    await serve_port_forward(session, _echo)
                else:
                    streams = await asyncio.wait_for(collect_streams(session, ExecOptions(stdout=True, stderr=True)), 10)
                    await streams.stdout.write(f"ran {target}\n".encode())
                    await finish(streams, exit_status(3))
            finally:
                await session.close()
                await runner
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _echo(port: int, data: SpdyStream, error: SpdyStream) -> None:
    while chunk := await data.read():
        await data.write(chunk)
    await data.close()


@pytest.fixture
def cluster(tmp_path):
    with ServerThread(tmp_path / "data", storage="memory") as srv:
        pki = srv.server.pki
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        agent = FakeNodeAgent()

        async def start():
            return await asyncio.start_server(agent.handle, "127.0.0.1", 0, ssl=context)

        server = srv.call(start())
        port = server.sockets[0].getsockname()[1]
        ns = f"n-{uuid.uuid4().hex[:6]}"
        with http_client(srv) as c:
            c.post("/api/v1/nodes", json={"metadata": {"name": "node-a"}}).raise_for_status()
            node = c.get("/api/v1/nodes/node-a").json()
            node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                              "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
            c.put("/api/v1/nodes/node-a/status", json=node).raise_for_status()
            c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
            c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}, "spec": {
                "nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]}}).raise_for_status()
            pod = c.get(f"/api/v1/namespaces/{ns}/pods/p").json()
            pod["status"] = {"phase": "Running"}
            c.put(f"/api/v1/namespaces/{ns}/pods/p/status", json=pod).raise_for_status()
        env = {**os.environ, "KUBECONFIG": str(srv.kubeconfig), "HOME": str(tmp_path)}
        yield srv, agent, ns, env
        srv.call(_close(server))


async def _close(server):
    server.close()


async def _run(*args, env):
    proc = await asyncio.create_subprocess_exec(KUBECTL, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out, err


async def test_kubectl_logs_exec_through_the_api_server(cluster):
    srv, agent, ns, env = cluster
    code, out, err = await _run("logs", "-n", ns, "p", env=env)
    assert code == 0, err
    assert out == b"line one\nline two\n"
    code, out, err = await _run("exec", "-n", ns, "p", "--", "echo", "hi", env=env)
    assert code == 3, (out, err, agent.requests)
    assert out.startswith(f"ran /exec/{ns}/p/c?".encode())
    assert b"command=echo&command=hi" in out
    # kubectl tried WebSocket first; the node refused it and the SPDY fallback went through the relay too.
    assert any(r.startswith("GET /exec/") and r.endswith("upgrade=websocket") for r in agent.requests)
    assert any(r.startswith("POST /exec/") and r.endswith("upgrade=spdy/3.1") for r in agent.requests)


async def test_kubectl_port_forward_through_the_api_server(cluster):
    srv, agent, ns, env = cluster
    proc = await asyncio.create_subprocess_exec(KUBECTL, "port-forward", "-n", ns, "pod/p", "0:8080",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"Forwarding from 127.0.0.1:"), line
        local = int(line.split(b"127.0.0.1:")[1].split(b" ")[0])
        payload = os.urandom(100_000)
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 20) == payload
        writer.close()
    finally:
        proc.terminate()
        await proc.wait()
    assert any(r.startswith("POST /portForward/") for r in agent.requests), agent.requests


def test_unscheduled_pod_and_missing_upgrade_get_clear_errors(cluster):
    srv, agent, ns, env = cluster
    with http_client(srv) as c:
        c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "pending"}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}})
        r = c.get(f"/api/v1/namespaces/{ns}/pods/pending/log")
        assert r.status_code == 400 and "does not have a host assigned" in r.json()["message"]
        r = c.get(f"/api/v1/namespaces/{ns}/pods/p/exec", params={"command": "ls"})
        assert r.status_code == 400 and r.json()["message"] == "Upgrade request required"
        r = c.get(f"/api/v1/namespaces/{ns}/pods/p/log", params={"container": "nope"})
        assert r.status_code == 400 and json.loads(r.text)["reason"] == "BadRequest"
