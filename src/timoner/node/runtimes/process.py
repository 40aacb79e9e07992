"""The process runtime: each container is a host process started from its `command` and `args`.

There is no image and no root filesystem: the container runs on the host's
filesystem, from `command + args` (Kubernetes semantics: `command`
replaces the image's entrypoint, `args` its cmd). With no `command`, only a
few images whose entrypoint is a program every host has can run (see
`KNOWN_ENTRYPOINTS`, a shell for `busybox`/`alpine`/... images, which
then runs `args`); any other image raises `ContainerConfigError`, which
the pod worker reports as Waiting / `CreateContainerConfigError`.

Each container is owned by a shim (`_process_shim.py`), a small Python
process in a session of its own that outlives the agent (`python -I -S`
with few imports: every container pays for its start and its memory). It
relays output to `root_dir/pods/<pod uid>/<container>/<attempt>.log` in
the CRI format and writes the exit code to `root_dir/containers/<id>.exit`.
Next to it, `<id>.json` records the spec, the shim's and the container's
PIDs and their start times (to tell them from reused PIDs). So an agent
that restarts re-adopts its containers with `recover()` instead of killing
them: a new `ProcessRuntime` on the same `root_dir` watches the shim through a
pidfd (it cannot `wait()` for a process that is not its child) and reads
the exit code from the file once the shim is gone.

Runs of a container pile up as it restarts; as kubelet's container garbage
collector, starting a run removes all but the latest exited one (its
record and its log file), which is what `kubectl logs --previous` reads.
Once a pod is gone, `remove_pod` removes the records of all its containers
and its directory `root_dir/pods/<pod uid>` (logs, working directories),
keeping a directory something is mounted below; `pod_uids` lists the pods
with records or a directory here, for an agent that restarts to remove
those deleted while it was down.

Isolation, when the agent runs as root (`use_namespaces=None` decides by
the effective UID): the shim gives every container its own mount, PID,
UTS and IPC namespaces; the container is PID 1, sees its own `/proc`, and
its hostname is the pod's name. (Per pod, Kubernetes would share one
set among the pod's containers; here each container has its own, which
is indistinguishable for the usual one-container pod.) Without root
there are no namespaces: the container shares the host's hostname and
PID space, and the shim, a child subreaper, still tracks every process
the container forks and kills them all when the main process ends.

Volume mounts (`ContainerSpec.mounts`) need the namespaces: the container's
process (between the shim's fork and its exec, `_process_init`) binds each
host path at its container path in its private mount namespace, remounts it read-only when asked, and makes a container path
the host lacks on a private tmpfs laid over its nearest existing ancestor
(every entry of that ancestor bound back from the host; over `/` the tmpfs
becomes the container's root), so the host's filesystem never changes. A
missing `workingDir` is made the same way. Without root there are no
mounts: the container starts all the same, sees the host at each
mountPath, and finds each volume's host path in the environment as
`TIMONER_MOUNT_<MOUNT PATH>` (`/etc/config` -> `TIMONER_MOUNT_ETC_CONFIG`),
and the working directory is made on the host as before.

Stopping follows Kubernetes: `signal` goes to the container, then SIGKILL
once `timeout` runs out. With namespaces the signal goes to PID 1 only,
and a PID 1 that installs no handler for it ignores it, as in any
container (`sleep 1000` runs until the SIGKILL); killing PID 1 kills the
whole namespace. Without namespaces there is no init to pass the signal
on, so it goes to the container's process group.

Exec joins the container's namespaces and root with `nsenter` (util-linux)
and changes to the working directory from inside them (`env --chdir`), or,
without namespaces, runs in the container's working directory and
environment. Exec'd commands end with their container.

Attach connects to the container's stdio socket, which its shim serves
(`containers/<id>.sock`, see `_process_stdio`): live output, and stdin for
a container with `stdin: true`, kept open by the shim across attaches (and
agent restarts), closed after the first attach for `stdinOnce`. A
container with `tty: true` runs on a pseudo-terminal the shim owns: its
output is one stream and attach can resize it.

Network: a container whose spec names a network namespace (`netns`, made
by the agent's pod network) joins it before its mount namespace is made;
exec enters it too (`nsenter -n`). Port-forward dials `127.0.0.1` (then
`::1`) inside the pod's network namespace, as kubelet does: the socket is
made by a thread that enters the namespace with `setns` and returns to the
agent's at once (a socket stays in the namespace it was made in). A pod
without one shares the host's network, so its port is on the host's
loopback.

Host commands used: `nsenter` and `setsid` (util-linux) and `env`
(coreutils 8.28+, for `--chdir`) for exec; the shim itself needs only
Python and, for namespaces and mounts, Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import marshal
import os
import re
import shutil
import signal as signals
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..runtime import ContainerID, ContainerSpec, ContainerState, Mount, State
from . import _process_shim as shim
from ._process_attach import ProcessAttachSession, open_attach
from ._process_exec import ProcessExecSession, start_exec
from ._process_logs import read_log

__all__ = [
    "DEFAULT_PATH",
    "KNOWN_ENTRYPOINTS",
    "ContainerConfigError",
    "ContainerStartError",
    "ProcessRuntime",
    "mount_env_name",
    "resolve_argv",
]

# Docker's default, for a container whose env names no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Images whose entrypoint (with no cmd given) is a program any Linux host has. Their default cmd
# (`sh` alone, an interactive shell) would exit at once without a TTY, so `args` are what runs.
KNOWN_ENTRYPOINTS: dict[str, tuple[str, ...]] = {
    "busybox": ("sh",),
    "alpine": ("sh",),
    "debian": ("sh",),
    "ubuntu": ("sh",),
    "bash": ("bash",),
    "python": ("python3",),
}

log = logging.getLogger("timoner.node.runtime")

_START_TIMEOUT = 30.0  # seconds the shim has to report the container's PID


class ContainerConfigError(ValueError):
    """The container cannot be created as configured (Kubernetes' `CreateContainerConfigError`)."""

    reason = "CreateContainerConfigError"  # what the pod worker shows as `waiting.reason`


class ContainerStartError(RuntimeError):
    """The container's process could not be started (Kubernetes' `StartError`)."""

    reason = "StartError"


def _image_name(image: str) -> str:
    """`docker.io/library/busybox:1.36@sha256:...` -> `busybox`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def resolve_argv(spec: ContainerSpec) -> tuple[str, ...]:
    """The argv to run for `spec`; raises `ContainerConfigError` when there is none."""
    if spec.command:
        return tuple(spec.command) + tuple(spec.args)
    entrypoint = KNOWN_ENTRYPOINTS.get(_image_name(spec.image))
    if entrypoint is None:
        raise ContainerConfigError(
            f'the process runtime cannot run image "{spec.image}" without a command: it has no known '
            f"entrypoint on this host (set the container's command: this runtime runs host programs, not images)")
    return entrypoint + tuple(spec.args)


def _spec_to_json(spec: ContainerSpec) -> dict:
    data = asdict(spec)
    data["env"], data["annotations"] = dict(spec.env), dict(spec.annotations)
    return data


def _spec_from_json(data: dict) -> ContainerSpec:
    mounts = tuple(Mount(**mount) for mount in data.get("mounts") or ())
    return ContainerSpec(**{**data, "command": tuple(data["command"]), "args": tuple(data["args"]),
                            "mounts": mounts})


def mount_env_name(container_path: str) -> str:
    """Where a container without namespaces finds a mount's host path: `/etc/config` -> `TIMONER_MOUNT_ETC_CONFIG`."""
    return "TIMONER_MOUNT_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in container_path.strip("/")).upper()


@dataclass(frozen=True, slots=True)
class _Record:
    """What `<id>.json` keeps about one container, enough to find it again after a restart."""

    id: str
    spec: ContainerSpec
    namespaces: bool
    log_path: str
    cwd: str
    env: dict[str, str]
    started_at: float
    shim_pid: int
    shim_start_time: int | None
    pid: int | None = None
    pid_start_time: int | None = None

    def to_json(self) -> dict:
        return {**{name: getattr(self, name) for name in self.__slots__}, "spec": _spec_to_json(self.spec)}

    @classmethod
    def from_json(cls, data: dict) -> _Record:
        return cls(**{**data, "spec": _spec_from_json(data["spec"])})


@dataclass(slots=True)
class _Container:
    record: _Record
    state: ContainerState
    process: asyncio.subprocess.Process | None  # the shim, while it is our child
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None
    execs: set[ProcessExecSession] = field(default_factory=set)


def _alive(pid: int | None, start_time: int | None) -> bool:
    return pid is not None and start_time is not None and shim.process_start_time(pid) == start_time


async def _until_exit(pid: int, start_time: int | None) -> None:
    """Return when a process that is not our child exits: its pidfd becomes readable then (Linux 5.3+)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # Checked after opening: the pidfd pins the process, so a PID reused later cannot fool us.
        if shim.process_start_time(pid) != start_time or start_time is None:
            return
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class ProcessRuntime:
    """A `Runtime` (with logs, exec, attach and port-forward) running containers as host processes; see the
    module docstring."""

    name = "process"
    version = "0.1"

    def __init__(self, root_dir: Path, *, use_namespaces: bool | None = None) -> None:
        self.root_dir = Path(root_dir)
        self.use_namespaces = os.geteuid() == 0 if use_namespaces is None else use_namespaces
        self._containers: dict[ContainerID, _Container] = {}
        self._state_dir = self.root_dir / "containers"

    # -- paths -------------------------------------------------------------------------------------

    def _record_path(self, ident: str) -> Path:
        return self._state_dir / f"{ident}.json"

    def _exit_path(self, ident: str) -> Path:
        return self._state_dir / f"{ident}.exit"

    def _stdio_path(self, ident: str) -> Path:
        return self._state_dir / f"{ident}.sock"

    def log_path(self, spec: ContainerSpec) -> Path:
        """Where the output of `spec`'s attempt goes (and where `kubectl logs --previous` finds it)."""
        return self.root_dir / "pods" / spec.pod_uid / spec.name / f"{spec.attempt}.log"

    # -- Runtime -----------------------------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> ContainerState:
        argv = list(resolve_argv(spec))
        env = dict(spec.env)
        env.setdefault("PATH", DEFAULT_PATH)
        container_dir = self.root_dir / "pods" / spec.pod_uid / spec.name
        cwd = Path(spec.working_dir) if spec.working_dir else container_dir / "work"
        if "/" not in argv[0]:
            found = shutil.which(argv[0], path=env["PATH"])
            if found is None:
                raise ContainerStartError(f'exec: "{argv[0]}": executable file not found in $PATH')
            argv[0] = found
        if not self.use_namespaces:
            for mount in spec.mounts:
                env[mount_env_name(mount.container_path)] = mount.host_path
        # Like Docker, a working directory that does not exist yet is created; one the spec names by the shim,
        # in the container's mount namespace, when it has one (a mountPath may hold it).
        if not (self.use_namespaces and spec.working_dir):
            await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
        staging = _staging_dir(container_dir, spec)
        if self.use_namespaces:
            await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._state_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(container_dir.mkdir, parents=True, exist_ok=True)
        ident = uuid.uuid4().hex
        cid = ContainerID(self.name, ident)
        log_path = self.log_path(spec)
        config = {"argv": argv, "env": env, "cwd": str(cwd), "log_path": str(log_path),
                  "hostname": _hostname(spec.hostname or spec.pod_name) if self.use_namespaces else None,
                  "mounts": [asdict(mount) for mount in spec.mounts], "staging": str(staging),
                  "stdin": spec.stdin, "stdin_once": spec.stdin_once, "tty": spec.tty,
                  "netns": spec.netns if self.use_namespaces else ""}
        with (self._state_dir / f"{ident}.shim.log").open("ab") as shim_log:
            process = await asyncio.create_subprocess_exec(
                *shim.command(sys.executable, str(self._state_dir / ident)), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=shim_log, start_new_session=True)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(marshal.dumps(config))  # the shim's configuration (see `_process_shim`)
        process.stdin.close()
        record = _Record(id=ident, spec=spec, namespaces=self.use_namespaces, log_path=str(log_path),
                         cwd=str(cwd), env=env, started_at=time.time(), shim_pid=process.pid,
                         shim_start_time=shim.process_start_time(process.pid))
        # Written before the container runs, so an agent that dies right now can still find the shim.
        _write_json(self._record_path(ident), record.to_json())
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                line = await process.stdout.readline()
        except TimeoutError:
            line = b""
        kind, _, value = line.decode(errors="replace").rstrip("\n").partition(" ")
        if kind != "pid":
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            self._forget_files(ident)
            raise ContainerStartError(value if kind == "error" else self._shim_failure(ident))
        pid = int(value)
        record = replace(record, pid=pid, pid_start_time=shim.process_start_time(pid))
        _write_json(self._record_path(ident), record.to_json())
        state = ContainerState(id=cid, spec=spec, state=State.RUNNING, started_at=record.started_at, pid=pid)
        container = _Container(record, state, process)
        self._adopt(container)
        self._remove_old_runs(container)
        return state

    def _remove_old_runs(self, current: _Container) -> None:
        """Keep one exited run of `current`'s container besides `current`, as kubelet's container GC does
        (`MaxPerPodContainer` 1): that run is `kubectl logs --previous`; older runs' records and logs go.
        Log files no run owns any more (their record lost) go too.
        """
        spec = current.record.spec
        runs = [c for c in self._containers.values() if c is not current
                and c.record.spec.pod_uid == spec.pod_uid and c.record.spec.name == spec.name]
        exited = sorted((c for c in runs if c.exited.is_set()),
                        key=lambda c: (c.record.spec.attempt, c.record.started_at))
        old = exited[:-1]
        for run in old:
            del self._containers[run.state.id]
            self._forget_files(run.record.id)
        kept = {Path(c.record.log_path) for c in [current, *runs] if c.state.id in self._containers}
        for path in Path(current.record.log_path).parent.glob("*.log"):
            if path not in kept:
                path.unlink(missing_ok=True)

    def _adopt(self, container: _Container) -> None:
        self._containers[container.state.id] = container
        container.watcher = asyncio.create_task(self._watch(container))

    async def _watch(self, container: _Container) -> None:
        record = container.record
        if container.process is not None:
            await container.process.wait()
        else:
            await _until_exit(record.shim_pid, record.shim_start_time)
        container.state = await asyncio.to_thread(self._final_state, container)
        container.exited.set()
        for session in container.execs:
            session.kill()

    def _final_state(self, container: _Container) -> ContainerState:
        """The terminated state from the exit file; if the shim died without one, kill what it leaves."""
        record, running = container.record, container.state
        try:
            result = json.loads(self._exit_path(record.id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self._kill(record, signals.SIGKILL)
            return replace(running, state=State.TERMINATED, finished_at=time.time(), exit_code=137,
                           reason="ContainerStatusUnknown",
                           message="the container's shim exited without recording an exit code")
        code = result["exit_code"]
        return replace(running, state=State.TERMINATED, finished_at=result["finished_at"], exit_code=code,
                       reason="Completed" if code == 0 else "Error")

    def _kill(self, record: _Record, signal: int) -> None:
        if not _alive(record.pid, record.pid_start_time):
            return
        assert record.pid is not None
        with contextlib.suppress(ProcessLookupError):
            if record.namespaces:
                os.kill(record.pid, signal)  # PID 1 of its namespace: SIGKILL there ends every process in it
            else:
                os.killpg(record.pid, signal)  # the shim started it as the leader of its own group

    def _get(self, container: ContainerID) -> _Container:
        try:
            return self._containers[container]
        except KeyError:
            raise KeyError(f"no process container {container}") from None

    async def wait(self, container: ContainerID) -> ContainerState:
        record = self._get(container)
        await record.exited.wait()
        return record.state

    async def stop(self, container: ContainerID, timeout: float,
                   signal: int = signals.SIGTERM) -> ContainerState:
        record = self._get(container)
        if record.exited.is_set():
            return record.state
        self._kill(record.record, signal)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await record.exited.wait()
        except TimeoutError:
            self._kill(record.record, signals.SIGKILL)
            await record.exited.wait()
        return record.state

    async def inspect(self, container: ContainerID) -> ContainerState:
        return self._get(container).state

    async def recover(self) -> list[ContainerState]:
        """Re-adopt the containers recorded under `root_dir`: running ones are watched again, exited ones reported."""
        paths = await asyncio.to_thread(lambda: sorted(self._state_dir.glob("*.json")))
        for path in paths:
            cid = ContainerID(self.name, path.stem)
            if cid in self._containers:
                continue
            try:
                record = _Record.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # not a record of ours (records are replaced atomically, never half-written)
            running = ContainerState(id=cid, spec=record.spec, state=State.RUNNING,
                                     started_at=record.started_at, pid=record.pid)
            self._adopt(_Container(record, running, process=None))
        # Let each new watcher look once, so containers that exited while no agent ran come back terminated.
        await asyncio.sleep(0)
        for container in list(self._containers.values()):  # a concurrent start may add to the dict
            if not _alive(container.record.shim_pid, container.record.shim_start_time):
                await container.exited.wait()
        return [container.state for container in self._containers.values()]

    async def remove(self, container: ContainerID) -> None:
        """Forget an exited container: its records go, its log stays with the pod's directory."""
        record = self._get(container)
        if not record.exited.is_set():
            raise RuntimeError(f"container {container} is still running; stop it first")
        del self._containers[container]
        await asyncio.to_thread(self._forget_files, record.record.id)

    async def remove_pod(self, pod_uid: str) -> None:
        """Forget a pod that is gone: its containers' records, then its directory (logs, working directories).

        A directory with something mounted below it is kept (and said in the log): removing it would reach
        into that mount.
        """
        containers = [c for c in self._containers.values() if c.record.spec.pod_uid == pod_uid]
        running = [str(c.state.id) for c in containers if not c.exited.is_set()]
        if running:
            raise RuntimeError(f"pod {pod_uid} still has running containers: {', '.join(running)}")
        for container in containers:
            del self._containers[container.state.id]
        await asyncio.to_thread(self._remove_pod_files, pod_uid, [c.record.id for c in containers])

    def _remove_pod_files(self, pod_uid: str, idents: list[str]) -> None:
        for ident in idents:
            self._forget_files(ident)
        remove_spare_staging(pod_uid)
        pod_dir = self.root_dir / "pods" / pod_uid
        if not pod_dir.exists():
            return
        mounted = _mount_points_under(pod_dir)
        if mounted:
            log.warning("keeping %s: something is mounted at %s", pod_dir, ", ".join(mounted))
            return
        try:
            shutil.rmtree(pod_dir)
        except OSError as error:
            log.warning("cannot remove %s: %s", pod_dir, error)

    async def pod_uids(self) -> list[str]:
        """The pods with a container this runtime knows (`recover` finds them all) or a directory here."""
        def on_disk() -> set[str]:
            try:
                return {entry.name for entry in os.scandir(self.root_dir / "pods") if entry.is_dir()}
            except FileNotFoundError:
                return set()

        known = {c.record.spec.pod_uid for c in self._containers.values()}
        return sorted(known | await asyncio.to_thread(on_disk))

    def _shim_failure(self, ident: str) -> str:
        try:
            lines = (self._state_dir / f"{ident}.shim.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        why = f": {lines[-1]}" if lines else ""
        return f"the process runtime's shim did not report the container's PID{why}"

    def _forget_files(self, ident: str) -> None:
        # The record last: an agent that dies halfway leaves it, and the next one finds the rest through it.
        for name in (f"{ident}.exit", f"{ident}.exit.tmp", f"{ident}.tmp", f"{ident}.shim.log", f"{ident}.sock",
                     f"{ident}.json"):
            (self._state_dir / name).unlink(missing_ok=True)

    async def close(self) -> None:
        """Stop watching (the agent is shutting down); containers keep running for the next agent to recover.

        The runtime forgets them too; `recover()` on it (or on a new runtime) finds them again.
        """
        watchers = [c.watcher for c in self._containers.values() if c.watcher is not None]
        self._containers.clear()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    # -- LogsRuntime -------------------------------------------------------------------------------

    async def logs(self, container: ContainerID, *, follow: bool = False, tail_lines: int | None = None,
                   since: float | None = None, limit_bytes: int | None = None,
                   timestamps: bool = False) -> AsyncIterator[bytes]:
        record = self._get(container)
        async for chunk in read_log(Path(record.record.log_path), exited=record.exited.is_set, follow=follow,
                                    tail_lines=tail_lines, since=since, limit_bytes=limit_bytes,
                                    timestamps=timestamps):
            yield chunk

    # -- ExecRuntime -------------------------------------------------------------------------------

    async def exec(self, container: ContainerID, command: tuple[str, ...], *, tty: bool = False,
                   stdin: bool = False) -> ProcessExecSession:
        record = self._get(container)
        if record.exited.is_set():
            raise RuntimeError(f"container {container} is not running")
        argv = self._exec_argv(record.record, command, tty=tty)
        # With namespaces the working directory may exist only in the container's: `env --chdir` goes there.
        cwd = None if record.record.namespaces else record.record.cwd
        session = await start_exec(argv, env=record.record.env, cwd=cwd, tty=tty, stdin=stdin)
        record.execs = {s for s in record.execs if s.process.returncode is None}
        record.execs.add(session)
        return session

    # -- AttachRuntime -----------------------------------------------------------------------------

    async def attach(self, container: ContainerID, *, stdin: bool = False) -> ProcessAttachSession:
        record = self._get(container)
        if record.exited.is_set():
            raise RuntimeError(f"container {container} is not running")
        spec = record.record.spec
        try:
            return await open_attach(str(self._stdio_path(record.record.id)), stdin=stdin,
                                     closes_stdin=spec.stdin_once and not spec.tty)
        except OSError as exc:
            raise RuntimeError(f"cannot attach to container {container}: {exc.strerror or exc}") from None

    # -- PortForwardRuntime ------------------------------------------------------------------------

    async def connect(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # In the pod's network namespace when it has one, else the host's (see the module docstring).
        netns = next((c.record.spec.netns for c in self._containers.values()
                      if c.record.spec.pod_uid == pod_uid and c.record.spec.netns), "")
        try:
            return await _open_connection(netns, "127.0.0.1", port)
        except OSError as first:
            try:
                return await _open_connection(netns, "::1", port)
            except OSError:
                raise first from None

    def _exec_argv(self, record: _Record, command: Sequence[str], *, tty: bool) -> list[str]:
        argv = list(command)
        if tty:
            # With -w, setsid waits for the command (it forks, being a group leader) and passes its exit code on.
            argv = [_host_tool("setsid"), "-w", "-c", *argv]
        if record.namespaces:
            # -p forks, so the command really lives in the container's PID namespace and dies with it; -r takes
            # the container's root (a tmpfs of its own when a mountPath was made at the top level). nsenter's own
            # --wd=DIR would open DIR on the host, before entering: `env --chdir` opens it inside.
            net = ["-n"] if record.spec.netns else []
            return [_host_tool("nsenter"), "-t", str(record.pid), "-m", "-u", "-i", *net, "-p", "-r", "--",
                    _host_tool("env"), f"--chdir={record.cwd}", "--", *argv]
        # `env` gives a missing command the same exit code (127) that nsenter does.
        return [_host_tool("env"), "--", *argv]


CLONE_NEWNET = 0x40000000
# Where a container's staging directory goes when a mountPath would hide its usual place (an emptyDir at
# /tmp while the agent's root is under /tmp): one per pod, removed with the pod.
SPARE_STAGING = Path("/run/timoner/staging")


def remove_spare_staging(pod_uid: str) -> None:
    """The pod's staging directories under `SPARE_STAGING`, once no container of it will start again."""
    spare = SPARE_STAGING / pod_uid
    if spare.exists() and not _mount_points_under(spare):
        shutil.rmtree(spare, ignore_errors=True)


def _staging_dir(container_dir: Path, spec: ContainerSpec) -> Path:
    """The empty directory the container's own process builds tmpfs covers on (`_process_init._cover`).

    It must stay reachable after the volumes are bound, so it may not lie under any mountPath.
    """

    def hidden(path: Path) -> bool:
        return any(path == Path(m.container_path) or Path(m.container_path) in path.parents for m in spec.mounts)

    for candidate in (container_dir / ".staging", SPARE_STAGING / spec.pod_uid / spec.name):
        if not hidden(candidate):
            return candidate
    raise ContainerStartError("every staging place for this container is under one of its mountPaths")


def _socket_in(netns: str, family: int) -> socket.socket:
    """A TCP socket made inside the network namespace `netns` by this thread, which then goes back to its own."""
    libc = shim.Libc()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.check(f"setns {netns}", "setns", target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            if libc.call("setns", own, CLONE_NEWNET) != 0:
                # A pool thread left in a pod's namespace would make later sockets there: never go on.
                os.abort()
    finally:
        os.close(own)


async def _open_connection(netns: str, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection(host, port)`, from inside the network namespace `netns` when one is named."""
    if not netns:
        return await asyncio.open_connection(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = await asyncio.to_thread(_socket_in, netns, family)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def _mount_points_under(directory: Path) -> list[str]:
    """What is mounted at or below `directory`, from this process's mountinfo."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if (point.rstrip("/") + "/").startswith(prefix):
                found.append(point)
    return found


def _hostname(pod_name: str) -> str:
    """The pod's name as a hostname: at most 63 characters, as kubelet cuts it, without a trailing `-` or `.`."""
    return pod_name[:63].rstrip("-.")


def _host_tool(name: str) -> str:
    path = shutil.which(name, path=DEFAULT_PATH)
    if path is None:
        raise RuntimeError(f"the process runtime needs {name!r} on the host")
    return path
