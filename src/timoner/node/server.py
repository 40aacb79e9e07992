"""The node agent's HTTPS server: what the API server relays `kubectl logs`, `exec`, `attach` and
`port-forward` to.

It answers on the kubelet's paths:

    GET /containerLogs/<ns>/<pod>/<container>?follow&previous&tailLines&limitBytes&sinceSeconds|sinceTime&timestamps
    GET|POST /exec/<ns>/<pod>[/<uid>]/<container>?command=...&stdin&stdout&stderr&tty     (upgrade)
    GET|POST /attach/<ns>/<pod>[/<uid>]/<container>?stdin&stdout&stderr&tty               (upgrade)
    GET|POST /portForward/<ns>/<pod>[/<uid>][?ports=...]                                  (upgrade)

A request names a pod and a container; the container's runtime id comes from
the pod's own status (`containerStatuses[].containerID`, written by the pod
worker), read from the agent's pod lister; a log request picks it as kubelet
does (`lastState.terminated` for `previous`, or for a container waiting to
restart), after validating its options as upstream (`PodLogOptions`).

Exec, attach and port-forward are upgrades, served by `_streaming`: a
WebSocket (`v5`/`v4.channel.k8s.io` for exec and attach;
`SPDY/3.1+portforward.k8s.io` or `v4.channel.k8s.io` with `?ports=` for
port-forward) or SPDY/3.1 (`v4.channel.k8s.io`, `portforward.k8s.io`).
Each needs its optional runtime protocol (`ExecRuntime`, `AttachRuntime`,
`PortForwardRuntime`); without it the answer is 400.

Authentication: given the cluster CA (`client_ca`, from the agent's
kubeconfig), the server asks every client for a certificate and verifies
it against that CA, as kubelet does with `--client-ca-file`: the TLS
handshake fails for a certificate the CA did not sign, and a request
without one is answered 401. Every verified client is allowed (the API
server authorizes every authenticated user too, until RBAC). Without a CA
the server verifies nothing and serves anyone, like kubelet with
anonymous auth and AlwaysAllow. The server's own certificate is
self-signed, kept in the agent's root dir (made on the first start by a
child process, `_selfsigned`, so `cryptography` never loads into the
agent's memory); the API server does not verify
it yet (as kube-apiserver without `--kubelet-certificate-authority`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from timoner.api import errors
from timoner.api.podlogs import pod_log_options

from . import _streaming
from .runtime import AttachRuntime, ContainerID, ExecRuntime, LogsRuntime, PortForwardRuntime, Runtime
from .streaming.remotecommand import ExecOptions, error_status

__all__ = ["NodeServer"]

log = logging.getLogger("timoner.node.server")

PodLookup = Callable[[str, str], dict | None]


def _truthy(params: dict[str, list[str]], name: str, default: bool = False) -> bool:
    values = params.get(name)
    if not values:
        return default
    return values[0].lower() in ("1", "true", "")


def serving_context(directory: Path, host: str, client_ca: bytes | None = None) -> ssl.SSLContext:
    """A TLS context with the node's self-signed certificate, made once and kept in `directory`; with
    `client_ca` (PEM), it asks for a client certificate and verifies the one it gets against that CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "node.crt", directory / "node.key"
    if not cert.exists() or not key.exists():
        # Made by a child process, so that `cryptography` never takes memory in the agent (see `_selfsigned`).
        made = subprocess.run([sys.executable, "-m", "timoner.node._selfsigned", str(directory), host],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if made.returncode != 0:
            raise RuntimeError(f"making the node server's certificate failed: {made.stderr.strip()[-2000:]}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        # Optional at the TLS level, so a client without a certificate gets a 401 it can read.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=client_ca.decode())
    return context


class NodeServer:
    """Serves logs, exec, attach and port-forward for the pods on this node; see the module docstring.

    `client_ca` (PEM) is the CA whose client certificates are let in; None lets everyone in.
    """

    def __init__(self, runtime: Runtime, lookup: PodLookup, *, host: str, port: int, cert_dir: Path,
                 client_ca: bytes | None = None) -> None:
        self.runtime = runtime
        self.lookup = lookup
        self.host = host
        self.port = port
        self.cert_dir = cert_dir
        self.client_ca = client_ca
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (the one asked for, or the one the OS picked for 0)."""
        context = await asyncio.to_thread(serving_context, self.cert_dir, self.host, self.client_ca)
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
            pairs = [(key.strip(), value.strip()) for key, value in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)]
            path, _, query = target.partition("?")
            params = parse_qs(query, keep_blank_values=True)
            parts = path.strip("/").split("/")
            if self.client_ca is not None and not writer.get_extra_info("peercert"):
                _reply(writer, 401, "Unauthorized: the node server needs a client certificate signed by the cluster CA")
                return
            upgrade = _streaming.Upgrade(reader, writer, head, pairs, _reply)
            if len(parts) == 4 and parts[0] == "containerLogs" and method == "GET":
                await self._logs(writer, parts[1], parts[2], parts[3], params)
            elif len(parts) in (4, 5) and parts[0] in ("exec", "attach"):
                uid = parts[3] if len(parts) == 5 else None
                await self._command(upgrade, parts[0], parts[1], parts[2], uid, parts[-1], params)
            elif len(parts) in (3, 4) and parts[0] == "portForward":
                await self._port_forward(upgrade, parts[1], parts[2], parts[3] if len(parts) == 4 else None, params)
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
        """Kubelet's `getContainerLogs`: options as upstream validates them, the container picked from the
        pod's status (`previous`: `lastState.terminated`), then the runtime's log as a chunked body."""
        try:
            options = pod_log_options(name, params)
        except errors.APIError as exc:
            _reply_error(writer, exc)
            return
        pod = self.lookup(namespace, name)
        if pod is None:
            _reply(writer, 404, f'pod "{name}" does not exist')
            return
        spec = pod.get("spec") or {}
        if not any(c.get("name") == container for key in ("containers", "initContainers", "ephemeralContainers")
                   for c in spec.get(key) or ()):
            _reply(writer, 404, f'container "{container}" not found in pod "{name}"')
            return
        if not isinstance(self.runtime, LogsRuntime):
            _reply(writer, 400, f"the {self.runtime.name} runtime does not keep logs")
            return
        cid = _log_container(pod, container, previous=options.previous)
        if isinstance(cid, ContainerID):
            try:
                await self.runtime.inspect(cid)
            except KeyError:
                cid = f'container "{container}" in pod "{name}" is not available: the runtime does not know {cid}'
        if isinstance(cid, str):
            _reply(writer, 400, cid)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()  # the headers go out at once, as kubelet's zero-byte write makes them
        async for chunk in self.runtime.logs(cid, follow=options.follow, tail_lines=options.tail_lines,
                                             since=options.since(time.time()), limit_bytes=options.limit_bytes,
                                             timestamps=options.timestamps):
            if chunk:
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def _command(self, up: _streaming.Upgrade, kind: str, namespace: str, name: str, uid: str | None,
                       container: str, params: dict[str, list[str]]) -> None:
        """Exec or attach: check what kubelet checks before the upgrade, then relay (`_streaming`)."""
        options = ExecOptions(stdin=_truthy(params, "stdin"), stdout=_truthy(params, "stdout", True),
                              stderr=_truthy(params, "stderr", True), tty=_truthy(params, "tty"))
        command = tuple(params.get("command", []))
        capable = isinstance(self.runtime, ExecRuntime if kind == "exec" else AttachRuntime)
        pod = self.lookup(namespace, name)
        if pod is None or (uid is not None and pod["metadata"].get("uid") != uid):
            _reply(up.writer, 404, f'pod "{name}" not found on this node')
            return
        cid = self._container(namespace, name, container)
        problem = (cid if isinstance(cid, str)
                   else f"the {self.runtime.name} runtime cannot {kind}" if not capable
                   else "you must specify at least 1 of stdin, stdout, stderr"
                   if not (options.stdin or options.stdout or options.stderr)
                   else "you must specify at least one command for the container" if kind == "exec" and not command
                   else None)
        if problem is not None:
            _reply(up.writer, 400, problem)
            return
        assert isinstance(cid, ContainerID)
        async with _streaming.command_io(up, options) as io:
            if io is None:
                return
            try:
                if kind == "exec":
                    session = await self.runtime.exec(cid, command, tty=options.tty, stdin=options.stdin)
                else:
                    session = await self.runtime.attach(cid, stdin=options.stdin)
            except Exception as exc:
                await io.finish(error_status(str(exc)))
                return
            if kind == "exec":
                await _streaming.run_exec(io, session)
            else:
                await _streaming.run_attach(io, session)

    async def _port_forward(self, up: _streaming.Upgrade, namespace: str, name: str, uid: str | None,
                            params: dict[str, list[str]]) -> None:
        pod = self.lookup(namespace, name)
        if pod is None or (uid is not None and pod["metadata"].get("uid") != uid):
            _reply(up.writer, 404, f'pod "{name}" not found on this node')
            return
        runtime = self.runtime
        if not isinstance(runtime, PortForwardRuntime):
            _reply(up.writer, 400, f"the {runtime.name} runtime cannot port-forward")
            return
        pod_uid = pod["metadata"].get("uid", "")
        await _streaming.port_forward(up, lambda port: runtime.connect(pod_uid, port), params.get("ports", []))


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}


def _reply(writer: asyncio.StreamWriter, code: int, message: str) -> None:
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": _REASONS.get(code, "InternalError"),
                       "code": code}).encode()
    writer.write(f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                 .encode() + body)


def _reply_error(writer: asyncio.StreamWriter, exc: errors.APIError) -> None:
    body = json.dumps(exc.status()).encode()
    writer.write(f"HTTP/1.1 {exc.code} {HTTPStatus(exc.code).phrase}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


def _log_container(pod: dict, container: str, *, previous: bool) -> ContainerID | str:
    """Whose log a request means, or why there is none: kubelet's `validateContainerLogStatus`."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    entry = next((e for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
                  for e in status.get(key) or () if e.get("name") == container), None)
    if entry is None:
        return f'container "{container}" in pod "{name}" is not available'
    state = entry.get("state") or {}
    last = (entry.get("lastState") or {}).get("terminated")
    running, terminated, waiting = state.get("running"), state.get("terminated"), state.get("waiting")
    if previous:
        if not last or not last.get("containerID"):
            return f'previous terminated container "{container}" in pod "{name}" not found'
        ident = last["containerID"]
    elif running is not None:
        ident = entry.get("containerID") or ""
    elif terminated is not None:
        # When the next run did not start, the terminated state may carry no id: the last run's log it is.
        ident = terminated.get("containerID") or (last or {}).get("containerID") or ""
        if not ident:
            return f'container "{container}" in pod "{name}" is terminated'
    elif last is not None:
        ident = last.get("containerID") or ""
        if not ident:
            return f'container "{container}" in pod "{name}" is terminated'
    elif waiting is not None:
        reason = waiting.get("reason", "")
        detail = {"ErrImagePull": "image can't be pulled",
                  "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        return f'container "{container}" in pod "{name}" is waiting to start: {detail}'
    else:
        return f'container "{container}" in pod "{name}" is waiting to start - no logs yet'
    try:
        return ContainerID.parse(ident)
    except ValueError:
        return f'container "{container}" in pod "{name}" is not available: bad container id {ident!r}'
