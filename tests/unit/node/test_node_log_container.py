"""Which container's log a `kubectl logs` request means: kubelet's `validateContainerLogStatus`, table-driven."""

from __future__ import annotations

import pytest

from timoner.node.runtime import ContainerID
from timoner.node.server import _log_container

RUNNING = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}


def pod(*, state=None, last=None, cid="process://now", key="containerStatuses", name="c") -> dict:
    entry = {"name": name, "state": state or {}, "lastState": {"terminated": last} if last else {}}
    if cid:
        entry["containerID"] = cid
    return {"metadata": {"name": "p"}, "status": {key: [entry]}}


@pytest.mark.parametrize(("obj", "previous", "expected"), [
    (pod(state=RUNNING), False, ContainerID("process", "now")),
    (pod(state=RUNNING, last={"containerID": "process://before"}), True, ContainerID("process", "before")),
    (pod(state=RUNNING), True, 'previous terminated container "c" in pod "p" not found'),
    (pod(state=RUNNING, last={"exitCode": 1}), True, 'previous terminated container "c" in pod "p" not found'),
    # Exited for good: its own log; exited with no id of its own: the last run's.
    (pod(state={"terminated": {"containerID": "process://now", "exitCode": 0}}), False, ContainerID("process", "now")),
    (pod(state={"terminated": {"exitCode": 0}}, last={"containerID": "process://before"}), False,
     ContainerID("process", "before")),
    (pod(state={"terminated": {"exitCode": 0}}, cid=""), False, 'container "c" in pod "p" is terminated'),
    # CrashLoopBackOff: waiting, the failed run is lastState, and plain `kubectl logs` shows it.
    (pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, last={"containerID": "process://before"}), False,
     ContainerID("process", "before")),
    (pod(state={"waiting": {"reason": "ContainerCreating"}}, cid=""), False,
     'container "c" in pod "p" is waiting to start: ContainerCreating'),
    (pod(state={"waiting": {"reason": "ImagePullBackOff"}}, cid=""), False,
     'container "c" in pod "p" is waiting to start: trying and failing to pull image'),
    (pod(state={}, cid=""), False, 'container "c" in pod "p" is waiting to start - no logs yet'),
    (pod(state=RUNNING, key="initContainerStatuses"), False, ContainerID("process", "now")),
    (pod(state=RUNNING, name="other"), False, 'container "c" in pod "p" is not available'),
    ({"metadata": {"name": "p"}}, False, 'container "c" in pod "p" is not available'),
])
def test_log_container(obj, previous, expected):
    assert _log_container(obj, "c", previous=previous) == expected
