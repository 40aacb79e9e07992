"""Watch delivery latency: many watchers in one process, a paced writer in another.

Run as a script, this module is the *watcher process*: it opens `--watchers`
watch streams (raw asyncio protocols over TLS, HTTP/1.1 chunked decoding on
bytes, no JSON parsing), prints `READY` once every stream has its 200, and
for every event takes `time.time_ns()` when the bytes arrive minus the send
timestamp the writer put in the object (`data.ts`, nanoseconds; same
machine, same clock). It reads `EXPECT <n>` from stdin (the total number of
deliveries due: watchers x successful writes), stops when all arrived or a
grace period passed, and prints one `RESULT {...}` JSON line with the
latency percentiles, counts and its own CPU use (to show whether the client
could keep up).

`run_writer` is the other side, used by `api.py` in its own process: it
creates ConfigMaps at a fixed rate on a fixed schedule (no drift), each
carrying `time.time_ns()` taken just before the request is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import ssl
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rawhttp import Connection, Endpoint, parse_head  # noqa: E402

__all__ = ["run_writer", "percentiles"]

MARKER = b'"ts":"'


def percentiles(values: array | list, points=(50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles, plus max, of `values` (any unit)."""
    if not values:
        return {}
    s = sorted(values)
    out = {f"p{p:g}": s[min(len(s) - 1, max(0, math.ceil(len(s) * p / 100) - 1))] for p in points}
    out["max"] = s[-1]
    return out


class _Tally:
    """Sets `all_in` once the number of deliveries reaches `expect` (unknown until the writer is done)."""

    def __init__(self) -> None:
        self.expect = sys.maxsize
        self.all_in = asyncio.Event()

    def check(self, delivered: int) -> None:
        if delivered >= self.expect:
            self.all_in.set()


class _WatchProtocol(asyncio.Protocol):
    """One watch stream: parses the response head, then chunks, then event lines."""

    def __init__(self, request: bytes, latencies: array, sent: array, ready: asyncio.Future,
                 done: asyncio.Event, tally: _Tally) -> None:
        self.request = request
        self.latencies = latencies
        self.sent = sent
        self.ready = ready
        self.done = done
        self.tally = tally
        self.head_done = False
        self.buf = b""
        self.line = b""
        self.status = 0
        self.events = 0
        self.closed_early = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            self.status, _ = parse_head(buf[:end + 4])
            self.head_done = True
            if not self.ready.done():
                self.ready.set_result(self.status)
            buf = buf[end + 4:]
        pos, n = 0, len(buf)
        payload = []
        while pos < n:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(buf[pos:nl].split(b";", 1)[0], 16)
            end = nl + 2 + size
            if end + 2 > n:
                break
            if size == 0:
                self.closed_early = True
            payload.append(buf[nl + 2:end])
            pos = end + 2
        self.buf = buf[pos:]
        if not payload:
            return
        text = self.line + b"".join(payload)
        lines = text.split(b"\n")
        self.line = lines.pop()
        lat, sent = self.latencies, self.sent
        for line in lines:
            i = line.find(MARKER)
            if i < 0:
                continue
            i += len(MARKER)
            ts = int(line[i:line.index(b'"', i)])
            sent.append(ts)
            lat.append(now - ts)
            self.events += 1
        self.tally.check(len(lat))

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"watch connection lost before response: {exc!r}"))
        if not self.done.is_set():
            self.closed_early = True


async def _watchers(args: argparse.Namespace, token: str) -> dict:
    loop = asyncio.get_running_loop()
    ep = Endpoint.from_url(args.url, ca_file=args.ca, token=token)
    ctx: ssl.SSLContext | None = ep.ssl
    request = ep.head("GET", args.path)
    latencies, sent = array("q"), array("q")
    done = asyncio.Event()
    tally = _Tally()
    protos: list[_WatchProtocol] = []
    readies = []
    for _ in range(args.watchers):
        ready = loop.create_future()
        proto = _WatchProtocol(request, latencies, sent, ready, done, tally)
        await loop.create_connection(lambda p=proto: p, ep.host, ep.port, ssl=ctx)
        protos.append(proto)
        readies.append(ready)
    statuses = await asyncio.wait_for(asyncio.gather(*readies), 30)
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"watch requests answered {bad[:5]}")
    print("READY", flush=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    line = await asyncio.to_thread(sys.stdin.readline)
    expect = int(line.split()[1]) if line.startswith("EXPECT") else 0
    tally.expect = expect
    tally.check(len(latencies))
    try:
        await asyncio.wait_for(tally.all_in.wait(), args.grace)
    except TimeoutError:
        pass  # reported as delivered < expected
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    done.set()
    for p in protos:
        p.transport.close()
    per_watcher = [p.events for p in protos]
    pct = percentiles(latencies, (50, 90, 99, 99.9))
    by_second: dict[int, list[int]] = {}
    t0 = min(sent) if sent else 0
    for ts, lat in zip(sent, latencies, strict=True):
        by_second.setdefault((ts - t0) // 1_000_000_000, []).append(lat)
    return {
        "watchers": len(protos), "expected": expect, "delivered": len(latencies),
        "per_watcher_min": min(per_watcher), "per_watcher_max": max(per_watcher),
        "closed_early": sum(p.closed_early for p in protos),
        "latency_ms": {k: round(v / 1e6, 3) for k, v in pct.items()},
        "p99_ms_by_second_sent": [round(percentiles(by_second[k], (99,))["p99"] / 1e6, 1)
                                  for k in sorted(by_second)],
        "client_cpu_s": round(cpu, 3), "client_wall_s": round(wall, 3),
    }


async def run_writer(endpoint: Endpoint, namespace: str, *, rate: float, seconds: float,
                     payload: str, connections: int = 16, name_prefix: str = "w") -> dict:
    """Create `rate * seconds` ConfigMaps on a fixed schedule; each carries its send time in data.ts."""
    total = int(rate * seconds)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    conns = [await Connection(endpoint).connect() for _ in range(connections)]
    loop = asyncio.get_running_loop()
    next_index = 0
    ok = 0
    failures: list[str] = []
    write_lat: list[float] = []
    behind = 0
    t0 = loop.time() + 0.05

    async def worker(conn: Connection) -> None:
        nonlocal next_index, ok, behind
        while next_index < total and len(failures) < 20:
            i = next_index
            next_index += 1
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                behind += 1
            start = time.perf_counter()
            body = (f'{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name_prefix}-{i}"}},'
                    f'"data":{{"ts":"{time.time_ns()}","v":"{payload}"}}}}').encode()
            try:
                resp = await conn.request("POST", path, body)
            except Exception as exc:  # a broken connection is a failure to report, not to hide
                failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                continue
            write_lat.append(time.perf_counter() - start)
            if resp.status == 201:
                ok += 1
            else:
                failures.append(f"{resp.status}: {resp.body[:300]!r}")

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = loop.time() - t0
    for c in conns:
        c.close()
    return {"target_rate": rate, "writes_ok": ok, "writes_failed": len(failures),
            "failures": failures[:5], "elapsed_s": round(elapsed, 3),
            "achieved_rate": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
            "late_sends": behind,
            "write_latency_ms": {k: round(v * 1000, 3) for k, v in percentiles(write_lat).items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description="hold watch streams and measure delivery latency")
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--path", required=True, help="watch path with query, e.g. ...?watch=true&resourceVersion=N")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--grace", type=float, default=15.0, help="seconds to wait for late events")
    args = parser.parse_args()
    token = Path(args.token_file).read_text().strip()
    try:
        import uvloop

        result = uvloop.run(_watchers(args, token))
    except ImportError:
        result = asyncio.run(_watchers(args, token))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
