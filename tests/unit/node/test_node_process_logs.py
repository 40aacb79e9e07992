"""The process runtime's pure parts: argv resolution, the CRI log format and reading it back."""

from __future__ import annotations

import time

import pytest

from timoner.node.runtime import ContainerSpec
from timoner.node.runtimes._process_logs import LogEntry, parse_entry, read_log
from timoner.node.runtimes._process_shim import timestamp
from timoner.node.runtimes.process import ContainerConfigError, resolve_argv


def spec(image: str, command=(), args=()) -> ContainerSpec:
    return ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image=image,
                         command=tuple(command), args=tuple(args))


@pytest.mark.parametrize(("image", "command", "args", "argv"), [
    ("nginx", ["nginx", "-g"], ["daemon off;"], ("nginx", "-g", "daemon off;")),  # command wins over any image
    ("busybox", [], ["-c", "echo hi"], ("sh", "-c", "echo hi")),
    ("docker.io/library/alpine:3.19", [], ["-c", "true"], ("sh", "-c", "true")),
    ("busybox@sha256:abcd", [], [], ("sh",)),
    ("python:3.12-slim", [], ["-c", "pass"], ("python3", "-c", "pass")),
    ("registry:5000/team/busybox:1", ["echo"], [], ("echo",)),
])
def test_resolve_argv(image, command, args, argv):
    assert resolve_argv(spec(image, command, args)) == argv


@pytest.mark.parametrize("image", ["nginx:1.25", "registry:5000/busybox-like:1", "ghcr.io/x/app"])
def test_resolve_argv_without_command_for_unknown_image(image):
    with pytest.raises(ContainerConfigError, match=f'cannot run image "{image}" without a command'):
        resolve_argv(spec(image, args=["x"]))


def test_timestamp_is_rfc3339_nano_utc():
    assert timestamp(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert timestamp(5) == "1970-01-01T00:00:00.000000005Z"


@pytest.mark.parametrize(("line", "entry"), [
    (b"2023-11-14T22:13:20.1Z stdout F hello world", LogEntry(b"2023-11-14T22:13:20.1Z", b"stdout", False,
                                                               b"hello world")),
    (b"2023-11-14T22:13:20.1Z stderr P  lead", LogEntry(b"2023-11-14T22:13:20.1Z", b"stderr", True, b" lead")),
    (b"2023-11-14T22:13:20.1Z stdout F", LogEntry(b"2023-11-14T22:13:20.1Z", b"stdout", False, b"")),
    (b"2023-11-14T22:13:20.1Z stdin F x", None),
    (b"2023-11-14T22:13:20.1Z stdout X x", None),
    (b"garbage", None),
])
def test_parse_entry(line, entry):
    assert parse_entry(line) == entry


def test_entry_time_and_rendering():
    entry = LogEntry(b"2023-11-14T22:13:20.250000000Z", b"stdout", False, b"hi")
    assert entry.unix_time == pytest.approx(1_700_000_000.25)
    assert entry.render(timestamps=False) == b"hi\n"
    assert entry.render(timestamps=True) == b"2023-11-14T22:13:20.250000000Z hi\n"
    assert LogEntry(entry.timestamp, b"stdout", True, b"par").render(timestamps=False) == b"par"


def write_log(path, *entries: tuple[float, str, str, str], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(f"{timestamp(int(t * 1e9))} {stream} {tag} {text}\n".encode()
                              for t, stream, tag, text in entries) + tail)


async def collect(path, **options) -> bytes:
    return b"".join([chunk async for chunk in read_log(path, exited=lambda: True, **options)])


async def test_read_log_options(tmp_path):
    now = time.time()
    log = tmp_path / "0.log"
    write_log(log, (now - 100, "stdout", "F", "old"), (now - 1, "stderr", "P", "new "),
              (now - 1, "stderr", "F", "line"), (now, "stdout", "F", "last"),
              tail=b"2023-11-14T22:13:20.1Z stdout F half-writ")  # no newline yet: not returned
    assert await collect(log) == b"old\nnew line\nlast\n"
    assert await collect(log, tail_lines=2) == b"line\nlast\n"  # entries, as kubelet counts them
    assert await collect(log, tail_lines=0) == b""
    assert await collect(log, tail_lines=100) == b"old\nnew line\nlast\n"
    assert await collect(log, since=now - 10) == b"new line\nlast\n"
    assert await collect(log, since=now - 10, tail_lines=1) == b"last\n"
    assert await collect(log, since=now + 10) == b""
    stamped = (await collect(log, timestamps=True, tail_lines=1)).decode()
    assert stamped == f"{timestamp(int(now * 1e9))} last\n"


@pytest.mark.parametrize(("options", "expected"), [
    ({"limit_bytes": 1}, b"o"),
    ({"limit_bytes": 6}, b"old\nne"),  # cut mid-entry, as kubelet's log writer cuts
    ({"limit_bytes": 100}, b"old\nnew line\nlast\n"),
    ({"limit_bytes": 3, "tail_lines": 1}, b"las"),
    ({"limit_bytes": 10, "since": 1.5}, b"new line\nl"),  # entries dropped by `since` do not count
    ({"limit_bytes": 7, "timestamps": True}, b"1970-01"),  # the timestamp prefix counts
])
async def test_read_log_limit_bytes(tmp_path, options, expected):
    log = tmp_path / "0.log"
    write_log(log, (1, "stdout", "F", "old"), (2, "stderr", "P", "new "), (2, "stderr", "F", "line"),
              (3, "stdout", "F", "last"))
    assert await collect(log, **options) == expected


async def test_limit_bytes_ends_a_follow(tmp_path):
    """Once the limit is out the stream ends, though the container still runs (nothing says it exited)."""
    log = tmp_path / "0.log"
    write_log(log, (time.time(), "stdout", "F", "one"))
    stream = read_log(log, exited=lambda: False, follow=True, limit_bytes=6)
    assert await anext(stream) == b"one\n"
    with log.open("ab") as f:
        f.write(f"{timestamp(time.time_ns())} stdout F two\n".encode())
    assert [chunk async for chunk in stream] == [b"tw"]


async def test_read_log_of_a_missing_file_is_empty(tmp_path):
    assert await collect(tmp_path / "none.log") == b""
    assert await collect(tmp_path / "none.log", follow=True) == b""


async def test_follow_reads_what_is_appended_until_exit(tmp_path):
    log = tmp_path / "0.log"
    write_log(log, (time.time(), "stdout", "F", "one"))
    exited = False
    stream = read_log(log, exited=lambda: exited, follow=True)
    assert await anext(stream) == b"one\n"
    with log.open("ab") as f:
        f.write(f"{timestamp(time.time_ns())} stdout F two\n".encode())
    assert await anext(stream) == b"two\n"
    exited = True
    with log.open("ab") as f:  # written before the exit was noticed: still delivered
        f.write(f"{timestamp(time.time_ns())} stdout F three\n".encode())
    assert [chunk async for chunk in stream] == [b"three\n"]
