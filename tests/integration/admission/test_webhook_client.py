"""The webhook client against a keep-alive HTTP/1.1 TLS server: connections reused, stale ones replaced."""

from __future__ import annotations

import asyncio
import base64
import ssl
import tempfile
from pathlib import Path

import orjson
import pytest
from webhook_server import make_certs

from timoner.apiserver.admission._webhook_client import CallError, Target, WebhookClient


class KeepAliveServer:
    """Answers every POST with an allowing AdmissionReview over HTTP/1.1 keep-alive; counts connections."""

    def __init__(self) -> None:
        ca, cert, key = make_certs(("localhost",), "127.0.0.1")
        self.ca_bundle = base64.b64encode(ca).decode()
        self._dir = tempfile.TemporaryDirectory()
        Path(self._dir.name, "c.pem").write_bytes(cert)
        Path(self._dir.name, "k.pem").write_bytes(key)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(Path(self._dir.name, "c.pem"), Path(self._dir.name, "k.pem"))
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                review = orjson.loads(await reader.readexactly(length))
                body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                     "response": {"uid": review["request"]["uid"], "allowed": True}})
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mutate?timeout=5s"

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


def review(uid: str) -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": uid}}


async def test_connections_are_reused_and_stale_ones_replaced():
    server = KeepAliveServer()
    url = await server.start()
    client = WebhookClient()
    target = Target(url, url)
    try:
        for i in range(20):
            answer = await client.call(target, review(f"u{i}"), ca_bundle=server.ca_bundle, timeout=5)
            assert answer == {"uid": f"u{i}", "allowed": True}
        assert server.connections == 1, "one keep-alive connection serves sequential calls"
        answers = await asyncio.gather(*(client.call(target, review(f"p{i}"), ca_bundle=server.ca_bundle,
                                                     timeout=5) for i in range(8)))
        assert [a["uid"] for a in answers] == [f"p{i}" for i in range(8)]
        assert server.connections == 8, "concurrent calls open connections up to their number, then reuse"
        server.drop_connections()  # the webhook server closes every idle connection
        await asyncio.sleep(0.1)
        answer = await client.call(target, review("after"), ca_bundle=server.ca_bundle, timeout=5)
        assert answer["uid"] == "after"
        assert server.connections == 9
    finally:
        await client.close()
        server.server.close()


async def test_an_untrusted_certificate_and_a_refused_connection_are_call_errors():
    server = KeepAliveServer()
    url = await server.start()
    other_ca = base64.b64encode(make_certs(("localhost",), "127.0.0.1")[0]).decode()
    client = WebhookClient()
    try:
        with pytest.raises(CallError, match=r"tls: failed to verify certificate: x509"):
            await client.call(Target(url, url), review("x"), ca_bundle=other_ca, timeout=5)
        server.server.close()
        await server.server.wait_closed()
        with pytest.raises(CallError, match=r"connect: connection refused"):
            await client.call(Target(url, url), review("y"), ca_bundle=server.ca_bundle, timeout=5)
    finally:
        await client.close()
