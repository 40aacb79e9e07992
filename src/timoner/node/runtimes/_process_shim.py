"""The process runtime's shim: the small program that owns one container's process for its whole life.

The agent never runs a container directly; it starts a shim for it in a
session of its own: `python -I -S -c <LAUNCH> <state>` (see `command`).
The launch code puts this file's directory on `sys.path`, imports this
module (so its bytecode comes from `__pycache__`; a script would be
compiled at every start) and calls `main`. `<state>` is
`<root>/containers/<id>`, the prefix of the container's exit file and
attach socket (and what names the shim in `ps`); the rest of its
configuration (argv, env, paths, mounts, ...) arrives on stdin as one
`marshal`led dict, which keeps the environment out of `ps` too. Standard
library only: it does not import Timoner. The shim outlives the agent,
which is what lets an agent restart without touching its pods:

- it sets itself as a *child subreaper*, so a background process the
  container forks and orphans is re-parented to the shim, not to init, and
  can be found and killed when the container ends;
- with namespaces (the agent runs as root), it unshares a PID namespace for
  its one child, which becomes PID 1 there and, between fork and exec
  (`_process_init`, imported by that child only), takes mount, UTS and IPC
  namespaces of its own, sets the hostname to the pod's name, binds each
  volume (`mounts`) at its container path, and mounts a fresh `/proc`; when
  that PID 1 exits the kernel kills everything else in the namespace. The
  shim itself stays in the host's namespaces;
- it relays the container's stdout and stderr into the per-container log
  file in the CRI format (`<RFC3339Nano> stdout|stderr F|P <line>`), so
  logs keep flowing while no agent is running;
- it serves the container's stdio socket (`_process_stdio`, imported at
  the start like everything else the shim runs later: the package may be
  upgraded or gone by the time a container exits or is attached to) for
  `kubectl attach`: live output to every attached client, and their input
  to the container's stdin, a pipe it keeps open (`stdin: true`); with
  `tty: true` the container gets a pseudo-terminal as its controlling
  terminal and stdin/stdout/stderr, and the shim relays the terminal's
  output and resizes it;
- when the container's main process exits, it kills whatever it left
  behind, waits for the log relays to drain, and writes the exit code to
  `<state>.exit` atomically (`{"exit_code": ..., "finished_at": ...}`): a
  re-adopting agent cannot `wait()` for a process that is not its child,
  but it can read that file.

It reports back to the agent once, one line on its stdout: `pid <n>` (the
container's host PID) or `error <message>` when the process could not be
started.

Every container pays for its shim, in start-up CPU and in memory for its
whole life (`docs/BENCHMARKS.md`), so the shim keeps its imports to what
its steady state needs: no `site` (`-S`), `marshal` rather than `json`,
`os.fork` and `execve` rather than `subprocess`, `select.poll` rather than
`selectors`, `_signal` and `_socket` rather than `signal` and `socket`
(whose enums import `enum`), and a three-line binding of `_ctypes` for the
system calls Python 3.11 lacks rather than `ctypes`. What only the
container's child needs (namespaces, mounts) lives in `_process_init`.
"""

import _signal
import _socket
import marshal
import os
import select
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWPID = 0x20000000

# Kubelet splits longer lines into partial (`P`) entries of this size, as containerd does.
MAX_LINE = 16 * 1024

# What the agent runs after `python -I -S -c`, with this directory in it: see `command`.
LAUNCH = "import sys; sys.path.insert(0, {directory!r}); import _process_shim; sys.exit(_process_shim.main())"


def command(python: str, state: str) -> list[str]:
    """The argv that starts a shim for the container whose records start with `state` (`<root>/containers/<id>`)."""
    launch = LAUNCH.format(directory=os.path.dirname(os.path.abspath(__file__)))
    return [python, "-I", "-S", "-c", launch, state]


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


class short_path:  # lower case: used as contextlib's managers are, `with short_path(path) as address:`
    """`path` as an address `bind` and `connect` accept: unix socket paths end at 107 bytes, state dirs may not.

    A longer path is reached through `/proc/self/fd/<dir>/<name>`, with its directory held open meanwhile.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._directory: int | None = None

    def __enter__(self) -> str:
        if len(self._path.encode()) < 100:
            return self._path
        self._directory = os.open(os.path.dirname(self._path) or ".", os.O_PATH | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._directory}/{os.path.basename(self._path)}"

    def __exit__(self, *_exc: object) -> None:
        if self._directory is not None:
            os.close(self._directory)
            self._directory = None


class Libc:
    """The C library calls Python 3.11's `os` lacks (prctl, unshare, mount, umount2, sethostname).

    Bound through `_ctypes` as `ctypes.CDLL` does it; importing `ctypes`
    itself would cost every shim ~2 ms and ~0.2 MB more. Arguments are ints,
    bytes or None, results C ints.
    """

    def __init__(self) -> None:
        import _ctypes

        class Int(_ctypes._SimpleCData):
            _type_ = "i"

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = Int

        self._handle = _ctypes.dlopen(None)  # what `Function((name, self))` reads from `self`
        self._function = Function
        self._errno = _ctypes.get_errno

    def call(self, name: str, *args: int | bytes | None) -> int:
        """`name(*args)`; on failure (non-zero) see `errno`."""
        return self._function((name, self))(*args)

    def errno(self) -> int:
        return self._errno()

    def check(self, what: str, name: str, *args: int | bytes | None) -> None:
        """`name(*args)`, raising `OSError("<what>: <strerror>")` when it fails."""
        if self.call(name, *args) != 0:
            errno = self._errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")


class Poller:
    """`select.poll` with a handler per descriptor, called with the event mask; `_process_stdio` registers on it too."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._handlers: dict = {}

    def register(self, fd: int, events: int, handler) -> None:
        self._poll.register(fd, events)
        self._handlers[fd] = handler

    def modify(self, fd: int, events: int) -> None:
        self._poll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def poll(self, timeout_ms: int | None) -> None:
        for fd, mask in self._poll.poll(timeout_ms):
            handler = self._handlers.get(fd)  # an earlier handler of this round may have unregistered it
            if handler is not None:
                handler(mask)


class _Relay:
    """Turns one output descriptor's bytes into CRI log entries; `tap` sees every chunk first (attached clients)."""

    def __init__(self, fd: int, stream: bytes, log_fd: int, tap) -> None:
        self.fd, self.stream, self.log_fd, self.tap = fd, stream, log_fd, tap
        self.buffer = b""
        os.set_blocking(fd, False)

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
            if error.errno != 5:  # EIO
                raise
            chunk = b""  # a TTY's master reads EIO once nothing holds the terminal open: its end of file
        if chunk:
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


def _listen(path: str) -> _socket.socket:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    with short_path(path) as address:
        sock.bind(address)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


class _Stdio:
    """The container's standard streams: output pipes or a TTY, a stdin pipe when asked.

    `child` is what the container's process gets as (stdin, stdout, stderr), None meaning /dev/null.
    """

    def __init__(self, config: dict) -> None:
        self.tty = bool(config.get("tty"))
        self.stdin_once = bool(config.get("stdin_once"))
        self.master = self.stdin_w = None
        self.outputs: list[tuple[int, bytes]] = []  # (fd, log stream name)
        if self.tty:
            self.master, slave = os.openpty()
            self.child: tuple[int | None, int, int] = (slave, slave, slave)
            self.outputs.append((self.master, b"stdout"))
        else:
            stdin_r = None
            if config.get("stdin"):
                stdin_r, self.stdin_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.child = (stdin_r, out_w, err_w)
            self.outputs += [(out_r, b"stdout"), (err_r, b"stderr")]

    def forked(self) -> None:
        """The child has its ends: close ours."""
        for fd in set(self.child):
            if fd is not None:
                os.close(fd)

    def stdin_fd(self) -> int | None:
        """The descriptor attached clients write the container's stdin to (the stdio server's to close)."""
        return os.dup(self.master) if self.tty else self.stdin_w


def _spawn(config: dict, stdio: _Stdio, *, namespaces: bool, libc: Libc) -> int:
    """Fork the container's process and have it exec; its PID, or OSError saying why it did not start.

    The child reports a failure on a close-on-exec pipe, so end of file there means the exec happened.
    """
    failed_r, failed_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(failed_r)
            import _process_init

            _process_init.run(config, stdio.child, tty=stdio.tty, namespaces=namespaces, libc=libc)
        except BaseException as error:
            message = str(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
            os.write(failed_w, message.encode(errors="replace"))
        finally:
            os._exit(127)
    os.close(failed_w)
    stdio.forked()
    message = _read_all(failed_r).decode(errors="replace")
    os.close(failed_r)
    if message:
        os.waitpid(pid, 0)
        raise OSError(message)
    return pid


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


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
            os.kill(pid, _signal.SIGKILL)
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
            # pipes close too. With a PID namespace the kernel already has.
            if not namespaces:
                _kill_descendants()


def _write_exit(path: str, exit_code: int, finished_at: float) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f'{{"exit_code": {int(exit_code)}, "finished_at": {float(finished_at)!r}}}'.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _to_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, fd)
    os.close(devnull)


def _report(line: str) -> None:
    os.write(1, (line.replace("\n", " ") + "\n").encode(errors="replace"))
    # The agent may be gone by the time anything else would be written; nothing else goes there.
    _to_devnull(1)


def main() -> int:
    state = sys.argv[1]
    config = marshal.loads(_read_all(0))
    _to_devnull(0)
    namespaces = config["hostname"] is not None
    try:
        import _process_stdio  # now rather than at the first attach: see the module docstring

        libc = Libc()
        libc.check("prctl(PR_SET_CHILD_SUBREAPER)", "prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        log_fd = os.open(config["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        poller = Poller()
        # One thread only: after unshare(CLONE_NEWPID) this process cannot start threads. SIGCHLD wakes the
        # loop through a pipe, so the main process's exit is seen at once even while its children hold the
        # pipes. Set before the fork, so an exit that comes at once is not missed.
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        _signal.set_wakeup_fd(wake_w)
        poller.register(wake_r, select.POLLIN, lambda _mask: _read_all_available(wake_r))
        stdio = _Stdio(config)
        listener = _listen(state + ".sock")
        if namespaces:
            # Only our children enter it: the next one is PID 1 there, the shim stays in the host's.
            libc.check("unshare(CLONE_NEWPID)", "unshare", CLONE_NEWPID)
        pid = _spawn(config, stdio, namespaces=namespaces, libc=libc)
    except (OSError, ImportError) as error:
        _report(f"error {error}")
        return 1
    _report(f"pid {pid}")

    attach = _process_stdio.StdioServer(listener, state + ".sock", poller, stdin_fd=stdio.stdin_fd(),
                                        stdin_once=stdio.stdin_once, tty_fd=stdio.master)
    kinds = {b"stdout": _process_stdio.STDOUT, b"stderr": _process_stdio.STDERR}
    relays = set()
    for fd, stream in stdio.outputs:
        relay = _Relay(fd, stream, log_fd, lambda chunk, kind=kinds[stream]: attach.broadcast(kind, chunk))
        relays.add(relay)
        poller.register(fd, select.POLLIN, _relay_handler(relay, relays, poller))
    status, finished_at = None, None
    while status is None or relays:
        if status is not None and not namespaces:
            _kill_descendants()  # again: one may have forked between the scan and the kill
        poller.poll(None if status is None else 100)
        if status is None:
            status = _reap(pid, namespaces)
            if status is not None:
                finished_at = time.time()
    attach.close()  # after the relays drained: attached clients have seen all the output
    _reap(-1, namespaces)
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code < 0:
        exit_code = 128 - exit_code  # killed by a signal: report it as a shell does
    _write_exit(state + ".exit", exit_code, finished_at)
    return 0


def _relay_handler(relay: _Relay, relays: set, poller: Poller):
    def on_event(_mask: int) -> None:
        if not relay.feed():
            poller.unregister(relay.fd)
            relays.discard(relay)

    return on_event


def _read_all_available(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
