"""Reading the process runtime's CRI log files for `kubectl logs`.

The shim writes one entry per line: `<RFC3339Nano> <stdout|stderr> <F|P> <content>`
(`P` is a piece of a line longer than 16 KiB, `F` ends a line). Reading
strips the prefix, or keeps the timestamp with `timestamps`, and applies
`tail_lines` (counted in entries, as kubelet does), `since` (a UNIX time;
the caller turns `sinceSeconds`/`sinceTime` into it) and `limit_bytes`
(the stream ends once that many bytes are out, cutting the last entry, as
kubelet's log writer does). `previous` belongs to the caller: it picks an
earlier attempt's file.

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
                   tail_lines: int | None = None, since: float | None = None, limit_bytes: int | None = None,
                   timestamps: bool = False) -> AsyncIterator[bytes]:
    """The log at `path` as chunks; with `follow`, keep reading until `exited()` and the file is drained."""
    offset = 0
    remaining = limit_bytes if limit_bytes is not None else -1  # -1: no limit

    def take(data: bytes) -> list[LogEntry]:
        # Only whole lines: the writer may be half-way through one.
        nonlocal offset
        end = data.rfind(b"\n") + 1
        offset += end
        entries = [parse_entry(line) for line in data[:end].splitlines()]
        return [e for e in entries if e is not None and (since is None or e.unix_time >= since)]

    def render(entries: list[LogEntry]) -> bytes:
        nonlocal remaining
        out = b"".join(entry.render(timestamps=timestamps) for entry in entries)
        if remaining >= 0:
            out = out[:remaining]
            remaining -= len(out)
        return out

    first = take(await asyncio.to_thread(_read_from, path, offset))
    if tail_lines is not None:
        first = first[-tail_lines:] if tail_lines > 0 else []
    if first:
        yield render(first)
    while follow and remaining != 0:
        done = exited()  # read once more after seeing the exit, so nothing written before it is lost
        entries = take(await asyncio.to_thread(_read_from, path, offset))
        if entries:
            yield render(entries)
        elif done:
            return
        else:
            await asyncio.sleep(follow_interval)
