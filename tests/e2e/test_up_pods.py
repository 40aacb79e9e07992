"""Pods on `timoner up`, driven by the real kubectl: logs, exec, isolation, restarts, init order, deletion.

One `timoner up` serves the whole module; each test works in a namespace of its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest

from timoner.testing import KUBECTL, ServerThread, kubectl, wait_until

pytestmark = pytest.mark.slow


def _pod(up, ns, name, *command, **spec):
    container = {"name": "c", "image": "busybox", "command": list(command)}
    container.update(spec.pop("container", {}))
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **spec}}
    up.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _get(up, ns, name):
    return json.loads(up.kubectl("get", "pod", "-n", ns, name, "-o", "json").stdout)


def _running(up, ns, name, timeout=60):
    return wait_until(lambda: _get(up, ns, name)["status"].get("phase") == "Running", timeout, f"{name} Running")


def _processes(marker):
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


def test_logs_show_output_and_follow_streams(up, ns):
    _pod(up, ns, "hello", "sh", "-c", "echo hello; sleep 3600")
    _running(up, ns, "hello")
    assert wait_until(lambda: up.kubectl("logs", "-n", ns, "hello").stdout, what="logs") == "hello\n"

    _pod(up, ns, "ticker", "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
    _running(up, ns, "ticker")
    follow = subprocess.Popen([KUBECTL, "logs", "-f", "-n", ns, "ticker"], stdout=subprocess.PIPE, text=True,
                              env={"KUBECONFIG": str(up.kubeconfig), "HOME": str(up.data_dir)})
    try:
        first = int(follow.stdout.readline().split()[1])
        # Lines keep arriving after the first one: written by the container after kubectl started reading.
        seen = [int(follow.stdout.readline().split()[1]) for _ in range(10)]
        assert seen == list(range(first + 1, first + 11))
        assert follow.poll() is None
    finally:
        follow.terminate()
        follow.wait(10)


def test_exec_output_exit_codes_and_stdin(up, ns):
    _pod(up, ns, "box", "sh", "-c", "sleep 3600")
    _running(up, ns, "box")
    out = up.kubectl("exec", "-n", ns, "box", "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (out.returncode, out.stdout) == (7, "out\n"), out.stderr
    assert "err" in out.stderr
    piped = up.kubectl("exec", "-i", "-n", ns, "box", "--", "sh", "-c", "tr a-z A-Z; exit 0", input="from stdin\n")
    assert piped.stdout == "FROM STDIN\n"


def test_pod_sees_its_own_hostname_and_pid_namespace(up, ns):
    marker = f"pidns-{uuid.uuid4().hex[:8]}"
    _pod(up, ns, "iso", "sh", "-c", f"echo {marker} >/dev/null; sleep 3600")
    _running(up, ns, "iso")
    assert up.kubectl("exec", "-n", ns, "iso", "--", "hostname").stdout == "iso\n"
    # PID 1 of the pod's PID namespace is the container's own command, not the host's init.
    init = up.kubectl("exec", "-n", ns, "iso", "--", "cat", "/proc/1/cmdline").stdout
    assert marker in init.replace("\0", " ")
    pids = up.kubectl("exec", "-n", ns, "iso", "--", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'").stdout.split()
    assert len(pids) < 10, pids  # the host has many more; the pod sees only its own
    host_pids = _processes(marker)
    assert host_pids and "1" not in host_pids


def test_deleting_a_pod_leaves_no_process(up, ns):
    marker = f"gone-{uuid.uuid4().hex[:8]}"
    _pod(up, ns, "victim", "sh", "-c", f"sleep 3600 & echo {marker} >/dev/null; while true; do sleep 0.1; done")
    _running(up, ns, "victim")
    assert wait_until(lambda: _processes(marker), what="the pod's process")
    up.kubectl("delete", "pod", "-n", ns, "victim", "--wait=true", "--timeout=60s")
    assert up.kubectl("get", "pod", "-n", ns, "victim", check=False).returncode != 0
    assert _processes(marker) == []


def test_crashing_container_backs_off_with_a_growing_restart_count(up, ns):
    _pod(up, ns, "crash", "sh", "-c", "echo crashing; exit 3")

    def backing_off(least):
        status = _get(up, ns, "crash")["status"].get("containerStatuses") or [{}]
        waiting = (status[0].get("state") or {}).get("waiting") or {}
        count = status[0].get("restartCount", 0)
        return (waiting.get("reason") == "CrashLoopBackOff" and count >= least) and status[0]

    first = wait_until(lambda: backing_off(1), 60, "CrashLoopBackOff")
    assert first["lastState"]["terminated"]["exitCode"] == 3
    later = wait_until(lambda: backing_off(first["restartCount"] + 1), 60, "another restart")
    assert later["restartCount"] > first["restartCount"]
    table = up.kubectl("get", "pod", "-n", ns, "crash").stdout
    assert "CrashLoopBackOff" in table or "Error" in table


def test_init_containers_run_in_order(up, ns, tmp_path):
    record = tmp_path / "order.txt"
    init = [{"name": f"init-{i}", "image": "busybox", "command": ["sh", "-c", f"echo init-{i} >> {record}"]}
            for i in (1, 2, 3)]
    _pod(up, ns, "ordered", "sh", "-c", f"echo main >> {record}; sleep 3600", initContainers=init)
    _running(up, ns, "ordered")
    assert wait_until(lambda: record.exists() and record.read_text().count("\n") == 4, what="4 lines")
    assert record.read_text().split() == ["init-1", "init-2", "init-3", "main"]
    status = _get(up, ns, "ordered")["status"]
    assert [s["state"]["terminated"]["reason"] for s in status["initContainerStatuses"]] == ["Completed"] * 3
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Initialized"] == "True" and conditions["Ready"] == "True"


def test_node_lease_renews_every_10s_while_status_writes_stay_rare(up):
    node = json.loads(up.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    renewals: list[str] = []
    node_versions: set[str] = set()
    deadline = time.monotonic() + 23
    while time.monotonic() < deadline:
        lease = json.loads(up.kubectl("get", "lease", "-n", "kube-node-lease", node, "-o", "json").stdout)
        if not renewals or renewals[-1] != lease["spec"]["renewTime"]:
            renewals.append(lease["spec"]["renewTime"])
        node_versions.add(json.loads(up.kubectl("get", "node", node, "-o", "json").stdout)["metadata"]["resourceVersion"])
        time.sleep(0.5)
    assert lease["spec"]["holderIdentity"] == node and lease["spec"]["leaseDurationSeconds"] == 40
    assert len(renewals) >= 3, renewals  # the one we found and at least two renewals about 10 s apart
    assert len(node_versions) <= 2, node_versions  # status is written on change or every 5 minutes


def test_restarting_the_agent_keeps_the_pod_running(tmp_path):
    """A `timoner agent` killed and started again re-adopts its pod; killed again, the pod is later
    deleted while no agent runs, and the next agent finishes the delete leaving no process behind."""
    marker = f"adopt-{uuid.uuid4().hex[:8]}"
    with ServerThread(tmp_path / "data") as srv:
        command = [sys.executable, "-m", "timoner.cli.main", "agent", "--kubeconfig", str(srv.kubeconfig),
                   "--node-name", "n1", "--runtime", "process", "--root-dir", str(tmp_path / "agent"),
                   "--port", "0", "--pod-network", "host"]  # no controller manager: no pod CIDR for a network

        def agent():
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def status():
            out = kubectl(srv.kubeconfig, "get", "pod", "keep", "-o", "json", check=False)
            return json.loads(out.stdout)["status"] if out.returncode == 0 else None

        first = agent()
        try:
            manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keep"}, "spec": {
                "nodeName": "n1", "terminationGracePeriodSeconds": 5, "containers": [{
                    "name": "c", "image": "busybox",
                    "command": ["sh", "-c", f"echo {marker} >/dev/null; while true; do sleep 0.1; done"]}]}}
            kubectl(srv.kubeconfig, "apply", "-f", "-", input=json.dumps(manifest))
            wait_until(lambda: (status() or {}).get("phase") == "Running", 60, "Running")
            before = status()["containerStatuses"][0]
            pids = wait_until(lambda: _processes(marker), what="the container's process")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert _processes(marker) == pids  # the agent died; its container did not

        second = agent()
        try:
            # The new agent serves on a new port: exec works once it re-registered and adopted the pod.
            wait_until(lambda: kubectl(srv.kubeconfig, "exec", "keep", "--", "true", check=False).returncode == 0,
                       60, "exec through the new agent")
            after = status()["containerStatuses"][0]
            assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
            assert after["state"]["running"] == before["state"]["running"]
            assert _processes(marker) == pids
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(10)

        kubectl(srv.kubeconfig, "delete", "pod", "keep", "--wait=false")
        assert _processes(marker) == pids  # nobody stops it while no agent runs
        third = agent()
        try:
            wait_until(lambda: status() is None, 60, "the pod's deletion to complete")
            assert _processes(marker) == []
        finally:
            third.send_signal(signal.SIGTERM)
            third.wait(20)

