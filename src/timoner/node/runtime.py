"""The seam between the node agent and whatever runs containers: the `Runtime` protocol.

Modelled on Nomad's task driver, but smaller. A runtime knows how to start
one container, wait for it to exit, stop it, describe it, find the
containers it started before the agent restarted, and forget a pod that is
gone (its containers' records and logs). Everything else a pod
needs (restart policy, probes, ordering of init containers, status writing)
is the pod worker's business, so each runtime stays small.

Optional features live in their own protocols, checked with `isinstance`
(they are `runtime_checkable`), so a runtime that cannot stream logs simply
does not implement `LogsRuntime`, and the agent answers 400 for it.

Runtimes: `process` (host processes, default) and `hollow` (simulated,
`timoner.node.runtimes.hollow`); `runc` (OCI images, needs root) comes with
a later milestone.

All methods are async and may be called concurrently for different
containers; a runtime serialises per container itself if it must.
"""

from __future__ import annotations

import asyncio
import enum
import signal as signals
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "AttachRuntime",
    "AttachSession",
    "ContainerID",
    "ContainerSpec",
    "ContainerState",
    "ExecRuntime",
    "ExecSession",
    "LogsRuntime",
    "Mount",
    "PortForwardRuntime",
    "Runtime",
    "State",
]


@dataclass(frozen=True, slots=True)
class ContainerID:
    """A container's identity: `<runtime>://<id>`, as `status.containerStatuses[].containerID` spells it."""

    runtime: str
    id: str

    def __str__(self) -> str:
        return f"{self.runtime}://{self.id}"

    @classmethod
    def parse(cls, text: str) -> ContainerID:
        runtime, sep, ident = text.partition("://")
        if not sep or not runtime or not ident:
            raise ValueError(f"not a container id: {text!r}")
        return cls(runtime, ident)


@dataclass(frozen=True, slots=True)
class Mount:
    """One volume mount of a container, resolved by the pod worker: `host_path` appears at `container_path`.

    `host_path` is what to bind: the volume's directory on the host, or,
    for a volumeMount with a `subPath`, the file or directory that subPath
    names, symlinks already resolved (`sub_path` keeps the subPath as
    written, for messages). `read_only` covers both the volumeMount's
    `readOnly` and the volume kinds that are always read-only (configMap,
    secret, downwardAPI, projected).
    """

    host_path: str
    container_path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What to run: one container of one pod, already resolved by the pod worker.

    `pod_uid` + `name` + `attempt` identify the run, so `recover` can tie a
    container found after a restart back to its pod. `annotations` are the
    pod's; runtimes may read their own (`timoner.dev/hollow-*`). `stdin`,
    `stdin_once` and `tty` are the container's fields of those names: a
    stdin that `kubectl attach` can write to, closed after the first
    attach's stdin ends, and a terminal for the main process. `mounts` are
    the container's volume mounts. `netns` is the file of the pod's network
    namespace for the container to join ("" shares the host's network).
    """

    pod_uid: str
    pod_namespace: str
    pod_name: str
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    attempt: int = 0
    annotations: Mapping[str, str] = field(default_factory=dict)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    mounts: tuple[Mount, ...] = ()
    netns: str = ""
    hostname: str = ""  # the pod's `spec.hostname` when set, else its name ("" in old records: the name)


class State(enum.Enum):
    """The three states of `status.containerStatuses[].state`."""

    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What a runtime knows about one container; times are wall-clock UNIX seconds."""

    id: ContainerID
    spec: ContainerSpec
    state: State
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""  # upstream's words: "Completed", "Error", "OOMKilled", ...
    message: str = ""
    pid: int | None = None


@runtime_checkable
class Runtime(Protocol):
    """Runs containers. `name` is the scheme of container ids (`process`, `runc`, `hollow`)."""

    name: str
    version: str  # the part after `<scheme>://` in nodeInfo.containerRuntimeVersion

    async def start(self, spec: ContainerSpec) -> ContainerState:
        """Start `spec` and return it running; raises if it cannot start (bad image, bad command)."""
        ...

    async def wait(self, container: ContainerID) -> ContainerState:
        """Block until the container exits; return its terminated state. Cancel-safe."""
        ...

    async def stop(self, container: ContainerID, timeout: float, signal: int = signals.SIGTERM) -> ContainerState:
        """Send `signal`, wait up to `timeout` seconds, then kill; return the terminated state.

        Stopping a container that already exited returns its final state.
        """
        ...

    async def inspect(self, container: ContainerID) -> ContainerState:
        """The container's current state; raises `KeyError` for a container the runtime does not know."""
        ...

    async def recover(self) -> list[ContainerState]:
        """Every container this runtime started that still exists, after an agent restart."""
        ...

    async def remove_pod(self, pod_uid: str) -> None:
        """Forget a pod that is gone, as CRI's RemovePodSandbox: its containers, which must all have exited,
        and whatever the runtime keeps for them (records, logs, working directories).

        Raises `RuntimeError` while one of them still runs; a pod the runtime keeps nothing for is a no-op.
        """
        ...

    async def pod_uids(self) -> list[str]:
        """The uids of the pods the runtime keeps anything for, so a restarted agent can remove those gone."""
        ...


@runtime_checkable
class LogsRuntime(Protocol):
    """Optional: serves `kubectl logs`."""

    def logs(self, container: ContainerID, *, follow: bool = False, tail_lines: int | None = None,
             since: float | None = None, limit_bytes: int | None = None,
             timestamps: bool = False) -> AsyncIterator[bytes]:
        """The container's output as chunks of bytes; with `follow`, until the container exits.

        Any container the runtime still knows, exited ones included (`kubectl logs --previous`).
        `tail_lines` counts log entries from the end; `since` (UNIX time) drops entries written
        before it; `limit_bytes` ends the stream after that many bytes of output, even mid-line
        and even when following; `timestamps` prefixes each entry with its RFC 3339 time.
        """
        ...


@runtime_checkable
class ExecSession(Protocol):
    """One running `kubectl exec`: its standard streams and its end."""

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, data) pairs: 1 stdout, 2 stderr (a TTY has only 1), until the command exits."""
        ...

    async def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int:
        """The command's exit code."""
        ...


@runtime_checkable
class ExecRuntime(Protocol):
    """Optional: serves `kubectl exec`."""

    async def exec(self, container: ContainerID, command: tuple[str, ...], *, tty: bool = False,
                   stdin: bool = False) -> ExecSession: ...


@runtime_checkable
class AttachSession(Protocol):
    """One `kubectl attach` to a container's main process: its live output, and its stdin if it has one."""

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None:
        """The client's stdin ended. As containerd: a `stdinOnce` container without a TTY has its stdin
        closed and the attach goes on until the container exits; otherwise the attach ends (detaches)."""
        ...

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, data) written by the container from now on, until it exits or the session detaches."""
        ...

    async def resize(self, width: int, height: int) -> None: ...

    async def close(self) -> None:
        """Detach; the container runs on."""
        ...


@runtime_checkable
class AttachRuntime(Protocol):
    """Optional: serves `kubectl attach` (and `kubectl run -i`)."""

    async def attach(self, container: ContainerID, *, stdin: bool = False) -> AttachSession:
        """Attach to a running container; raises if it is not running. With `stdin` the client's
        input goes to the container's (ignored when the container has none)."""
        ...


@runtime_checkable
class PortForwardRuntime(Protocol):
    """Optional: serves `kubectl port-forward` by connecting to a port in the pod's network.

    The pod is named by its uid; the caller checked that it is bound to this node.
    """

    async def connect(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to `port` inside the pod's network."""
        ...
