"""The controllers benchmark: 100 Deployments x 10 replicas to fully available on one node, and reconciles/s.

Usage: `.venv/bin/python bench/controllers.py [-d 100] [-r 10] [--storage sqlite|memory] [--json FILE]`
(also part of `make bench`).

One run, in order, everything on 127.0.0.1, each part its own process as in
a real cluster: `timoner server --port 0` (temp data dir), `timoner
scheduler`, `timoner controllers --metrics-port P` and one `timoner agent
--runtime hollow --max-pods M`. The hollow runtime's containers are records
that "run" at once, with no process behind them: 1,000 real containers
would not fit on a 2-core machine, and what is measured here is the control
plane (API server, controllers, scheduler, the agent's pod workers and
status writes), not container start. `M` is `-d x -r` plus room for the
warm-up, since a node's pods capacity is 110 by default.

1. waits for the Node to be Ready and for the controller manager's
   `/metrics` to answer, then creates one warm-up Deployment of one replica
   in its own namespace and waits for it to be available (the manager holds
   the leader Lease and its caches are synced; first-use costs are paid);
2. opens a watch on the benchmark's namespace's Deployments, scrapes
   `/metrics` and reads the controller manager's CPU time, then creates
   `-d` Deployments of `-r` replicas each, one after another on one
   keep-alive connection (as fast as one client can);
3. a Deployment counts as available at the first watch event showing
   `status.observedGeneration >= metadata.generation`, `replicas`,
   `updatedReplicas` and `availableReplicas` all equal to `spec.replicas`
   and the `Available` condition True. Reported: the time from the first
   create to the last Deployment available, and per Deployment the time
   from its own create to its availability (p50, p99, max);
4. scrapes `/metrics` again at once: the ReplicaSet controller's reconciles
   (`controller_runtime_reconcile_total{controller="replicaset-controller"}`,
   all results) over that window, and reconciles/s = that count / the
   window's seconds; the same for the Deployment controller; errors;
5. waits until the queues are empty and the counters stop moving
   (`--settle` seconds without a reconcile) and reports the totals, then
   the controller manager's `VmRSS`/`VmHWM` (`/proc/<pid>/status`) and the
   CPU seconds of every process over the window (`/proc/<pid>/stat`);
6. stops agent, controllers, scheduler and server (SIGTERM) and removes the
   temp dir. The hollow runtime leaves no process behind; the benchmark
   checks that no process it started outlives the run.

It prints a table of figures and the same as JSON (stdout, or `--json FILE`).
Slowness never fails the run: the exit code is non-zero only when something
is broken (a process does not start or dies, a request errors, the watch
breaks, a Deployment never becomes available, a reconcile errors).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from _procs import StartError, TimonerServer, alive, free_port, rss_kib  # noqa: E402
from _rawhttp import Connection, Endpoint, HTTPError  # noqa: E402
from _watch import percentiles  # noqa: E402
from api import Broken, finish, log, machine, print_table  # noqa: E402
from pod_startup import NODE, Component, Watch, _node_ready, _request  # noqa: E402

NAMESPACE = "bench-deploy"
WARMUP_NAMESPACE = "bench-warmup"
RS_CONTROLLER = "replicaset-controller"
DEPLOYMENT_CONTROLLER = "deployment-controller"
_METRIC = re.compile(r'^controller_runtime_reconcile_total\{controller="([^"]*)",result="([^"]*)"\} (\d+)$', re.M)
_DEPTH = re.compile(r'^workqueue_depth\{name="([^"]*)"\} (\d+)$', re.M)


def deployment_body(name: str, replicas: int) -> bytes:
    labels = {"app": name}
    return orjson.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}}})


def fully_available(d: dict) -> bool:
    """Upstream's notion of a finished rollout, with every replica available and the status current."""
    spec, status = d.get("spec") or {}, d.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration") or 0) < int(d["metadata"].get("generation") or 0):
        return False
    if any(int(status.get(f) or 0) != want for f in ("replicas", "updatedReplicas", "availableReplicas")):
        return False
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or ())


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Metrics:
    """Scrapes the controller manager's `/metrics`."""

    def __init__(self, port: int) -> None:
        self.ep = Endpoint("127.0.0.1", port, None)

    async def scrape(self) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """({controller: {result: count}}, {queue name: depth})."""
        conn = await Connection(self.ep).connect()
        try:
            resp = await conn.request("GET", "/metrics")
        finally:
            conn.close()
        if resp.status != 200:
            raise Broken(f"GET /metrics: {resp.status} {resp.body[:200]!r}")
        text = resp.body.decode()
        counts: dict[str, dict[str, int]] = {}
        for controller, result, value in _METRIC.findall(text):
            counts.setdefault(controller, {})[result] = int(value)
        return counts, {name: int(depth) for name, depth in _DEPTH.findall(text)}

    async def wait(self, controllers: Component, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            controllers.check()
            try:
                counts, _ = await self.scrape()
                if RS_CONTROLLER in counts:
                    return
            except (OSError, HTTPError):
                pass
            if time.monotonic() > deadline:
                raise Broken(f"/metrics did not answer after {timeout:g}s:\n{controllers.tail()}")
            await asyncio.sleep(0.1)


class DeploymentWatch(Watch):
    """When each Deployment was first seen fully available."""

    def __init__(self, ep: Endpoint, namespace: str) -> None:
        super().__init__(ep, namespace, "deployments")
        self.available: dict[str, float] = {}

    def on_event(self, event: dict, now: float) -> None:
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        if event.get("type") != "DELETED" and name not in self.available and fully_available(obj):
            self.available[name] = now


class PodWatch(Watch):
    """When each pod was first seen: at all (created by the ReplicaSet controller), bound, and Ready."""

    def __init__(self, ep: Endpoint, namespace: str) -> None:
        super().__init__(ep, namespace, "pods")
        self.created: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.ready: dict[str, float] = {}

    def on_event(self, event: dict, now: float) -> None:
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        self.created.setdefault(name, now)
        if (obj.get("spec") or {}).get("nodeName"):
            self.bound.setdefault(name, now)
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or ()):
            self.ready.setdefault(name, now)


def _total(counts: dict[str, dict[str, int]], controller: str) -> int:
    return sum(counts.get(controller, {}).values())


def _delta(after: dict, before: dict, controller: str) -> dict[str, int]:
    a, b = after.get(controller, {}), before.get(controller, {})
    return {result: a.get(result, 0) - b.get(result, 0) for result in a}


async def _namespace(conn: Connection, name: str) -> None:
    await _request(conn, "POST", "/api/v1/namespaces",
                   orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))


async def run(args: argparse.Namespace, ep: Endpoint, metrics: Metrics, procs: dict[str, int],
              parts: dict[str, Component], results: dict) -> None:
    conn = await Connection(ep).connect()
    watch = DeploymentWatch(ep, NAMESPACE)
    warm = DeploymentWatch(ep, WARMUP_NAMESPACE)
    pod_watch = PodWatch(ep, NAMESPACE)
    every = list(parts.values())
    try:
        node = await _node_ready(conn, parts["agent"])
        results["node_pods_capacity"] = int(node["status"]["capacity"]["pods"])
        await metrics.wait(parts["controllers"])

        log("warm-up Deployment")
        await _namespace(conn, WARMUP_NAMESPACE)
        await _namespace(conn, NAMESPACE)
        warm_base = f"/apis/apps/v1/namespaces/{WARMUP_NAMESPACE}/deployments"
        rv = (await _request(conn, "GET", warm_base))["metadata"]["resourceVersion"]
        await warm.start(rv)
        await _request(conn, "POST", warm_base, deployment_body("warm-up", 1))
        await warm.until(lambda: "warm-up" in warm.available, 120, "the warm-up Deployment", every)
        warm.close()

        base = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
        rv = (await _request(conn, "GET", base))["metadata"]["resourceVersion"]
        await watch.start(rv)
        await pod_watch.start(rv)
        names = [f"d-{i:04d}" for i in range(args.d)]
        bodies = [deployment_body(name, args.r) for name in names]
        before, _ = await metrics.scrape()
        cpu_before = {k: cpu_s(pid) for k, pid in procs.items()}

        log(f"creating {args.d} Deployments of {args.r} replicas")
        sent: dict[str, float] = {}
        t0 = time.perf_counter()
        for name, body in zip(names, bodies, strict=True):
            sent[name] = time.perf_counter()
            await _request(conn, "POST", base, body)
        created_s = time.perf_counter() - t0
        await watch.until(lambda: len(watch.available) == len(names), args.timeout,
                          "every Deployment to be available", every)
        t_done = time.perf_counter()
        after, _ = await metrics.scrape()
        window = max(watch.available.values()) - t0
        cpu = {k: cpu_s(pid) - cpu_before[k] for k, pid in procs.items()}

        per = [(watch.available[n] - sent[n]) * 1000 for n in names]
        results["created_in_s"] = round(created_s, 3)
        results["creates_per_s"] = round(args.d / created_s, 1) if created_s > 0 else None
        results["all_available_s"] = round(window, 3)
        results["per_deployment_ms"] = {k: round(v, 1) for k, v in percentiles(per).items()}
        results["per_deployment_ms"]["min"] = round(min(per), 1)
        results["watch_events"] = {"deployments": watch.events, "pods": pod_watch.events}
        # Where the time went: when the last pod was created (ReplicaSet controller), bound (scheduler) and
        # Ready (agent), after the first create.
        for what, seen in (("created", pod_watch.created), ("bound", pod_watch.bound), ("ready", pod_watch.ready)):
            results[f"last_pod_{what}_s"] = round(max(seen.values()) - t0, 3) if seen else None
        rs = _delta(after, before, RS_CONTROLLER)
        dep = _delta(after, before, DEPLOYMENT_CONTROLLER)
        results["window_s"] = round(t_done - t0, 3)  # first create to the scrape: the reconciles' window
        results["replicaset_reconciles"] = sum(rs.values())
        results["replicaset_reconciles_by_result"] = rs
        results["replicaset_reconciles_per_s"] = round(sum(rs.values()) / (t_done - t0), 1)
        results["deployment_reconciles"] = sum(dep.values())
        results["deployment_reconciles_per_s"] = round(sum(dep.values()) / (t_done - t0), 1)
        results["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}

        log("waiting for the controllers to go quiet")
        quiet_since, last = time.monotonic(), (-1, -1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts, depth = await metrics.scrape()
            now = (_total(counts, RS_CONTROLLER), _total(counts, DEPLOYMENT_CONTROLLER))
            if now != last or depth.get(RS_CONTROLLER) or depth.get(DEPLOYMENT_CONTROLLER):
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= args.settle:
                break
            await asyncio.sleep(0.2)
        else:
            raise Broken("the controllers never went quiet")
        final, _ = await metrics.scrape()
        results["replicaset_reconciles_total"] = sum(_delta(final, before, RS_CONTROLLER).values())
        results["deployment_reconciles_total"] = sum(_delta(final, before, DEPLOYMENT_CONTROLLER).values())
        results["reconcile_errors"] = {c: r.get("error", 0) for c, r in final.items() if r.get("error", 0)}
        cm = procs["controllers"]
        results["controllers_rss_mb"] = round(rss_kib(cm) / 1024, 1)
        results["controllers_hwm_mb"] = round(rss_kib(cm, "VmHWM") / 1024, 1)
        results["controllers_cpu_s_total"] = round(cpu_s(cm), 2)
        pods = await _request(conn, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
        results["pods"] = len(pods["items"])
        if results["pods"] != args.d * args.r:
            raise Broken(f"{results['pods']} pods in {NAMESPACE}, not {args.d * args.r}")
    finally:
        watch.close()
        warm.close()
        pod_watch.close()
        conn.close()


def table(results: dict) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    d, r = results["deployments"], results["replicas"]
    if "all_available_s" in results:
        rows.append((f"{d} Deployments x {r}: first create -> all available", f"{results['all_available_s']} s", "",
                     ""))
        rows.append(("creates (one client)", f"{results['created_in_s']} s ({results['creates_per_s']}/s)", "", ""))
        p = results["per_deployment_ms"]
        rows.append(("per Deployment: create -> available, p50 / p99 / max",
                     f"{p['p50']} / {p['p99']} / {p['max']} ms", "", ""))
        rows.append(("replicaset-controller reconciles/s (until all available)",
                     f"{results['replicaset_reconciles_per_s']} ({results['replicaset_reconciles']} in "
                     f"{results['window_s']} s)", "", ""))
        rows.append(("deployment-controller reconciles/s (until all available)",
                     f"{results['deployment_reconciles_per_s']} ({results['deployment_reconciles']})", "", ""))
        rows.append(("last pod created / bound / Ready, after the first create",
                     f"{results['last_pod_created_s']} / {results['last_pod_bound_s']} / "
                     f"{results['last_pod_ready_s']} s", "", ""))
        c = results["cpu_s"]
        rows.append(("CPU s until all available: server / controllers / scheduler / agent",
                     f"{c['server']} / {c['controllers']} / {c['scheduler']} / {c['agent']}", "", ""))
    if "replicaset_reconciles_total" in results:
        rows.append(("reconciles once quiet: replicaset / deployment",
                     f"{results['replicaset_reconciles_total']} / {results['deployment_reconciles_total']}", "", ""))
        rows.append(("controller manager RSS (peak)",
                     f"{results['controllers_rss_mb']} MB ({results['controllers_hwm_mb']} MB)", "", ""))
        rows.append(("controller manager CPU, whole life", f"{results['controllers_cpu_s_total']} s", "", ""))
    return rows


def _retry_lines(path: Path) -> list[str]:
    """The controller manager's "reconciling ... retrying" lines, from the level on (`-v` shows INFO ones)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln.split(" ", 2)[-1] for ln in lines if "reconciling" in ln and "retrying" in ln]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("-d", type=int, default=100, help="Deployments (default 100)")
    p.add_argument("-r", type=int, default=10, help="replicas per Deployment (default 10)")
    p.add_argument("--storage", default="sqlite", help="timoner storage: sqlite (default) or memory")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds without a reconcile that count as quiet, after all are available (default 2)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for every Deployment to be available (default 600)")
    p.add_argument("--json", type=Path, help="write the JSON results here instead of stdout")
    args = p.parse_args(argv)
    max_pods = max(110, args.d * args.r + 10)

    results: dict = {"machine": machine(), "deployments": args.d, "replicas": args.r, "storage": args.storage,
                     "runtime": "hollow", "max_pods": max_pods, "load_avg_at_start": os.getloadavg()}
    errors: list[str] = []
    pids: list[int] = []
    with tempfile.TemporaryDirectory(prefix="timoner-bench-controllers-") as tmp:
        workdir = Path(tmp)
        results["workdir"] = tmp
        server = TimonerServer(workdir, storage=args.storage)
        parts: dict[str, Component] = {}
        try:
            log("starting timoner server, scheduler, controllers and agent (hollow runtime)")
            server.start()
            pids.append(server.pid)
            kubeconfig = str(server.data_dir / "kubeconfig")
            metrics_port = free_port()
            parts["scheduler"] = Component("scheduler", ["scheduler", "--kubeconfig", kubeconfig], workdir)
            parts["controllers"] = Component("controllers", ["controllers", "-v", "--kubeconfig", kubeconfig,
                                                             "--metrics-port", str(metrics_port)], workdir)
            parts["agent"] = Component("agent", ["agent", "--kubeconfig", kubeconfig, "--node-name", NODE,
                                                 "--runtime", "hollow", "--max-pods", str(max_pods),
                                                 "--root-dir", str(workdir / "agent"), "--port", "0"], workdir)
            pids += [part.pid for part in parts.values()]
            procs = {"server": server.pid, **{k: v.pid for k, v in parts.items()}}
            results["pids"] = procs
            ep = Endpoint.from_url(server.url, ca_file=server.ca_file, token=server.token)
            asyncio.run(run(args, ep, Metrics(metrics_port), procs, parts, results))
        except (Broken, StartError, OSError, HTTPError) as exc:
            errors.append(str(exc))
        finally:
            for name, part in reversed(parts.items()):
                code = part.stop()
                if code not in (0, None):
                    errors.append(f"{name} exited with {code}:\n{part.tail()}")
            server.stop()
            if server.exit_code not in (0, None):
                errors.append(f"timoner server exited with {server.exit_code}:\n{server.log_tail()}")
            if "controllers" in parts:
                # Conflicts (a stale cache) and 404s are routine, logged at INFO; anything else is a failure.
                retried = _retry_lines(parts["controllers"].log)
                results["reconcile_retries_logged"] = retried[:20]
                failed = [ln for ln in retried if not ln.startswith("INFO ")]
                if failed:
                    errors.append(f"{len(failed)} reconciles failed: {failed[:5]}")
    left = [pid for pid in pids if alive(pid)]
    if left:
        errors.append(f"processes still running after the run: {left}")
    results["processes_left"] = len(left)
    results["load_avg_at_end"] = os.getloadavg()
    results["errors"] = errors

    print()
    m = results["machine"]
    print(f"Timoner controllers benchmark — {m['date']}, {m['nproc']} cores, {args.d} Deployments x {args.r} "
          f"replicas (hollow runtime), load {results['load_avg_at_start'][0]:.2f}")
    print_table(table(results))
    return finish(results, errors, args.json)


if __name__ == "__main__":
    sys.exit(main())
