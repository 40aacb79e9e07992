"""Proxying `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward` to the pod's node agent.

As upstream, the API server does not run containers: it finds the pod's node
(`spec.nodeName` -> the Node's InternalIP and
`status.daemonEndpoints.kubeletEndpoint.Port`) and relays the request to the
node agent's HTTPS server, on the kubelet's paths:

    /containerLogs/<ns>/<pod>/<container>    (log, streamed back)
    /exec/<ns>/<pod>/<container>             (upgrade: WebSocket or SPDY)
    /attach/<ns>/<pod>/<container>           (upgrade)
    /portForward/<ns>/<pod>                  (upgrade)

A log request's options are validated first (`PodLogOptions`: 400 when
they do not decode, 422 as upstream's `ValidatePodLogOptions`) and
re-encoded for the node as upstream's `LogLocation` does.

For upgrades the API server is a byte tunnel once the request is on its way:
the node agent answers `101 Switching Protocols` itself and speaks the
streaming protocol (SPDY/3.1 or WebSocket channels) with the client. The
query string passes through unchanged. Like kube-apiserver without
`--kubelet-certificate-authority`, the node's serving certificate is not
verified yet; for logs and upgrades alike, the API server presents its
kubelet client certificate (`certs.ClusterPKI.kubelet_client_cert`, in the
context `node_client_context` makes), which the node agent verifies against
the cluster CA.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from timoner.api import errors

__all__ = ["NodeTarget", "RelayProtocol", "STREAM_TARGET", "UPGRADE_SUBRESOURCES", "default_container",
           "locate", "node_client_context", "node_path", "tunnel", "write_error"]

log = logging.getLogger("timoner.apiserver.nodeproxy")

UPGRADE_SUBRESOURCES = ("exec", "attach", "portforward")
# The request targets whose upgrades are relayed to a node agent.
STREAM_TARGET = re.compile(rb"^/api/v1/namespaces/([^/?]+)/pods/([^/?]+)/(exec|attach|portforward)(\?.*)?$")
_NODE_PATHS = {"log": "containerLogs", "exec": "exec", "attach": "attach", "portforward": "portForward"}


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """Where one pod's node agent listens."""

    node: str
    host: str
    port: int


def default_container(pod: dict, requested: str | None, *, subresource: str) -> str:
    """The container a log/exec/attach request means: asked for, annotated as default, or the first."""
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    name = pod["metadata"]["name"]
    if requested:
        init = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
        if requested not in names and requested not in init:
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    annotated = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if annotated in names:
        return annotated
    if not names:
        raise errors.BadRequest(f"pod {name} has no containers")
    if len(names) == 1 or subresource != "log":
        return names[0]
    raise errors.BadRequest(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")


def locate(pod: dict, node: dict | None) -> NodeTarget:
    """The node agent serving `pod`; 400 before it is scheduled, 503 when the node has no agent endpoint."""
    name = pod["metadata"]["name"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.BadRequest(f"pod {name} does not have a host assigned")
    if node is None:
        raise errors.NotFound("nodes", node_name)
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("Hostname")
    if not port or not host:
        raise errors.ServiceUnavailable(f"node {node_name} has no node agent endpoint to reach pod {name}")
    return NodeTarget(node_name, host, int(port))


def node_path(subresource: str, namespace: str, pod: str, container: str | None) -> str:
    base = f"/{_NODE_PATHS[subresource]}/{namespace}/{pod}"
    return f"{base}/{container}" if container else base


def node_client_context(cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """TLS towards node agents: their (self-signed) certificates are not verified; ours is `cert`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


async def tunnel(target: NodeTarget, head: bytes, client_transport: asyncio.Transport,
                 take_buffered: Callable[[], bytes], attach_peer: Callable[[asyncio.StreamWriter], None],
                 *, context: ssl.SSLContext) -> None:
    """Relay an upgrade request to the node agent, then pipe bytes both ways until either side closes.

    `head` is the rewritten request head; bytes the client sent after it (buffered by the caller until
    the node connection exists) are forwarded first; `attach_peer` lets the caller forward later bytes.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=context), 10)
    except (OSError, TimeoutError) as exc:
        log.warning("node %s unreachable at %s:%d: %s", target.node, target.host, target.port, exc)
        write_error(client_transport, errors.ServiceUnavailable(
            f"error dialing backend: node {target.node} at {target.host}:{target.port}: {exc}"))
        return
    writer.write(head + take_buffered())
    attach_peer(writer)
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if client_transport.is_closing():
                break
            client_transport.write(data)
    except (OSError, ConnectionError):
        pass
    finally:
        writer.close()
        if not client_transport.is_closing():
            client_transport.close()


def write_error(transport: asyncio.Transport, exc: errors.APIError) -> None:
    """Answer a relayed request that failed before reaching the node, and close the connection."""
    body = orjson.dumps(exc.status())
    reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              503: "Service Unavailable"}.get(exc.code, "Error")
    transport.write(
        f"HTTP/1.1 {exc.code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode() + body)
    transport.close()



class RelayProtocol(asyncio.Protocol):
    """Takes over a client connection at its upgrade: holds what the client sends until the node
    connection exists, then forwards every byte to it."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._peer: asyncio.StreamWriter | None = None
        self._closed = False

    def data_received(self, data: bytes) -> None:
        if self._peer is not None:
            self._peer.write(data)
        else:
            self._buffer += data

    def take_buffered(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def attach(self, writer: asyncio.StreamWriter) -> None:
        self._peer = writer
        if self._closed:
            writer.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._peer is not None:
            self._peer.close()
