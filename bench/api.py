"""The API server benchmark: creates/s, gets/s, a 10,000-object list, watch latency, idle RSS, vs etcd.

Usage: `.venv/bin/python bench/api.py [--duration S] [--storage sqlite|memory] [--skip-etcd] [--json FILE]`
(or `make bench`). It needs `wrk` and Debian's `etcd-server` (`etcd`) on PATH.

One run, in order, everything on 127.0.0.1:

1. starts `timoner server --port 0` on a temp data dir and, after a short
   settle, reads its idle RSS (VmRSS in /proc/<pid>/status);
2. creates and gets with wrk: POST ConfigMaps (unique names, ~512-byte
   data value) and GET existing ones, at 1 client (`-t1 -c1`) and 32
   (`-t2 -c32`), bearer-token HTTPS;
3. fills a namespace with exactly 10,000 ConfigMaps and times full lists
   (no limit) and paged lists (limit=500), client-side;
4. holds 100 watch streams in a separate process while this one writes 500
   ConfigMaps/s, and reports delivery latency p50/p99/max;
5. stops the server, starts `etcd` (same machine, own temp data dir, default
   fsync) and drives its JSON gateway `POST /v3/kv/put` with the same value
   size and concurrency, over plain HTTP (the baseline of the ratio goal,
   although Timoner serves HTTPS) and, at 32 clients, over HTTPS with
   Timoner's serving cert.

It prints a table of every figure with its goal and whether it met it, and
the same as JSON (stdout, or `--json FILE`). Slowness never fails the run:
the exit code is non-zero only when something is broken (a process does not
start or dies, a request errors, a watcher misses events).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wrk  # noqa: E402
from _procs import Etcd, StartError, TimonerServer, rss_kib  # noqa: E402
from _rawhttp import Connection, Endpoint  # noqa: E402
from _watch import run_writer  # noqa: E402

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency of timoner
    _loads = json.loads

PAYLOAD = "x" * 512  # the ConfigMap data value; etcd's value is as long as the whole request body
NS_CREATE, NS_LIST, NS_WATCH = "bench-create", "bench-list", "bench-watch"

GOALS = {  # figure key -> (comparison, threshold, text)
    "creates_per_s_c32": (">=", 2000, ">= 2,000/s"),
    "gets_per_s_c32": (">=", 8000, ">= 8,000/s"),
    "creates_vs_etcd_c32": (">=", 0.7, ">= 0.7"),  # against etcd over plain HTTP: the stricter baseline
    "creates_vs_etcd_c32_https": (">=", 0.7, ">= 0.7"),
    "watch_p99_ms": ("<", 50, "< 50 ms"),
    "idle_rss_mb": ("<", 80, "< 80 MB"),
}


class Broken(Exception):
    """Something failed that is not slowness: the run's figures cannot be trusted."""


def configmap_body(name: str) -> str:
    return '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"' + name + '"},"data":{"v":"' + PAYLOAD + '"}}'


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kib = 0
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem_kib / 1024 / 1024, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _run_async(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- phases against Timoner ----------------------------------------------------------------


async def _setup_namespaces(ep: Endpoint) -> None:
    conn = await Connection(ep).connect()
    try:
        for ns in (NS_CREATE, NS_LIST, NS_WATCH):
            body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).encode()
            resp = await conn.request("POST", "/api/v1/namespaces", body)
            if resp.status != 201:
                raise Broken(f"creating namespace {ns}: {resp.status} {resp.body[:300]!r}")
    finally:
        conn.close()


async def _fill(ep: Endpoint, namespace: str, count: int, connections: int = 32) -> dict:
    """Create ConfigMaps l-00000 .. l-<count-1> in `namespace`; then check exactly `count` exist."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    next_i = 0
    failures: list[str] = []

    async def worker() -> None:
        nonlocal next_i
        conn = await Connection(ep).connect()
        try:
            while next_i < count and not failures:
                i = next_i
                next_i += 1
                resp = await conn.request("POST", path, configmap_body(f"l-{i:05d}").encode())
                if resp.status != 201:
                    failures.append(f"{resp.status}: {resp.body[:300]!r}")
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    if failures:
        raise Broken(f"filling {namespace}: {failures[0]}")
    conn = await Connection(ep).connect()
    try:
        resp = await conn.request("GET", path)
    finally:
        conn.close()
    have = _bench_items(_loads(resp.body)) if resp.status == 200 else -1
    if have != count:
        raise Broken(f"{namespace} holds {have} ConfigMaps, expected {count}")
    return {"objects": count, "seconds": round(elapsed, 3), "rate_per_s": round(count / elapsed, 1)}


def _bench_items(listed: dict) -> int:
    """The benchmark's own items of a ConfigMap list: every namespace also holds `kube-root-ca.crt`."""
    return sum(1 for item in listed["items"] if item["metadata"]["name"] != "kube-root-ca.crt")


async def _time_lists(ep: Endpoint, namespace: str, count: int, *, full_runs: int = 5,
                      paged_runs: int = 3, page: int = 500) -> dict:
    """Client-side ms to receive whole list responses (bodies read, not decoded); items checked after."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    conn = await Connection(ep).connect()
    try:
        await conn.request("GET", path + "?limit=1")  # warm the connection
        full_ms, size = [], 0
        for _ in range(full_runs):
            t0 = time.perf_counter()
            resp = await conn.request("GET", path)
            full_ms.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise Broken(f"list: {resp.status} {resp.body[:300]!r}")
            size = len(resp.body)
        t0 = time.perf_counter()
        items = _bench_items(_loads(resp.body))
        decode_ms = (time.perf_counter() - t0) * 1000
        if items != count:
            raise Broken(f"list returned {items} items, expected {count}")
        paged_ms, pages = [], 0
        for _ in range(paged_runs):
            bodies, cont, elapsed = [], "", 0.0
            while True:
                q = f"?limit={page}" + (f"&continue={cont}" if cont else "")
                t0 = time.perf_counter()
                resp = await conn.request("GET", path + q)
                elapsed += time.perf_counter() - t0
                if resp.status != 200:
                    raise Broken(f"paged list: {resp.status} {resp.body[:300]!r}")
                bodies.append(resp.body)
                cont = _loads(resp.body)["metadata"].get("continue", "")  # outside the timed part
                if not cont:
                    break
            got = sum(_bench_items(_loads(b)) for b in bodies)
            if got != count:
                raise Broken(f"paged list returned {got} items, expected {count}")
            paged_ms.append(elapsed * 1000)
            pages = len(bodies)
    finally:
        conn.close()
    return {"full_median_ms": round(statistics.median(full_ms), 1), "full_min_ms": round(min(full_ms), 1),
            "full_runs_ms": [round(x, 1) for x in full_ms], "body_mb": round(size / 1e6, 2),
            "client_decode_ms": round(decode_ms, 1),
            "paged_limit": page, "pages": pages,
            "paged_median_ms": round(statistics.median(paged_ms), 1),
            "paged_runs_ms": [round(x, 1) for x in paged_ms]}


async def _current_rv(ep: Endpoint, namespace: str) -> str:
    conn = await Connection(ep).connect()
    try:
        resp = await conn.request("GET", f"/api/v1/namespaces/{namespace}/configmaps?limit=1")
    finally:
        conn.close()
    if resp.status != 200:
        raise Broken(f"list for resourceVersion: {resp.status}")
    return _loads(resp.body)["metadata"]["resourceVersion"]


def _watch_phase(server: TimonerServer, ep: Endpoint, workdir: Path, *, watchers: int, rate: float,
                 seconds: float) -> dict:
    rv = _run_async(_current_rv(ep, NS_WATCH))
    token_file = workdir / "token"
    token_file.write_text(server.token)
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "_watch.py"), "--url", server.url,
           "--ca", server.ca_file, "--token-file", str(token_file), "--watchers", str(watchers),
           "--path", f"/api/v1/namespaces/{NS_WATCH}/configmaps?watch=true&resourceVersion={rv}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            raise Broken(f"watcher process did not get ready: {line!r} {proc.stderr.read()[-2000:]}")
        cpu_server0, cpu_self0 = _proc_cpu(server.pid), time.process_time()
        writer = _run_async(run_writer(ep, NS_WATCH, rate=rate, seconds=seconds, payload=PAYLOAD))
        cpu_server = _proc_cpu(server.pid) - cpu_server0
        writer["client_cpu_s"] = round(time.process_time() - cpu_self0, 2)
        expect = writer["writes_ok"] * watchers
        proc.stdin.write(f"EXPECT {expect}\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise Broken(f"watcher process failed (exit {proc.returncode}): {err[-2000:]}")
    result = json.loads(line[len("RESULT "):])
    result["writer"] = writer
    result["server_cpu_s_during_writes"] = round(cpu_server, 2)
    return result


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check(res: _wrk.WrkResult, errors: list[str]) -> _wrk.WrkResult:
    log(f"  {res.label}: {res.rate:,.0f}/s, p50 {res.latency_us['p50'] / 1000:.2f} ms, "
        f"p99 {res.latency_us['p99'] / 1000:.2f} ms, errors {res.errors}")
    if res.error_count:
        errors.append(f"{res.label}: {res.errors} (non-2xx = status)")
    return res


def bench_timoner(args: argparse.Namespace, workdir: Path, results: dict, errors: list[str]) -> TimonerServer:
    server = TimonerServer(workdir, storage=args.storage)
    log(f"starting timoner server (storage: {args.storage})")
    server.start()
    try:
        time.sleep(args.settle)
        results["idle_rss_mb"] = round(rss_kib(server.pid) / 1024, 1)
        log(f"  ready at {server.url}, idle RSS {results['idle_rss_mb']} MB")
        ep = Endpoint.from_url(server.url, ca_file=server.ca_file, token=server.token)
        _run_async(_setup_namespaces(ep))

        url = server.url + f"/api/v1/namespaces/{NS_CREATE}/configmaps"
        head, tail = configmap_body("\0").split("\0")
        runs = {}
        for label, t, c in (("creates c1", 1, 1), ("creates c32", 2, 32)):
            log(f"{label}: wrk -t{t} -c{c} -d{args.duration:g}s POST")
            script = _wrk.create_script(server.token, head, tail, f"c{c}")
            runs[label] = _check(_wrk.run(label, url, script, threads=t, connections=c,
                                          duration=args.duration), errors)

        log(f"filling {NS_LIST} with {args.list_count:,} ConfigMaps")
        results["list_fill"] = _run_async(_fill(ep, NS_LIST, args.list_count))
        log(f"  {results['list_fill']}")

        get_format = f"/api/v1/namespaces/{NS_LIST}/configmaps/l-%05d"
        for label, t, c in (("gets c1", 1, 1), ("gets c32", 2, 32)):
            log(f"{label}: wrk -t{t} -c{c} -d{args.duration:g}s GET (rotating over {args.list_count:,} names)")
            script = _wrk.get_script(server.token, get_format, args.list_count)
            runs[label] = _check(_wrk.run(label, server.url + "/", script, threads=t, connections=c,
                                          duration=args.duration), errors)
        results["wrk"] = {k: v.as_dict() for k, v in runs.items()}
        results["creates_per_s_c1"] = round(runs["creates c1"].rate, 1)
        results["creates_per_s_c32"] = round(runs["creates c32"].rate, 1)
        results["gets_per_s_c1"] = round(runs["gets c1"].rate, 1)
        results["gets_per_s_c32"] = round(runs["gets c32"].rate, 1)

        log(f"timing lists of {args.list_count:,}")
        results["list"] = _run_async(_time_lists(ep, NS_LIST, args.list_count))
        log(f"  {results['list']}")

        log(f"watch: {args.watchers} watchers, {args.watch_rate:g} writes/s for {args.watch_seconds:g}s")
        watch = _watch_phase(server, ep, workdir, watchers=args.watchers, rate=args.watch_rate,
                             seconds=args.watch_seconds)
        results["watch"] = watch
        results["watch_p50_ms"] = watch["latency_ms"].get("p50")
        results["watch_p99_ms"] = watch["latency_ms"].get("p99")
        log(f"  {watch}")
        if watch["delivered"] != watch["expected"] or watch["closed_early"]:
            errors.append(f"watch: delivered {watch['delivered']} of {watch['expected']} events, "
                          f"{watch['closed_early']} streams closed early")
        if watch["writer"]["writes_failed"]:
            errors.append(f"watch writer: {watch['writer']['writes_failed']} writes failed: "
                          f"{watch['writer']['failures']}")

        results["configmaps_stored"] = (runs["creates c1"].requests + runs["creates c32"].requests
                                        + args.list_count + watch["writer"]["writes_ok"])
        results["rss_after_mb"] = round(rss_kib(server.pid) / 1024, 1)
        results["rss_peak_mb"] = round(rss_kib(server.pid, "VmHWM") / 1024, 1)
        if not server.alive():
            errors.append("timoner server died during the run")
    finally:
        server.stop()
    server.check_stopped(errors, results)
    return server


def bench_etcd(args: argparse.Namespace, workdir: Path, server: TimonerServer, results: dict,
               errors: list[str]) -> None:
    body_len = len(configmap_body("c32-1-12345"))
    etcd = Etcd(workdir, cert=server.server_cert, key=server.server_key)
    results["etcd_version"] = etcd.version()
    log(f"starting etcd {results['etcd_version']} ({etcd.https_url} TLS, {etcd.http_url} plain)")
    etcd.start()
    runs = {}
    try:
        value = (PAYLOAD * 4)[:body_len].encode()
        for label, url, t, c in (("etcd puts c1", etcd.http_url, 1, 1),
                                 ("etcd puts c32", etcd.http_url, 2, 32),
                                 ("etcd puts c32 (https)", etcd.https_url, 2, 32)):
            log(f"{label}: wrk -t{t} -c{c} -d{args.duration:g}s POST /v3/kv/put, {body_len}-byte values")
            script = _wrk.etcd_put_script(f"/bench/{label.split()[2]}/{url.split(':')[0]}", value)
            runs[label] = _check(_wrk.run(label, url + "/v3/kv/put", script, threads=t, connections=c,
                                          duration=args.duration), errors)
    finally:
        etcd.stop()
    results["etcd_wrk"] = {k: v.as_dict() for k, v in runs.items()}
    results["etcd_value_bytes"] = body_len
    results["etcd_puts_per_s_c1"] = round(runs["etcd puts c1"].rate, 1)
    results["etcd_puts_per_s_c32"] = round(runs["etcd puts c32"].rate, 1)
    results["etcd_puts_per_s_c32_https"] = round(runs["etcd puts c32 (https)"].rate, 1)
    creates = results.get("creates_per_s_c32")
    if creates and results["etcd_puts_per_s_c32"]:
        results["creates_vs_etcd_c32"] = round(creates / results["etcd_puts_per_s_c32"], 3)
    if creates and results["etcd_puts_per_s_c32_https"]:
        results["creates_vs_etcd_c32_https"] = round(creates / results["etcd_puts_per_s_c32_https"], 3)


# -- report ---------------------------------------------------------------------------------


def _met(key: str, value) -> str:
    if key not in GOALS or value is None:
        return ""
    op, threshold, _ = GOALS[key]
    ok = value >= threshold if op == ">=" else value < threshold
    return "yes" if ok else "NO"


def table(results: dict) -> list[tuple[str, str, str, str]]:
    w = results.get("wrk", {})
    e = results.get("etcd_wrk", {})
    n = results.get("list_count", 0)

    def lat(d: dict, name: str) -> str:
        r = d.get(name)
        return f"  (p50 {r['latency_ms']['p50']:.2f} / p99 {r['latency_ms']['p99']:.2f} ms)" if r else ""

    rows = [
        ("creates/s, 1 client", "creates_per_s_c1", "{:,.0f}", lat(w, "creates c1")),
        ("creates/s, 32 clients", "creates_per_s_c32", "{:,.0f}", lat(w, "creates c32")),
        ("gets/s, 1 client", "gets_per_s_c1", "{:,.0f}", lat(w, "gets c1")),
        ("gets/s, 32 clients", "gets_per_s_c32", "{:,.0f}", lat(w, "gets c32")),
        (f"list {n:,} ConfigMaps, full (median ms)", ("list", "full_median_ms"), "{:,.1f}", ""),
        (f"list {n:,}, limit=500 pages (total ms)", ("list", "paged_median_ms"), "{:,.1f}", ""),
        ("watch delivery p50 (ms)", "watch_p50_ms", "{:.2f}", ""),
        ("watch delivery p99 (ms)", "watch_p99_ms", "{:.2f}", ""),
        ("watch delivery max (ms)", ("watch", "latency_ms", "max"), "{:.2f}", ""),
        ("watch events delivered / expected", None, "", ""),
        ("watch writes/s achieved (target)", None, "", ""),
        ("idle RSS of timoner server (MB)", "idle_rss_mb", "{:.1f}", ""),
        ("RSS after the run / peak (MB)", None, "", ""),
        ("etcd puts/s, 1 client (http)", "etcd_puts_per_s_c1", "{:,.0f}", lat(e, "etcd puts c1")),
        ("etcd puts/s, 32 clients (http)", "etcd_puts_per_s_c32", "{:,.0f}", lat(e, "etcd puts c32")),
        ("etcd puts/s, 32 clients (https)", "etcd_puts_per_s_c32_https", "{:,.0f}",
         lat(e, "etcd puts c32 (https)")),
        ("API creates / etcd puts, 32 clients (http)", "creates_vs_etcd_c32", "{:.2f}", ""),
        ("API creates / etcd puts, 32 clients (https)", "creates_vs_etcd_c32_https", "{:.2f}", ""),
    ]
    out = []
    for title, key, fmt, extra in rows:
        if key is None:
            if title.startswith("watch events") and "watch" in results:
                v = f"{results['watch']['delivered']:,} / {results['watch']['expected']:,}"
            elif title.startswith("watch writes") and "watch" in results:
                wr = results["watch"]["writer"]
                v = f"{wr['achieved_rate']:,.0f} ({wr['target_rate']:g})"
            elif title.startswith("RSS after") and "rss_after_mb" in results:
                v = (f"{results['rss_after_mb']:.1f} / {results['rss_peak_mb']:.1f}"
                     f"  ({results['configmaps_stored']:,} ConfigMaps stored)")
            else:
                continue
            out.append((title, v, "", ""))
            continue
        if isinstance(key, tuple):
            value = results
            for k in key:
                value = value.get(k) if isinstance(value, dict) else None
            goal_key = None
        else:
            value, goal_key = results.get(key), key
        if value is None:
            continue
        goal = GOALS[goal_key][2] if goal_key in GOALS else ""
        out.append((title, fmt.format(value) + extra, goal, _met(goal_key or "", value)))
    return out


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "goal", "met")]) for i in range(4)]
    header = ("figure", "value", "goal", "met")
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def finish(results: dict, errors: list[str], json_path: Path | None) -> int:
    """The end of every benchmark: its errors, then its JSON (to `json_path`, or stdout); the exit code."""
    for err in errors:
        print(f"ERROR: {err}")
    text = json.dumps(results, indent=2)
    if json_path:
        json_path.write_text(text + "\n")
        print(f"JSON written to {json_path}")
    else:
        print(text)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk phase (default 10)")
    p.add_argument("--storage", default="sqlite", help="timoner storage: sqlite (default) or memory")
    p.add_argument("--skip-etcd", action="store_true", help="do not measure etcd")
    p.add_argument("--json", type=Path, help="write the JSON results here instead of stdout")
    p.add_argument("--list-count", type=int, default=10_000)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--watch-rate", type=float, default=500.0, help="writes per second during the watch phase")
    p.add_argument("--watch-seconds", type=float, default=10.0)
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading idle RSS")
    args = p.parse_args(argv)

    results: dict = {"machine": machine(), "storage": args.storage, "duration_s": args.duration,
                     "payload_bytes": len(PAYLOAD), "create_body_bytes": len(configmap_body("c32-1-12345")),
                     "list_count": args.list_count}
    errors: list[str] = []
    status = 0
    with tempfile.TemporaryDirectory(prefix="timoner-bench-") as tmp:
        workdir = Path(tmp)
        try:
            server = bench_timoner(args, workdir, results, errors)
            if not args.skip_etcd:
                bench_etcd(args, workdir, server, results, errors)
        except (Broken, StartError, RuntimeError, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            status = 1
        except KeyboardInterrupt:
            errors.append("interrupted")
            status = 130
    results["errors"] = errors
    results["goals"] = {k: {"goal": g[2], "met": _met(k, results.get(k)) or None} for k, g in GOALS.items()}

    print()
    print(f"Timoner API server benchmark — {results['machine']['date']}, {results['machine']['nproc']} cores "
          f"({results['machine']['cpu']}), storage {args.storage}, {args.duration:g}s per wrk phase")
    print_table(table(results))
    if "watch" in results:
        w = results["watch"]
        print(f"watch: watcher process CPU {w['client_cpu_s']}s over {w['client_wall_s']}s; writer CPU "
              f"{w['writer']['client_cpu_s']}s; server CPU during writes {w['server_cpu_s_during_writes']}s; "
              f"write latency (ms) {w['writer']['write_latency_ms']}; sends late by >10 ms: "
              f"{w['writer']['late_sends']}")
        print(f"watch: p99 (ms) by second of the run: {w['p99_ms_by_second_sent']}")
    if "list" in results:
        print(f"list: {results['list']['body_mb']} MB body; times are until the last byte is read, "
              f"client JSON decode excluded ({results['list']['client_decode_ms']} ms)")
    if "etcd_version" in results:
        print(f"etcd {results['etcd_version']}, values of {results['etcd_value_bytes']} bytes "
              "(the size of one ConfigMap create body)")
    return finish(results, errors, args.json) or status


if __name__ == "__main__":
    sys.exit(main())
