"""What a process container's own process does between the shim's fork and the exec of its command.

Imported by that child only (see `_process_shim`), so the long-lived shim
never loads it: `run` restores the signals Python ignores, starts a
session, and with namespaces (the shim unshared a PID namespace, so this
process is its PID 1) joins the pod's network namespace when it has one
(`setns` on the file the config names), takes mount, UTS and IPC namespaces of its own, sets
the hostname, binds the volumes, mounts a fresh `/proc`; then it takes its
standard streams (a TTY becomes its controlling terminal), changes to the
working directory and execs. Anything that fails raises `OSError`, which
the shim reports as the container's start error. Standard library only.

Mounts (`_prepare_mounts`): every volume is bound at its container path,
read-only when asked, inside the private mount namespace only. A container
path the host lacks is made on a private tmpfs laid over its nearest
existing ancestor (`_cover`), so nothing is ever created on the host's own
filesystem; a missing working directory is made the same way, and a
container path that is a symlink to nothing is replaced on such a tmpfs.
A single file binds onto an existing file (`/etc/hosts`) as is.
"""

import _signal
import errno as errnos
import os
import stat

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
MS_RDONLY, MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_RELATIME = 1, 32, 1024, 2048, 4096, 8192, 1 << 21
MNT_DETACH = 2
# statvfs f_flag bits (ST_*) -> the mount flags a read-only remount must keep.
_KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
               (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))


def run(config: dict, fds: tuple, *, tty: bool, namespaces: bool, libc) -> None:
    """Become the container's process and exec its command; returns only by raising.

    `fds` are its (stdin, stdout, stderr), None for /dev/null; `libc` is the shim's `Libc`.
    """
    # Python ignores these; a program exec'd from it must not inherit that (subprocess's restore_signals).
    for signal in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(signal, _signal.SIG_DFL)
    stdin, stdout, stderr = fds
    if stdin is None:
        stdin = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)  # before any mount can hide /dev
    os.setsid()
    if namespaces:
        if config.get("netns"):
            _join_network(config["netns"], libc)
        _enter_namespaces(config["hostname"], libc)
        _prepare_mounts(config.get("mounts") or [], config["staging"], config["cwd"], libc)
        # PID 1 of the new PID namespace already, so this /proc shows that namespace.
        libc.check("mount /proc", "mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    if tty:
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the terminal on fd 0 becomes the session's controlling one
    os.chdir(config["cwd"])
    argv = config["argv"]
    os.execve(argv[0], argv, config["env"])


def _join_network(path: str, libc) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise OSError(error.errno, f"the pod's network namespace {path}: {error.strerror}") from None
    try:
        libc.check("setns (network)", "setns", fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def _enter_namespaces(hostname: str, libc) -> None:
    libc.check("unshare", "unshare", CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC)
    # Private propagation first, or mounting /proc later would replace the host's /proc too.
    libc.check("make / private", "mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    name = hostname.encode()
    libc.check("sethostname", "sethostname", name, len(name))


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = libc.call("mount", source.encode() if source is not None else None, target.encode(),
                       fstype.encode() if fstype is not None else None, flags,
                       data.encode() if data is not None else None)
    if result != 0:
        errno = libc.errno()
        raise OSError(errno, f"mount {source or fstype} on {target}: {os.strerror(errno)}")


def _depth(path: str) -> int:
    return len([part for part in os.path.normpath(path).split("/") if part])


def _prepare_mounts(mounts: list[dict], staging: str, cwd: str, libc) -> None:
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
            if not os.path.exists(target):  # missing, or a symlink to nothing: mount(2) would follow it
                _create_in_namespace(target, directory=stat.S_ISDIR(os.fstat(fd).st_mode), staging=staging,
                                     libc=libc)
            try:
                _mount(libc, f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                if mount["read_only"]:
                    kept = os.statvfs(target).f_flag
                    flags = MS_BIND | MS_REMOUNT | MS_RDONLY
                    flags |= sum(ms for st, ms in _KEPT_FLAGS if kept & st)
                    _mount(libc, None, target, None, flags)
            except OSError as error:
                raise OSError(error.errno, f"mount {mount['host_path']} at {target}: "
                                           f"{os.strerror(error.errno or 0)}") from None
    finally:
        for fd in opened:
            os.close(fd)
    if not os.path.isdir(cwd):
        # As container runtimes do, a missing working directory is made; here in the namespace only.
        _create_in_namespace(os.path.normpath(cwd), directory=True, staging=staging, libc=libc)


def _create_in_namespace(target: str, *, directory: bool, staging: str, libc) -> None:
    """Make `target` (and its missing parents) exist in this mount namespace without writing to the host.

    The nearest existing ancestor is covered with a private tmpfs (`_cover`)
    that shows the same entries, so the new ones are made on that tmpfs.
    """
    if os.path.islink(target):
        # A dangling symlink (`/etc/resolv.conf` to the file of a resolver that is not running): replaced,
        # on the tmpfs over its directory, by the file or directory the mount needs.
        _cover(os.path.dirname(target), staging, libc)
        os.unlink(target)
        _make(target, directory=directory)
        return
    missing = []
    ancestor = target
    while not os.path.lexists(ancestor):
        missing.append(os.path.basename(ancestor))
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise OSError(errnos.ENOTDIR, f"cannot make mount point {target}: {ancestor} is not a directory")
    _cover(ancestor, staging, libc)
    path = ancestor
    for name in reversed(missing[1:]):
        path = os.path.join(path, name)
        os.mkdir(path, 0o755)
    _make(target, directory=directory)


def _make(target: str, *, directory: bool) -> None:
    if directory:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _cover(directory: str, staging: str, libc) -> None:
    """Lay a tmpfs over `directory` that holds every entry it had, each bound from the host.

    Paths below `directory` still lead to the host's files (writes included),
    only new entries of `directory` itself live on the tmpfs. It is built
    at `staging` (an empty directory of the agent's) and then moved over
    `directory`; over `/` it becomes the process's root, as switch_root does.
    """
    info = os.stat(directory)
    _mount(libc, "tmpfs", staging, "tmpfs", 0, f"mode={info.st_mode & 0o7777:o},uid={info.st_uid},gid={info.st_gid}")
    try:
        for entry in os.scandir(directory):
            copy = os.path.join(staging, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), copy)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(copy)
                _mount(libc, entry.path, copy, None, MS_BIND | MS_REC)
            else:
                os.close(os.open(copy, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                _mount(libc, entry.path, copy, None, MS_BIND)
        real_dir, real_staging = os.path.realpath(directory), os.path.realpath(staging)
        if real_staging.startswith(real_dir.rstrip("/") + "/"):
            # The entry holding `staging` was bound with the half-built tmpfs on it: drop that copy.
            libc.check("detach the staging copy", "umount2",
                       os.path.join(staging, os.path.relpath(real_staging, real_dir)).encode(), MNT_DETACH)
        if real_dir == "/":
            os.chdir(staging)
            _mount(libc, ".", "/", None, MS_MOVE)
            os.chroot(".")
            os.chdir("/")
        else:
            _mount(libc, staging, directory, None, MS_MOVE)
    except BaseException:
        libc.call("umount2", staging.encode(), MNT_DETACH)
        raise
