"""The service proxy benchmark: a ClusterIP against the pod IP, and how fast a new endpoint becomes reachable.

Usage: `.venv/bin/python bench/service_proxy.py [--rounds 3] [--duration 8] [--json FILE]`
(also part of `make bench`). Needs root (the pod network) and wrk.

One run, in order:

1. `timoner up` (temp data dir, a network slot of its own: `timoner.testing.NetworkSlot`), then a
   Deployment `web` of one pod serving a fixed 2-byte HTTP/1.1 keep-alive answer (a small uvloop
   server, so the backend is as fast as Python gets), a Service `web` (port 80 -> 8080) and a
   `client` pod that only sleeps;
2. throughput: wrk (`-t1 -c16`, `--duration` s) run from inside the client pod's network namespace
   (`nsenter --net=/run/netns/<bridge>-<uid>`), alternately straight to the pod IP and through the
   ClusterIP, `--rounds` times each; the same client, the same backend, the same run. Reported:
   requests/s and latency p50/p99 of each, and the ClusterIP's cost = 1 - (ClusterIP rate /
   direct rate) over the summed rounds;
3. endpoint latency: a Deployment `late` whose pod is ready only while `/run/late/ready` exists (exec
   readiness probe, period 1 s), and its Service. A watch on the pod marks the moment it turns
   Ready; meanwhile the benchmark connects to the ClusterIP every 2 ms (refused at once while the
   Service has no endpoint). The figure is from the watch event to the first accepted connection:
   the EndpointSlice controller plus the service proxy. `--flips` times (the file removed and the
   pod unreachable again in between).

It prints a table and the JSON (stdout or `--json FILE`). Slowness never fails the run; errors do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wrk  # noqa: E402
from api import Broken, finish, log, machine, print_table  # noqa: E402

from timoner.client import Client, load_kubeconfig, resource_for  # noqa: E402
from timoner.testing import TimonerUp, wait_until  # noqa: E402

COMMAND = ".venv/bin/python bench/service_proxy.py"
PODS = resource_for("v1", "Pod")
PY = sys.executable

SERVER = r"""
import asyncio, sys, uvloop
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.t.write(RESPONSE * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "0.0.0.0", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.run(main())
"""


def manifests() -> str:
    def deployment(name, command, probe=None):
        container = {"name": name, "image": "python", "command": command,
                     "ports": [{"name": "http", "containerPort": 8080}]}
        spec = {"terminationGracePeriodSeconds": 1, "containers": [container]}
        if probe:
            container["readinessProbe"] = probe
            # Not at /tmp: a checkout under /tmp would have its interpreter hidden by the mount.
            container["volumeMounts"] = [{"name": "state", "mountPath": "/run/late"}]
            spec["volumes"] = [{"name": "state", "emptyDir": {}}]
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}

    def service(name):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}}

    probe = {"exec": {"command": ["test", "-e", "/run/late/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
    objects = [deployment("web", [PY, "-c", SERVER, "8080"]), service("web"),
               deployment("late", [PY, "-c", SERVER, "8080"], probe), service("late"),
               {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}]
    return "\n".join(json.dumps(o) for o in objects)


def get(up: TimonerUp, *args: str) -> dict:
    return json.loads(up.kubectl("get", *args, "-o", "json").stdout)


def throughput(up: TimonerUp, args: argparse.Namespace, results: dict) -> None:
    web = get(up, "pods", "-l", "app=web")["items"][0]
    client = get(up, "pod", "client")
    cluster_ip = get(up, "service", "web")["spec"]["clusterIP"]
    netns = f"/run/netns/{up.slot.bridge}-{client['metadata']['uid']}"
    prefix = ("nsenter", f"--net={netns}")
    targets = {"direct": f"http://{web['status']['podIP']}:8080/", "clusterip": f"http://{cluster_ip}/"}
    runs: dict[str, list[dict]] = {"direct": [], "clusterip": []}
    for label, url in targets.items():  # warm-up, not counted
        _wrk.run(label, url, _wrk.plain_get_script(), threads=1, connections=16, duration=1, prefix=prefix)
    for rnd in range(args.rounds):
        for label, url in targets.items():
            res = _wrk.run(label, url, _wrk.plain_get_script(), threads=1, connections=16,
                           duration=args.duration, prefix=prefix)
            if any(res.errors.values()):
                raise Broken(f"wrk errors through {label}: {res.errors}")
            runs[label].append(res.as_dict())
            log(f"round {rnd + 1} {label}: {res.rate:,.0f} req/s, p99 {res.latency_us['p99'] / 1000:.2f} ms")
    total = {label: sum(r["requests"] for r in rs) / sum(r["duration_s"] for r in rs) for label, rs in runs.items()}
    results["throughput"] = {
        "runs": runs,
        "rate_per_s": {k: round(v, 1) for k, v in total.items()},
        "p50_ms": {k: statistics.median(r["latency_ms"]["p50"] for r in rs) for k, rs in runs.items()},
        "p99_ms": {k: statistics.median(r["latency_ms"]["p99"] for r in rs) for k, rs in runs.items()},
        "clusterip_cost_pct": round(100 * (1 - total["clusterip"] / total["direct"]), 1),
    }


async def endpoint_latency(up: TimonerUp, args: argparse.Namespace, results: dict) -> None:
    pod = get(up, "pods", "-l", "app=late")["items"][0]
    name = pod["metadata"]["name"]
    cluster_ip = get(up, "service", "late")["spec"]["clusterIP"]

    async def reachable() -> bool:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(cluster_ip, 80), 0.5)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    delays: list[float] = []
    async with Client(load_kubeconfig(up.kubeconfig), user_agent="bench-service-proxy") as client:
        for flip in range(args.flips):
            up.kubectl("exec", name, "--", "rm", "-f", "/run/late/ready")
            deadline = time.monotonic() + 30
            while await reachable():
                if time.monotonic() > deadline:
                    raise Broken("the unready pod stayed reachable through its Service")
                await asyncio.sleep(0.05)
            current = await client.get(PODS, name, namespace="default")
            watcher = asyncio.create_task(_ready_at(client, name, current["metadata"]["resourceVersion"]))
            up.kubectl("exec", name, "--", "touch", "/run/late/ready")
            deadline = time.monotonic() + 30
            while not await reachable():
                if time.monotonic() > deadline:
                    raise Broken("the ready pod did not become reachable through its Service")
                await asyncio.sleep(0.002)
            reached = time.monotonic()
            ready_at = await asyncio.wait_for(watcher, 30)
            delays.append((reached - ready_at) * 1000)
            log(f"flip {flip + 1}: reachable {delays[-1]:.0f} ms after the pod turned Ready")
    results["endpoint_ms"] = {"each": [round(d, 1) for d in delays], "p50": round(statistics.median(delays), 1),
                              "max": round(max(delays), 1)}


async def _ready_at(client: Client, name: str, rv: str) -> float:
    """When the watch shows pod `name` Ready (the monotonic clock)."""
    async for event in client.watch(PODS, namespace="default", resource_version=rv,
                                    field_selector=f"metadata.name={name}"):
        conditions = event.object.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return time.monotonic()
    raise Broken(f"the watch on {name} ended before it was Ready")


def table(results: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    t = results.get("throughput")
    if t:
        for label in ("direct", "clusterip"):
            rows.append((f"{label}: requests/s", f"{t['rate_per_s'][label]:,.0f}", "", ""))
            rows.append((f"{label}: latency p50 / p99 (ms)", f"{t['p50_ms'][label]:.2f} / {t['p99_ms'][label]:.2f}",
                         "", ""))
        cost = t["clusterip_cost_pct"]
        rows.append(("ClusterIP cost vs direct", f"{cost:.1f} %", "< 10 %", "met" if cost < 10 else "NOT met"))
    e = results.get("endpoint_ms")
    if e:
        rows.append(("Ready -> reachable via ClusterIP (ms), p50 / max", f"{e['p50']:.0f} / {e['max']:.0f}",
                     "< 1000", "met" if e["max"] < 1000 else "NOT met"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=3, help="wrk runs per target (default 3)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run (default 8)")
    p.add_argument("--flips", type=int, default=5, help="readiness flips timed (default 5)")
    p.add_argument("--json", type=Path, help="write the JSON results here instead of stdout")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/service_proxy.py needs root (the pod network)", file=sys.stderr)
        return 2
    results: dict = {"machine": machine(), "command": COMMAND, "load_avg_at_start": os.getloadavg()}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="timoner-bench-proxy-") as tmp:
        up = TimonerUp(Path(tmp) / "data")
        try:
            log("starting timoner up")
            up.start()
            up.kubectl("apply", "-f", "-", input=manifests())
            up.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
            for what in (("pods", "-l", "app=late"), ("pods", "--field-selector=metadata.name=client")):
                wait_until(lambda w=what: [p["status"].get("phase") for p in get(up, *w)["items"]] == ["Running"],
                           60, f"{' '.join(what)} running")
            throughput(up, args, results)
            asyncio.run(endpoint_latency(up, args, results))
        except (Broken, RuntimeError, AssertionError, OSError) as exc:
            errors.append(f"{exc}\n{up.tail(40) if up.proc else ''}")
        finally:
            if up.proc is not None:
                code = up.stop()
                if code not in (0, None):
                    errors.append(f"timoner up exited with {code}")
    results["load_avg_at_end"] = os.getloadavg()
    results["errors"] = errors
    print()
    m = results["machine"]
    print(f"Timoner service proxy benchmark — {m['date']}, {m['nproc']} cores, load "
          f"{results['load_avg_at_start'][0]:.2f}")
    print_table(table(results))
    return finish(results, errors, args.json)


if __name__ == "__main__":
    sys.exit(main())
