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
- with namespaces, it binds each volume (`mounts`) at its container path,
  read-only when asked, inside that private mount namespace only (see
  `_prepare_mounts`: a container path the host lacks is made on a private
  tmpfs laid over its nearest existing ancestor, so nothing is ever
  created on the host's own filesystem);
- it relays the container's stdout and stderr into the per-container log
  file in the CRI format (`<RFC3339Nano> stdout|stderr F|P <line>`), so
  logs keep flowing while no agent is running;
- it serves the container's stdio socket (`_process_stdio.py`, loaded by
  path beside this file) for `kubectl attach`: live output to every
  attached client, and their input to the container's stdin, a pipe it
  keeps open (`stdin: true`); with `tty: true` the container gets a
  pseudo-terminal as its controlling terminal and stdin/stdout/stderr,
  and the shim relays the terminal's output and resizes it;
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
import errno as errnos
import fcntl
import functools
import importlib.util
import json
import os
import pty
import selectors
import signal
import stat
import subprocess
import sys
import termios
import time

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
MS_RDONLY, MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_RELATIME = 1, 32, 1024, 2048, 4096, 8192, 1 << 21
MNT_DETACH = 2
# statvfs f_flag bits (ST_*) -> the mount flags a read-only remount must keep.
_KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
               (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))

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
    """Turns one output pipe's bytes into CRI log entries; `tap` sees every chunk first (attached clients)."""

    def __init__(self, fd: int, stream: bytes, log_fd: int, tap=None) -> None:
        self.fd, self.stream, self.log_fd, self.tap = fd, stream, log_fd, tap
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
        except OSError as error:
            if error.errno != errnos.EIO:
                raise
            chunk = b""  # a TTY's master reads EIO once nothing holds the terminal open: its end of file
        if chunk and self.tap is not None:
            self.tap(chunk)
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


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(source.encode() if source is not None else None, target.encode(),
                         fstype.encode() if fstype is not None else None, flags,
                         data.encode() if data is not None else None)
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or fstype} on {target}: {os.strerror(errno)}")


def _depth(path: str) -> int:
    return len([part for part in os.path.normpath(path).split("/") if part])


def _prepare_mounts(mounts: list[dict], staging: str, cwd: str) -> None:
    """Bind every volume at its container path, and make sure the working directory exists, in this namespace.

    Runs after `_enter_namespaces` made every mount private, so nothing here
    reaches the host. Sources are opened first and bound through their
    descriptors: a mount made here may hide the host path of a later one's
    source. Parents are mounted before children (by path depth, as
    containerd sorts them), so `/data` and then `/data/cache` nest.
    """
    opened = []
    try:
        for mount in mounts:
            try:
                opened.append(os.open(mount["host_path"], os.O_PATH | os.O_CLOEXEC))
            except OSError as error:
                raise OSError(error.errno, f"volume source {mount['host_path']}: {error.strerror}") from None
        for mount, fd in sorted(zip(mounts, opened, strict=True), key=lambda pair: _depth(pair[0]["container_path"])):
            target = os.path.normpath(mount["container_path"])
            if not os.path.lexists(target):
                _create_in_namespace(target, directory=stat.S_ISDIR(os.fstat(fd).st_mode), staging=staging)
            try:
                _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                if mount["read_only"]:
                    kept = os.statvfs(target).f_flag
                    flags = MS_BIND | MS_REMOUNT | MS_RDONLY
                    flags |= sum(ms for st, ms in _KEPT_FLAGS if kept & st)
                    _mount(None, target, None, flags)
            except OSError as error:
                raise OSError(error.errno, f"mount {mount['host_path']} at {target}: "
                                           f"{os.strerror(error.errno or 0)}") from None
    finally:
        for fd in opened:
            os.close(fd)
    if not os.path.isdir(cwd):
        # As container runtimes do, a missing working directory is made; here in the namespace only.
        _create_in_namespace(os.path.normpath(cwd), directory=True, staging=staging)


def _create_in_namespace(target: str, *, directory: bool, staging: str) -> None:
    """Make `target` (and its missing parents) exist in this mount namespace without writing to the host.

    The nearest existing ancestor is covered with a private tmpfs (`_cover`)
    that shows the same entries, so the new ones are made on that tmpfs.
    """
    missing = []
    ancestor = target
    while not os.path.lexists(ancestor):
        missing.append(os.path.basename(ancestor))
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise OSError(errnos.ENOTDIR, f"cannot make mount point {target}: {ancestor} is not a directory")
    _cover(ancestor, staging)
    path = ancestor
    for name in reversed(missing[1:]):
        path = os.path.join(path, name)
        os.mkdir(path, 0o755)
    if directory:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _cover(directory: str, staging: str) -> None:
    """Lay a tmpfs over `directory` that holds every entry it had, each bound from the host.

    Paths below `directory` still lead to the host's files (writes included),
    only new entries of `directory` itself live on the tmpfs. It is built
    at `staging` (an empty directory of the agent's) and then moved over
    `directory`; over `/` it becomes the process's root, as switch_root does.
    """
    info = os.stat(directory)
    _mount("tmpfs", staging, "tmpfs", 0, f"mode={info.st_mode & 0o7777:o},uid={info.st_uid},gid={info.st_gid}")
    try:
        for entry in os.scandir(directory):
            copy = os.path.join(staging, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), copy)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(copy)
                _mount(entry.path, copy, None, MS_BIND | MS_REC)
            else:
                os.close(os.open(copy, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                _mount(entry.path, copy, None, MS_BIND)
        real_dir, real_staging = os.path.realpath(directory), os.path.realpath(staging)
        if real_staging.startswith(real_dir.rstrip("/") + "/"):
            # The entry holding `staging` was bound with the half-built tmpfs on it: drop that copy.
            _check(_libc.umount2(os.path.join(staging, os.path.relpath(real_staging, real_dir)).encode(),
                                 MNT_DETACH), "detach the staging copy")
        if real_dir == "/":
            os.chdir(staging)
            _mount(".", "/", None, MS_MOVE)
            os.chroot(".")
            os.chdir("/")
        else:
            _mount(staging, directory, None, MS_MOVE)
    except BaseException:
        _libc.umount2(staging.encode(), MNT_DETACH)
        raise


def _mount_proc() -> None:
    # Runs in the child, which is already PID 1 of the new namespace, so this /proc shows that namespace.
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")


def _preexec(namespaces: bool, tty: bool) -> None:
    """In the child, after `setsid` (start_new_session) and before exec."""
    if namespaces:
        _mount_proc()
    if tty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the terminal on fd 0 becomes the session's controlling one


def _load_stdio():
    """`_process_stdio.py` from beside this script: the shim imports no package, so it loads the file."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_process_stdio.py")
    spec = importlib.util.spec_from_file_location("_process_stdio", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Stdio:
    """The container's standard streams: output pipes or a TTY, a stdin pipe when asked, the attach socket.

    Made before any namespace is entered, so the socket is bound where the agent will look for it.
    """

    def __init__(self, config: dict) -> None:
        self.module = _load_stdio()
        self.tty = bool(config.get("tty"))
        self.listener = self.module.listen(config["stdio_path"]) if config.get("stdio_path") else None
        self.path = config.get("stdio_path")
        self.stdin_once = bool(config.get("stdin_once"))
        self.master = self.slave = self.stdin_r = self.stdin_w = None
        if self.tty:
            self.master, self.slave = pty.openpty()
        elif config.get("stdin"):
            self.stdin_r, self.stdin_w = os.pipe()

    def popen_args(self, namespaces: bool) -> dict:
        if self.tty:
            streams = {"stdin": self.slave, "stdout": self.slave, "stderr": self.slave}
        else:
            streams = {"stdin": self.stdin_r if self.stdin_r is not None else subprocess.DEVNULL,
                       "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        preexec = functools.partial(_preexec, namespaces, self.tty) if namespaces or self.tty else None
        return {**streams, "preexec_fn": preexec}

    def serve(self, child: subprocess.Popen, selector: selectors.BaseSelector, log_fd: int):
        """Close the child's ends, register the output relays and the socket; returns the socket's server."""
        for fd in (self.slave, self.stdin_r):
            if fd is not None:
                os.close(fd)
        stdin_fd = self.stdin_w if not self.tty else os.dup(self.master)
        server = None
        if self.listener is not None:
            server = self.module.StdioServer(self.listener, self.path, selector, stdin_fd=stdin_fd,
                                             stdin_once=self.stdin_once, tty_fd=self.master)
        elif stdin_fd is not None:
            os.close(stdin_fd)
        if self.tty:
            os.set_blocking(self.master, False)
            tap = functools.partial(server.broadcast, self.module.STDOUT) if server is not None else None
            selector.register(self.master, selectors.EVENT_READ, _Relay(self.master, b"stdout", log_fd, tap))
            return server
        for pipe, name, kind in ((child.stdout, b"stdout", self.module.STDOUT),
                                 (child.stderr, b"stderr", self.module.STDERR)):
            fd = os.dup(pipe.fileno())
            pipe.close()
            os.set_blocking(fd, False)
            tap = functools.partial(server.broadcast, kind) if server is not None else None
            selector.register(fd, selectors.EVENT_READ, _Relay(fd, name, log_fd, tap))
        return server


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


def _write_atomically(path: str, data: dict, *, dir_fd: int) -> None:
    # Through the directory opened at the start: a volume may since hide its path in our namespace.
    name = os.path.basename(path)
    fd = os.open(f"{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    with open(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f"{name}.tmp", name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


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
    exit_dir = os.open(os.path.dirname(config["exit_path"]), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        stdio = _Stdio(config)
        if namespaces:
            _enter_namespaces(config["hostname"])
            _prepare_mounts(config.get("mounts") or [], config["staging"], config["cwd"])
        child = subprocess.Popen(
            config["argv"], env=config["env"], cwd=config["cwd"], start_new_session=True,
            **stdio.popen_args(namespaces))
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
    attach = stdio.serve(child, selector, log_fd)

    status, finished_at = None, None
    while status is None or any(isinstance(key.data, _Relay) for key in selector.get_map().values()):
        if status is not None and not namespaces:
            _kill_descendants()  # again: one may have forked between the scan and the kill
        for key, mask in selector.select(timeout=None if status is None else 0.1):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            elif not isinstance(key.data, _Relay):
                key.data(mask)  # the stdio socket's listener, clients and stdin
            elif not key.data.feed():
                selector.unregister(key.fd)
        status = _reap(child.pid, namespaces) if status is None else status
        if status is not None and finished_at is None:
            finished_at = time.time()
    if attach is not None:
        attach.close()  # after the relays drained: attached clients have seen all the output
    _reap(-1, namespaces)
    exit_code = os.waitstatus_to_exitcode(status) if status is not None else 255
    if exit_code < 0:
        exit_code = 128 - exit_code  # killed by a signal: report it as a shell does
    _write_atomically(config["exit_path"], {"exit_code": exit_code, "finished_at": finished_at}, dir_fd=exit_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
