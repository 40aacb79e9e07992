"""exec/attach over SPDY: the ``*.channel.k8s.io`` stream protocols.

kubectl opens one SPDY stream per channel, named by the ``streamtype`` header
(``error``, ``stdin``, ``stdout``, ``stderr``, ``resize``). The kubelet knows
from the request's query (``stdin``, ``stdout``, ``stderr``, ``tty``) which
streams to expect and waits for all of them before starting, so does
``collect_streams``. The outcome travels as a JSON ``Status`` on the error
stream; for v4 and later an exit code becomes ``NonZeroExitCode`` with the code
in ``details.causes`` (that is how kubectl learns the exit code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from timoner.node.streaming.spdy import SpdySession, SpdyStream

STREAM_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")

STDIN, STDOUT, STDERR, ERROR, RESIZE = "stdin", "stdout", "stderr", "error", "resize"


@dataclass(frozen=True, slots=True)
class ExecOptions:
    """Which channels an exec/attach request asked for (from its query string)."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False

    def expected(self) -> frozenset[str]:
        names = {ERROR}
        if self.stdin:
            names.add(STDIN)
        if self.stdout:
            names.add(STDOUT)
        # With a TTY stderr is merged into stdout and kubectl opens no stderr stream.
        if self.stderr and not self.tty:
            names.add(STDERR)
        if self.tty:
            names.add(RESIZE)
        return frozenset(names)


@dataclass(frozen=True, slots=True)
class RemoteCommandStreams:
    error: SpdyStream
    stdin: SpdyStream | None = None
    stdout: SpdyStream | None = None
    stderr: SpdyStream | None = None
    resize: SpdyStream | None = None


async def collect_streams(session: SpdySession, options: ExecOptions) -> RemoteCommandStreams:
    """Wait until kubectl opened every stream ``options`` implies (callers add a timeout)."""
    expected = options.expected()
    found: dict[str, SpdyStream] = {}
    while not expected <= found.keys():
        stream = await session.accept()
        if stream is None:
            raise ConnectionError(f"session ended before streams {sorted(expected - found.keys())} opened")
        kind = stream.header("streamtype")
        if kind not in expected or kind in found:
            await stream.reset()
            continue
        found[kind] = stream
    return RemoteCommandStreams(**found)


def success_status() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_status(exit_code: int) -> dict:
    """The v4 Status for a command's exit code (Success for 0)."""
    if exit_code == 0:
        return success_status()
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def error_status(message: str) -> dict:
    """A Status for a failure that is not an exit code (container gone, runtime error)."""
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a resize message ``{"Width":80,"Height":24}``, or None if malformed."""
    try:
        size = json.loads(data)
        return int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None


async def finish(streams: RemoteCommandStreams, status: dict) -> None:
    """Write the final Status, then half-close every stream we write to."""
    await streams.error.write(json.dumps(status).encode(), fin=True)
    for stream in (streams.stdout, streams.stderr):
        if stream is not None:
            await stream.close()
