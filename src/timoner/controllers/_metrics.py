"""`/metrics` of the controller manager: controller-runtime's reconcile counters in Prometheus's text format.

`timoner controllers --metrics-port N` (0, the default, serves nothing)
answers `GET /metrics` on plain HTTP at 127.0.0.1:N with, per controller
(label `controller`, the controller's name, e.g. `replicaset-controller`):

- `controller_runtime_reconcile_total{controller,result}`: completed
  reconciles by outcome (`success`, `error`, `requeue`, `requeue_after`),
  as controller-runtime counts them;
- `controller_runtime_reconcile_errors_total{controller}`: reconciles that
  raised;
- `workqueue_depth{name}`: requests waiting in the controller's queue now.

The text is written by hand (exposition format 0.0.4): three counters do
not warrant a client library. The counters belong to one `Manager`: a
manager that loses the leader Lease is replaced by a fresh one whose
counters start from zero, as a restarted kube-controller-manager's do.
Unlike kube-controller-manager's secure port, there is no TLS and no
authentication, so it listens on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from ._framework import RESULTS, Controller

__all__ = ["MetricsServer", "render"]

log = logging.getLogger("timoner.controllers.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(controllers: Iterable[Controller]) -> bytes:
    """The metrics of `controllers` in Prometheus's text exposition format."""
    controllers = list(controllers)
    lines = ["# HELP controller_runtime_reconcile_total Total number of reconciliations per controller",
             "# TYPE controller_runtime_reconcile_total counter"]
    for c in controllers:
        for result in RESULTS:
            lines.append(f'controller_runtime_reconcile_total{{controller="{_label(c.name)}",result="{result}"}} '
                         f"{c.outcomes[result]}")
    lines += ["# HELP controller_runtime_reconcile_errors_total Total number of reconciliation errors per controller",
              "# TYPE controller_runtime_reconcile_errors_total counter"]
    for c in controllers:
        lines.append(f'controller_runtime_reconcile_errors_total{{controller="{_label(c.name)}"}} {c.outcomes["error"]}')
    lines += ["# HELP workqueue_depth Current depth of workqueue", "# TYPE workqueue_depth gauge"]
    for c in controllers:
        lines.append(f'workqueue_depth{{name="{_label(c.name)}"}} {len(c.queue)}')
    return ("\n".join(lines) + "\n").encode()


class MetricsServer:
    """A tiny HTTP/1.1 server for `GET /metrics` over whatever controllers `source` returns at the time."""

    def __init__(self, source: Callable[[], Iterable[Controller]], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics at http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b"\r\n", 1)[0].split()
            method, path = (parts[0], parts[1].split(b"?", 1)[0]) if len(parts) >= 2 else (b"", b"")
            if method not in (b"GET", b"HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"only GET\n", "text/plain"
            elif path != b"/metrics":
                status, body, ctype = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status, body, ctype = "200 OK", render(self.source()), CONTENT_TYPE
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
