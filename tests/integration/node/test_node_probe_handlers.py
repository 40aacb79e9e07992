"""Probe and hook handlers against real sockets and real processes: HTTP(S), TCP, exec, with upstream's words."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from timoner.client import RealClock
from timoner.node.pods._handlers import (
    HandlerError,
    Outcome,
    Target,
    hook_action,
    new_http_client,
    probe_action,
)
from timoner.node.runtime import ContainerID, ContainerSpec
from timoner.node.runtimes.hollow import HollowRuntime
from timoner.node.runtimes.process import ProcessRuntime

POD = {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyHTTP:
    """An HTTP/1.0 server on 127.0.0.1 answering by path; it records each request's head."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> TinyHTTP:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.requests.append(head)
        path = head.split(" ", 2)[1]
        status, body, extra = {
            "/ok": (200, "fine", ""),
            "/fail": (500, "broken", ""),
            "/missing": (404, "", ""),
            "/redirect-local": (302, "", "Location: /ok\r\n"),
            "/redirect-away": (302, "moved", "Location: http://elsewhere.invalid/ok\r\n"),
            "/loop": (302, "", "Location: /loop\r\n"),
        }.get(path, (200, "", ""))
        if path == "/slow":
            await asyncio.sleep(5)
        writer.write(f"HTTP/1.0 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n{body}".encode())
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def self_signed(tmp_path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return context


@pytest.fixture
async def http():
    client = new_http_client()
    yield client
    await client.aclose()


@pytest.fixture
async def server():
    srv = await TinyHTTP().start()
    yield srv
    await srv.close()


def target(http, *, runtime=None, cid="hollow://x", ports=()) -> Target:
    container = {"name": "c", "ports": [{"name": n, "containerPort": p} for n, p in ports]}
    return Target(runtime or HollowRuntime(), ContainerID.parse(cid), container, "127.0.0.1", http)


@pytest.mark.parametrize(("path", "outcome", "output"), [
    ("/ok", Outcome.SUCCESS, "fine"),
    ("/redirect-local", Outcome.SUCCESS, "fine"),
    ("/fail", Outcome.FAILURE, "HTTP probe failed with statuscode: 500"),
    ("/missing", Outcome.FAILURE, "HTTP probe failed with statuscode: 404"),
    ("/redirect-away", Outcome.WARNING, "Probe terminated redirects, Response body: moved"),
])
async def test_http_probe_outcomes(http, server, path, outcome, output):
    result = await probe_action({"httpGet": {"path": path, "port": "web"}}, target(http, ports=[("web", server.port)]),
                                timeout=2)
    assert (result.outcome, result.output) == (outcome, output)


async def test_http_probe_sends_upstream_headers_and_the_probe_s_own(http, server):
    probe = {"httpGet": {"path": "/ok", "port": server.port, "httpHeaders": [
        {"name": "X-Probe", "value": "yes"}, {"name": "Host", "value": "example.test"}]}}
    assert (await probe_action(probe, target(http), timeout=2)).outcome is Outcome.SUCCESS
    head = server.requests[-1].lower()
    assert head.startswith("get /ok http/1.1\r\n")
    assert "user-agent: kube-probe/1.32\r\n" in head and "accept: */*\r\n" in head
    assert "x-probe: yes\r\n" in head and "host: example.test\r\n" in head
    probe = {"httpGet": {"path": "/ok", "port": server.port, "httpHeaders": [{"name": "User-Agent", "value": "me"}]}}
    await probe_action(probe, target(http), timeout=2)
    assert "user-agent: me\r\n" in server.requests[-1].lower()
    assert "kube-probe" not in server.requests[-1]


async def test_http_probe_failures_read_like_go(http, server):
    port = free_port()
    result = await probe_action({"httpGet": {"path": "/healthz", "port": port}}, target(http), timeout=2)
    assert result == type(result)(Outcome.FAILURE, f'Get "http://127.0.0.1:{port}/healthz": dial tcp '
                                                   f'127.0.0.1:{port}: connect: connection refused')
    began = time.monotonic()
    result = await probe_action({"httpGet": {"path": "/slow", "port": server.port}}, target(http), timeout=1)
    assert time.monotonic() - began < 3
    assert result.outcome is Outcome.FAILURE
    assert result.output == (f'Get "http://127.0.0.1:{server.port}/slow": context deadline exceeded '
                             "(Client.Timeout exceeded while awaiting headers)")
    result = await probe_action({"httpGet": {"path": "/loop", "port": server.port}}, target(http), timeout=5)
    assert result.outcome is Outcome.FAILURE and result.output.endswith(": stopped after 10 redirects")
    with pytest.raises(HandlerError, match='strconv.Atoi: parsing "web": invalid syntax'):
        await probe_action({"httpGet": {"path": "/", "port": "web"}}, target(http), timeout=1)


async def test_https_probe_does_not_verify_the_certificate(http, tmp_path):
    srv = await TinyHTTP().start(self_signed(tmp_path))
    try:
        probe = {"httpGet": {"path": "/ok", "port": srv.port, "scheme": "HTTPS"}}
        assert (await probe_action(probe, target(http), timeout=2)).outcome is Outcome.SUCCESS
        probe = {"httpGet": {"path": "/fail", "port": srv.port, "scheme": "HTTPS", "host": "127.0.0.1"}}
        assert (await probe_action(probe, target(http), timeout=2)).output == "HTTP probe failed with statuscode: 500"
    finally:
        await srv.close()


async def test_tcp_probe(http, server):
    assert (await probe_action({"tcpSocket": {"port": server.port}}, target(http), timeout=1)).outcome \
        is Outcome.SUCCESS
    port = free_port()
    result = await probe_action({"tcpSocket": {"port": port, "host": "127.0.0.1"}}, target(http), timeout=1)
    assert (result.outcome, result.output) == (Outcome.FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_grpc_probes_and_runtimes_without_exec_error_out(http):
    with pytest.raises(HandlerError, match="gRPC probes are not supported"):
        await probe_action({"grpc": {"port": 9090}}, target(http), timeout=1)
    with pytest.raises(HandlerError, match="the hollow runtime cannot run commands in containers"):
        await probe_action({"exec": {"command": ["true"]}}, target(http), timeout=1)


@pytest.fixture
async def process_container(tmp_path):
    """A real container (a sleeping shell) under the process runtime; killed afterwards."""
    runtime = ProcessRuntime(tmp_path / "root")
    spec = ContainerSpec(pod_uid="u-1", pod_namespace="ns", pod_name="web", name="c", image="busybox",
                         command=("sh", "-c", "sleep 1000"))
    state = await runtime.start(spec)
    yield runtime, state
    await runtime.stop(state.id, 0)
    await runtime.close()


def live_pids_running(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                    found.append(int(entry))
            except OSError:
                pass
    return found


async def test_exec_probe_in_a_real_container(http, process_container, tmp_path, eventually):
    runtime, state = process_container
    t = target(http, runtime=runtime, cid=str(state.id))
    ok = await probe_action({"exec": {"command": ["sh", "-c", "test -d /proc"]}}, t, timeout=5)
    assert ok.outcome is Outcome.SUCCESS
    failed = await probe_action({"exec": {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}}, t, timeout=5)
    assert failed.outcome is Outcome.FAILURE
    assert sorted(failed.output.split()) == ["err", "out"]
    marker = f"{tmp_path.name}-slow"
    began = time.monotonic()
    slow = await probe_action({"exec": {"command": ["sh", "-c", f"sleep 30 # {marker}"]}}, t, timeout=1)
    assert 0.9 < time.monotonic() - began < 5
    assert (slow.outcome, slow.output) == (Outcome.FAILURE, f'command "sh -c sleep 30 # {marker}" timed out')
    # The command that ran out of time was ended.
    await eventually(lambda: not live_pids_running(marker), what="the timed-out command to be gone")


async def test_hooks_succeed_and_fail_with_upstream_messages(http, server, process_container, tmp_path):
    runtime, state = process_container
    t = target(http, runtime=runtime, cid=str(state.id))
    marker = tmp_path / "hooked"
    await hook_action({"exec": {"command": ["sh", "-c", f"echo hi > {marker}"]}}, t, clock=RealClock(), pod=POD)
    assert marker.read_text() == "hi\n"
    with pytest.raises(HandlerError) as failed:
        await hook_action({"exec": {"command": ["sh", "-c", "echo nope; exit 2"]}}, t, clock=RealClock(), pod=POD)
    assert str(failed.value) == ('Exec lifecycle hook ([sh -c echo nope; exit 2]) for Container "c" in Pod '
                                 '"web_ns(u-1)" failed - error: command \'sh -c echo nope; exit 2\' exited with 2: '
                                 'nope\n, message: "nope\\n"')
    # An HTTP hook fails only when nothing answers; a 500 is an answer.
    await hook_action({"httpGet": {"path": "/fail", "port": server.port}}, t, clock=RealClock(), pod=POD)
    assert server.requests[-1].lower().count("user-agent: kube-lifecycle/1.32") == 1
    port = free_port()
    with pytest.raises(HandlerError) as refused:
        await hook_action({"httpGet": {"path": "/stop", "port": port}}, t, clock=RealClock(), pod=POD)
    assert str(refused.value) == (f'HTTP lifecycle hook (/stop) for Container "c" in Pod "web_ns(u-1)" failed - '
                                  f'error: Get "http://127.0.0.1:{port}/stop": dial tcp 127.0.0.1:{port}: connect: '
                                  "connection refused")
    began = time.monotonic()
    await hook_action({"sleep": {"seconds": 1}}, t, clock=RealClock(), pod=POD)
    assert time.monotonic() - began >= 1
