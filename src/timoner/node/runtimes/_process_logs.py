"""Reading the process runtime's CRI log files for `kubectl logs`.

The shim writes one entry per line: `<RFC3339Nano> <stdout|stderr> <F|P> <content>`
(`P` is a piece of a line longer than 16 KiB, `F` ends a line). Reading
strips the prefix, or keeps the timestamp with `timestamps`, and applies
`tail_lines` (counted in entries, as kubelet does) and `since_seconds`.
`limitBytes` and `previous` belong to the caller: one is a cut of this
stream, the other picks an earlier attempt's container.

Following polls the file: the writer is the shim, a separate process that
may outlive this agent, so there is no in-process event to wait on, and
the standard library has no inotify. Following ends once the container
has exited and the file holds nothing more.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LogEntry", "follow_interval", "parse_entry", "read_log"]

# How often a follower looks for new lines; a trade between latency and wake-ups.
follow_interval = 0.05


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a CRI log file."""

    timestamp: bytes
    stream: bytes
    partial: bool
    content: bytes

    @property
    def unix_time(self) -> float:
        text = self.timestamp.decode()
        seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
        fraction = text[19:].rstrip("Z")
        return seconds + (float(fraction) if fraction else 0.0)

    def render(self, *, timestamps: bool) -> bytes:
        body = self.content if self.partial else self.content + b"\n"
        return self.timestamp + b" " + body if timestamps else body


def parse_entry(line: bytes) -> LogEntry | None:
    """The entry in one line (without its newline), or None for a line that is not one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    return LogEntry(parts[0], parts[1], parts[2] == b"P", parts[3] if len(parts) == 4 else b"")


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


async def read_log(path: Path, *, exited: Callable[[], bool], follow: bool = False,
                   tail_lines: int | None = None, since_seconds: float | None = None,
                   timestamps: bool = False) -> AsyncIterator[bytes]:
    """The log at `path` as chunks; with `follow`, keep reading until `exited()` and the file is drained."""
    since = time.time() - since_seconds if since_seconds is not None else None
    offset = 0

    def take(data: bytes) -> list[LogEntry]:
        # Only whole lines: the writer may be half-way through one.
        nonlocal offset
        end = data.rfind(b"\n") + 1
        offset += end
        entries = [parse_entry(line) for line in data[:end].splitlines()]
        return [e for e in entries if e is not None and (since is None or e.unix_time >= since)]

    first = take(await asyncio.to_thread(_read_from, path, offset))
    if tail_lines is not None:
        first = first[-tail_lines:] if tail_lines > 0 else []
    if first:
        yield b"".join(entry.render(timestamps=timestamps) for entry in first)
    while follow:
        done = exited()  # read once more after seeing the exit, so nothing written before it is lost
        entries = take(await asyncio.to_thread(_read_from, path, offset))
        if entries:
            yield b"".join(entry.render(timestamps=timestamps) for entry in entries)
        elif done:
            return
        else:
            await asyncio.sleep(follow_interval)
