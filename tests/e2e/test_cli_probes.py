"""Probes as a user sees them with kubectl against `timoner up`: liveness restarts, readiness drives Ready."""

from __future__ import annotations

import json
import time

import pytest

from timoner.testing import TimonerUp

pytestmark = pytest.mark.slow

IDLE = "trap 'exit 0' TERM; while true; do sleep 0.1; done"


def manifest(name, probe_kind, command):
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "app", "image": "busybox", "command": ["sh", "-c", IDLE],
            probe_kind: {"exec": {"command": command}, "periodSeconds": 1, "failureThreshold": 1}}]}})


def poll(check, *, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def test_liveness_restarts_and_readiness_drives_ready_with_kubectl(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    cluster = TimonerUp(tmp_path / "data").start()
    try:
        cluster.kubectl("apply", "-f", "-", input=manifest("live", "livenessProbe",
                                                           ["test", "-f", str(shared / "healthy")]))
        cluster.kubectl("apply", "-f", "-", input=manifest("ready", "readinessProbe",
                                                           ["cat", str(shared / "ready")]))

        def restarts():
            out = cluster.kubectl("get", "pod", "live", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
            return out.stdout.strip() not in ("", "0") and int(out.stdout)

        assert poll(restarts, what="the liveness pod restarted") >= 1
        describe = cluster.kubectl("describe", "pod", "live").stdout
        assert "Unhealthy" in describe and "Liveness probe failed" in describe, describe
        assert "Container app failed liveness probe, will be restarted" in describe, describe
        assert "Liveness:" in describe and "exec [test -f" in describe, describe

        def ready_status():
            return cluster.kubectl("get", "pod", "ready", "-o",
                                   'jsonpath={.status.conditions[?(@.type=="Ready")].status}').stdout.strip()

        def unhealthy_ready_pod():
            events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=ready",
                                     "-o", "json").stdout
            return any(e["reason"] == "Unhealthy" for e in json.loads(events)["items"])

        poll(unhealthy_ready_pod, what="a failed readiness probe")
        assert ready_status() == "False"
        assert cluster.kubectl("get", "pod", "ready", "--no-headers").stdout.split()[1:3] == ["0/1", "Running"]
        (shared / "ready").write_text("yes")
        cluster.kubectl("wait", "--for=condition=Ready", "pod/ready", "--timeout=30s")
        assert cluster.kubectl("get", "pod", "ready", "--no-headers").stdout.split()[1:3] == ["1/1", "Running"]
        (shared / "ready").unlink()
        cluster.kubectl("wait", "--for=condition=Ready=false", "pod/ready", "--timeout=30s")
        restarted = cluster.kubectl("get", "pod", "ready", "-o",
                                    "jsonpath={.status.containerStatuses[0].restartCount}").stdout
        assert restarted == "0"
    finally:
        cluster.stop()
