"""The controller framework: `Reconciler`, `Request`, `Result`, and the `Controller` that drives one.

controller-runtime's shape, small:

- A `Request` names an object (namespace and name) and nothing else; the
  reconciler reads the world from informer caches, never from the event
  that woke it, so many events for one object collapse into one reconcile
  of its newest state.
- A `Controller` owns a rate-limited `WorkQueue` of requests and runs
  `workers` tasks over it. The queue guarantees one request is never
  reconciled by two workers at once.
- Informer changes are mapped to requests: `for_(informer)` queues the
  object itself, `owns(informer, kind)` queues the controller owner named
  by an object's `ownerReferences` (old and new owner on an update, as
  controller-runtime's `EnqueueRequestForOwner`), and `watches(informer,
  mapper)` takes any mapping. Mappers run inside informer handlers: they
  must be quick and synchronous.
- After a reconcile: an exception (logged) or `Result(requeue=True)`
  requeues with the per-key exponential backoff and the overall token
  bucket; `Result(requeue_after=s)` requeues after `s` seconds and resets
  the backoff; success resets the backoff.

A controller only runs its workers; the `Manager` starts the shared
informers, waits for their caches and runs controllers under leader
election.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from timoner.api.errors import APIError
from timoner.client import (
    Client,
    Clock,
    Informer,
    RateLimiter,
    Resource,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)

__all__ = ["Change", "Controller", "Mapper", "Reconciler", "Request", "Result", "SharedInformers", "controller_ref"]

log = logging.getLogger("timoner.controllers")

Obj = dict[str, Any]

RESULTS = ("success", "error", "requeue", "requeue_after")  # the outcomes a Controller counts


@dataclass(frozen=True, slots=True, order=True)
class Request:
    """Which object to reconcile: its namespace ("" for cluster-scoped kinds) and name."""

    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Obj) -> Request:
        meta = obj.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta["name"])

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """What to do with a request after a successful reconcile: nothing, requeue with backoff, or requeue later."""

    requeue: bool = False
    requeue_after: float = 0.0


class Reconciler(Protocol):
    """Drives one object toward its spec; reads come from caches, writes go to the API server."""

    async def reconcile(self, request: Request) -> Result: ...


@dataclass(frozen=True, slots=True)
class Change:
    """An informer event: `type` is `add`, `update` or `delete`; `old` is set on updates only."""

    type: str
    obj: Obj
    old: Obj | None = None


Mapper = Callable[[Change], Iterable[Request]]


def controller_ref(obj: Obj) -> Obj | None:
    """The ownerReference with `controller: true`, or None (upstream's metav1.GetControllerOf)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


class SharedInformers:
    """One informer per resource, shared by every controller that asks for it (client-go's informer factory)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[Resource, Informer] = {}

    def get(self, resource: Resource) -> Informer:
        informer = self._informers.get(resource)
        if informer is None:
            informer = self._informers[resource] = Informer(self.client, resource)
        return informer

    def __iter__(self):
        return iter(list(self._informers.values()))


class Controller:
    """Runs `workers` reconcile loops of `reconciler` over a work queue fed by informer changes."""

    def __init__(self, name: str, reconciler: Reconciler, *, workers: int = 1,
                 rate_limiter: RateLimiter[Request] | None = None, clock: Clock | None = None) -> None:
        self.name = name
        self.reconciler = reconciler
        self.workers = workers
        self.queue: WorkQueue[Request] = WorkQueue(
            rate_limiter=rate_limiter or default_controller_rate_limiter(clock=clock), clock=clock)
        self.informers: list[Informer] = []
        self.reconciles = 0  # completed reconciles, for tests and metrics
        # Completed reconciles by outcome, controller-runtime's `result` label of
        # controller_runtime_reconcile_total: success, error, requeue, requeue_after.
        self.outcomes: dict[str, int] = dict.fromkeys(RESULTS, 0)

    # -- what feeds the queue -------------------------------------------------------------

    def watches(self, informer: Informer, mapper: Mapper) -> Controller:
        """Queue the requests `mapper` returns for every change `informer` sees."""
        self.informers.append(informer)

        def handle(change: Change) -> None:
            for request in mapper(change):
                self.queue.add(request)

        informer.add_handler(lambda obj: handle(Change("add", obj)),
                             lambda old, new: handle(Change("update", new, old)),
                             lambda obj: handle(Change("delete", obj)))
        return self

    def for_(self, informer: Informer) -> Controller:
        """Reconcile every object of the primary kind that changes."""
        return self.watches(informer, lambda change: (Request.of(change.obj),))

    def owns(self, informer: Informer, owner_kind: str, owner_group: str = "") -> Controller:
        """Reconcile the controller owner (of kind `owner_kind` in `owner_group`) of objects that change."""

        def owners(change: Change) -> Iterable[Request]:
            seen = []
            for obj in (change.old, change.obj):
                ref = controller_ref(obj) if obj is not None else None
                if ref is None or ref.get("kind") != owner_kind:
                    continue
                group = str(ref.get("apiVersion", "")).rpartition("/")[0]
                if group != owner_group:
                    continue
                request = Request((obj.get("metadata") or {}).get("namespace") or "", ref["name"])
                if request not in seen:
                    seen.append(request)
            return seen

        return self.watches(informer, owners)

    def enqueue(self, request: Request, *, after: float = 0.0) -> None:
        """Queue `request` now or after `after` seconds (for handlers that need a delay)."""
        if after > 0:
            self.queue.add_after(request, after)
        else:
            self.queue.add(request)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the workers until cancelled; the informers must be running and synced already."""
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _worker(self) -> None:
        while True:
            try:
                request = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process(request)
            finally:
                self.queue.done(request)

    async def process(self, request: Request) -> None:
        """Reconcile one request and requeue it as its outcome says."""
        try:
            result = await self.reconciler.reconcile(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # API errors are routine (a stale cache, a refusal): a line, not a traceback.
            if isinstance(exc, APIError):
                level = logging.INFO if exc.code in (404, 409) else logging.WARNING
                log.log(level, "%s: reconciling %s: %s; retrying", self.name, request, exc)
            else:
                log.warning("%s: reconciling %s failed; retrying", self.name, request, exc_info=True)
            self.queue.add_rate_limited(request)
            self.outcomes["error"] += 1
            return
        finally:
            self.reconciles += 1
        if result.requeue_after > 0:
            self.queue.forget(request)
            self.queue.add_after(request, result.requeue_after)
            self.outcomes["requeue_after"] += 1
        elif result.requeue:
            self.queue.add_rate_limited(request)
            self.outcomes["requeue"] += 1
        else:
            self.queue.forget(request)
            self.outcomes["success"] += 1
