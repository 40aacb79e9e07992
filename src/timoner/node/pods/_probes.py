"""`ContainerProber`: the startup, liveness and readiness probes of one container run, as the kubelet's probe workers.

The pod worker makes one when a container is running (after its
`postStart` hook returned) and stops it when that run ends. There is a
task per probe the container has. Each waits `initialDelaySeconds` from
the container's start, then tries its probe every `periodSeconds` (a try
gets `timeoutSeconds`), and counts consecutive results as upstream's
`worker.doProbe` does:

- startup: until it succeeds, liveness and readiness do not run and the
  container is not `started`; it is not tried again once it succeeded.
- liveness: healthy until `failureThreshold` failures in a row.
- readiness: not ready until `successThreshold` successes in a row; ready
  until `failureThreshold` failures in a row; tried for the container's
  whole life.
- A startup or liveness probe that fails `failureThreshold` times in a
  row sets `failed` ("startup" or "liveness") and stops (upstream's
  `onHold`): the pod worker kills the container, which restarts per the
  pod's `restartPolicy` as a new run with a new prober.

Each failed try records a Warning `Unhealthy` event (`Liveness probe
failed: <output>`); a try that could not run records `Liveness probe
errored and resulted in unknown state: ...` and is otherwise thrown away,
as upstream; a redirect to
another host records `ProbeWarning` and counts as a success. The prober
only decides: `on_change` tells the pod worker to look (kill, write status).
Time comes from a `Clock`, so tests can drive it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from timoner.client import Clock

from ._handlers import HandlerError, Outcome, ProbeResult

__all__ = ["PROBE_FIELDS", "ContainerProber", "ProbeSettings"]

log = logging.getLogger("timoner.node.pods")

PROBE_FIELDS = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
_TITLES = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}

RunProbe = Callable[[Mapping[str, Any], float], Awaitable[ProbeResult]]  # (probe, timeout seconds)
RecordEvent = Callable[[str, str, str], Awaitable[None]]  # (type, reason, message)


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """A probe's timings and thresholds, with upstream's defaults for what the spec leaves out."""

    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, probe: Mapping[str, Any]) -> ProbeSettings:
        return cls(initial_delay=float(probe.get("initialDelaySeconds") or 0),
                   period=float(probe.get("periodSeconds") or 10),
                   timeout=float(probe.get("timeoutSeconds") or 1),
                   success_threshold=int(probe.get("successThreshold") or 1),
                   failure_threshold=int(probe.get("failureThreshold") or 3))


class ContainerProber:
    """The probes of one container run; see the module docstring. `start` it, `stop` it when the run ends."""

    def __init__(self, container: Mapping[str, Any], *, run_id: str, running_for: float, clock: Clock,
                 run: RunProbe, record: RecordEvent, on_change: Callable[[], None]) -> None:
        self.name: str = container.get("name", "")
        self.run_id = run_id  # the container id of the run it probes
        self._probes = {kind: container[key] for kind, key in PROBE_FIELDS.items() if container.get(key)}
        self._running_for = running_for  # seconds the container already ran when probing began
        self._clock = clock
        self._run = run
        self._record = record
        self._on_change = on_change
        self.started = "startup" not in self._probes
        self.ready = "readiness" not in self._probes
        self.failed: str | None = None
        self._started = asyncio.Event()
        if self.started:
            self._started.set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for kind in self._probes:
            self._tasks.append(asyncio.create_task(self._loop(kind), name=f"probe-{kind}-{self.name}"))

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        self.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _loop(self, kind: str) -> None:
        probe = self._probes[kind]
        settings = ProbeSettings.of(probe)
        if (delay := settings.initial_delay - self._running_for) > 0:
            await self._clock.sleep(delay)
        if kind != "startup":
            await self._started.wait()
        last: bool | None = None
        run = 0
        while True:
            result = await self._try(kind, probe, settings.timeout)
            if result is not None:
                success = result.outcome is not Outcome.FAILURE
                run = run + 1 if success == last else 1
                last = success
                threshold = settings.success_threshold if success else settings.failure_threshold
                if run >= threshold and self._settle(kind, success):
                    return
            await self._clock.sleep(settings.period)

    def _settle(self, kind: str, success: bool) -> bool:
        """A result held for its threshold; True when this probe is done for the run."""
        if kind == "readiness":
            if self.ready != success:
                self.ready = success
                self._on_change()
            return False
        if success:
            if kind == "startup":
                self.started = True
                self._started.set()
                self._on_change()
                return True
            return False
        self.failed = kind
        self._on_change()
        return True

    async def _try(self, kind: str, probe: Mapping[str, Any], timeout: float) -> ProbeResult | None:
        title = _TITLES[kind]
        try:
            result = await self._run(probe, timeout)
        except HandlerError as exc:
            await self._record("Warning", "Unhealthy", f"{title} probe errored and resulted in unknown state: {exc}")
            return None
        except Exception:
            log.exception("container %s: %s probe crashed", self.name, kind)
            return None
        if result.outcome is Outcome.FAILURE:
            await self._record("Warning", "Unhealthy", f"{title} probe failed: {result.output}")
        elif result.outcome is Outcome.WARNING:
            await self._record("Warning", "ProbeWarning", f"{title} probe warning: {result.output}")
        return result
