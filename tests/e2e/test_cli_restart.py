"""`timoner server` as a user runs it: ready line, kubeconfig, and state that survives a restart."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from timoner.testing import TimonerUp, kubectl

pytestmark = pytest.mark.slow


def _start(data_dir, command="server"):
    cluster = TimonerUp(data_dir, command=command).start()
    assert "ready" in cluster.output, cluster.output
    assert re.search(r"export KUBECONFIG=\S+/kubeconfig", cluster.output), cluster.output
    return cluster, cluster.output


def _stop(cluster):
    cluster.stop()


def test_restart_keeps_every_object(tmp_path):
    data = tmp_path / "data"
    proc, _ = _start(data)
    kubeconfig = data / "kubeconfig"
    try:
        kubectl(kubeconfig, "create", "namespace", "keep")
        kubectl(kubeconfig, "create", "-n", "keep", "configmap", "c1", "--from-literal=a=1")
        kubectl(kubeconfig, "create", "-n", "keep", "deployment", "web", "--image=nginx", "--replicas=2")
        kubectl(kubeconfig, "create", "-n", "keep", "service", "clusterip", "web", "--tcp=80:80")
        before = json.loads(kubectl(kubeconfig, "get", "all,cm,sa,ns", "-A", "-o", "json").stdout)
    finally:
        _stop(proc)
    proc, _ = _start(data)
    try:
        after = json.loads(kubectl(kubeconfig, "get", "all,cm,sa,ns", "-A", "-o", "json").stdout)
        key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
        assert sorted(map(key, after["items"])) == sorted(map(key, before["items"]))
        by_key = {key(o): o for o in after["items"]}
        for obj in before["items"]:
            assert by_key[key(obj)]["metadata"]["uid"] == obj["metadata"]["uid"]
            assert by_key[key(obj)]["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        # The revision counter continues and new writes still work, with no IP clash.
        kubectl(kubeconfig, "create", "-n", "keep", "service", "clusterip", "web2", "--tcp=80:80")
        ips = json.loads(kubectl(kubeconfig, "get", "svc", "-A", "-o", "json").stdout)
        cluster_ips = [s["spec"]["clusterIP"] for s in ips["items"]]
        assert len(cluster_ips) == len(set(cluster_ips))
    finally:
        _stop(proc)


def test_up_prints_ready_and_kubeconfig(tmp_path):
    proc, text = _start(tmp_path / "data", command="up")
    try:
        assert "timoner up" in text
        out = kubectl(tmp_path / "data" / "kubeconfig", "get", "ns", "-o", "name").stdout.split()
        assert "namespace/default" in out and "namespace/kube-system" in out
    finally:
        _stop(proc)


def test_up_runs_a_pod_and_stops_it_on_exit(tmp_path):
    """`timoner up` is a whole cluster: a pod gets a node and runs as a process; stopping `up` stops it."""
    data = tmp_path / "data"
    proc, text = _start(data, command="up")
    kubeconfig = data / "kubeconfig"
    marker = f"up-marker-{tmp_path.name}"
    try:
        assert "API server, controller manager, scheduler and node agent ready" in text
        kubectl(kubeconfig, "run", "p", "--image=busybox", "--restart=Never", "--command", "--",
                "sh", "-c", f"echo {marker}; trap 'exit 0' TERM; while true; do sleep 0.1; done")
        deadline = time.time() + 60
        phase = ""
        while time.time() < deadline and phase != "Running":
            phase = kubectl(kubeconfig, "get", "pod", "p", "-o", "jsonpath={.status.phase}").stdout
            if phase != "Running":
                time.sleep(0.2)
        assert phase == "Running"
        nodes = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
        assert len(nodes) == 1
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in nodes[0]["status"]["conditions"])
        logs = ""
        while time.time() < deadline and marker not in logs:
            logs = kubectl(kubeconfig, "logs", "p", check=False).stdout
        assert marker in logs
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0
    finally:
        _stop(proc)
    assert proc.proc.returncode == 0
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # no process left


def test_up_kills_a_container_that_ignores_sigterm_after_the_shutdown_grace_period(tmp_path):
    """A container that ignores SIGTERM (`sleep` as its PID namespace's init) is killed once the grace is over."""
    marker = f"grace-marker-{tmp_path.name}"
    with TimonerUp(tmp_path / "data", extra=("--shutdown-grace-period", "3")) as up:
        up.kubectl("run", "p", "--image=busybox", "--restart=Never", "--command", "--",
                   "sh", "-c", f"trap '' TERM; echo {marker}; while true; do sleep 1; done")
        up.kubectl("wait", "--for=condition=Ready", "pod/p", "--timeout=60s")
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0
        started = time.monotonic()
        assert up.stop() == 0
        took = time.monotonic() - started
    assert 3 <= took < 10, took
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # no process left
