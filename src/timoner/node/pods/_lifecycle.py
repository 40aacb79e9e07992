"""`ContainerLifecycle`: what a pod worker does to its running containers besides starting and stopping them.

It starts a `ContainerProber` per container run, runs `postStart` and
`preStop` hooks with the kubelet's timing and events, and records the
pod's events as the kubelet does (source `kubelet` on this node, the
container's `fieldPath`). It holds what those need: the runtime, the pod
IP, the clock, an `EventRecorder`, and an HTTP client made on first use
(`aclose` it when the worker ends).

- `post_start` runs the hook until it returns, and gives up (as if it had
  succeeded) when the pod starts being deleted, whose stop then ends the
  container; it returns the failure message. The caller kills the
  container.
- `pre_stop` runs the hook for at most the grace period; a failure is a
  Warning `FailedPreStopHook` event, never a reason not to stop. As
  upstream, neither hook's message goes into its event, so that secrets
  in commands do not leak into the API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from timoner.client import Client, Clock, EventRecorder

from ..runtime import ContainerState, Runtime
from ._handlers import HandlerError, ProbeResult, Target, hook_action, new_http_client, probe_action
from ._probes import PROBE_FIELDS, ContainerProber

__all__ = ["ContainerLifecycle"]

log = logging.getLogger("timoner.node.pods")

Obj = dict[str, Any]


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` if it still runs and wait until it has ended, without raising its outcome."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})


class ContainerLifecycle:
    """Probes, hooks and events for one pod's containers; see the module docstring. `pod()` is the latest pod."""

    def __init__(self, client: Client, runtime: Runtime, *, pod: Callable[[], Obj], pod_ip: Callable[[], str],
                 clock: Clock) -> None:
        self.runtime = runtime
        self._pod = pod
        self._pod_ip = pod_ip
        self._clock = clock
        node = (pod().get("spec") or {}).get("nodeName") or ""
        self._events = EventRecorder(client, component="kubelet", host=node)
        self._http: httpx.AsyncClient | None = None

    @property
    def _name(self) -> str:
        meta = self._pod().get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def target(self, container: Obj, state: ContainerState) -> Target:
        if self._http is None:
            self._http = new_http_client()
        return Target(self.runtime, state.id, container, self._pod_ip(), self._http)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def event(self, container: str, event_type: str, reason: str, message: str) -> None:
        """Record an event about one container of the pod (`spec.containers{name}` or `initContainers`)."""
        pod = self._pod()
        inits = {c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or ()}
        field_path = f"spec.{'initContainers' if container in inits else 'containers'}{{{container}}}"
        await self._events.event(pod, event_type, reason, message, field_path=field_path, kind="Pod",
                                 api_version="v1")

    async def pod_event(self, event_type: str, reason: str, message: str) -> None:
        """Record an event about the pod itself (no container's `fieldPath`), e.g. FailedCreatePodSandBox."""
        await self._events.event(self._pod(), event_type, reason, message, kind="Pod", api_version="v1")

    def prober(self, container: Obj, state: ContainerState, *, on_change: Callable[[], None]) -> ContainerProber | None:
        """A started prober for this run of `container`, or None when it has no probes."""
        if not any(container.get(key) for key in PROBE_FIELDS.values()):
            return None
        target = self.target(container, state)

        async def run(probe: Obj, timeout: float) -> ProbeResult:
            return await probe_action(probe, target, timeout=timeout)

        async def record(event_type: str, reason: str, message: str) -> None:
            await self.event(container["name"], event_type, reason, message)

        # Initial delays count from the container's start, which may be long ago for an adopted one.
        running_for = max(0.0, time.time() - state.started_at) if state.started_at is not None else 0.0
        prober = ContainerProber(container, run_id=str(state.id), running_for=running_for, clock=self._clock,
                                 run=run, record=record, on_change=on_change)
        prober.start()
        return prober

    async def post_start(self, container: Obj, state: ContainerState, hook: Obj, *,
                         deleting: asyncio.Event) -> str | None:
        """Run `postStart`; its failure message, or None (success, or the pod began deleting)."""
        run = asyncio.ensure_future(hook_action(hook, self.target(container, state), clock=self._clock,
                                                pod=self._pod()))
        deleted = asyncio.ensure_future(deleting.wait())
        try:
            await asyncio.wait({run, deleted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deleted.cancel()
            await _cancel(run)
        if run.cancelled() or (error := run.exception()) is None:
            return None
        log.info("pod %s: postStart hook of %s failed: %s", self._name, container["name"], error)
        if not isinstance(error, HandlerError):
            log.error("pod %s: postStart hook of %s crashed", self._name, container["name"], exc_info=error)
        await self.event(container["name"], "Warning", "FailedPostStartHook", "PostStartHook failed")
        return str(error)

    async def pre_stop(self, container: Obj, state: ContainerState, hook: Obj, grace: float) -> None:
        """Run `preStop` for at most `grace` seconds."""
        run = asyncio.ensure_future(hook_action(hook, self.target(container, state), clock=self._clock,
                                                pod=self._pod()))
        timer = asyncio.ensure_future(self._clock.sleep(grace))
        try:
            await asyncio.wait({run, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not run.done():
                log.info("pod %s: preStop hook of %s not completed in the grace period", self._name,
                         container["name"])
            await _cancel(run)
        if not run.cancelled() and (error := run.exception()) is not None:
            log.info("pod %s: preStop hook of %s failed: %s", self._name, container["name"], error)
            await self.event(container["name"], "Warning", "FailedPreStopHook", "PreStopHook failed")
