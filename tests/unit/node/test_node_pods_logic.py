"""Pure pod-worker logic: `$(VAR)` expansion, Go durations, CrashLoopBackOff timing, phase and conditions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.node.pods import Backoff, expand, go_duration, pod_conditions, pod_phase

ENV = {"A": "x", "B": "$(A)", "EMPTY": ""}


@pytest.mark.parametrize(("text", "want"), [
    ("$(A)", "x"),
    ("pre-$(A)-post", "pre-x-post"),
    ("$(B)", "$(A)"),  # values are not expanded twice
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$x"),
    ("$$", "$"),
    ("$", "$"),
    ("a$", "a$"),
    ("$(A", "$(A"),
    ("$x", "$x"),
    ("$(EMPTY)", ""),
    ("$()", "$()"),
    ("no refs", "no refs"),
])
def test_expand_follows_upstream(text, want):
    assert expand(text, ENV.get) == want


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_expand_leaves_text_without_dollars_alone(text):
    assert expand(text, ENV.get) == text


@pytest.mark.parametrize(("seconds", "want"), [
    (10, "10s"), (20, "20s"), (80, "1m20s"), (160, "2m40s"), (300, "5m0s"), (0.2, "200ms"), (1.5, "1.5s"),
    (3600, "1h0m0s"), (0, "0s"),
])
def test_go_duration(seconds, want):
    assert go_duration(seconds) == want


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_backoff_first_restart_is_immediate_then_doubles_to_the_cap():
    clock = FakeClock()
    backoff = Backoff(clock, base=10, cap=300)
    assert backoff.remaining("c", clock.now()) == 0
    backoff.next("c", clock.now())
    delays = []
    for _ in range(7):
        failed_at = clock.now()
        remaining = backoff.remaining("c", failed_at)
        delays.append(backoff.delay("c"))
        assert remaining == backoff.delay("c")
        clock.t += remaining
        assert backoff.remaining("c", failed_at) == 0
        backoff.next("c", failed_at)
    assert delays == [10, 20, 40, 80, 160, 300, 300]


def test_backoff_resets_after_running_ten_minutes():
    clock = FakeClock()
    backoff = Backoff(clock, base=10, cap=300)
    backoff.next("c", clock.now())
    backoff.next("c", clock.now())
    assert backoff.delay("c") == 20
    clock.t += 601  # the container ran for more than 2 * cap since the last failure
    assert backoff.remaining("c", clock.now()) == 0
    backoff.next("c", clock.now())
    assert backoff.delay("c") == 10


def running(name="c"):
    return {"name": name, "state": {"running": {"startedAt": "t"}}, "ready": True}


def terminated(name="c", code=0):
    return {"name": name, "state": {"terminated": {"exitCode": code}}, "ready": False}


def waiting(name="c", reason="ContainerCreating", last_code=None):
    status = {"name": name, "state": {"waiting": {"reason": reason}}, "ready": False}
    if last_code is not None:
        status["lastState"] = {"terminated": {"exitCode": last_code}}
    return status


def spec(policy="Always", inits=(), apps=("c",)):
    return {"restartPolicy": policy, "initContainers": [{"name": n} for n in inits],
            "containers": [{"name": n} for n in apps]}


@pytest.mark.parametrize(("pod_spec", "inits", "apps", "terminal", "want"), [
    (spec(), [], [waiting()], False, "Pending"),
    (spec(), [], [running()], False, "Running"),
    (spec(), [], [waiting(reason="CrashLoopBackOff", last_code=1)], False, "Running"),
    (spec("Never"), [], [terminated(code=0)], False, "Succeeded"),
    (spec("Never"), [], [terminated(code=1)], False, "Failed"),
    (spec("OnFailure"), [], [terminated(code=1)], False, "Running"),
    (spec("OnFailure"), [], [terminated(code=0)], False, "Succeeded"),
    (spec("Always"), [], [terminated(code=0)], False, "Running"),
    (spec("Always"), [], [terminated(code=0)], True, "Succeeded"),
    (spec("Always"), [], [terminated(code=143)], True, "Failed"),
    (spec("Never", inits=("i",)), [terminated("i", 1)], [waiting(reason="PodInitializing")], False, "Failed"),
    (spec("Always", inits=("i",)), [waiting("i", "CrashLoopBackOff", 1)], [waiting(reason="PodInitializing")],
     False, "Pending"),
    (spec("Always", inits=("i",)), [running("i")], [waiting(reason="PodInitializing")], False, "Pending"),
    (spec("Always", inits=("i",)), [terminated("i", 0)], [running()], False, "Running"),
    (spec(apps=("a", "b")), [], [running("a")], False, "Pending"),  # b unknown
])
def test_pod_phase(pod_spec, inits, apps, terminal, want):
    assert pod_phase(pod_spec, inits, apps, terminal=terminal) == want


def test_conditions_reasons_and_transition_times():
    pod_spec = spec(inits=("i1", "i2"), apps=("a", "b"))
    inits = [terminated("i1"), running("i2")]
    apps = [waiting("a", "PodInitializing"), waiting("b", "PodInitializing")]
    conds = {c["type"]: c for c in pod_conditions(pod_spec, "Pending", inits, apps, old=[], now="T1")}
    assert conds["Initialized"] == {"type": "Initialized", "status": "False", "lastProbeTime": None,
                                    "lastTransitionTime": "T1", "reason": "ContainersNotInitialized",
                                    "message": "containers with incomplete status: [i2]"}
    assert conds["Ready"]["message"] == "containers with unready status: [a b]"
    assert conds["ContainersReady"]["reason"] == "ContainersNotReady"
    assert conds["PodScheduled"]["status"] == "True"
    old = [*conds.values(), {"type": "DisruptionTarget", "status": "True"}]
    later = pod_conditions(pod_spec, "Running", [terminated("i1"), terminated("i2")], [running("a"), running("b")],
                           old=old, now="T2")
    by_type = {c["type"]: c for c in later}
    assert by_type["Initialized"]["lastTransitionTime"] == "T2" and "reason" not in by_type["Initialized"]
    assert by_type["Ready"]["status"] == "True" and by_type["Ready"]["lastTransitionTime"] == "T2"
    assert by_type["PodScheduled"]["lastTransitionTime"] == "T1"  # unchanged status keeps its time
    assert by_type["DisruptionTarget"] == {"type": "DisruptionTarget", "status": "True"}  # not ours: kept


def test_conditions_of_finished_pods():
    done = {c["type"]: c for c in pod_conditions(spec("Never"), "Succeeded", [], [terminated()], old=[], now="T")}
    assert done["Ready"]["reason"] == "PodCompleted" and done["Ready"]["status"] == "False"
    assert done["Initialized"]["reason"] == "PodCompleted" and done["Initialized"]["status"] == "True"
    failed = {c["type"]: c for c in pod_conditions(spec("Never"), "Failed", [], [terminated(code=1)], old=[],
                                                   now="T")}
    assert failed["ContainersReady"]["reason"] == "PodFailed"
