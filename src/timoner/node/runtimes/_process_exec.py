"""`kubectl exec` for the process runtime: a command run beside a container's process.

The runtime builds the command line (`nsenter` into the container's
namespaces, or a plain process in its working directory); this module
runs it and exposes it as an `ExecSession`. Without a TTY the command gets
pipes and stdout and stderr stay apart; with one, it gets the slave end of
a pseudo-terminal (made its controlling terminal by `setsid -c`) and all
output is stream 1, as kubectl expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import struct
import termios
from collections.abc import AsyncIterator, Mapping, Sequence

__all__ = ["ProcessExecSession", "start_exec"]

_EOF = (0, b"")


class ProcessExecSession:
    """An `ExecSession` over one child process; `output()` may be iterated once."""

    def __init__(self, process: asyncio.subprocess.Process, *, master_fd: int | None) -> None:
        self.process = process
        self._master = master_fd
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self._open_streams = 0
        self._pumps: list[asyncio.Task[None]] = []
        if master_fd is None:
            for number, reader in ((1, process.stdout), (2, process.stderr)):
                if reader is not None:
                    self._open_streams += 1
                    self._pumps.append(asyncio.create_task(self._pump(number, reader)))
        else:
            self._open_streams = 1
            os.set_blocking(master_fd, False)
            asyncio.get_running_loop().add_reader(master_fd, self._read_master)

    async def _pump(self, number: int, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(65536):
                await self._queue.put((number, chunk))
        finally:
            await self._queue.put(_EOF)

    def _read_master(self) -> None:
        assert self._master is not None
        try:
            chunk = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the slave end has closed it
            chunk = b""
        if chunk:
            self._queue.put_nowait((1, chunk))
            return
        asyncio.get_running_loop().remove_reader(self._master)
        self._queue.put_nowait(_EOF)

    async def write_stdin(self, data: bytes) -> None:
        if self._master is not None:
            await asyncio.to_thread(os.write, self._master, data)
        elif self.process.stdin is not None:
            self.process.stdin.write(data)
            await self.process.stdin.drain()

    async def close_stdin(self) -> None:
        if self._master is not None:
            await self.write_stdin(b"\x04")  # a terminal has no half-close: send end-of-file as a user would
        elif self.process.stdin is not None:
            self.process.stdin.close()

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while self._open_streams:
            item = await self._queue.get()
            if item == _EOF:
                self._open_streams -= 1
            else:
                yield item
        if self._master is not None:
            os.close(self._master)
            self._master = None

    async def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        return await self.process.wait()

    def kill(self) -> None:
        """End the command (and, being a session leader, its group) because its container is gone."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)


async def start_exec(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, tty: bool,
                     stdin: bool) -> ProcessExecSession:
    """Start `argv` (already wrapped by the runtime) and return its session."""
    if not tty:
        process = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), cwd=cwd, start_new_session=True,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return ProcessExecSession(process, master_fd=None)
    master, slave = pty.openpty()
    try:
        # `setsid -c` makes the slave the controlling terminal, so ^C and window sizes reach the command.
        process = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return ProcessExecSession(process, master_fd=master)
