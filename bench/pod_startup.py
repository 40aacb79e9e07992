"""The pod startup benchmark: create-to-Running latency on one node, beside a bare fork+exec floor, and agent RSS.

Usage: `.venv/bin/python bench/pod_startup.py [-n 100] [--rate 10] [--storage sqlite|memory]
[--pod-network bridge|host] [--json FILE]` (also part of `make bench`).

As root the agent gives each pod its own network namespace on a bridge, as `timoner up` does
(`--pod-network bridge`, the default then; `host` measures without it). The benchmark runs no
controller manager, so it gives the Node its pod CIDR itself, as the node IPAM controller would; the
bridge, CIDR and nftables tables come from a `timoner.testing.NetworkSlot`, so the run never clashes
with test clusters, and are removed at the end.

One run, in order, everything on 127.0.0.1, each part its own process as in
a real cluster: `timoner server --port 0` (temp data dir), `timoner
scheduler`, and `timoner agent --runtime process` (the node agent `timoner
up` runs, here alone so its RSS is its own):

1. waits for the Node to be Ready, then starts one warm-up pod, waits for
   it to run and deletes it (first-use costs do not count);
2. the floor: starts `sleep 3600` `-n` times with `subprocess.Popen` and
   takes the time until `/proc/<pid>/cmdline` shows the command, i.e. a
   bare fork+exec from Python; those processes are killed at once;
3. opens a watch on the pods' namespace, then creates `-n` pods running
   `sleep 3600` (`command: [sleep, "3600"]`) at `--rate` pods/s on a fixed
   schedule (`--rate 0`: one after another as fast as the API answers).
   A pod's latency is from just before its create request is written to
   the arrival of the first watch event showing it `phase: Running` (same
   process, same clock). That path is the whole cluster's: create,
   scheduler bind, agent informer, pod worker, the runtime's shim (a Python
   process per container) and the status write;
4. with every pod running, reads the agent's `VmRSS` from
   `/proc/<pid>/status` (and, for information, the shims' total PSS from
   `/proc/<pid>/smaps_rollup`: each container has a Python shim, and PSS
   shares their common pages out instead of counting them per shim);
5. deletes the pods, waits for each to be gone from the API, for every
   container process to have exited and for the runtime's records and pod
   directories to be removed, then stops agent, scheduler and server
   (SIGTERM).

It prints a table of figures with their goals and the same as JSON (stdout,
or `--json FILE`). Slowness never fails the run: the exit code is non-zero
only when something is broken (a process does not start or dies, a request
errors, a pod does not run, a container process or its files outlive its pod).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from _procs import StartError, TimonerServer, alive, rss_kib  # noqa: E402
from _rawhttp import Connection, Endpoint, parse_head  # noqa: E402
from _watch import percentiles  # noqa: E402
from api import Broken, finish, log, machine, print_table  # noqa: E402

from timoner.testing import NetworkSlot, remove_pod_network  # noqa: E402

NAMESPACE = "bench-pods"
NODE = "bench-node"
COMMAND = ["sleep", "3600"]
GOALS = {  # figure key -> (comparison, threshold, text)
    "startup_p99_ms": ("<", 300, "< 300 ms"),
    "agent_rss_mb": ("<", 60, "< 60 MB"),
}


def pod_body(name: str) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox", "command": COMMAND}]}})


class Component:
    """`timoner scheduler` or `timoner agent` as a subprocess with its output in a log file."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        script = Path(sys.executable).parent / "timoner"
        head = [str(script)] if script.exists() else [sys.executable, "-m", "timoner.cli.main"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(head + args, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise Broken(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class Watch:
    """One watch stream on a namespace's `resource` (a path under /api/v1 or /apis/apps/v1); `on_event` sees each."""

    def __init__(self, ep: Endpoint, namespace: str, resource: str) -> None:
        self.ep = ep
        self.namespace = namespace
        self.resource = resource
        self.events = 0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failure: str | None = None

    async def start(self, resource_version: str) -> None:
        conn = await Connection(self.ep).connect()
        assert conn.writer is not None and conn.reader is not None
        group = "/api/v1" if self.resource == "pods" else "/apis/apps/v1"
        path = f"{group}/namespaces/{self.namespace}/{self.resource}?watch=true&resourceVersion={resource_version}"
        conn.writer.write(self.ep.head("GET", path))
        status, headers = parse_head(await conn.reader.readuntil(b"\r\n\r\n"))
        if status != 200 or headers.get("transfer-encoding", "").lower() != "chunked":
            raise Broken(f"watch: {status} {headers}")
        self.task = asyncio.create_task(self._read(conn))

    async def _read(self, conn: Connection) -> None:
        assert conn.reader is not None
        pending = b""
        try:
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    self.failure = "the watch ended"
                    return
                pending += (await conn.reader.readexactly(size + 2))[:-2]
                *lines, pending = pending.split(b"\n")
                now = time.perf_counter()
                for line in lines:
                    if line.strip():
                        self.events += 1
                        self.on_event(orjson.loads(line), now)
                self.changed.set()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.failure = f"the watch broke: {exc!r}"
        finally:
            conn.close()
            self.changed.set()

    async def until(self, check, timeout: float, what: str, parts: tuple[Component, ...] | list[Component] = ()) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.failure:
                raise Broken(self.failure)
            for part in parts:
                part.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Broken(f"timed out after {timeout:g}s waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            except TimeoutError:
                pass

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def on_event(self, event: dict, now: float) -> None:
        raise NotImplementedError


class PodWatch(Watch):
    """The benchmark's namespace: when each pod was first seen Running, and deletions."""

    def __init__(self, ep: Endpoint) -> None:
        super().__init__(ep, NAMESPACE, "pods")
        self.running: dict[str, float] = {}
        self.deleted: set[str] = set()

    def on_event(self, event: dict, now: float) -> None:
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        if event.get("type") == "DELETED":
            self.deleted.add(name)
        elif (obj.get("status") or {}).get("phase") == "Running" and name not in self.running:
            self.running[name] = now


async def _request(conn: Connection, method: str, path: str, body: bytes | None = None,
                   ok: tuple[int, ...] = (200, 201), content_type: str | None = None) -> dict:
    resp = await conn.request(method, path, body, content_type=content_type or "application/json")
    if resp.status not in ok:
        raise Broken(f"{method} {path}: {resp.status} {resp.body[:300]!r}")
    return orjson.loads(resp.body) if resp.body else {}


async def _node_ready(conn: Connection, agent: Component, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.check()
        resp = await conn.request("GET", f"/api/v1/nodes/{NODE}")
        if resp.status == 200:
            node = orjson.loads(resp.body)
            conditions = node.get("status", {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                return node
        await asyncio.sleep(0.1)
    raise Broken(f"node {NODE} not Ready after {timeout:g}s:\n{agent.tail()}")


def _container_pids(agent_root: Path) -> list[int]:
    """The container and shim PIDs the process runtime recorded."""
    pids = []
    for path in (agent_root / "process" / "containers").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pids += [p for p in (record.get("pid"), record.get("shim_pid")) if p]
    return pids


def _cpu_s(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds a process has used so far (fields 14 and 15 of /proc/<pid>/stat), with
    `reaped` also that of its children it has waited for (16 and 17)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _kill_leftovers(agent_root: Path) -> int:
    """SIGKILL every recorded container and shim still running (checked by start time, not PID alone)."""
    killed = 0
    for path in (agent_root / "process" / "containers").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for pid, started in ((record.get("pid"), record.get("pid_start_time")),
                             (record.get("shim_pid"), record.get("shim_start_time"))):
            if pid and started is not None and _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
    return killed


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return None if fields[0] == b"Z" else int(fields[19])


def _outliving(pids: list[int], timeout: float) -> list[int]:
    """The processes of `pids` still alive once `timeout` passed (or none, as soon as all are gone)."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _shim_pids(agent_root: Path) -> list[tuple[int, int | None]]:
    """(shim PID, container PID) of every live shim the process runtime recorded."""
    pids = []
    for path in (agent_root / "process" / "containers").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("shim_pid") and alive(record["shim_pid"]):
            pids.append((record["shim_pid"], record.get("pid")))
    return pids


def _shim_cpu_s(shim: int, container: int | None) -> float:
    """CPU of a container's start: its shim's (and what the shim reaped), and that of the container's process,
    which set itself up between fork and exec (a `sleep` uses next to nothing after that)."""
    return _cpu_s(shim, reaped=True) + (_cpu_s(container) if container else 0.0)


def _kept_on_disk(agent_root: Path, timeout: float) -> list[str]:
    """The process runtime's container records and pod directories still there once `timeout` passed (or
    none, as soon as all are gone): the agent removes them when a pod's deletion completes."""
    root = agent_root / "process"
    deadline = time.monotonic() + timeout
    while True:
        kept = [str(p) for p in (root / "containers").glob("*")] + [str(p) for p in (root / "pods").glob("*")]
        if not kept or time.monotonic() >= deadline:
            return kept
        time.sleep(0.1)


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them, so it sums honestly."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_floor(n: int) -> list[float]:
    """ms from `Popen` of the pods' command to `/proc/<pid>/cmdline` showing it, `n` times."""
    want = ("\0".join(COMMAND) + "\0").encode()
    samples, procs = [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            proc = subprocess.Popen(COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            cmdline = Path(f"/proc/{proc.pid}/cmdline")
            while cmdline.read_bytes() != want:
                pass
            samples.append((time.perf_counter() - t0) * 1000)
            procs.append(proc)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
    return samples


async def run_pods(args: argparse.Namespace, ep: Endpoint, server_pid: int, agent: Component,
                   scheduler: Component, agent_root: Path, results: dict) -> None:
    conn = await Connection(ep).connect()
    watch = PodWatch(ep)
    try:
        await _node_ready(conn, agent)
        if args.pod_cidr:
            await _request(conn, "PATCH", f"/api/v1/nodes/{NODE}", orjson.dumps(
                {"spec": {"podCIDR": args.pod_cidr, "podCIDRs": [args.pod_cidr]}}),
                content_type="application/merge-patch+json")
        await _request(conn, "POST", "/api/v1/namespaces", orjson.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
        rv = (await _request(conn, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods"))["metadata"]["resourceVersion"]
        await watch.start(rv)
        base = f"/api/v1/namespaces/{NAMESPACE}/pods"

        log("warm-up pod")
        await _request(conn, "POST", base, pod_body("warm-up"))
        await watch.until(lambda: "warm-up" in watch.running, 60, "the warm-up pod to run")
        await _request(conn, "DELETE", f"{base}/warm-up", ok=(200, 202))
        await watch.until(lambda: "warm-up" in watch.deleted, 60, "the warm-up pod to be deleted")
        results["agent_rss_idle_mb"] = round(rss_kib(agent.pid) / 1024, 1)

        log(f"floor: {args.n} x Popen({COMMAND})")
        floor = await asyncio.to_thread(measure_floor, args.n)
        results["floor_ms"] = {k: round(v, 2) for k, v in percentiles(floor).items()}

        log(f"creating {args.n} pods at {args.rate:g}/s" if args.rate else f"creating {args.n} pods back to back")
        names = [f"p-{i:04d}" for i in range(args.n)]
        sent: dict[str, float] = {}
        cpu_before = {k: _cpu_s(pid) for k, pid in (('server', server_pid), ('scheduler', scheduler.pid),
                                                    ('agent', agent.pid))}
        t_start = time.perf_counter()
        for i, name in enumerate(names):
            if args.rate:
                delay = t_start + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            body = pod_body(name)
            sent[name] = time.perf_counter()
            await _request(conn, "POST", base, body)
        created_s = time.perf_counter() - t_start
        await watch.until(lambda: all(n in watch.running for n in names), 60 + args.n * 2.0,
                          "every pod to be Running")
        latencies = [(watch.running[n] - sent[n]) * 1000 for n in names]
        results["startup_ms"] = {k: round(v, 1) for k, v in percentiles(latencies).items()}
        results["startup_ms"]["min"] = round(min(latencies), 1)
        results["created_in_s"] = round(created_s, 2)
        results["all_running_after_s"] = round(max(watch.running[n] for n in names) - t_start, 2)
        # CPU per pod while they started, by process; a shim's CPU so far is almost all its start.
        cpu = {k: _cpu_s(pid) - cpu_before[k] for k, pid in (('server', server_pid), ('scheduler', scheduler.pid),
                                                            ('agent', agent.pid))}
        cpu["shim"] = sum(_shim_cpu_s(shim, container) for shim, container in _shim_pids(agent_root))
        results["cpu_ms_per_pod"] = {k: round(v * 1000 / args.n, 1) for k, v in cpu.items()}

        await asyncio.sleep(args.settle)
        for part in (agent, scheduler):
            part.check()
        results["agent_rss_mb"] = round(rss_kib(agent.pid) / 1024, 1)
        results["agent_hwm_mb"] = round(rss_kib(agent.pid, "VmHWM") / 1024, 1)
        pids = _container_pids(agent_root)
        shims = _shim_pids(agent_root)
        results["shims"] = len(shims)
        results["shims_pss_mb"] = round(sum(_pss_kib(shim) for shim, _ in shims) / 1024, 1)

        log("deleting the pods")
        for name in names:
            await _request(conn, "DELETE", f"{base}/{name}", ok=(200, 202))
        await watch.until(lambda: all(n in watch.deleted for n in names), 120, "every pod to be deleted")
        left = await asyncio.to_thread(_outliving, pids, 30.0)
        if left:
            raise Broken(f"{len(left)} container or shim processes outlived their pods: {left[:10]}")
        results["processes_left"] = 0
        kept = await asyncio.to_thread(_kept_on_disk, agent_root, 30.0)
        if kept:
            raise Broken(f"{len(kept)} container records or pod directories outlived their pods: {kept[:10]}")
        results["files_left"] = 0
    finally:
        watch.close()
        conn.close()


def table(results: dict) -> list[tuple[str, str, str, str]]:
    def met(key: str, value: float) -> str:
        op, threshold, _ = GOALS[key]
        return "yes" if (value < threshold if op == "<" else value >= threshold) else "NO"

    rows: list[tuple[str, str, str, str]] = []
    s = results.get("startup_ms")
    if s:
        rows.append((f"create -> Running, {results['n']} pods, p50", f"{s['p50']} ms", "", ""))
        rows.append(("create -> Running, p99", f"{s['p99']} ms", GOALS["startup_p99_ms"][2],
                     met("startup_p99_ms", s["p99"])))
        rows.append(("create -> Running, max", f"{s['max']} ms", "", ""))
    f = results.get("floor_ms")
    if f:
        rows.append(("floor: Popen + exec, p50 / p99 / max", f"{f['p50']} / {f['p99']} / {f['max']} ms", "", ""))
    if "agent_rss_mb" in results:
        rows.append((f"agent RSS, {results['n']} pods running", f"{results['agent_rss_mb']} MB",
                     GOALS["agent_rss_mb"][2], met("agent_rss_mb", results["agent_rss_mb"])))
        rows.append(("agent RSS, idle (after warm-up)", f"{results['agent_rss_idle_mb']} MB", "", ""))
    if results.get("shims"):
        each = results["shims_pss_mb"] / results["shims"]
        rows.append((f"shims' PSS, total ({results['shims']} shims)", f"{results['shims_pss_mb']} MB "
                     f"({each:.2f} MB each)", "", ""))
    c = results.get("cpu_ms_per_pod")
    if c:
        rows.append(("CPU per pod: server / scheduler / agent / shim",
                     f"{c['server']} / {c['scheduler']} / {c['agent']} / {c['shim']} ms", "", ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("-n", type=int, default=100, help="pods to start (default 100)")
    p.add_argument("--rate", type=float, default=10.0, help="pods created per second (default 10; 0 = back to back)")
    p.add_argument("--storage", default="sqlite", help="timoner storage: sqlite (default) or memory")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading the agent's RSS")
    p.add_argument("--pod-network", choices=("bridge", "host"), default="bridge" if os.geteuid() == 0 else "host",
                   help="pods on a bridge, each in its own network namespace (default as root), or the host's")
    p.add_argument("--json", type=Path, help="write the JSON results here instead of stdout")
    args = p.parse_args(argv)

    results: dict = {"machine": machine(), "n": args.n, "rate_per_s": args.rate, "storage": args.storage,
                     "pod_network": args.pod_network, "command": COMMAND, "load_avg_at_start": os.getloadavg()}
    errors: list[str] = []
    slot = NetworkSlot.claim() if args.pod_network == "bridge" else None
    args.pod_cidr = slot.cluster_cidr.replace("/16", "/24") if slot else None
    network = ["--pod-network", "bridge", "--bridge-name", slot.bridge,
               "--ingress-ports", ",".join(map(str, slot.ingress_ports))] if slot else ["--pod-network", "host"]
    with tempfile.TemporaryDirectory(prefix="timoner-bench-pods-") as tmp:
        workdir = Path(tmp)
        server = TimonerServer(workdir, storage=args.storage)
        parts: list[Component] = []
        try:
            log("starting timoner server, scheduler and agent")
            server.start()
            kubeconfig = str(server.data_dir / "kubeconfig")
            scheduler = Component("scheduler", ["scheduler", "--kubeconfig", kubeconfig], workdir)
            parts.append(scheduler)
            agent_root = workdir / "agent"
            agent = Component("agent", ["agent", "--kubeconfig", kubeconfig, "--node-name", NODE, "--runtime",
                                        "process", "--root-dir", str(agent_root), "--port", "0", *network],
                              workdir)
            parts.append(agent)
            ep = Endpoint.from_url(server.url, ca_file=server.ca_file, token=server.token)
            asyncio.run(run_pods(args, ep, server.pid, agent, scheduler, agent_root, results))
        except (Broken, StartError, OSError) as exc:
            errors.append(str(exc))
        finally:
            for part in reversed(parts):
                code = part.stop()
                if code not in (0, None):
                    errors.append(f"{part.name} exited with {code}:\n{part.tail()}")
            server.stop()
            if server.exit_code not in (0, None):
                errors.append(f"timoner server exited with {server.exit_code}:\n{server.log_tail()}")
            # A standalone agent leaves its containers running when it stops (a new agent would adopt
            # them); after a failed run, nothing will: kill what is left.
            killed = _kill_leftovers(workdir / "agent")
            if killed and not errors:
                errors.append(f"{killed} container or shim processes were left running")
            if slot is not None:  # a standalone agent leaves its bridge and rules for its next start
                remove_pod_network(slot.bridge)
                slot.release()
    results["load_avg_at_end"] = os.getloadavg()
    results["errors"] = errors

    print()
    m = results["machine"]
    print(f"Timoner pod startup benchmark — {m['date']}, {m['nproc']} cores, {args.n} pods at "
          + (f"{args.rate:g}/s" if args.rate else "back to back") + f", load {results['load_avg_at_start'][0]:.2f}")
    print_table(table(results))
    return finish(results, errors, args.json)


if __name__ == "__main__":
    sys.exit(main())
