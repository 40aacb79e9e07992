"""Probe logic without I/O: ports, URLs, settings, and `ContainerProber`'s counting on a manual clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from timoner.node.pods import container_status, pod_conditions
from timoner.node.pods._handlers import HandlerError, Outcome, ProbeResult, extract_port, probe_url
from timoner.node.pods._probes import ContainerProber, ProbeSettings
from timoner.node.runtime import ContainerID, ContainerSpec, ContainerState, State

OK = ProbeResult(Outcome.SUCCESS)
REDIRECT = ProbeResult(Outcome.WARNING, "Probe terminated redirects, Response body: ")


def FAIL(output="boom"):  # noqa: N802 - reads as a result constant in the scripts below
    return ProbeResult(Outcome.FAILURE, output)


class ManualClock:
    """A clock that moves only when the test advances it; sleepers wake in deadline order."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._ids), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.t + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self.t = target
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.parametrize(("port", "want"), [
    (8080, 8080), ("http", 8080), ("metrics", 9090), ("9000", 9000), (65535, 65535),
])
def test_extract_port(port, want):
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8080},
                                        {"name": "metrics", "containerPort": 9090}]}
    assert extract_port(port, container) == want


@pytest.mark.parametrize(("port", "message"), [
    ("grpc", 'strconv.Atoi: parsing "grpc": invalid syntax'), (0, "invalid port number: 0"), (70000, "invalid port number: 70000"),
    (None, "invalid port number: -1"),
])
def test_extract_port_errors(port, message):
    with pytest.raises(HandlerError, match=f"^{message}$"):
        extract_port(port, {"name": "c", "ports": [{"name": "http", "containerPort": 80}]})


@pytest.mark.parametrize(("scheme", "host", "port", "path", "want"), [
    ("HTTP", "10.0.0.1", 80, "/healthz", "http://10.0.0.1:80/healthz"),
    ("HTTPS", "10.0.0.1", 8443, "healthz", "https://10.0.0.1:8443/healthz"),
    ("HTTP", "127.0.0.1", 80, "", "http://127.0.0.1:80/"),
    ("HTTP", "127.0.0.1", 80, "/ready?verbose=1", "http://127.0.0.1:80/ready?verbose=1"),
    ("HTTP", "::1", 81, "/", "http://[::1]:81/"),
])
def test_probe_url(scheme, host, port, path, want):
    assert probe_url(scheme, host, port, path) == want


def test_probe_settings_defaults_and_values():
    assert ProbeSettings.of({}) == ProbeSettings(0.0, 10.0, 1.0, 1, 3)
    assert ProbeSettings.of({"initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3,
                             "successThreshold": 2, "failureThreshold": 4}) == ProbeSettings(5.0, 2.0, 3.0, 2, 4)


class Harness:
    """A prober over scripted results per probe kind; records every try, event and change."""

    def __init__(self, container: dict, scripts: dict[str, list], *, running_for: float = 0.0) -> None:
        self.clock = ManualClock()
        self.scripts = {kind: list(results) for kind, results in scripts.items()}
        self.tries: list[tuple[float, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.changes = 0
        kinds = {id(container.get(f"{k}Probe")): k for k in ("startup", "liveness", "readiness")}

        async def run(probe, timeout):
            kind = kinds[id(probe)]
            self.tries.append((self.clock.now(), kind))
            script = self.scripts[kind]
            result = script.pop(0) if len(script) > 1 else script[0]
            if isinstance(result, Exception):
                raise result
            return result

        async def record(event_type, reason, message):
            self.events.append((event_type, reason, message))

        def changed():
            self.changes += 1

        self.prober = ContainerProber(container, run_id="hollow://1", running_for=running_for, clock=self.clock,
                                      run=run, record=record, on_change=changed)

    def times(self, kind: str) -> list[float]:
        return [t for t, k in self.tries if k == kind]


async def test_liveness_fails_after_threshold_consecutive_failures_and_then_holds():
    h = Harness({"name": "c", "livenessProbe": {"periodSeconds": 10, "failureThreshold": 3}},
                {"liveness": [FAIL(), FAIL(), OK, FAIL("no"), FAIL("no"), FAIL("no"), OK]})
    h.prober.start()
    await h.clock.advance(40)
    assert h.times("liveness") == [0, 10, 20, 30, 40]
    assert h.prober.failed is None  # the success at 20 started the count again
    await h.clock.advance(10)
    assert h.prober.failed == "liveness" and h.changes == 1
    await h.clock.advance(100)
    assert len(h.times("liveness")) == 6  # on hold: the run will be killed, no more tries
    assert h.events.count(("Warning", "Unhealthy", "Liveness probe failed: no")) == 3
    assert h.events.count(("Warning", "Unhealthy", "Liveness probe failed: boom")) == 2
    assert h.prober.started and h.prober.ready  # neither has a probe
    await h.prober.stop()


async def test_readiness_needs_success_threshold_and_flips_back_after_failure_threshold():
    h = Harness({"name": "c", "readinessProbe": {"periodSeconds": 1, "successThreshold": 2, "failureThreshold": 2}},
                {"readiness": [OK, OK, FAIL(), OK, FAIL(), FAIL(), REDIRECT, OK]})
    assert h.prober.ready is False
    h.prober.start()
    await h.clock.advance(0)
    assert h.prober.ready is False  # one success of two
    await h.clock.advance(1)
    assert h.prober.ready is True and h.changes == 1
    await h.clock.advance(2)  # FAIL, OK: never two failures in a row
    assert h.prober.ready is True
    await h.clock.advance(2)  # FAIL, FAIL
    assert h.prober.ready is False and h.changes == 2
    await h.clock.advance(1)  # a redirect not followed counts as success ...
    assert h.prober.ready is False
    await h.clock.advance(1)
    assert h.prober.ready is True and h.prober.failed is None
    assert ("Warning", "ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: ") \
        in h.events
    await h.prober.stop()


async def test_startup_gates_liveness_and_readiness():
    h = Harness({"name": "c", "startupProbe": {"periodSeconds": 1, "failureThreshold": 30},
                 "livenessProbe": {"periodSeconds": 5}, "readinessProbe": {"periodSeconds": 5}},
                {"startup": [FAIL(), FAIL(), FAIL(), OK], "liveness": [OK], "readiness": [OK]})
    assert (h.prober.started, h.prober.ready) == (False, False)
    h.prober.start()
    await h.clock.advance(2)
    assert h.times("liveness") == [] and h.times("readiness") == [] and not h.prober.started
    await h.clock.advance(1)
    assert h.prober.started and h.times("startup") == [0, 1, 2, 3]
    assert h.times("liveness") == [3] and h.times("readiness") == [3] and h.prober.ready
    await h.clock.advance(10)
    assert h.times("startup") == [0, 1, 2, 3]  # not tried again once it succeeded
    assert h.times("liveness") == [3, 8, 13]
    await h.prober.stop()


async def test_startup_failure_marks_the_run_failed():
    h = Harness({"name": "c", "startupProbe": {"periodSeconds": 2, "failureThreshold": 2},
                 "livenessProbe": {"periodSeconds": 1}},
                {"startup": [FAIL("not yet")], "liveness": [OK]})
    h.prober.start()
    await h.clock.advance(2)
    assert h.prober.failed == "startup" and not h.prober.started
    assert h.times("liveness") == []
    assert h.events == [("Warning", "Unhealthy", "Startup probe failed: not yet")] * 2
    await h.prober.stop()


async def test_initial_delay_counts_from_the_container_start():
    h = Harness({"name": "c", "livenessProbe": {"initialDelaySeconds": 10, "periodSeconds": 3}},
                {"liveness": [OK]}, running_for=4.0)
    h.prober.start()
    await h.clock.advance(5.9)
    assert h.times("liveness") == []
    await h.clock.advance(0.1)
    assert h.times("liveness") == [6.0]
    await h.prober.stop()


async def test_errored_tries_are_recorded_and_thrown_away():
    h = Harness({"name": "c", "livenessProbe": {"periodSeconds": 1, "failureThreshold": 1},
                 "readinessProbe": {"periodSeconds": 1}},
                {"liveness": [HandlerError("gRPC probes are not supported by this node agent")],
                 "readiness": [HandlerError('strconv.Atoi: parsing "web": invalid syntax')]})
    h.prober.start()
    await h.clock.advance(3)
    assert len(h.times("liveness")) == 4 and h.prober.failed is None  # liveness stays healthy
    assert h.prober.ready is False  # readiness stays at its initial "not ready"
    assert ("Warning", "Unhealthy", "Liveness probe errored and resulted in unknown state: "
            "gRPC probes are not supported by this node agent") in h.events
    assert ("Warning", "Unhealthy", "Readiness probe errored and resulted in unknown state: "
            'strconv.Atoi: parsing "web": invalid syntax') in h.events
    await h.prober.stop()


async def test_stop_cancels_every_probe_task():
    h = Harness({"name": "c", "livenessProbe": {"periodSeconds": 1}, "readinessProbe": {"periodSeconds": 1}},
                {"liveness": [OK], "readiness": [OK]})
    h.prober.start()
    await h.clock.advance(1)
    before = len(h.tries)
    await h.prober.stop()
    await h.clock.advance(5)
    assert len(h.tries) == before == 4


def _run_state(state):
    spec = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox")
    return ContainerState(id=ContainerID("hollow", "1"), spec=spec, state=State(state), started_at=1000.0,
                          finished_at=1001.0 if state == "terminated" else None,
                          exit_code=0 if state == "terminated" else None)


@pytest.mark.parametrize(("state", "waiting", "started", "ready", "want"), [
    ("running", None, True, True, (True, True)),
    ("running", None, False, False, (False, False)),  # the startup probe has not succeeded
    ("running", None, True, False, (True, False)),  # started, the readiness probe has not succeeded
    ("running", None, False, True, (False, False)),  # not ready before started, whatever readiness says
    ("terminated", None, True, True, (False, False)),
    ("terminated", ("CrashLoopBackOff", "back-off"), True, True, (False, False)),
])
def test_container_status_started_and_ready(state, waiting, started, ready, want):
    status = container_status({"name": "c", "image": "busybox"}, current=_run_state(state), waiting=waiting,
                              last_terminated=None, restart_count=0, default_waiting="ContainerCreating",
                              started=started, ready=ready)
    assert (status["started"], status["ready"]) == want


def test_an_unready_container_makes_the_pod_not_ready():
    spec = {"containers": [{"name": "a"}, {"name": "b"}]}
    statuses = [{"name": "a", "state": {"running": {}}, "ready": True},
                {"name": "b", "state": {"running": {}}, "ready": False}]
    conditions = {c["type"]: c for c in pod_conditions(spec, "Running", [], statuses, old=[], now="t")}
    for kind in ("Ready", "ContainersReady"):
        assert (conditions[kind]["status"], conditions[kind]["reason"], conditions[kind]["message"]) == (
            "False", "ContainersNotReady", "containers with unready status: [b]")
