"""Reconcile counters by outcome, their Prometheus text, and the `/metrics` endpoint that serves them."""

from __future__ import annotations

import asyncio

from timoner.api.errors import Conflict
from timoner.controllers import Controller, Request, Result
from timoner.controllers._metrics import MetricsServer, render


class Scripted:
    """A reconciler that answers from a script: a Result, or an exception to raise."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)

    async def reconcile(self, request):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def _run(controller: Controller, times: int) -> None:
    for i in range(times):
        await controller.process(Request("ns", f"o{i}"))


async def test_outcomes_are_counted_by_result():
    controller = Controller("rs", Scripted(Result(), Conflict("replicasets", "a"), RuntimeError("boom"),
                                           Result(requeue=True), Result(requeue_after=5), Result()))
    await _run(controller, 6)
    assert controller.outcomes == {"success": 2, "error": 2, "requeue": 1, "requeue_after": 1}
    assert controller.reconciles == 6


async def test_render_is_prometheus_text_with_upstream_names():
    one = Controller("replicaset-controller", Scripted(Result(), RuntimeError("x")))
    two = Controller('odd"name', Scripted())
    await _run(one, 2)
    one.queue.add(Request("ns", "waiting"))
    text = render([one, two]).decode()
    lines = text.splitlines()
    assert 'controller_runtime_reconcile_total{controller="replicaset-controller",result="success"} 1' in lines
    assert 'controller_runtime_reconcile_total{controller="replicaset-controller",result="error"} 1' in lines
    assert 'controller_runtime_reconcile_total{controller="replicaset-controller",result="requeue"} 0' in lines
    assert 'controller_runtime_reconcile_errors_total{controller="replicaset-controller"} 1' in lines
    assert 'workqueue_depth{name="replicaset-controller"} 1' in lines
    assert 'controller_runtime_reconcile_total{controller="odd\\"name",result="success"} 0' in lines
    assert "# TYPE controller_runtime_reconcile_total counter" in lines
    assert "# TYPE workqueue_depth gauge" in lines
    assert text.endswith("\n")


async def _get(port: int, path: str, method: str = "GET") -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(), body


async def test_metrics_server_serves_the_current_counts():
    controller = Controller("replicaset-controller", Scripted(Result(), Result()))
    server = MetricsServer(lambda: [controller], port=0)
    await server.start()
    try:
        assert server.port > 0
        head, body = await _get(server.port, "/metrics")
        assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
        assert b'controller_runtime_reconcile_total{controller="replicaset-controller",result="success"} 0' in body
        await _run(controller, 2)
        _, body = await _get(server.port, "/metrics?x=1")
        assert b'controller_runtime_reconcile_total{controller="replicaset-controller",result="success"} 2' in body
        head, _ = await _get(server.port, "/other")
        assert head.startswith("HTTP/1.1 404")
        head, _ = await _get(server.port, "/metrics", method="POST")
        assert head.startswith("HTTP/1.1 405")
    finally:
        await server.stop()
    try:
        await asyncio.open_connection("127.0.0.1", server.port)
    except OSError:
        refused = True
    else:
        refused = False
    assert refused
