"""The node agent's HTTPS server: what the API server relays `kubectl logs` and `kubectl exec` to.

It answers on the kubelet's paths:

    GET /containerLogs/<ns>/<pod>/<container>?follow&tailLines&sinceSeconds&timestamps
    GET|POST /exec/<ns>/<pod>/<container>?command=...&stdin&stdout&stderr&tty   (SPDY/3.1 upgrade)

A request names a pod and a container; the container's runtime id comes from
the pod's own status (`containerStatuses[].containerID`, written by the pod
worker), read from the agent's pod lister. Exec speaks SPDY/3.1 with
`v4.channel.k8s.io` (`node.streaming`); a WebSocket upgrade is refused with
400, which makes kubectl fall back to SPDY. Port-forward, attach and
WebSocket streaming come with the pod network.

The server uses a self-signed certificate kept in the agent's root dir; the
API server does not verify it yet (as kube-apiserver without
`--kubelet-certificate-authority`), and the agent does not yet authenticate
the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .runtime import ContainerID, ExecRuntime, LogsRuntime, Runtime
from .streaming.remotecommand import ExecOptions, collect_streams, error_status, exit_status, finish
from .streaming.spdy import SpdySession
from .streaming.transport import StreamTransport

__all__ = ["NodeServer"]

log = logging.getLogger("timoner.node.server")

PodLookup = Callable[[str, str], dict | None]


def _truthy(params: dict[str, list[str]], name: str, default: bool = False) -> bool:
    values = params.get(name)
    if not values:
        return default
    return values[0].lower() in ("1", "true", "")


def serving_context(directory: Path, host: str) -> ssl.SSLContext:
    """A TLS context with the node's self-signed certificate, made once and kept in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "node.crt", directory / "node.key"
    if not cert.exists() or not key.exists():
        private = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"timoner-node@{host}")])
        now = dt.datetime.now(dt.UTC)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(private.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(minutes=5))
                       .not_valid_after(now + dt.timedelta(days=3650))
                       .sign(private, hashes.SHA256()))
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        key.chmod(0o600)
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context


class NodeServer:
    """Serves container logs and exec for the pods on this node; see the module docstring."""

    def __init__(self, runtime: Runtime, lookup: PodLookup, *, host: str, port: int, cert_dir: Path) -> None:
        self.runtime = runtime
        self.lookup = lookup
        self.host = host
        self.port = port
        self.cert_dir = cert_dir
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (the one asked for, or the one the OS picked for 0)."""
        context = await asyncio.to_thread(serving_context, self.cert_dir, self.host)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    # -- requests --------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for key, value in (ln.split(":", 1) for ln in lines[1:] if ":" in ln):
                # Repeated headers (kubectl sends one X-Stream-Protocol-Version per protocol) are joined.
                key, value = key.strip().lower(), value.strip()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            path, _, query = target.partition("?")
            params = parse_qs(query, keep_blank_values=True)
            parts = path.strip("/").split("/")
            if len(parts) == 4 and parts[0] == "containerLogs" and method == "GET":
                await self._logs(writer, parts[1], parts[2], parts[3], params)
            elif len(parts) == 4 and parts[0] == "exec":
                await self._exec(reader, writer, parts[1], parts[2], parts[3], params, headers)
            else:
                _reply(writer, 404, f"no handler for {method} {path}")
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError):
            pass
        except Exception:
            log.exception("node server request failed")
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    def _container(self, namespace: str, name: str, container: str) -> ContainerID | str:
        """The runtime id of a pod's container, or why there is none."""
        pod = self.lookup(namespace, name)
        if pod is None:
            return f'pod "{name}" not found on this node'
        status = pod.get("status") or {}
        for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            if entry.get("name") == container and entry.get("containerID"):
                return ContainerID.parse(entry["containerID"])
        return f'container "{container}" in pod "{name}" is waiting to start'

    async def _logs(self, writer: asyncio.StreamWriter, namespace: str, name: str, container: str,
                    params: dict[str, list[str]]) -> None:
        cid = self._container(namespace, name, container)
        if isinstance(cid, str):
            _reply(writer, 400, cid)
            return
        if not isinstance(self.runtime, LogsRuntime):
            _reply(writer, 400, f"the {self.runtime.name} runtime does not keep logs")
            return
        tail = params.get("tailLines", [None])[0]
        since = params.get("sinceSeconds", [None])[0]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        async for chunk in self.runtime.logs(cid, follow=_truthy(params, "follow"),
                                             tail_lines=int(tail) if tail else None,
                                             since_seconds=float(since) if since else None,
                                             timestamps=_truthy(params, "timestamps")):
            if chunk:
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def _exec(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, namespace: str, name: str,
                    container: str, params: dict[str, list[str]], headers: dict[str, str]) -> None:
        if headers.get("upgrade", "").lower() != "spdy/3.1":
            _reply(writer, 400, "only SPDY/3.1 upgrades are served for exec")
            return
        offered = [p.strip() for p in headers.get("x-stream-protocol-version", "").split(",")]
        if "v4.channel.k8s.io" not in offered:
            _reply(writer, 400, f"no supported stream protocol in {offered}")
            return
        cid = self._container(namespace, name, container)
        if isinstance(cid, str) or not isinstance(self.runtime, ExecRuntime):
            _reply(writer, 400, cid if isinstance(cid, str) else f"the {self.runtime.name} runtime cannot exec")
            return
        options = ExecOptions(stdin=_truthy(params, "stdin"), stdout=_truthy(params, "stdout", True),
                              stderr=_truthy(params, "stderr", True), tty=_truthy(params, "tty"))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
        await writer.drain()
        session = SpdySession(StreamTransport(reader, writer))
        runner = asyncio.create_task(session.run())
        try:
            streams = await asyncio.wait_for(collect_streams(session, options), 30)
            try:
                running = await self.runtime.exec(cid, tuple(params.get("command", [])), tty=options.tty,
                                                  stdin=options.stdin)
            except Exception as exc:
                await finish(streams, error_status(str(exc)))
                return
            pump = asyncio.create_task(self._pump_stdin(streams.stdin, running)) if streams.stdin else None
            async for stream_id, data in running.output():
                target = streams.stdout if stream_id == 1 or streams.stderr is None else streams.stderr
                if target is not None:
                    await target.write(data)
            code = await running.wait()
            if pump is not None:
                pump.cancel()
            await finish(streams, exit_status(code))
        finally:
            await session.close()
            with contextlib.suppress(Exception):
                await runner

    @staticmethod
    async def _pump_stdin(stdin, running) -> None:
        while data := await stdin.read():
            await running.write_stdin(data)
        await running.close_stdin()


def _reply(writer: asyncio.StreamWriter, code: int, message: str) -> None:
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": "BadRequest" if code == 400 else "NotFound",
                       "code": code}).encode()
    writer.write(f"HTTP/1.1 {code} {'Bad Request' if code == 400 else 'Not Found'}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                 .encode() + body)
