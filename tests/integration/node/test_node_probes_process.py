"""Probes and lifecycle hooks on real processes: the agent on the process runtime, an in-process API server.

Containers see the host's filesystem, so each test talks to its
containers through files in its own `tmp_path/shared` (made before the pod,
so it is the host's directory the container sees). Containers share the
host's network: httpGet and tcpSocket probes reach them on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid

import pytest
from node_helpers import start_pod_agent

from timoner.client import EVENTS, resource_for
from timoner.node.runtimes.process import ProcessRuntime

PODS = resource_for("v1", "Pod")

# A shell that ends at once on SIGTERM (PID 1 of its namespace would otherwise ignore it).
IDLE = "trap 'exit 0' TERM; while true; do sleep 0.1; done"


@pytest.fixture
def shared(tmp_path):
    path = tmp_path / "shared"
    path.mkdir()
    return path


@pytest.fixture
async def agent(client, config, tmp_path):
    """An agent on a process runtime; afterwards the agent stops and every container it left is killed."""
    runtime = ProcessRuntime(tmp_path / "runtime")
    agent, task = await start_pod_agent(client, config, runtime)
    yield agent
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for state in await runtime.recover():
        await runtime.stop(state.id, 0)
    await runtime.close()


def pod(node, *containers, grace=2, restart="Always"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                     "containers": [{"image": "busybox", **c} for c in containers]}}


def sh(script):
    return ["sh", "-c", script]


def exec_probe(script, **timing):
    return {"exec": {"command": sh(script)}, "periodSeconds": 1, **timing}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def statuses(client, namespace):
    p = await client.get(PODS, "p", namespace=namespace)
    return p, {s["name"]: s for s in p["status"].get("containerStatuses") or ()}


def ready_condition(p):
    return next((c["status"] for c in p["status"].get("conditions") or () if c["type"] == "Ready"), None)


async def test_failing_liveness_probes_restart_containers(client, node_name, namespace, agent, shared, eventually):
    await client.create(PODS, pod(
        node_name,
        {"name": "by-exec", "command": sh(IDLE),
         "livenessProbe": exec_probe(f"test -f {shared}/healthy", failureThreshold=1)},
        {"name": "by-http", "command": sh(IDLE),
         "livenessProbe": {"httpGet": {"path": "/healthz", "port": free_port()}, "periodSeconds": 1,
                           "failureThreshold": 1}}), namespace=namespace)

    async def both_restarted_twice():
        _, by_name = await statuses(client, namespace)
        return len(by_name) == 2 and all(s["restartCount"] >= 2 for s in by_name.values()) and by_name

    by_name = await eventually(both_restarted_twice, timeout=30, what="both containers restarted twice")
    for status in by_name.values():
        assert status["lastState"]["terminated"]["exitCode"] == 0  # the shell's TERM trap: a graceful stop
    events = (await client.list(EVENTS, namespace=namespace))["items"]
    messages = {(e["reason"], e["involvedObject"].get("fieldPath"), e["message"]) for e in events}
    assert ("Killing", "spec.containers{by-exec}", "Container by-exec failed liveness probe, will be restarted") \
        in messages
    assert ("Killing", "spec.containers{by-http}", "Container by-http failed liveness probe, will be restarted") \
        in messages
    http_failures = [m for r, f, m in messages if r == "Unhealthy" and f == "spec.containers{by-http}"]
    assert http_failures and all(m.startswith('Liveness probe failed: Get "http://127.0.0.1:') and
                                 m.endswith("connect: connection refused") for m in http_failures)
    assert ("Unhealthy", "spec.containers{by-exec}", "Liveness probe failed: ") in messages


async def test_readiness_exec_probe_follows_a_file(client, node_name, namespace, agent, shared, eventually):
    flag = shared / f"ready-{uuid.uuid4().hex[:8]}"
    await client.create(PODS, pod(node_name, {"name": "c", "command": sh(IDLE),
                                              "readinessProbe": exec_probe(f"cat {flag}", failureThreshold=1)}),
                        namespace=namespace)

    async def ready_is(want: bool):
        p, by_name = await statuses(client, namespace)
        c = by_name.get("c") or {}
        return "running" in c.get("state", {}) and c["ready"] is want and ready_condition(p) == str(want)

    async def unready_after_a_probe():
        failed = [e for e in (await client.list(EVENTS, namespace=namespace))["items"] if e["reason"] == "Unhealthy"]
        return failed and await ready_is(False) and failed

    failed = await eventually(unready_after_a_probe, timeout=20, what="a failed readiness probe, not ready")
    message = failed[0]["message"]
    assert message.startswith(f"Readiness probe failed: cat: {flag}") and "No such file or directory" in message
    flag.write_text("yes")
    await eventually(lambda: ready_is(True), timeout=20, what="Ready once the file exists")
    flag.unlink()
    await eventually(lambda: ready_is(False), timeout=20, what="not Ready once it is gone")
    _, by_name = await statuses(client, namespace)
    assert by_name["c"]["restartCount"] == 0


async def test_http_and_tcp_probes_against_a_python_http_server(client, node_name, namespace, agent, shared,
                                                               eventually):
    port = free_port()
    await client.create(PODS, pod(node_name, {
        "name": "web", "command": ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                   "--directory", str(shared)],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/ready.txt", "port": "http"}, "periodSeconds": 1,
                           "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 2,
                          "initialDelaySeconds": 1},
    }), namespace=namespace)

    async def ready_is(want: bool):
        p, by_name = await statuses(client, namespace)
        web = by_name.get("web") or {}
        return "running" in web.get("state", {}) and web["ready"] is want and ready_condition(p) == str(want)

    async def answered_404():
        return [e for e in (await client.list(EVENTS, namespace=namespace))["items"]
                if e["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 404"]

    await eventually(answered_404, timeout=20, what="the server answering 404 for ready.txt")
    assert await ready_is(False)
    (shared / "ready.txt").write_text("ok")
    await eventually(lambda: ready_is(True), timeout=20, what="Ready once ready.txt is served")
    (shared / "ready.txt").unlink()
    await eventually(lambda: ready_is(False), timeout=20, what="not Ready once it is gone")
    _, by_name = await statuses(client, namespace)
    assert by_name["web"]["restartCount"] == 0  # the TCP liveness probe found the server every time


async def test_startup_probe_gates_started_and_ready(client, node_name, namespace, agent, shared, eventually):
    await client.create(PODS, pod(node_name, {
        "name": "c", "command": sh(IDLE),
        "startupProbe": exec_probe(f"test -f {shared}/started", failureThreshold=60),
        "livenessProbe": exec_probe(f"echo alive >> {shared}/liveness-log"),
    }), namespace=namespace)

    async def tried_startup():
        events = (await client.list(EVENTS, namespace=namespace))["items"]
        return any(e["message"] == "Startup probe failed: " for e in events)

    await eventually(tried_startup, timeout=20, what="a failed startup probe")
    p, by_name = await statuses(client, namespace)
    assert "running" in by_name["c"]["state"]
    assert (by_name["c"]["started"], by_name["c"]["ready"], ready_condition(p)) == (False, False, "False")
    assert not (shared / "liveness-log").exists()  # liveness waits for the startup probe
    (shared / "started").touch()

    async def started():
        p, by_name = await statuses(client, namespace)
        return by_name["c"]["started"] and by_name["c"]["ready"] and ready_condition(p) == "True"

    await eventually(started, timeout=20, what="started and ready")
    await eventually(lambda: (shared / "liveness-log").exists(), what="the liveness probe running")


async def test_post_start_writes_a_file_the_container_then_sees(client, node_name, namespace, agent, shared,
                                                               eventually):
    await client.create(PODS, pod(node_name, {
        "name": "c",
        # Both files appear whole (written aside, then renamed): a reader never sees one half-written.
        "command": sh(f"while ! test -f {shared}/hooked; do sleep 0.05; done; "
                      f"cp {shared}/hooked {shared}/seen.tmp && mv {shared}/seen.tmp {shared}/seen; {IDLE}"),
        "lifecycle": {"postStart": {"exec": {"command": sh(
            f"echo from-hook > {shared}/hooked.tmp && mv {shared}/hooked.tmp {shared}/hooked")}}},
    }), namespace=namespace)
    await eventually(lambda: (shared / "seen").exists(), timeout=20, what="the container to see the hook's file")
    assert (shared / "seen").read_text() == "from-hook\n"

    async def running():
        _, by_name = await statuses(client, namespace)
        return "running" in by_name.get("c", {}).get("state", {}) and by_name["c"]["ready"]

    await eventually(running, what="the container running and ready")


async def test_pre_stop_runs_before_sigterm(client, node_name, namespace, agent, shared, eventually):
    trap = (f"trap 'if test -f {shared}/prestop; then echo after > {shared}/term; else echo before > {shared}/term; "
            f"fi; exit 0' TERM; while true; do sleep 0.1; done")
    await client.create(PODS, pod(node_name, {
        "name": "c", "command": sh(trap),
        "lifecycle": {"preStop": {"exec": {"command": sh(f"sleep 0.5; echo done > {shared}/prestop")}}},
    }, grace=10), namespace=namespace)

    async def running():
        _, by_name = await statuses(client, namespace)
        return "running" in by_name.get("c", {}).get("state", {})

    await eventually(running, timeout=20, what="the container running")
    await client.delete(PODS, "p", namespace=namespace)

    async def gone():
        return not (await client.list(PODS, namespace=namespace))["items"]

    await eventually(gone, timeout=20, what="the pod deleted")
    assert (shared / "prestop").read_text() == "done\n"
    assert (shared / "term").read_text() == "after\n"  # SIGTERM came once preStop had finished
    events = (await client.list(EVENTS, namespace=namespace))["items"]
    assert [e["message"] for e in events if e["reason"] == "Killing"] == ["Stopping container c"]
