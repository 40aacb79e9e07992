"""Probes and lifecycle hooks in the pod worker: a real in-process API server, the agent on a hollow runtime.

The runtime is the hollow one plus a scripted `exec` (`ScriptedRuntime`),
so exec probes and hooks answer as each test says, and every exec and
stop is logged in order. Network probes connect to small servers the tests
run on 127.0.0.1, the pod IP of this node. Timings are the shortest the API
allows (`periodSeconds: 1`); everything else is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

from timoner.client import EVENTS, resource_for
from timoner.node.runtime import ContainerID
from timoner.node.runtimes.hollow import HollowRuntime

PODS = resource_for("v1", "Pod")


class Session:
    """A finished exec: its exit code and output."""

    def __init__(self, code: int, output: bytes) -> None:
        self.code, self.data = code, output

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        if self.data:
            yield 1, self.data

    async def wait(self) -> int:
        return self.code


class ScriptedRuntime(HollowRuntime):
    """Hollow containers that answer `exec`. Commands: `ok`; `fail` (exit 1, says "nope");
    `flag NAME` (0 while NAME is in `flags`); `gate NAME` (waits until `gates[NAME]` is set, then 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.log: list[tuple[str, str, object]] = []  # ("exec", container, command) / ("stop", container, timeout)

    async def exec(self, container: ContainerID, command: tuple[str, ...], *, tty: bool = False,
                   stdin: bool = False) -> Session:
        state = await self.inspect(container)
        self.log.append(("exec", state.spec.name, command))
        match command:
            case ("ok",):
                return Session(0, b"")
            case ("fail",):
                return Session(1, b"nope")
            case ("flag", name):
                return Session(0 if name in self.flags else 1, b"" if name in self.flags else f"no {name}".encode())
            case ("gate", name):
                await self.gates.setdefault(name, asyncio.Event()).wait()
                return Session(0, b"")
        raise AssertionError(f"unscripted command {command}")

    async def stop(self, container, timeout, signal=15):
        state = await self.inspect(container)
        self.log.append(("stop", state.spec.name, timeout))
        return await super().stop(container, timeout, signal)

    def entries(self, kind: str) -> list[tuple[str, str, object]]:
        return [e for e in self.log if e[0] == kind]


def pod(node, *, restart="Always", grace=None, **container):
    spec = {"nodeName": node, "restartPolicy": restart,
            "containers": [{"name": "c", "image": "busybox", **container}]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec}


def probe(action, **timing):
    return {**action, "periodSeconds": 1, **timing}


def cstatus(p):
    statuses = (p.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def condition(p, kind):
    return next((c for c in (p.get("status") or {}).get("conditions") or () if c["type"] == kind), {})


async def get(client, namespace):
    return await client.get(PODS, "web", namespace=namespace)


async def events(client, namespace, reason=None):
    items = (await client.list(EVENTS, namespace=namespace))["items"]
    return [e for e in items if reason is None or e["reason"] == reason]


class History:
    """Every version of the pod the API server had, from a watch: nothing written in between is missed."""

    def __init__(self, client, namespace) -> None:
        self.versions: list[dict] = []
        self._task = asyncio.create_task(self._watch(client, namespace))

    async def _watch(self, client, namespace) -> None:
        async for event in client.watch(PODS, namespace=namespace, resource_version="0"):
            if event.type in ("ADDED", "MODIFIED"):
                self.versions.append(event.object)

    def waiting_reasons(self) -> list[str]:
        return [cstatus(p).get("state", {}).get("waiting", {}).get("reason", "") for p in self.versions]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_liveness_failure_kills_with_prestop_and_restarts(client, config, node_name, namespace, run_agent,
                                                                 eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    created = await client.create(PODS, pod(
        node_name, grace=30,
        livenessProbe=probe({"exec": {"command": ["fail"]}}, failureThreshold=2, terminationGracePeriodSeconds=3),
        lifecycle={"preStop": {"exec": {"command": ["ok"]}}}), namespace=namespace)

    async def restarted():
        p = await get(client, namespace)
        return p if cstatus(p).get("restartCount", 0) >= 1 else None

    p = await eventually(restarted, timeout=20, what="the container restarted after failing its liveness probe")
    last = cstatus(p)["lastState"]["terminated"]
    assert last["exitCode"] == 143 and last["reason"] == "Error"  # SIGTERM, as the hollow runtime reports it
    # preStop ran first, then the runtime got the probe's grace period (less the whole seconds preStop took).
    first_stop = runtime.log.index(runtime.entries("stop")[0])
    assert ("exec", "c", ("ok",)) in runtime.log[:first_stop]
    assert runtime.entries("stop")[0] == ("stop", "c", 3.0)

    async def killing():
        return await events(client, namespace, "Killing")

    kill = (await eventually(killing, what="a Killing event"))[0]
    assert kill["type"] == "Normal"
    assert kill["message"] == "Container c failed liveness probe, will be restarted"
    assert kill["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert kill["involvedObject"]["uid"] == created["metadata"]["uid"]
    assert kill["source"] == {"component": "kubelet", "host": node_name}
    unhealthy = await events(client, namespace, "Unhealthy")
    assert [(e["type"], e["message"]) for e in unhealthy] == [("Warning", "Liveness probe failed: nope")]
    assert unhealthy[0]["count"] >= 2  # repeats are counted on one event, as kubectl describe shows them

    async def restarted_twice():
        return cstatus(await get(client, namespace)).get("restartCount", 0) >= 2

    await eventually(restarted_twice, timeout=20, what="a second restart")


async def test_liveness_failure_under_never_fails_the_pod(client, config, node_name, namespace, run_agent, eventually):
    await run_agent(config, ScriptedRuntime())
    await client.create(PODS, pod(node_name, restart="Never",
                                  livenessProbe=probe({"exec": {"command": ["fail"]}}, failureThreshold=1)),
                        namespace=namespace)

    async def failed():
        p = await get(client, namespace)
        return p if p["status"].get("phase") == "Failed" else None

    p = await eventually(failed, timeout=20, what="the pod Failed")
    assert cstatus(p)["state"]["terminated"]["exitCode"] == 143 and cstatus(p)["restartCount"] == 0
    kill = await events(client, namespace, "Killing")
    assert [e["message"] for e in kill] == ["Container c failed liveness probe"]


async def test_readiness_controls_ready_and_the_pod_conditions(client, config, node_name, namespace, run_agent,
                                                              eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    await client.create(PODS, pod(node_name, readinessProbe=probe({"exec": {"command": ["flag", "ready"]}},
                                                                  failureThreshold=1)), namespace=namespace)

    async def state(ready: bool):
        p = await get(client, namespace)
        s = cstatus(p)
        if "running" in s.get("state", {}) and s["ready"] is ready and condition(p, "Ready").get("status") == (
                "True" if ready else "False"):
            return p
        return None

    async def probed_unready():
        return any(e[2] == ("flag", "ready") for e in runtime.entries("exec")) and await state(False)

    p = await eventually(probed_unready, what="a running, probed, not ready container")
    assert cstatus(p)["started"] is True and p["status"]["phase"] == "Running"
    assert condition(p, "ContainersReady")["status"] == "False"
    assert condition(p, "Ready")["reason"] == "ContainersNotReady"
    assert condition(p, "Ready")["message"] == "containers with unready status: [c]"
    runtime.flags.add("ready")
    p = await eventually(lambda: state(True), what="Ready once the probe succeeds")
    assert condition(p, "ContainersReady")["status"] == "True"
    runtime.flags.discard("ready")
    await eventually(lambda: state(False), what="not Ready once it fails again")
    unhealthy = await events(client, namespace, "Unhealthy")
    assert {e["message"] for e in unhealthy} == {"Readiness probe failed: no ready"}
    assert cstatus(await get(client, namespace))["restartCount"] == 0  # readiness never restarts anything


async def test_startup_probe_gates_liveness_and_readiness(client, config, node_name, namespace, run_agent, eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    await client.create(PODS, pod(node_name, startupProbe=probe({"exec": {"command": ["flag", "started"]}},
                                                                failureThreshold=60),
                                  livenessProbe=probe({"exec": {"command": ["ok"]}}),
                                  readinessProbe=probe({"exec": {"command": ["ok"]}})), namespace=namespace)

    async def startup_tried_twice():
        tries = [e for e in runtime.entries("exec") if e[2] == ("flag", "started")]
        return len(tries) >= 2 and await get(client, namespace)

    p = await startup_tried_twice() or await eventually(startup_tried_twice, what="the startup probe tried twice")
    assert "running" in cstatus(p)["state"]
    assert (cstatus(p)["started"], cstatus(p)["ready"]) == (False, False)
    assert [e for e in runtime.entries("exec") if e[2] == ("ok",)] == []  # liveness and readiness wait
    runtime.flags.add("started")

    async def started_and_ready():
        s = cstatus(await get(client, namespace))
        return s.get("started") and s.get("ready")

    await eventually(started_and_ready, what="started and ready after the startup probe succeeded")
    assert [e for e in runtime.entries("exec") if e[2] == ("ok",)]


async def test_startup_probe_failure_restarts_the_container(client, config, node_name, namespace, run_agent,
                                                            eventually):
    await run_agent(config, ScriptedRuntime())
    await client.create(PODS, pod(node_name, startupProbe=probe({"exec": {"command": ["fail"]}}, failureThreshold=2)),
                        namespace=namespace)

    async def restarted():
        return cstatus(await get(client, namespace)).get("restartCount", 0) >= 1

    await eventually(restarted, timeout=20, what="a restart after the startup probe failed")
    messages = {e["message"] for e in await events(client, namespace, "Killing")}
    assert messages == {"Container c failed startup probe, will be restarted"}
    assert {e["message"] for e in await events(client, namespace, "Unhealthy")} == {"Startup probe failed: nope"}


async def test_post_start_holds_the_container_until_it_returns(client, config, node_name, namespace, run_agent,
                                                               eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    history = History(client, namespace)
    try:
        await client.create(PODS, pod(node_name, lifecycle={"postStart": {"exec": {"command": ["gate", "hook"]}}}),
                            namespace=namespace)
        await eventually(lambda: runtime.entries("exec"), what="the postStart hook to run")
        # While it runs, the container is not reported running, and the pod not ready.
        p = await get(client, namespace)
        assert "running" not in cstatus(p).get("state", {}) and condition(p, "Ready").get("status") != "True"
        runtime.gates.setdefault("hook", asyncio.Event()).set()

        async def running_and_ready():
            p = await get(client, namespace)
            return "running" in cstatus(p).get("state", {}) and cstatus(p)["ready"]

        await eventually(running_and_ready, what="running once the hook returned")
        before = [p for p in history.versions if "running" not in cstatus(p).get("state", {})]
        assert before and all(not cstatus(p).get("ready") for p in before)
    finally:
        await history.close()


async def test_post_start_failure_kills_and_restarts(client, config, node_name, namespace, run_agent, eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    history = History(client, namespace)
    try:
        await client.create(PODS, pod(node_name, lifecycle={"postStart": {"exec": {"command": ["fail"]}}}),
                            namespace=namespace)

        async def backing_off():
            return "CrashLoopBackOff" in history.waiting_reasons()

        await eventually(backing_off, timeout=20, what="CrashLoopBackOff after the hook failed twice")
        shown = next(cstatus(p) for p in history.versions if
                     cstatus(p).get("state", {}).get("waiting", {}).get("reason") == "PostStartHookError")
        assert shown["state"]["waiting"]["message"].startswith(
            "Exec lifecycle hook ([fail]) for Container \"c\" in Pod \"web_")
        assert shown["lastState"]["terminated"]["exitCode"] == 143
        failed = await events(client, namespace, "FailedPostStartHook")
        assert [(e["type"], e["message"]) for e in failed] == [("Warning", "PostStartHook failed")]
        assert {e["message"] for e in await events(client, namespace, "Killing")} == {"FailedPostStartHook"}
        assert not any("running" in cstatus(p).get("state", {}) for p in history.versions)
    finally:
        await history.close()


async def test_pre_stop_runs_before_the_stop_on_deletion(client, config, node_name, namespace, run_agent, eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    await client.create(PODS, pod(node_name, grace=5, lifecycle={"preStop": {"sleep": {"seconds": 1}}}),
                        namespace=namespace)

    async def running():
        return "running" in cstatus(await get(client, namespace)).get("state", {})

    await eventually(running, what="the pod running")
    began = time.monotonic()
    await client.delete(PODS, "web", namespace=namespace)

    async def gone():
        return not (await client.list(PODS, namespace=namespace))["items"]

    await eventually(gone, what="the pod deleted")
    assert time.monotonic() - began >= 1  # the sleep ran first ...
    assert runtime.entries("stop") == [("stop", "c", 4.0)]  # ... and took its whole second of the grace period
    assert [e["message"] for e in await events(client, namespace, "Killing")] == ["Stopping container c"]


async def test_failing_or_endless_pre_stop_still_stops_the_container(client, config, node_name, namespace,
                                                                     run_agent, eventually):
    runtime = ScriptedRuntime()
    await run_agent(config, runtime)
    spec = pod(node_name, grace=2, lifecycle={"preStop": {"exec": {"command": ["gate", "never"]}}})
    spec["spec"]["containers"].append({"name": "d", "image": "busybox",
                                       "lifecycle": {"preStop": {"exec": {"command": ["fail"]}}}})
    await client.create(PODS, spec, namespace=namespace)

    async def running():
        statuses = (await get(client, namespace))["status"].get("containerStatuses") or []
        return len(statuses) == 2 and all("running" in s["state"] for s in statuses)

    await eventually(running, what="both containers running")
    await client.delete(PODS, "web", namespace=namespace)

    async def gone():
        return not (await client.list(PODS, namespace=namespace))["items"]

    await eventually(gone, what="the pod deleted")
    # c's hook never ends: it is cut at the grace period and c still gets the minimum 2 s; d's fails fast.
    assert sorted(runtime.entries("stop")) == [("stop", "c", 2.0), ("stop", "d", 2.0)]
    failed = await events(client, namespace, "FailedPreStopHook")
    assert [(e["involvedObject"]["fieldPath"], e["message"]) for e in failed] == [
        ("spec.containers{d}", "PreStopHook failed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_http_readiness_and_tcp_liveness_against_the_pod_ip(client, config, node_name, namespace, run_agent,
                                                                  eventually):
    status = {"code": 503}

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.0 {status['code']} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await run_agent(config, ScriptedRuntime())
        await client.create(PODS, pod(node_name, ports=[{"name": "http", "containerPort": port}],
                                      readinessProbe=probe({"httpGet": {"path": "/ready", "port": "http"}},
                                                           failureThreshold=1),
                                      livenessProbe=probe({"tcpSocket": {"port": port}}, failureThreshold=1)),
                            namespace=namespace)

        async def ready(want: bool):
            p = await get(client, namespace)
            return "running" in cstatus(p).get("state", {}) and cstatus(p)["ready"] is want

        async def refused_once():
            return [e for e in await events(client, namespace, "Unhealthy")
                    if e["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 503"]

        await eventually(refused_once, what="a failed readiness probe")
        assert await ready(False)
        status["code"] = 200
        await eventually(lambda: ready(True), what="ready on 200")
        status["code"] = 500
        await eventually(lambda: ready(False), what="unready on 500")
        assert cstatus(await get(client, namespace))["restartCount"] == 0  # the TCP liveness probe holds
    finally:
        server.close()
        await server.wait_closed()

    async def restarted():
        return cstatus(await get(client, namespace)).get("restartCount", 0) >= 1

    await eventually(restarted, timeout=20, what="a restart once nothing listens on the liveness port")
    messages = {e["message"] for e in await events(client, namespace, "Unhealthy")}
    assert f"Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused" in messages


async def test_an_agent_restart_probes_adopted_containers_again(client, config, node_name, namespace, run_agent,
                                                                 eventually):
    runtime = ScriptedRuntime()
    runtime.flags |= {"ready", "alive"}
    agent = await run_agent(config, runtime)
    await client.create(PODS, pod(node_name, readinessProbe=probe({"exec": {"command": ["flag", "ready"]}}),
                                  livenessProbe=probe({"exec": {"command": ["flag", "alive"]}}, failureThreshold=1)),
                        namespace=namespace)

    async def ready():
        return cstatus(await get(client, namespace)).get("ready")

    await eventually(ready, what="ready")
    agent.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await agent.task
    tries = len(runtime.entries("exec"))
    await run_agent(config, runtime)
    await eventually(lambda: len(runtime.entries("exec")) >= tries + 4, what="probes running again")
    assert await ready() and cstatus(await get(client, namespace))["restartCount"] == 0
    assert runtime.entries("stop") == []  # adopted, not restarted
    runtime.flags.discard("alive")

    async def restarted():
        return cstatus(await get(client, namespace)).get("restartCount") == 1

    await eventually(restarted, timeout=20, what="the adopted container killed by its liveness probe")
