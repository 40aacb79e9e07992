"""The hollow runtime: containers that only pretend to run, so pod workers can be tested without processes.

A hollow container is a record and an `asyncio.Event`. It "runs" from
`start` until it is stopped, or until the time its pod's annotations give:

- `timoner.dev/hollow-exit-after: 5s` (a Go duration: `300ms`, `1m30s`):
  exit on its own after that long;
- `timoner.dev/hollow-exit-code: 1`: the code it exits with then (default 0);
- `timoner.dev/hollow-ignore-sigterm: "true"`: `stop` with SIGTERM has no
  effect, so the container is killed (137) when the grace period ends,
  which is how a pod worker's grace period gets exercised;
- `timoner.dev/hollow-start-error: <message>`: `start` fails with
  `RuntimeError(message)`, like an image that cannot be pulled.

A stopped container exits at once with 128 + the signal number, as a shell
reports a process killed by that signal. Time comes from a `Clock`, so
tests can use a fast or fake one; `recover` returns the containers of this
instance, which is what survives an agent "restart" in a simulation, until
`remove_pod` forgets a pod's.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal as signals
import time
from dataclasses import dataclass, field, replace

from timoner.client import Clock, RealClock

from ..runtime import ContainerID, ContainerSpec, ContainerState, State

__all__ = [
    "EXIT_AFTER",
    "EXIT_CODE",
    "IGNORE_SIGTERM",
    "START_ERROR",
    "HollowRuntime",
    "parse_duration",
]

EXIT_AFTER = "timoner.dev/hollow-exit-after"
EXIT_CODE = "timoner.dev/hollow-exit-code"
IGNORE_SIGTERM = "timoner.dev/hollow-ignore-sigterm"
START_ERROR = "timoner.dev/hollow-start-error"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (`1m30s`, `250ms`, `0`); raises ValueError otherwise."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return total


@dataclass(slots=True)
class _Container:
    state: ContainerState
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.Task[None] | None = None


class HollowRuntime:
    """A `Runtime` (plus nothing optional) whose containers are simulated; see the module docstring."""

    name = "hollow"
    version = "0.1"

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or RealClock()
        self._containers: dict[ContainerID, _Container] = {}
        self._ids = itertools.count(1)

    async def start(self, spec: ContainerSpec) -> ContainerState:
        error = spec.annotations.get(START_ERROR)
        if error:
            raise RuntimeError(error)
        # Validate before creating anything, so a bad annotation leaves no half-started container.
        exit_after = spec.annotations.get(EXIT_AFTER)
        delay = parse_duration(exit_after) if exit_after else None
        exit_code = int(spec.annotations.get(EXIT_CODE, "0"))
        cid = ContainerID(self.name, f"{spec.pod_uid}-{spec.name}-{spec.attempt}-{next(self._ids)}")
        state = ContainerState(id=cid, spec=spec, state=State.RUNNING, started_at=time.time())
        container = _Container(state)
        self._containers[cid] = container
        if delay is not None:
            container.timer = asyncio.create_task(self._exit_later(cid, delay, exit_code))
        return state

    async def _exit_later(self, cid: ContainerID, delay: float, exit_code: int) -> None:
        await self._clock.sleep(delay)
        self._terminate(cid, exit_code)

    def _terminate(self, cid: ContainerID, exit_code: int) -> None:
        container = self._containers[cid]
        if container.exited.is_set():
            return
        container.state = replace(container.state, state=State.TERMINATED, finished_at=time.time(),
                                  exit_code=exit_code, reason="Completed" if exit_code == 0 else "Error")
        container.exited.set()
        timer, container.timer = container.timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _get(self, cid: ContainerID) -> _Container:
        try:
            return self._containers[cid]
        except KeyError:
            raise KeyError(f"no hollow container {cid}") from None

    async def wait(self, container: ContainerID) -> ContainerState:
        record = self._get(container)
        await record.exited.wait()
        return record.state

    async def stop(self, container: ContainerID, timeout: float,
                   signal: int = signals.SIGTERM) -> ContainerState:
        record = self._get(container)
        if record.exited.is_set():
            return record.state
        ignores = record.state.spec.annotations.get(IGNORE_SIGTERM, "").lower() == "true"
        if signal == signals.SIGKILL or not (ignores and signal == signals.SIGTERM):
            self._terminate(container, 128 + signal)
            return record.state
        # The container ignores the signal: it dies only when the grace period runs out (or on its own).
        grace = asyncio.ensure_future(self._clock.sleep(timeout))
        exited = asyncio.ensure_future(record.exited.wait())
        try:
            await asyncio.wait({grace, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            grace.cancel()
            exited.cancel()
        self._terminate(container, 128 + signals.SIGKILL)  # a no-op if it exited within the grace period
        return record.state

    async def inspect(self, container: ContainerID) -> ContainerState:
        return self._get(container).state

    async def recover(self) -> list[ContainerState]:
        return [record.state for record in self._containers.values()]

    async def remove_pod(self, pod_uid: str) -> None:
        ids = [cid for cid, c in self._containers.items() if c.state.spec.pod_uid == pod_uid]
        running = [str(cid) for cid in ids if not self._containers[cid].exited.is_set()]
        if running:
            raise RuntimeError(f"pod {pod_uid} still has running containers: {', '.join(running)}")
        for cid in ids:
            del self._containers[cid]

    async def pod_uids(self) -> list[str]:
        return sorted({c.state.spec.pod_uid for c in self._containers.values()})
