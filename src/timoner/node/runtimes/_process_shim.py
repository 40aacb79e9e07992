"""The process runtime's shim: the small program that owns one container's process for its whole life.

The agent never runs a container directly; it starts this file as a script
(`python -I _process_shim.py <config JSON>`, standard library only, so it
does not import Timoner) in a session of its own. The shim outlives the
agent, which is what lets an agent restart without touching its pods:

- it sets itself as a *child subreaper*, so a background process the
  container forks and orphans is re-parented to the shim, not to init, and
  can be found and killed when the container ends;
- with namespaces (the agent runs as root), it unshares mount, UTS, IPC and
  PID namespaces, sets the hostname to the pod's name, and its one child
  becomes PID 1 of the new PID namespace with a fresh `/proc` mounted; when
  that PID 1 exits the kernel kills everything else in the namespace;
- it relays the container's stdout and stderr into the per-container log
  file in the CRI format (`<RFC3339Nano> stdout|stderr F|P <line>`), so
  logs keep flowing while no agent is running;
- when the container's main process exits, it kills whatever it left
  behind, waits for the log relays to drain, and writes the exit code to
  a file atomically: a re-adopting agent cannot `wait()` for a process that
  is not its child, but it can read that file.

The shim reports back to the agent once, on its stdout: one JSON line,
`{"pid": ...}` (the container's host PID) or `{"error": "..."}` when the
process could not be started. The agent reads the PID's start time from its
own `/proc`: with namespaces, the shim's `/proc` is the container's.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18

# Kubelet splits longer lines into partial (`P`) entries of this size, as containerd does.
MAX_LINE = 16 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def process_start_time(pid: int) -> int | None:
    """Field 22 of `/proc/<pid>/stat` (clock ticks since boot), or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, fixed width so that log lines sort as text."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class _Relay:
    """Turns one output pipe's bytes into CRI log entries."""

    def __init__(self, fd: int, stream: bytes, log_fd: int) -> None:
        self.fd, self.stream, self.log_fd = fd, stream, log_fd
        self.buffer = b""

    def _write(self, tag: bytes, content: bytes) -> None:
        # One os.write per entry on an O_APPEND descriptor, so stdout and stderr entries never interleave mid-line.
        entry = timestamp(time.time_ns()).encode() + b" " + self.stream + b" " + tag + b" " + content + b"\n"
        os.write(self.log_fd, entry)

    def feed(self) -> bool:
        """Read what is there; False at end of file."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        self.buffer += chunk
        while True:
            newline = self.buffer.find(b"\n")
            if 0 <= newline <= MAX_LINE:
                self._write(b"F", self.buffer[:newline])
                self.buffer = self.buffer[newline + 1:]
            elif len(self.buffer) >= MAX_LINE:
                self._write(b"P", self.buffer[:MAX_LINE])
                self.buffer = self.buffer[MAX_LINE:]
            else:
                break
        if not chunk:
            if self.buffer:  # the last line had no newline
                self._write(b"F", self.buffer)
            os.close(self.fd)
            return False
        return True


def _enter_namespaces(hostname: str) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
    # Private propagation first, or mounting /proc below would replace the host's /proc too.
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    name = hostname.encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")


def _mount_proc() -> None:
    # Runs in the child, which is already PID 1 of the new namespace, so this /proc shows that namespace.
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")


def _children() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    return parents


def _kill_descendants() -> None:
    parents = _children()
    me, found = os.getpid(), set()
    frontier = {me}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reap(main: int, namespaces: bool) -> int | None:
    """Reap every exited child (orphans come to us as subreaper); the main process's wait status if it exited."""
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == main:
            status = wait_status
            # The container ends with its main process: take down what it left behind, so the output
            # pipes close too. With a PID namespace the kernel already has, and our /proc is the
            # container's (its PIDs mean nothing here), so leave it be.
            if not namespaces:
                _kill_descendants()


def _write_atomically(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _report(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
    # The agent may be gone by the time anything else would be written; nothing else goes there.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def main(config: dict) -> int:
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    namespaces = config["hostname"] is not None
    log_fd = os.open(config["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        if namespaces:
            _enter_namespaces(config["hostname"])
        child = subprocess.Popen(
            config["argv"], env=config["env"], cwd=config["cwd"], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=_mount_proc if namespaces else None)
    except OSError as error:
        _report({"error": str(error)})
        return 1
    _report({"pid": child.pid})
    # One thread only: after unshare(CLONE_NEWPID) this process cannot start threads. SIGCHLD wakes the
    # loop through a pipe, so the main process's exit is seen at once even while its children hold the pipes.
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(wake_r, selectors.EVENT_READ)
    for pipe, name in ((child.stdout, b"stdout"), (child.stderr, b"stderr")):
        fd = os.dup(pipe.fileno())
        pipe.close()
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, _Relay(fd, name, log_fd))

    status, finished_at = None, None
    while status is None or len(selector.get_map()) > 1:
        if status is not None and not namespaces:
            _kill_descendants()  # again: one may have forked between the scan and the kill
        for key, _ in selector.select(timeout=None if status is None else 0.1):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            elif not key.data.feed():
                selector.unregister(key.fd)
        status = _reap(child.pid, namespaces) if status is None else status
        if status is not None and finished_at is None:
            finished_at = time.time()
    _reap(-1, namespaces)
    exit_code = os.waitstatus_to_exitcode(status) if status is not None else 255
    if exit_code < 0:
        exit_code = 128 - exit_code  # killed by a signal: report it as a shell does
    _write_atomically(config["exit_path"], {"exit_code": exit_code, "finished_at": finished_at})
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
