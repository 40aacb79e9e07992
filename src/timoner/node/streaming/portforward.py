"""port-forward over SPDY (``portforward.k8s.io``).

For every local connection kubectl opens two streams: ``streamtype: error``
then ``streamtype: data``, both carrying ``port`` and ``requestid``. The
kubelet pairs them by request id and copies bytes between the data stream and
the pod's port; anything written to the error stream is shown by kubectl as
an error for that connection. ``serve_port_forward`` does the pairing and
hands each complete pair to a handler, one task per pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from timoner.node.streaming.spdy import SpdySession, SpdyStream

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"

PortForwardHandler = Callable[[int, SpdyStream, SpdyStream], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamPair:
    request_id: str
    port: int
    data: SpdyStream
    error: SpdyStream


class _Pairing:
    """Matches data and error streams by request id (either may arrive first)."""

    def __init__(self) -> None:
        self._half: dict[str, SpdyStream] = {}

    def add(self, stream: SpdyStream) -> StreamPair | None:
        kind, rid, port = stream.header("streamtype"), stream.header("requestid"), stream.header("port")
        if kind not in ("data", "error") or rid is None or port is None or not port.isdigit():
            raise ValueError(f"bad port-forward stream headers: {dict(stream.headers)}")
        other = self._half.pop(rid, None)
        if other is None:
            self._half[rid] = stream
            return None
        if other.header("streamtype") == kind:
            raise ValueError(f"two {kind} streams for request {rid}")
        data, error = (stream, other) if kind == "data" else (other, stream)
        return StreamPair(request_id=rid, port=int(port), data=data, error=error)


async def serve_port_forward(session: SpdySession, handle: PortForwardHandler) -> None:
    """Pair streams from ``session`` until it ends, running ``handle(port, data, error)`` per pair."""
    pairing = _Pairing()
    tasks: set[asyncio.Task[None]] = set()
    try:
        while (stream := await session.accept()) is not None:
            try:
                pair = pairing.add(stream)
            except ValueError as exc:
                log.info("port-forward: %s", exc)
                await stream.reset()
                continue
            if pair is not None:
                task = asyncio.create_task(_run(handle, pair))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(handle: PortForwardHandler, pair: StreamPair) -> None:
    try:
        await handle(pair.port, pair.data, pair.error)
    except Exception as exc:  # one bad connection must not end the session
        log.warning("port-forward to port %d failed: %s", pair.port, exc)
        try:
            await pair.error.write(f"error forwarding port {pair.port}: {exc}".encode(), fin=True)
        except Exception:  # noqa: BLE001 - the stream may already be reset
            pass
