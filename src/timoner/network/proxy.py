"""The service proxy: keeps a node's data plane in step with the Services and EndpointSlices.

`ServiceProxy.run()` is kube-proxy's sync loop in small:

1. Informers on Services and discovery.k8s.io/v1 EndpointSlices (all
   namespaces; objects labelled for another proxy, or headless, are left
   out as kube-proxy leaves them out) wake the loop on any change.
2. Changes are gathered for `debounce` seconds (so a rollout touching many
   slices costs one sync), then `build_routes` computes the table, and the
   data plane applies it only when it differs from the last one applied.
3. A failed apply is retried, with the then current table, after a delay
   that doubles while applies keep failing (up to `max_backoff`).
4. Cancelled, it removes what its data plane made (`cleanup`), unless
   `cleanup_on_exit` is off: a node agent that restarts leaves its rules in
   place meanwhile, as kube-proxy does.

`ready` is set after the first successful apply; `syncs`, `unchanged`,
`sync_errors` and `last_sync_duration` count what it did, for tests and
metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from timoner.client import Client, Informer, resource_for

from .routes import PROXY_LABEL_SELECTOR, SERVICE_NAME_LABEL, RouteTable, build_routes

__all__ = ["DataPlane", "ServiceProxy"]

log = logging.getLogger("timoner.network.proxy")

SERVICES = resource_for("v1", "Service")
ENDPOINT_SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")


class DataPlane(Protocol):
    """What makes a route table true on a node (`NftablesDataPlane`, `UserspaceDataPlane`)."""

    async def apply(self, table: RouteTable) -> None: ...

    async def cleanup(self) -> None: ...


class ServiceProxy:
    """Runs until cancelled; see the module docstring."""

    def __init__(self, client: Client, *, node_name: str, node_ips: Iterable[str], dataplane: DataPlane,
                 debounce: float = 0.05, max_backoff: float = 10.0, cleanup_on_exit: bool = True) -> None:
        self.client = client
        self.cleanup_on_exit = cleanup_on_exit
        self.node_name = node_name
        self.node_ips = tuple(node_ips)
        self.dataplane = dataplane
        self.debounce = debounce
        self.max_backoff = max_backoff
        self.ready = asyncio.Event()
        self.table: RouteTable | None = None  # the last table applied
        self.syncs = 0  # tables applied
        self.unchanged = 0  # recomputations that found the applied table still right
        self.sync_errors = 0
        self.last_sync_duration = 0.0  # seconds, computing and applying
        self._changed = asyncio.Event()
        self._services: Informer | None = None
        self._slices: Informer | None = None

    async def run(self) -> None:
        self._services = Informer(self.client, SERVICES, label_selector=PROXY_LABEL_SELECTOR)
        self._slices = Informer(self.client, ENDPOINT_SLICES,
                                label_selector=f"{SERVICE_NAME_LABEL},{PROXY_LABEL_SELECTOR}")
        for informer in (self._services, self._slices):
            informer.add_handler(on_add=self._wake, on_update=self._wake_update, on_delete=self._wake)
        tasks = [asyncio.create_task(i.run(), name=f"proxy-{i.resource.plural}")
                 for i in (self._services, self._slices)]
        try:
            await self._services.has_synced.wait()
            await self._slices.has_synced.wait()
            await self._loop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.cleanup_on_exit:
                try:
                    await self.dataplane.cleanup()
                except Exception:
                    log.exception("service proxy: cleaning up the data plane failed")

    def _wake(self, _obj=None) -> None:
        self._changed.set()

    def _wake_update(self, _old, _new) -> None:
        self._changed.set()

    async def _loop(self) -> None:
        failures = 0
        self._changed.set()
        while True:
            await self._changed.wait()
            await asyncio.sleep(self.debounce)
            self._changed.clear()
            try:
                await self._sync()
            except Exception as exc:
                failures += 1
                self.sync_errors += 1
                delay = min(self.max_backoff, 0.1 * 2 ** (failures - 1))
                log.warning("service proxy: sync failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                self._changed.set()
                continue
            failures = 0

    async def _sync(self) -> None:
        assert self._services is not None and self._slices is not None
        started = time.monotonic()
        table = build_routes(self._services.lister.list(), self._slices.lister.list(),
                             node_name=self.node_name, node_ips=self.node_ips)
        if table == self.table:
            self.unchanged += 1
            return
        await self.dataplane.apply(table)
        self.table = table
        self.syncs += 1
        self.last_sync_duration = time.monotonic() - started
        self.ready.set()
        log.debug("service proxy: applied %d service ports in %.3fs", len(table), self.last_sync_duration)
